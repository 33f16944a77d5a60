"""Fuzzes the whole import path: crafted files must import or raise one BitstreamError, in bounded memory.

Builds three small real files on a tiny procedural scene (untrained models with seeded contents;
no training): ``shacira-nerfacto``, ``vqad-nerfacto`` (both index codings) and ``plain-nerfacto``
written post hoc as uniform 6-bit symbols. Hypothesis then draws cases, each 1-3 mutations of one
of them, and imports every case with ``decode_pipeline`` (container, allow-listed settings, caps,
cameras, model construction by nerfstudio, networks, grids), half of them as a prefix:

* header values (CRCs recomputed): any value replaced by a huge, negative, zero, float, string,
  list, object or nested value, or by a nearby one (``v + 1``, ``2 v``, ``-v``, a list one
  element longer or shorter); keys deleted; extra keys added;
* sections (CRCs recomputed): bytes flipped, payloads cut, grown, zeroed, deleted, swapped
  between two sections, or moved to another position;
* raw bytes (CRCs not recomputed): the file cut or bytes flipped.

Every case runs in a forked worker (copy-on-write: it starts from this process's memory, where
the files were built); its peak RSS is the worker's ``ru_maxrss`` from ``os.wait4``. The
reference is a worker importing each unmodified file. A worker may not run longer than
``--max-seconds`` nor map more than its start plus ``--address-space-gb`` (``RLIMIT_AS``), so a
bug cannot take the shared machine down. Outcomes: ``decoded``, ``bitstream_error``, and the
bugs ``other_exception``, ``crashed`` (a signal), ``timeout``. Exits 1 on any bug or on a peak
RSS of 2x the reference or more; prints a JSON summary either way.

    .venv/bin/python scripts/fuzz_import.py --num-cases 5000 --seed 0
"""

from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch
import tyro
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from nerfcompress.bitstream.container import read_container, write_container
from nerfcompress.errors import BitstreamError

METHODS = ("shacira-nerfacto", "vqad-nerfacto", "plain-nerfacto")
OUTCOMES = ("decoded", "bitstream_error", "other_exception", "crashed", "timeout")

INTERESTING = [
    None, True, False, 0, -1, 1, 2, 3, 7, 8, 9, 255, 256, 65535, 65536, 2**24, 2**31 - 1, 2**31, 2**32, 2**53,
    2**63, 2**64, -(2**63), 10**9, 200000, 0.0, -0.0, 0.5, 1e-300, 1e308, -1e308, "", "x", "range", "packed",
    "shacira", "plain-uniform", "vqad", "main", "white", [], {}, [0], [1, 2], [[]], {"a": 1}, {"name": "main"},
]  # fmt: skip
"""Values that tend to hit edges: empty, zero, sign, the widths of the integer fields, strings the
format uses, containers."""


def build_files(work_dir: Path) -> Dict[str, bytes]:
    """The unmodified files, ``method -> bytes`` (fixed contents, torch and numpy seeded)."""
    from nerfstudio.configs.method_configs import all_methods

    from nerfcompress.plugin.dataparser import AutoDataParserConfig
    from nerfcompress.plugin.export import export_pipeline
    from nerfcompress.scenes.synthetic import write_synthetic_scene

    scene = write_synthetic_scene(
        work_dir / "scene", resolution=16, num_train_views=3, num_val_views=1, num_test_views=1, supersample=1
    )
    files = {}
    for method in METHODS:
        config = copy.deepcopy(all_methods[method])
        config.machine.device_type = "cpu"
        config.pipeline.datamanager.dataparser = AutoDataParserConfig(data=scene)
        model = config.pipeline.model
        model.num_levels, model.max_res, model.log2_hashmap_size, model.proposal_log2_hashmap_size = 4, 64, 10, 8
        model.hidden_dim = model.hidden_dim_color = 16
        if method == "vqad-nerfacto":
            model.bits = 3
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        pipeline = config.pipeline.setup(device="cpu", test_mode="inference")
        with torch.no_grad():
            for table in pipeline.model.tables():
                if method == "shacira-nerfacto":
                    table.latents.copy_(torch.from_numpy(np.round(rng.laplace(0, 1.5, tuple(table.latents.shape)))))
                elif method == "vqad-nerfacto":
                    skewed = np.clip(np.round(rng.laplace(3, 0.6, table.num_rows)), 0, 7).astype(np.int64)
                    skewed[: table.level_rows[0]] = rng.integers(0, 8, table.level_rows[0])  # a packed level
                    table.assign_codes(torch.from_numpy(skewed), torch.randn(table.codebooks.shape).half().float())
                else:
                    table.rows.copy_(torch.from_numpy(rng.laplace(0, 0.1, tuple(table.rows.shape)).astype(np.float32)))
        posthoc = "uniform6" if method == "plain-nerfacto" else "none"
        files[method] = write_container(*export_pipeline(config, pipeline, 7, posthoc))
    return files


