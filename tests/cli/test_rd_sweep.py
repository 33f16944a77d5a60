"""scripts/rd_sweep.py: a real (2-iteration) sweep point, resuming, failure isolation, the headline ratio."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from script_modules import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rd_sweep.py"


def _sweep(tmp_path: Path, scene: Path, *only: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(scene), "--output-dir", str(tmp_path / "rd"),
         "--max-num-iterations", "2", "--only", *only],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _load_module():
    return load_script("rd_sweep")


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
        assert row["psnr"] == row["test"]["psnr"] and 0 < row["val"]["psnr"] < 100  # both splits measured
        assert row["val"]["psnr"] != row["test"]["psnr"]  # different views
    summary = {row["point"]: row for row in json.loads((out / "summary.json").read_text())}
    assert summary["plain"]["runs"] == 1 and summary["plain"]["psnr"] == results["plain"]["psnr"]
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
        {"point": "plain", "method": "plain-nerfacto", "file_bytes": 1000, "psnr": 30.0},
        {"point": "s1", "method": "shacira-nerfacto", "file_bytes": 50, "psnr": 29.6},
        {"point": "s2", "method": "shacira-nerfacto", "file_bytes": 20, "psnr": 29.4},
        {"point": "s3", "method": "shacira-nerfacto", "file_bytes": 100, "psnr": 30.1},
        {"point": "v1", "method": "vqad-nerfacto", "file_bytes": 80, "psnr": 28.0},
    ]
    headline = module.headline_ratios(rows)
    assert headline["shacira-nerfacto"]["point"] == "s1" and headline["shacira-nerfacto"]["ratio"] == 20.0
    assert headline["vqad-nerfacto"]["ratio"] is None and "no point within 0.5 dB" in headline["vqad-nerfacto"]["note"]


def test_summary_is_the_mean_and_spread_over_seeds():
    module = _load_module()
    runs = [
        {"name": f"vqad-b2-s{seed}", "point": "vqad-b2", "seed": seed, "method": "vqad-nerfacto", "setting": "b=2",
         "kind": "trained", "file_bytes": size, "psnr": psnr, "ssim": 0.9, "val": {"psnr": psnr + 1},
         "step_seconds": 0.2}
        for seed, size, psnr in ((42, 100, 24.0), (43, 110, 25.0), (44, 120, 26.0))
    ]  # fmt: skip
    (row,) = module.summarize(runs)
    assert row["point"] == "vqad-b2" and row["runs"] == 3 and row["seeds"] == [42, 43, 44]
    assert row["file_bytes"] == 110 and row["psnr"] == 25.0 and row["psnr_std"] == 1.0 and row["psnr_val"] == 26.0


def test_dominance_is_the_smallest_margin_where_the_curves_overlap():
    module = _load_module()
    rows = [
        {"point": "s1", "method": "shacira-nerfacto", "file_bytes": 100, "psnr": 25.0},
        {"point": "s2", "method": "shacira-nerfacto", "file_bytes": 1000, "psnr": 27.0},
        {"point": "s3", "method": "shacira-nerfacto", "file_bytes": 500, "psnr": 24.0},  # dominated: not on the curve
        {"point": "plain-uniform4", "method": "plain-nerfacto (post-hoc)", "file_bytes": 316.2, "psnr": 25.5},
        {"point": "plain-uniform8", "method": "plain-nerfacto (post-hoc)", "file_bytes": 5000, "psnr": 28.0},
        {"point": "kmeans-b4", "method": "kmeans-vq", "file_bytes": 10, "psnr": 20.0},  # outside the span
    ]
    margins = module.dominance_over_posthoc(rows)["shacira-nerfacto"]["margins_db"]
    # at 316.2 bytes (half way in log bytes) the SHACIRA curve is at 26.0 dB, 0.5 dB above uniform 4-bit;
    # at 1000 bytes the uniform curve is at 25.5 + 2.5 * log(1000 / 316.2) / log(5000 / 316.2) = 26.54 dB
    uniform_at_1000 = 25.5 + 2.5 * math.log(1000 / 316.2) / math.log(5000 / 316.2)
    assert margins["uniform"] == pytest.approx(min(26.0 - 25.5, 27.0 - uniform_at_1000), abs=1e-3)
    assert margins["k-means"] is None


def test_overrides_are_parsed_per_method_and_bad_ones_named():
    module = _load_module()
    assert module.parse_overrides(["shacira-nerfacto:--a=1", "all:--b=x=y"]) == {
        "shacira-nerfacto": {"--a": "1"},
        "all": {"--b": "x=y"},
    }
    with pytest.raises(ValueError, match="METHOD:--FLAG=VALUE"):
        module.parse_overrides(["--a=1"])
