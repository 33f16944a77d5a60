"""Host (Python) values for the training step that never make the host wait for a CUDA device.

Schedules that need a statistic of the parameters on the host (SHACIRA's decoder norm for the
latents' learning rate, the range of its latents for the rate's knot window) read it through a
:class:`LaggedHostCopy`: on CUDA the copy is enqueued into pinned memory and read a step later
once an event says it is done; on CPU it is read at once, so CPU numbers are those of the step.
:func:`host_randint` draws from torch's CPU generator, a host value on every device.
:class:`~nerfcompress.host_sync.HostSyncAudit` is told that this module's conversions do not wait.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor


class LaggedHostCopy:
    """Copies a small tensor to the host asynchronously and returns the latest completed copy.

    Example:
        >>> reading = LaggedHostCopy()
        >>> values = reading.read(torch.stack([x.min(), x.max()]))  # None until a copy completed
    """

    def __init__(self) -> None:
        self._buffer: Optional[Tensor] = None  # pinned [k], reused
        self._event: Optional[torch.cuda.Event] = None  # set while a copy is in flight
        self._latest: Optional[List[float]] = None

    @torch.no_grad()
    def read(self, values: Tensor) -> Optional[List[float]]:
        """Starts copying ``values`` and returns the most recent copy that has completed.

        Args:
            values: a small 1-D tensor, e.g. ``[3]``.

        Returns:
            On CPU, ``values`` as floats. On CUDA, the values of an earlier call whose copy is
            done (usually the previous call's), or None while none is; a new copy starts only when
            the previous one has been read, so the host never waits. On the meta device (tables
            built only to check a file's shapes), None: there are no values.
        """
        if values.device.type == "meta":
            return None
        if values.device.type != "cuda":
            self._latest = values.detach().double().tolist()
            return self._latest
        if self._event is not None and self._event.query():
            self._latest = self._buffer.tolist()
            self._event = None
        if self._event is None:
            if self._buffer is None or self._buffer.shape != values.shape or self._buffer.dtype != values.dtype:
                self._buffer = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            self._buffer.copy_(values.detach(), non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        return self._latest


def host_randint(high: int) -> int:
    """A uniform int in ``[0, high)`` from torch's global CPU generator (never a device tensor)."""
    return int(torch.randint(high, ()))