def _paths(value: Any, prefix: Tuple = ()) -> List[Tuple]:
    """Every path to a value inside a JSON document (dict keys and list indices), root excluded."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out += _paths(child, (*prefix, key))
    return out


def _get(document: Any, path: Tuple) -> Any:
    for key in path:
        document = document[key]
    return document


def json_values() -> st.SearchStrategy:
    """Any JSON value, edge values first: huge, negative, zero, floats, strings, lists, objects, nested."""
    leaves = st.one_of(
        st.sampled_from(INTERESTING),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
    )
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=6,
    )


@st.composite
def nearby(draw, value: Any) -> Any:
    """A value close to ``value`` (the kind of edit that slips past type checks)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return draw(st.sampled_from([value + 1, value - 1, 2 * value, -value, value * 1000, value + 2**20]))
    if isinstance(value, float):
        return draw(st.sampled_from([value * 2, -value, value + 1, value * 1e6, 0.0]))
    if isinstance(value, list) and value:
        return draw(st.sampled_from([value[:-1], [*value, value[-1]], value[::-1]]))
    if isinstance(value, str):
        return draw(st.sampled_from([value + "x", value.upper(), value[:-1]]))
    return draw(json_values())


@st.composite
def header_mutation(draw, header: Dict[str, Any]) -> Tuple[str, Callable]:
    """``(description, edit(header, sections))`` changing one header value."""
    path = draw(st.sampled_from(_paths(header)))
    kind = draw(st.sampled_from(["replace", "replace", "nearby", "nearby", "delete", "extra_key"]))
    where = ".".join(str(key) for key in path)
    if kind == "replace":
        value = draw(json_values())
    elif kind == "nearby":
        value = draw(nearby(_get(header, path)))
    elif kind == "extra_key":
        key, value = draw(st.text(min_size=1, max_size=8)), draw(json_values())

    def edit(document: Dict[str, Any], sections: List[List]) -> None:
        parent = _get(document, path[:-1])
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "extra_key":
            target = parent[path[-1]] if isinstance(parent[path[-1]], dict) else parent
            if isinstance(target, dict):
                target[key] = value
        else:
            parent[path[-1]] = value

    return f"header:{kind}:{where}", edit


@st.composite
def section_mutation(draw, names: List[str]) -> Tuple[str, Callable]:
    """``(description, edit(header, sections))`` damaging one section (or two)."""
    index = draw(st.integers(0, len(names) - 1))
    other = draw(st.integers(0, len(names) - 1))
    kind = draw(st.sampled_from(["flip", "cut", "grow", "zero", "delete", "swap", "move"]))
    at, count = draw(st.integers(0, 1 << 20)), draw(st.integers(1, 16))
    noise = draw(st.binary(min_size=1, max_size=16))

    def edit(document: Dict[str, Any], sections: List[List]) -> None:
        name, payload = sections[index]
        payload = bytearray(payload)
        if kind == "flip" and payload:
            for offset in range(count):
                payload[(at + 7919 * offset) % len(payload)] ^= noise[offset % len(noise)] | 1
        elif kind == "cut":
            del payload[at % (len(payload) + 1) :]
        elif kind == "grow":
            payload += noise
        elif kind == "zero":
            payload[:] = bytes(len(payload))
        sections[index][1] = bytes(payload)
        if kind == "delete":
            del sections[index]
        elif kind == "swap":
            sections[index][1], sections[other][1] = sections[other][1], sections[index][1]
        elif kind == "move":
            sections.insert(other, sections.pop(index))

    return f"section:{kind}:{names[index]}", edit


