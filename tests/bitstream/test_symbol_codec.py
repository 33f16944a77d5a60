"""Symbol checksums: a stream that decodes to other symbols than were written is refused."""

import numpy as np
import pytest
import torch

from nerfcompress.bitstream import symbol_codec
from nerfcompress.bitstream.container import read_container, write_container
from nerfcompress.bitstream.model_codec import decode_tables, encode_tables
from nerfcompress.bitstream.quantized_tensors import decode_quantized_tensors, encode_quantized_tensors
from nerfcompress.errors import BitstreamError
from nerfcompress.tables import ShaciraTable, VqadTable


def _shacira() -> ShaciraTable:
    table = ShaciraTable(200, 2, latent_dim=2, level_rows=(40, 160))
    with torch.no_grad():
        table.latents.copy_(torch.from_numpy(np.round(np.random.default_rng(0).laplace(0, 2, (200, 2)))))
    table.prior.pmf = lambda channel, lo, support: np.exp(-np.abs(np.arange(lo, lo + support)) / 2.0)
    return table


def _vqad() -> VqadTable:
    table = VqadTable((16, 4000), 2, bits=4)
    indices = np.clip(np.round(np.random.default_rng(0).laplace(8, 0.7, 4016)), 0, 15).astype(np.int64)
    table.assign_codes(torch.from_numpy(indices), torch.randn(2, 16, 2))
    return table


def _decode(grids, sections, fresh):
    decode_tables(grids, sections, [fresh])
    return fresh


@pytest.mark.parametrize("make, decoder", [(_shacira, "decode_latents"), (_vqad, "decode_indices")])
def test_a_coder_that_decodes_other_symbols_is_caught_by_the_stored_checksum(make, decoder, monkeypatch):
    """A stand-in for a range coder that decodes the same words to other symbols (another
    constriction release, a miscompiled build): every symbol comes back, one of them changed."""
    table = make()
    grids, sections = encode_tables([table], ["g0"])
    header, read = read_container(write_container({"grids": grids}, sections))
    _decode(header["grids"], read, make())  # the real coder decodes
    real = getattr(symbol_codec, decoder)

    def off_by_one(*args, **kwargs):
        symbols = real(*args, **kwargs).copy()
        symbols.reshape(-1)[-1] ^= 1
        return symbols

    monkeypatch.setattr(symbol_codec, decoder, off_by_one)
    with pytest.raises(BitstreamError, match="checksum differs"):
        _decode(header["grids"], read, make())


def test_a_damaged_checksum_is_refused_and_sections_without_streams_carry_none():
    grids, sections = encode_tables([_shacira()], ["g0"])
    payloads = dict(sections)
    assert len(payloads["g0.decoder"]) == 2 * (2 * 2 + 2)  # fp16 floats only: no checksum
    damaged = {**payloads, "g0.l1": bytes([payloads["g0.l1"][0] ^ 1]) + payloads["g0.l1"][1:]}
    with pytest.raises(BitstreamError, match="checksum differs"):
        _decode(grids, damaged, _shacira())
    with pytest.raises(BitstreamError, match="too few for its checksum"):
        _decode(grids, {**payloads, "g0.l1": b"\0\0"}, _shacira())


def test_quantized_tensors_refuse_extra_words_and_a_wrong_checksum():
    tensors = [np.random.default_rng(0).normal(0, 0.1, (16, 8)).astype(np.float32), np.zeros(4, np.float32)]
    payload = encode_quantized_tensors(tensors, 6)
    assert len(decode_quantized_tensors(payload, [128, 4])) == 2
    with pytest.raises(BitstreamError, match="after the end of the stream|data left"):
        decode_quantized_tensors(payload + b"\0\0\0\0", [128, 4])
    with pytest.raises(BitstreamError, match="checksum differs"):
        decode_quantized_tensors(bytes([payload[0] ^ 1]) + payload[1:], [128, 4])
