"""scripts/rd_sweep.py: a real (2-iteration) sweep point, resuming, failure isolation, the headline ratio."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rd_sweep.py"


def _sweep(tmp_path: Path, scene: Path, *only: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(scene), "--output-dir", str(tmp_path / "rd"),
         "--max-num-iterations", "2", "--only", *only],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _load_module():
    spec = importlib.util.spec_from_file_location("rd_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["rd_sweep"] = module  # dataclasses look their module up there
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


@pytest.mark.slow
def test_a_point_trains_exports_evaluates_and_is_not_recomputed(tiny_scene, tmp_path):
    first = _sweep(tmp_path, tiny_scene, "plain", "kmeans-b4")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "rd"
    results = {row["name"]: row for row in json.loads((out / "results.json").read_text())}
    assert set(results) == {"plain", "kmeans-b4"}
    for row in results.values():
        assert row["file_bytes"] == Path(row["file"]).stat().st_size  # the real file, not an estimate
        assert 0 < row["psnr"] < 100 and 0 <= row["ssim"] <= 1
    assert results["kmeans-b4"]["file_bytes"] < results["plain"]["file_bytes"]
    assert results["plain"]["train_seconds"] > 0 and results["plain"]["step_seconds"] > 0
    assert len((out / "results.csv").read_text().strip().splitlines()) == 3  # header + 2 points
    assert Image.open(out / "rd.png").format == "PNG"

    train_log = out / "logs" / "plain-train.log"
    before = train_log.stat().st_mtime_ns
    again = _sweep(tmp_path, tiny_scene, "plain", "kmeans-b4")
    assert again.returncode == 0, again.stdout[-3000:]
    assert again.stdout.count("done before, kept") == 2
    assert train_log.stat().st_mtime_ns == before


def test_a_failing_point_is_reported_and_the_sweep_exits_nonzero(tiny_scene, tmp_path):
    result = _sweep(tmp_path, tiny_scene, "kmeans-b4")  # needs the baseline run, which is not there
    assert result.returncode == 1
    assert "kmeans-b4 failed" in result.stdout and "needs the baseline run" in result.stdout
    assert not (tmp_path / "rd" / "points" / "kmeans-b4.json").exists()


def test_unknown_points_are_named(tiny_scene, tmp_path):
    result = _sweep(tmp_path, tiny_scene, "vqad-b99")
    assert result.returncode == 2
    assert "vqad-b99" in result.stdout and "vqad-b4" in result.stdout


def test_headline_is_the_smallest_file_within_half_a_db_of_the_baseline():
    module = _load_module()
    rows = [
        {"name": "plain", "method": "plain-nerfacto", "file_bytes": 1000, "psnr": 30.0},
        {"name": "s1", "method": "shacira-nerfacto", "file_bytes": 50, "psnr": 29.6},
        {"name": "s2", "method": "shacira-nerfacto", "file_bytes": 20, "psnr": 29.4},
        {"name": "s3", "method": "shacira-nerfacto", "file_bytes": 100, "psnr": 30.1},
        {"name": "v1", "method": "vqad-nerfacto", "file_bytes": 80, "psnr": 28.0},
    ]
    headline = module.headline_ratios(rows)
    assert headline["shacira-nerfacto"]["point"] == "s1" and headline["shacira-nerfacto"]["ratio"] == 20.0
    assert headline["vqad-nerfacto"]["ratio"] is None and "no point within 0.5 dB" in headline["vqad-nerfacto"]["note"]