@st.composite
def cases(draw, files: Dict[str, bytes]) -> Tuple[str, List[str], bytes, bool]:
    """``(method, mutation descriptions, file bytes, prefix)`` of one case."""
    method = draw(st.sampled_from(sorted(files)))
    header, sections = read_container(files[method])
    header, entries = copy.deepcopy(header), [[name, payload] for name, payload in sections.items()]
    descriptions = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            description, edit = draw(header_mutation(header))
        else:
            description, edit = draw(section_mutation([name for name, _ in entries]))
        edit(header, entries)
        descriptions.append(description)
    try:
        data = write_container(header, [(name, payload) for name, payload in entries])
    except (ValueError, TypeError, RecursionError):  # not writable (e.g. a key made unhashable): raw damage
        data = files[method]
    raw = draw(st.sampled_from(["none", "none", "none", "cut", "flip"]))
    if raw == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif raw == "flip" and data:
        damaged = bytearray(data)
        damaged[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        data = bytes(damaged)
    if raw != "none":
        descriptions.append(f"raw:{raw}")
    return method, descriptions, data, draw(st.booleans())


def _import_in_child(data: bytes, prefix: bool, out_dir: Path, write_fd: int) -> None:
    from nerfcompress.plugin.import_model import decode_pipeline

    try:
        decode_pipeline(data, out_dir, prefix=prefix)
        report = {"outcome": "decoded"}
    except BitstreamError as exc:
        report = {"outcome": "bitstream_error", "error": str(exc)[:300]}
    except BaseException as exc:  # noqa: B036 - the bug this script hunts, MemoryError included
        report = {
            "outcome": "other_exception",
            "error": f"{type(exc).__name__}: {exc}"[:300],
            "where": traceback.format_exc(limit=-4)[-800:],
        }
    os.write(write_fd, json.dumps(report).encode())
    os._exit(0)


def run_isolated(data: bytes, prefix: bool, out_dir: Path, max_seconds: float, address_space_bytes: int) -> Dict:
    """Imports ``data`` in a forked worker; its report plus ``peak_rss_kb`` and ``seconds``."""
    read_fd, write_fd = os.pipe()
    begin = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read_fd)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
            torch.set_num_threads(1)
            _import_in_child(data, prefix, out_dir, write_fd)
        finally:
            os._exit(3)
    os.close(write_fd)
    deadline = begin + max_seconds
    status, usage = 0, None
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            os.close(read_fd)
            return {"outcome": "timeout", "peak_rss_kb": usage.ru_maxrss, "seconds": time.perf_counter() - begin}
        time.sleep(0.002)
    with os.fdopen(read_fd, "rb") as pipe:
        raw = pipe.read()
    seconds = time.perf_counter() - begin
    if os.WIFSIGNALED(status) or not raw:
        report = {"outcome": "crashed", "error": f"status {status}"}
    else:
        report = json.loads(raw)
    return {**report, "peak_rss_kb": usage.ru_maxrss, "seconds": seconds}


