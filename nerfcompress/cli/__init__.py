"""nerfcompress's command lines.

nerfstudio 1.1.5 calls torch APIs that torch 2.x deprecates (``torch.jit.script``,
``torch.cuda.amp.custom_fwd``) while it is imported; the FutureWarnings say nothing a user of
``ns-compress`` can act on and would bury a one-line error, so the command lines hide exactly those.
"""

import warnings

_NERFSTUDIO_IMPORT_DEPRECATIONS = (
    r"`torch\.jit\.script` is deprecated",
    r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated",
)
for _message in _NERFSTUDIO_IMPORT_DEPRECATIONS:
    warnings.filterwarnings("ignore", message=_message, category=FutureWarning)
