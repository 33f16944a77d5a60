"""What a grid row holds: one FeatureTable protocol, one class per storage scheme."""

from nerfcompress.tables.base import FeatureTable
from nerfcompress.tables.plain import PlainTable
from nerfcompress.tables.rounding import RoundingSchedule, hard_round_ste, soft_round_gumbel
from nerfcompress.tables.shacira import ShaciraTable
from nerfcompress.tables.symbols import (
    CodingTablesPart,
    ContextPart,
    FloatPart,
    IndexPart,
    RangePart,
    SymbolLayout,
    TableSymbols,
)
from nerfcompress.tables.uniform import dequantize_uniform, quantize_uniform, round_trip_uniform
from nerfcompress.tables.vqad import VqadTable

__all__ = [
    "CodingTablesPart",
    "ContextPart",
    "FeatureTable",
    "FloatPart",
    "IndexPart",
    "RangePart",
    "SymbolLayout",
    "TableSymbols",
    "PlainTable",
    "RoundingSchedule",
    "ShaciraTable",
    "VqadTable",
    "dequantize_uniform",
    "hard_round_ste",
    "quantize_uniform",
    "round_trip_uniform",
    "soft_round_gumbel",
]
