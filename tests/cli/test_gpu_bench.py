"""scripts/gpu_bench.py --device cpu --tiny: the GPU benchmark's whole flow, end to end, on CPU.

The run on a lent GPU is this same script with the full settings; here every phase must produce
its numbers (meaningless on CPU) and the report must say that nothing was measured on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_bench.py"


@pytest.mark.slow
def test_the_tiny_cpu_run_goes_through_every_phase(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    command = [
        sys.executable,
        str(SCRIPT),
        "--device",
        "cpu",
        "--tiny",
        "--output-dir",
        str(out),
        "--work-dir",
        str(work),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=2700)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((out / "gpu_bench.json").read_text())
    assert not report["notes"], report["notes"]  # no phase failed

    kernel = report["kernel"]
    assert set(kernel["times"]) == {"torch", "triton-block64"}
    assert all(error <= 1e-5 for error in kernel["max_relative_error_vs_torch"]["triton-block64"].values())

    step = report["step"]
    runs = [f"{m} ({b})" for b in ("torch", "triton") for m in ("plain-nerfacto", "shacira-nerfacto", "vqad-nerfacto")]
    assert set(step["median_step_ms"]) == {*runs, "nerfacto"} and not step["errors"]
    assert step["grid_backend"]["shacira-nerfacto (triton)"] == "triton"
    assert step["grid_backend"]["nerfacto"] == "nerfstudio HashEncoding"

    syncs = report["host_syncs"]
    assert set(syncs) == {r for r in runs if "triton" in r} | {"nerfacto"}
    assert all(entry["audit_ours"] == [] for entry in syncs.values())

    trained, ngp = report["training"]["runs"]
    assert trained["method"] == "shacira-nerfacto" and trained["steps_done"] == 10
    assert trained["file_bytes"] == sum(trained["bytes_by_part"].values())
    assert 0 < trained["decoded_metrics"]["psnr"] < 60
    assert ngp["method"] == "shacira-instant-ngp" and ngp["bytes_by_part"]["occupancy"] > 0
    assert ngp["decoded_grid_max_abs_error"] < 1e-2  # fp16 decoder

    assert all(target["met"] is None for target in report["targets"])  # nothing is measured on CPU
    markdown = (out / "gpu_bench.md").read_text()
    assert "CPU run (--tiny)" in markdown and "| shacira-nerfacto (triton) |" in markdown
