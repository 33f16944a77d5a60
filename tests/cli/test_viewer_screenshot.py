"""The viewer in a real browser: scripts/viewer_screenshot.py on an exported tiny model.

Needs Chromium (Debian: ``apt-get install -y chromium``). Without it the test fails, on purpose:
a skip would hide that the viewer was never checked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ns_training import reduced_config, train_in_process
from PIL import Image

from nerfcompress.cli.export import Export

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "viewer_screenshot.py"


def _exported_tiny_model(scene: Path, tmp_path: Path) -> Path:
    """shacira-nerfacto trained 2 iterations on CPU (as tests/plugin/test_train_e2e.py), exported.

    Small grids and few samples per ray: the viewer's full-resolution render on 2 CPU cores is
    what this test spends its time on, and the default nerfacto sampling made it take minutes.
    """
    config = reduced_config("shacira-nerfacto", scene, tmp_path / "outputs")
    model = config.pipeline.model
    model.num_levels, model.log2_hashmap_size, model.proposal_log2_hashmap_size = 8, 12, 10
    model.num_proposal_samples_per_ray, model.num_nerf_samples_per_ray = (16, 8), 8
    config.save_config()
    train_in_process(config)
    output = tmp_path / "scene.ncmp"
    Export(load_config=config.get_base_dir() / "config.yml", output=output).main()
    return output


@pytest.mark.slow
def test_imported_file_renders_in_headless_chromium(tiny_scene, tmp_path):
    if shutil.which("chromium") is None:
        pytest.fail(
            "chromium is not installed: install Debian's chromium (apt-get install -y chromium) to run this test"
        )
    ncmp = _exported_tiny_model(tiny_scene, tmp_path)
    png = tmp_path / "shot.png"
    result = subprocess.run(
        # a wide, short window: the viewer's first render is at its max res (512 px wide here), the slow
        # part on CPU (about 2 minutes on 2 busy cores)
        [sys.executable, str(SCRIPT), "--file", str(ncmp), "--output", str(png), "--window-size", "1280", "480",
         "--settle-seconds", "3", "--timeout-seconds", "540"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:] or result.stdout[-2000:]
    assert Image.open(png).size == (1280, 480)


def test_missing_config_fails_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--load-config", str(tmp_path / "none.yml"), "--chromium", sys.executable],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "does not exist" in result.stderr