def _address_space_now() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@dataclass
class FuzzImport:
    """Imports Hypothesis-drawn mutations of three small real files in forked workers and counts the outcomes."""

    num_cases: int = 5000
    """Cases to draw and import."""
    seed: int = 0
    """Seed of Hypothesis's draws."""
    max_seconds: float = 60.0
    """A case slower than this is a bug (timeout)."""
    address_space_gb: float = 4.0
    """Address space a worker may map beyond what it starts with (RLIMIT_AS)."""
    rss_ratio_limit: float = 2.0
    """A peak RSS of this many times the reference's or more fails the run."""

    def run(self) -> Dict[str, Any]:
        """Runs the fuzzer; returns the summary (``"ok"`` is False on any bug or an RSS over the limit)."""
        torch.set_num_threads(1)
        work_dir = Path(tempfile.mkdtemp(prefix="fuzz-import-"))
        try:
            return self._run(work_dir)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _run(self, work_dir: Path) -> Dict[str, Any]:
        files = build_files(work_dir)
        limit = _address_space_now() + int(self.address_space_gb * 2**30)
        reference = {}
        for method, data in files.items():
            report = run_isolated(data, False, work_dir / f"reference-{method}", self.max_seconds, limit)
            if report["outcome"] != "decoded":
                raise RuntimeError(f"the unmodified {method} file does not import: {report}")
            reference[method] = report
        reference_rss = max(r["peak_rss_kb"] for r in reference.values())
        results: List[Dict[str, Any]] = []

        @seed(self.seed)
        @settings(
            max_examples=self.num_cases,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        )
        @given(case=cases(files))
        def one_case(case):
            method, descriptions, data, prefix = case
            out_dir = work_dir / f"case-{len(results)}"
            report = run_isolated(data, prefix, out_dir, self.max_seconds, limit)
            shutil.rmtree(out_dir, ignore_errors=True)
            results.append({"method": method, "mutations": descriptions, "prefix": prefix, **report})

        started = time.perf_counter()
        one_case()
        wall = time.perf_counter() - started
        return self._summary(files, reference, reference_rss, results, wall)

    def _summary(self, files, reference, reference_rss, results, wall) -> Dict[str, Any]:
        outcomes = Counter(r["outcome"] for r in results)
        by_kind: Dict[str, Counter] = {}
        for r in results:
            for description in r["mutations"]:
                by_kind.setdefault(description.split(":")[0] + ":" + description.split(":")[1], Counter())[
                    r["outcome"]
                ] += 1
        bugs = [r for r in results if r["outcome"] not in ("decoded", "bitstream_error")]
        rss = np.array([r["peak_rss_kb"] for r in results] or [0])
        largest = max(results, key=lambda r: r["peak_rss_kb"]) if results else {}
        seconds = np.array([r["seconds"] for r in results] or [0.0])
        ratio = float(rss.max()) / reference_rss
        return {
            "ok": not bugs and ratio < self.rss_ratio_limit,
            "num_cases": len(results),
            "seed": self.seed,
            "file_bytes": {method: len(data) for method, data in files.items()},
            "outcomes": {k: outcomes[k] for k in OUTCOMES},
            "mean_seconds_by_outcome": {
                k: float(np.mean([r["seconds"] for r in results if r["outcome"] == k])) for k in OUTCOMES if outcomes[k]
            },
            "decoded_prefixes": sum(r["outcome"] == "decoded" and r["prefix"] for r in results),
            "by_mutation_kind": {kind: dict(counter) for kind, counter in sorted(by_kind.items())},
            "reference_peak_rss_kb": {m: r["peak_rss_kb"] for m, r in reference.items()},
            "peak_rss_kb": {
                "max": int(rss.max()),
                "p99": float(np.quantile(rss, 0.99)),
                "median": float(np.median(rss)),
            },
            "max_rss_over_reference": ratio,
            "largest_rss_case": {k: largest.get(k) for k in ("method", "mutations", "prefix", "outcome", "error")},
            "case_seconds": {
                "mean": float(seconds.mean()),
                "p99": float(np.quantile(seconds, 0.99)),
                "max": float(seconds.max()),
            },
            "wall_seconds": wall,
            "bugs": bugs[:20],
        }

    def main(self) -> None:
        summary = self.run()
        print(json.dumps(summary, indent=2))
        if not summary["ok"]:
            sys.exit(1)


if __name__ == "__main__":
    tyro.cli(FuzzImport).main()
