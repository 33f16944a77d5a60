"""The FeatureTable protocol: what one grid's rows hold and how they decode to features.

A table produces the decoded feature table ``Z [rows, F]`` for the whole grid once per step;
the grid interpolates from ``Z`` and knows nothing about compression. In evaluation mode (no
gradients) ``Z`` is materialised once and cached, so a decoded model renders as fast as an
uncompressed one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from nerfcompress.tables.symbols import SymbolLayout, TableSymbols


class FeatureTable(nn.Module):
    """Base class of all tables.

    Subclasses implement :meth:`decode` (and :meth:`rate_bits` if they carry a learned rate),
    and, to be stored in a file, the codec protocol of :mod:`nerfcompress.tables.symbols`:
    :meth:`storages`, :meth:`symbol_layout`, :meth:`to_symbols` and :meth:`from_symbols`.

    Args:
        num_rows: total rows of the grid (all levels concatenated).
        num_features: features per row ``F``.
        level_rows: rows of each level, level 0 first (``GridLayout.level_rows``), summing to
            ``num_rows``; the file codes each level on its own so that a prefix of the file
            decodes the coarse levels. None: the table is one level.

    Raises:
        ValueError: ``num_rows`` or ``num_features`` below 1, or ``level_rows`` empty, with a
            level below 1 row, or not summing to ``num_rows``.
    """

    def __init__(self, num_rows: int, num_features: int, level_rows: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        if num_rows < 1:
            raise ValueError(f"num_rows must be >= 1, got {num_rows}")
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.num_rows = int(num_rows)
        self.num_features = int(num_features)
        if level_rows is None:
            level_rows = (self.num_rows,)
        if len(level_rows) == 0 or any(int(rows) < 1 for rows in level_rows):
            raise ValueError(f"level_rows must be a non-empty sequence of ints >= 1, got {list(level_rows)}")
        if sum(int(rows) for rows in level_rows) != self.num_rows:
            raise ValueError(f"level_rows {list(level_rows)} must sum to num_rows={self.num_rows}")
        self.level_rows = tuple(int(rows) for rows in level_rows)
        self._cached_table: Optional[Tensor] = None
        self.register_load_state_dict_post_hook(lambda module, _keys: module.clear_cache())

    @property
    def num_levels(self) -> int:
        """``L``, the number of levels."""
        return len(self.level_rows)

    def level_of_rows(self) -> Tensor:
        """int64 ``[rows]``: the level of every row (CPU; callers keep it as a buffer)."""
        return torch.repeat_interleave(
            torch.arange(self.num_levels), torch.tensor(self.level_rows), output_size=self.num_rows
        )

    def decode(self) -> Tensor:
        """Decoded table ``[rows, F]``; differentiable in training mode."""
        raise NotImplementedError

    def rate_bits(self) -> Tensor:
        """Differentiable estimate of the coded size of the rows, in bits (scalar); zero for tables
        without a learned rate (no decode needed)."""
        return next(self.parameters()).new_zeros(())

    def forward(self) -> Tensor:
        """Decoded table ``[rows, F]``, cached while in eval mode without gradients."""
        if self.training or torch.is_grad_enabled():
            self._cached_table = None
            return self.decode()
        if self._cached_table is None:
            self._cached_table = self.decode()
        return self._cached_table

    def clear_cache(self) -> None:
        """Drops the cached decoded table (after parameters changed)."""
        self._cached_table = None

    def train(self, mode: bool = True) -> "FeatureTable":
        self.clear_cache()
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # device / dtype moves invalidate the cache
        self.clear_cache()
        return super()._apply(fn, recurse)

    def set_step(self, step: int) -> None:
        """Applies the training schedules at ``step`` (a pure function of the step)."""

    def training_state(self) -> Dict[str, float]:
        """Scalars worth logging during training (e.g. the rounding temperature)."""
        return {}

    def parameter_groups(self) -> Dict[str, List[nn.Parameter]]:
        """Parameters by optimizer group: ``"grids"`` (rows, decoders, codebooks), ``"latents"``
        (SHACIRA's integer latents) and ``"entropy"`` (learned probability models). Groups without
        parameters are omitted."""
        return {"grids": list(self.parameters())}

    def learning_rate_scales(self) -> Dict[str, float]:
        """Multipliers of the configured learning rate, by optimizer group, for this table's
        parameters at the current step. The model gives each table its own torch parameter group
        in these optimizer groups and applies the multipliers before every training step."""
        return {}

    def storages(self) -> Tuple[str, ...]:
        """Names of the forms this table can be stored in, the default first; empty for a table
        that cannot be stored."""
        return ()

    def check_storage(self, storage: Optional[str]) -> str:
        """``storage``, or the default one for None.

        Raises:
            ValueError: if the table has no such storage.
        """
        names = self.storages()
        if storage is None and names:
            return names[0]
        if storage not in names:
            raise ValueError(f"{type(self).__name__} is stored as one of {list(names)}, not {storage!r}")
        return storage

    def symbol_layout(self, storage: Optional[str] = None) -> SymbolLayout:
        """The stored form in ``storage`` (default: the first of :meth:`storages`); depends on the
        table's configuration only, never on its values."""
        raise NotImplementedError(f"{type(self).__name__} has no stored form")

    def to_symbols(self, storage: Optional[str] = None) -> TableSymbols:
        """The values to store in ``storage``, as :meth:`symbol_layout` describes them."""
        raise NotImplementedError(f"{type(self).__name__} has no stored form")

    def from_symbols(self, symbols: TableSymbols, storage: Optional[str] = None) -> None:
        """Sets the table from decoded symbols (untrusted values of the right shapes and dtypes,
        as the codec checks); levels beyond ``len(symbols.levels)`` become zero rows.

        Raises:
            BitstreamError: if the values are not something the table can hold.
        """
        raise NotImplementedError(f"{type(self).__name__} has no stored form")

    def storage_for(self, kind: Any, settings: Mapping[str, Any]) -> Optional[str]:
        """The storage whose layout has this ``kind`` and these ``settings`` (read from a file),
        or None."""
        for storage in self.storages():
            layout = self.symbol_layout(storage)
            if layout.kind == kind and dict(layout.settings) == dict(settings):
                return storage
        return None
