"""Learned factorised prior and integer-table entropy coding of grid latents."""

from nerfcompress.entropy.coder import (
    ChannelTables,
    build_tables,
    decode_latents,
    encode_latents,
    estimate_bits,
    quantize_pmf,
)
from nerfcompress.entropy.factorized import FactorizedPrior

__all__ = [
    "ChannelTables",
    "FactorizedPrior",
    "build_tables",
    "decode_latents",
    "encode_latents",
    "estimate_bits",
    "quantize_pmf",
]
