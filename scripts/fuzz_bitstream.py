"""Fuzzes the decoder: mutated files must raise BitstreamError or decode, quickly, never crash.

Builds a small real file from fixed tensors (a SHACIRA, a plain and a VQAD grid with both
index codings, and a plain grid written post hoc as uniform 6-bit symbols, through
:mod:`nerfcompress.bitstream.model_codec` and the container; no training), then decodes
``--num-files`` seeded mutations of it with ``read_container`` and the table decoders.
Mutations: truncation, 1-8 byte flips, byte insertions and deletions, huge section-length
fields, header corruption, and (to reach the table decoders behind the
CRCs) damaged section payloads or header fields in a file whose CRCs are recomputed.

Exits 1 if any exception other than :class:`BitstreamError` escapes or a decode takes longer
than ``--max-seconds``; prints a JSON summary either way.

    .venv/bin/python scripts/fuzz_bitstream.py --num-files 10000 --seed 0
"""

from __future__ import annotations

import json
import random
import struct
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
import tyro

from nerfcompress.bitstream.container import read_container, read_container_index, write_container
from nerfcompress.bitstream.levels import order_sections
from nerfcompress.bitstream.model_codec import decode_tables, encode_tables, plain_codec
from nerfcompress.errors import BitstreamError
from nerfcompress.tables import FeatureTable, PlainTable, ShaciraTable, VqadTable

NAMES = ["g0", "g1", "g2", "g3"]
VQAD_LEVEL_ROWS = (8, 64, 3000)
UNIFORM_LEVEL_ROWS = (16, 2000)


def _fresh_tables() -> List[FeatureTable]:
    """Empty tables with the layout of the fuzzed file (what an importer would build)."""
    return [
        ShaciraTable(400, 2, latent_dim=2),
        PlainTable(16, 2),
        VqadTable(VQAD_LEVEL_ROWS, 2, bits=4),
        PlainTable(sum(UNIFORM_LEVEL_ROWS), 2, level_rows=UNIFORM_LEVEL_ROWS),
    ]


def build_file() -> bytes:
    """The file every mutation starts from; fixed contents, no randomness outside seeds."""
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    shacira, plain, vqad, uniform = _fresh_tables()
    with torch.no_grad():
        shacira.latents.copy_(torch.from_numpy(np.round(rng.laplace(0, 2, (400, 2))).astype(np.float32)))
        shacira.decoder.weight.copy_(torch.randn(2, 2, generator=generator))
        plain.rows.copy_(torch.randn(16, 2, generator=generator))
        uniform.rows.copy_(torch.from_numpy(rng.laplace(0, 0.05, (uniform.num_rows, 2)).astype(np.float32)))
    indices = np.concatenate(
        [
            rng.integers(0, 16, 8),  # packed
            rng.integers(0, 16, 64),  # packed
            np.clip(np.round(rng.laplace(8, 0.7, 3000)), 0, 15),  # range-coded
        ]
    )
    vqad.assign_codes(torch.from_numpy(indices.astype(np.int64)), torch.randn(3, 16, 2, generator=generator))
    grids, sections = encode_tables([shacira, plain, vqad], NAMES[:3])
    uniform_grids, uniform_sections = encode_tables([uniform], NAMES[3:], codec=plain_codec("uniform6"))
    grids, sections = grids + uniform_grids, order_sections(sections + uniform_sections)
    for grid in (grids[2], grids[3]):
        if "packed" not in grid["coding"] or "range" not in grid["coding"]:
            raise RuntimeError(f"fuzz file should hold both codings in {grid['name']}, found {grid['coding']}")
    header = {"method": "fuzz", "grids": grids, "scene": {"scale": 0.5}}
    sections = [("cameras", np.arange(24, dtype="<f4").tobytes()), *sections]
    return write_container(header, sections)


def decode_file(data: bytes) -> None:
    """What an importer does with the grids: container, then every table decoder."""
    header, sections = read_container(data)
    decode_tables(header.get("grids"), sections, _fresh_tables())


