"""Finds the operations that would make the host wait for a CUDA device, on any device.

On CUDA, ``torch.cuda.set_sync_debug_mode`` reports the synchronisations that happen. On a CPU
nothing synchronises, so :class:`HostSyncAudit` records the tensor operations that *would* wait
for the device if the tensors lived there (``.item()``, ``bool()``, ``float()``, ``.tolist()``,
``.cpu()``, ``nonzero``, boolean-mask indexing, ...) with the Python line that called them. Tests
run a CPU training step under it and assert that none of those lines is ours; the GPU
benchmark runs the same audit next to ``set_sync_debug_mode`` (:func:`caller_site` names the line
of each synchronisation that mode reports).
"""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional

import torch
from torch.overrides import TorchFunctionMode

WAITING_OPERATIONS = frozenset(
    {
        "item",
        "tolist",
        "numpy",
        "cpu",
        "__bool__",
        "__float__",
        "__int__",
        "__index__",
        "__complex__",
        "__contains__",
        "nonzero",
        "argwhere",
        "masked_select",
        "unique",
        "unique_consecutive",
    }
)
"""Tensor operations whose result the host needs (a copy to it, or a data-dependent shape)."""

_PACKAGE = Path(__file__).resolve().parent
_TORCH = Path(torch.__file__).resolve().parent


@dataclass(frozen=True)
class SyncSite:
    """Where a waiting operation was called from: the innermost frame outside torch."""

    operation: str
    filename: str
    lineno: int
    function: str

    @property
    def ours(self) -> bool:
        """Whether the line is in the nerfcompress package."""
        return Path(self.filename).resolve().is_relative_to(_PACKAGE)

    def __str__(self) -> str:
        return f"{self.operation} at {self.filename}:{self.lineno} ({self.function})"


def caller_site(operation: str) -> Optional[SyncSite]:
    """The innermost frame of the current Python stack outside torch and this module."""
    here = Path(__file__).resolve()
    for frame in reversed(traceback.extract_stack()[:-1]):
        path = Path(frame.filename).resolve()
        if path != here and not path.is_relative_to(_TORCH):
            return SyncSite(operation, frame.filename, frame.lineno or 0, frame.name)
    return None


def _has_bool_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class HostSyncAudit(TorchFunctionMode):
    """A torch function mode that records every waiting operation and where it was called.

    Args:
        allowed: files whose calls are expected and not recorded (e.g. the CPU branch of
            :class:`~nerfcompress.tables.host_values.LaggedHostCopy`, which on CUDA copies without waiting).

    Example:
        >>> with HostSyncAudit() as audit:
        ...     loss = model(batch)
        >>> [str(site) for site in audit.sites if site.ours]
    """

    def __init__(self, allowed: Iterable[str | Path] = ()) -> None:
        super().__init__()
        self.allowed = {Path(path).resolve() for path in allowed}
        self.sites: List[SyncSite] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        waits = name in WAITING_OPERATIONS
        if name in ("__getitem__", "__setitem__") and len(args) > 1:
            waits = _has_bool_mask(args[1])
        if name == "to" and any(str(a) == "cpu" for a in (*args[1:], *(kwargs or {}).values())):
            waits = True
        if waits:
            self._record(name)
        return func(*args, **(kwargs or {}))

    def _record(self, operation: str) -> None:
        site = caller_site(operation)
        if site is not None and Path(site.filename).resolve() not in self.allowed:
            self.sites.append(site)

    def summary(self, ours: Optional[bool] = None) -> List[str]:
        """``"count x site"`` lines, most frequent first; ``ours`` keeps only ours (True) or others'."""
        sites = [site for site in self.sites if ours is None or site.ours == ours]
        return [f"{count} x {site}" for site, count in Counter(sites).most_common()]
