"""PlainTable: float rows, the uncompressed baseline."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from nerfcompress.errors import BitstreamError
from nerfcompress.tables.base import FeatureTable
from nerfcompress.tables.symbols import FloatPart, IndexPart, SymbolLayout, TableSymbols
from nerfcompress.tables.uniform import MAX_BITS, MIN_BITS, dequantize_uniform, quantize_uniform

PLAIN_STORAGES = ("fp16", "fp32", *(f"uniform{bits}" for bits in range(MIN_BITS, MAX_BITS + 1)))
"""How a PlainTable's rows can be stored: fp16 (the default), fp32 (the true uncompressed size),
or each level quantized uniformly to ``b`` bits (post hoc, :mod:`nerfcompress.tables.uniform`)."""


def _uniform_bits(storage: str) -> Optional[int]:
    return int(storage[len("uniform") :]) if storage.startswith("uniform") else None


class PlainTable(FeatureTable):
    """One float feature vector per grid row, as in instant-NGP / nerfacto.

    Stored forms (:data:`PLAIN_STORAGES`), one section per level:

    * ``fp16`` / ``fp32`` (kinds ``"plain"`` / ``"plain-fp32"``): the level's rows ``[rows_l, F]``.
    * ``uniform<b>`` (kind ``"plain-uniform"``, setting ``bits``): the level's float32
      ``(minimum, step)`` and its ``rows_l * F`` symbols (row-major, row 0's F channels first)
      in ``[0, 2**b)``; decoded as ``minimum + symbol * step``, the exporter's own
      dequantization bit for bit (:func:`~nerfcompress.tables.uniform.round_trip_uniform`).

    Args:
        num_rows: total rows of the grid.
        num_features: features per row ``F``.
        init_scale: rows start uniform in ``[-init_scale, init_scale]`` (tiny-cuda-nn's default).
        level_rows: rows of each level (``GridLayout.level_rows``), summing to ``num_rows``;
            the file stores each level in its own section. None: one level.
    """

    def __init__(
        self, num_rows: int, num_features: int, init_scale: float = 1e-4, level_rows: Optional[Sequence[int]] = None
    ) -> None:
        super().__init__(num_rows, num_features, level_rows)
        if init_scale < 0:
            raise ValueError(f"init_scale must be >= 0, got {init_scale}")
        self.rows = nn.Parameter(torch.empty(num_rows, num_features).uniform_(-init_scale, init_scale))  # [rows, F]

    def decode(self) -> Tensor:
        return self.rows

    def forward(self) -> Tensor:  # no decoding work, nothing to cache
        return self.rows

    def storages(self) -> Tuple[str, ...]:
        return PLAIN_STORAGES

    def symbol_layout(self, storage: Optional[str] = None) -> SymbolLayout:
        storage = self.check_storage(storage)
        bits = _uniform_bits(storage)
        features = self.num_features
        if bits is None:
            dtype = "<f2" if storage == "fp16" else "<f4"
            levels = tuple({"rows": FloatPart((rows, features), dtype)} for rows in self.level_rows)
            return SymbolLayout("plain" if storage == "fp16" else "plain-fp32", {}, {}, levels)
        levels = tuple(
            {"range": FloatPart((2,), "<f4"), "symbols": IndexPart(rows * features, bits)} for rows in self.level_rows
        )
        return SymbolLayout("plain-uniform", {"bits": bits}, {}, levels)

    @torch.no_grad()
    def to_symbols(self, storage: Optional[str] = None) -> TableSymbols:
        """Raises ValueError if a row is not finite (or, for ``uniform<b>``, spans too wide a range)."""
        storage = self.check_storage(storage)
        bits = _uniform_bits(storage)
        levels = []
        for rows in self.rows.detach().cpu().float().split(self.level_rows):  # [rows_l, F] each
            if bits is None:
                levels.append({"rows": rows.numpy()})
            else:
                symbols, minimum, step = quantize_uniform(rows, bits)
                levels.append({"range": np.array([minimum, step], np.float32), "symbols": symbols.reshape(-1)})
        return TableSymbols(levels=levels)

    @torch.no_grad()
    def from_symbols(self, symbols: TableSymbols, storage: Optional[str] = None) -> None:
        storage = self.check_storage(storage)
        rows = torch.zeros(self.num_rows, self.num_features)  # levels not decoded stay zero
        for level, (out, values) in enumerate(zip(rows.split(self.level_rows), symbols.levels)):
            if _uniform_bits(storage) is None:
                out.copy_(torch.from_numpy(values["rows"]))
                continue
            minimum, step = values["range"]
            with np.errstate(over="ignore", invalid="ignore"):
                highest = minimum + np.float32((1 << _uniform_bits(storage)) - 1) * step
            if not (step >= 0 and np.isfinite(highest)):
                raise BitstreamError(
                    f"level {level} stores minimum {minimum} and step {step}, expected step >= 0 and a finite "
                    "largest value; the file is corrupt"
                )
            level_symbols = values["symbols"].reshape(-1, self.num_features)
            out.copy_(torch.from_numpy(dequantize_uniform(level_symbols, minimum, step)))
        self.rows.copy_(rows)