def _truncate(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    return "truncate", data[: rng.randrange(len(data))]


def _flip(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return "flip", bytes(out)


def _insert(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    at = rng.randrange(len(data) + 1)
    return "insert", data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[at:]


def _delete(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    at = rng.randrange(len(data))
    return "delete", data[:at] + data[at + rng.randint(1, 8) :]


def _huge_length(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    _, index = read_container_index(data)
    entry = rng.choice(index)
    value = rng.choice([2**64 - 1, 2**63, 2**32, len(data), len(data) + 1, rng.randrange(2**64)])
    at = entry.offset - 12  # the uint64 payload length precedes the CRC32 and the payload
    return "huge_length", data[:at] + struct.pack("<Q", value) + data[at + 8 :]


def _header(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    header_end = 18 + struct.unpack_from("<I", data, 6)[0]
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(header_end)] ^= rng.randint(1, 255)
    return "header", bytes(out)


def _payload_recrc(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    """Damaged payload bytes (flips, truncation or growth) under freshly computed CRCs."""
    header, sections = read_container(data)
    name = rng.choice([n for n in sections if n != "cameras"])
    payload = bytearray(sections[name])
    choice = rng.randrange(3)
    if choice == 0 and payload:
        for _ in range(rng.randint(1, 8)):
            payload[rng.randrange(len(payload))] ^= rng.randint(1, 255)
    elif choice == 1:
        del payload[rng.randrange(len(payload) + 1) :]
    else:
        payload += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    sections[name] = bytes(payload)
    return "payload_recrc", write_container(header, list(sections.items()))


def _random_json(rng: random.Random):
    return rng.choice([None, True, -1, 0, 1, 2**40, -(2**63), 1e308, 0.5, "range", "packed", "", [], {}, [1, 2]])


def _header_field_recrc(data: bytes, rng: random.Random) -> Tuple[str, bytes]:
    """A grid entry's field replaced by another JSON value under freshly computed CRCs."""
    header, sections = read_container(data)
    grids = header["grids"]
    entry = rng.choice(grids)
    key = rng.choice(sorted(entry))
    value = entry[key]
    if isinstance(value, list) and value and rng.random() < 0.5:
        value = list(value)
        value[rng.randrange(len(value))] = _random_json(rng)
    else:
        value = _random_json(rng)
    entry[key] = value
    if rng.random() < 0.1:
        header["grids"] = _random_json(rng)
    return "header_field_recrc", write_container(header, list(sections.items()))


MUTATIONS: List[Callable[[bytes, random.Random], Tuple[str, bytes]]] = [
    _truncate,
    _flip,
    _insert,
    _delete,
    _huge_length,
    _header,
    _payload_recrc,
    _header_field_recrc,
]


@dataclass
class FuzzBitstream:
    """Decodes seeded mutations of a small real file and counts the outcomes."""

    num_files: int = 10000
    """Mutated files to decode."""
    seed: int = 0
    """Seed of the mutations."""
    max_seconds: float = 1.0
    """A decode slower than this is a failure."""

    def run(self) -> Dict[str, object]:
        """Runs the fuzzer; returns the summary (``"ok"`` is False on any failure)."""
        torch.set_num_threads(1)
        original = build_file()
        decode_file(original)  # the unmutated file must decode
        rng = random.Random(self.seed)
        outcomes: Dict[str, Counter] = {}
        bugs: List[Dict[str, str]] = []
        times: List[float] = []
        slowest_file: Dict[str, object] = {}
        started = time.perf_counter()
        for i in range(self.num_files):
            kind, mutated = rng.choice(MUTATIONS)(original, rng)
            begin = time.perf_counter()
            try:
                decode_file(mutated)
                outcome = "decoded"
            except BitstreamError:
                outcome = "bitstream_error"
            except Exception as exc:  # the bug this script hunts
                outcome = "other_exception"
                if len(bugs) < 20:
                    bugs.append(
                        {
                            "file": str(i),
                            "mutation": kind,
                            "error": f"{type(exc).__name__}: {exc}"[:300],
                            "where": traceback.format_exc(limit=-3)[-600:],
                        }
                    )
            times.append(time.perf_counter() - begin)
            if times[-1] == max(times):
                slowest_file = {"file": i, "mutation": kind, "outcome": outcome}
            outcomes.setdefault(kind, Counter())[outcome] += 1
        totals = sum(outcomes.values(), Counter())
        slowest = max(times) if times else 0.0
        return {
            "ok": totals["other_exception"] == 0 and slowest <= self.max_seconds,
            "num_files": self.num_files,
            "seed": self.seed,
            "file_bytes": len(original),
            "outcomes": {k: totals[k] for k in ("decoded", "bitstream_error", "other_exception")},
            "by_mutation": {kind: dict(counter) for kind, counter in sorted(outcomes.items())},
            "decode_seconds": {
                "mean": float(np.mean(times)) if times else 0.0,
                "p99": float(np.quantile(times, 0.99)) if times else 0.0,
                "max": slowest,
                "slowest_file": slowest_file,
            },
            "wall_seconds": time.perf_counter() - started,
            "bugs": bugs,
        }

    def main(self) -> None:
        summary = self.run()
        print(json.dumps(summary, indent=2))
        if not summary["ok"]:
            sys.exit(1)


if __name__ == "__main__":
    tyro.cli(FuzzBitstream).main()
