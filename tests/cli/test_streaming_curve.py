"""scripts/streaming_curve.py: a real (2-iteration) curve and resuming, the report's tables, the flag parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from script_modules import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "streaming_curve.py"


def _load_module():
    return load_script("streaming_curve")


def _point(method, run, seed, min_levels, levels, psnr, most=3):
    return {"method": method, "run": run, "seed": seed, "min_levels": min_levels, "tag": "", "split": "test",
            "levels": levels, "most_levels": most, "prefix_bytes": 100 * levels, "file_bytes": 100 * most,
            "psnr": psnr, "ssim": 0.5}  # fmt: skip


def test_the_report_tabulates_curves_and_pairs_whole_files_by_seed():
    module = _load_module()
    points = [_point("m", "c2f1-s1", 1, 1, level, 20.0 + level) for level in (1, 2, 3)]
    points += [_point("m", "c2f1-s2", 2, 1, 3, 24.0), _point("m", "full-s1", 1, None, 3, 23.5)]
    points += [_point("m", "full-s2", 2, None, 3, 24.5)]
    assert list(module.curves(points)) == [("m", "c2f1-s1")]  # one level only is no curve
    report = module.markdown_report(points, 9.5, "scene", "test")
    assert "| 1 | 100 | 33.3% | 21.00 | 0.5000 |" in report and "blank (background-only) image scores 9.50 dB" in report
    assert "| m | c2f1 | - | 1 2 | 23.50 ± 0.71 | 300 |" in report  # whole files: 23.0 and 24.0
    assert "m c2f1: whole file -0.50 ± 0.00 dB against training without coarse-to-fine, paired over 2" in report


def test_extra_flags_are_name_value_pairs():
    module = _load_module()
    assert module.extra_flag("pipeline.model.rate-weight=0.003") == ("--pipeline.model.rate-weight", "0.003")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        module.extra_flag("pipeline.model.rate-weight")


@pytest.mark.slow
def test_a_curve_trains_exports_evaluates_every_level_and_is_not_recomputed(tiny_scene, tmp_path):
    command = [sys.executable, str(SCRIPT), "--data", str(tiny_scene), "--scene-name", "tiny",
               "--output-dir", str(tmp_path / "out"), "--methods", "shacira-nerfacto", "--max-num-iterations", "2",
               "--min-levels", "2", "--no-baseline", "--extra-flags", "pipeline.model.num-levels=3"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=800)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "tiny-test.json").read_text())
    curve = [p for p in report["points"] if p["run"] == "c2f2-s42"]
    most = curve[0]["most_levels"]  # main 3 levels, the proposal grids 5
    assert [p["levels"] for p in sorted(curve, key=lambda p: p["levels"])] == list(range(1, most + 1))
    assert all(p["decoded_levels"] == p["levels"] for p in curve)
    sizes = [p["prefix_bytes"] for p in sorted(curve, key=lambda p: p["levels"])]
    assert sizes == sorted(sizes) and sizes[-1] < curve[0]["file_bytes"]  # the cameras come after the levels
    assert {p["run"] for p in report["points"]} == {"c2f2-s42"}  # --no-baseline
    assert Image.open(tmp_path / "out" / "tiny-test.png").format == "PNG"
    assert "### shacira-nerfacto c2f2-s42" in (tmp_path / "out" / "tiny-test.md").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and ": training (log" not in again.stdout and "PSNR" not in again.stdout.split("##")[0]
