"""What a grid row holds: one FeatureTable protocol, one class per storage scheme."""

from nerfcompress.tables.base import FeatureTable
from nerfcompress.tables.plain import PlainTable
from nerfcompress.tables.rounding import RoundingSchedule, hard_round_ste, soft_round_gumbel
from nerfcompress.tables.shacira import ShaciraTable
from nerfcompress.tables.vqad import VqadTable

__all__ = [
    "FeatureTable",
    "PlainTable",
    "RoundingSchedule",
    "ShaciraTable",
    "VqadTable",
    "hard_round_ste",
    "soft_round_gumbel",
]
