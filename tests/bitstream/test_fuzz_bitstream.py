"""A short run of scripts/fuzz_bitstream.py: no mutation may escape as anything but BitstreamError."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_bitstream.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("fuzz_bitstream", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_two_hundred_mutations_decode_or_raise_bitstream_error_quickly():
    fuzz = _load_script()
    summary = fuzz.FuzzBitstream(num_files=200, seed=0).run()
    assert summary["outcomes"]["other_exception"] == 0, summary["bugs"]
    assert summary["decode_seconds"]["max"] <= 1.0
    assert summary["ok"] and sum(summary["outcomes"].values()) == 200
    assert summary["outcomes"]["bitstream_error"] > 100  # most mutations are caught


def test_the_unmutated_file_decodes_to_its_tables():
    fuzz = _load_script()
    fuzz.decode_file(fuzz.build_file())


def test_mutated_prefixes_decode_their_levels_or_raise_bitstream_error():
    """The prefix path (read_container_prefix, levels_to_decode, decode_tables(num_levels)) on the
    script's mutations, half of them also truncated: only BitstreamError may escape."""
    import random

    from nerfcompress.bitstream.container import read_container_prefix
    from nerfcompress.bitstream.levels import levels_to_decode
    from nerfcompress.bitstream.model_codec import decode_tables
    from nerfcompress.errors import BitstreamError

    fuzz = _load_script()
    original = fuzz.build_file()
    rng = random.Random(0)
    decoded_levels = []
    for _ in range(300):
        _, data = rng.choice(fuzz.MUTATIONS)(original, rng)
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data) + 1)]
        try:
            header, sections, _ = read_container_prefix(data)
            levels, _ = levels_to_decode(header.get("grids"), list(sections))
            decode_tables(header.get("grids"), sections, fuzz._fresh_tables(), num_levels=levels)
            decoded_levels.append(levels)
        except BitstreamError:
            pass
    assert {1, 2, 3} <= set(decoded_levels)
