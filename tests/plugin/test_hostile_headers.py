"""Crafted headers (valid CRCs) are refused with one BitstreamError before anything is built."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time

import pytest

from nerfcompress.bitstream.container import read_container, write_container
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin import pipeline as pipeline_module
from nerfcompress.plugin.import_model import decode_pipeline
from nerfcompress.plugin.model_settings import MAX_GRID_ROWS, MAX_RENDER_SAMPLES


@pytest.fixture
def never_built(monkeypatch):
    """Fails the test if nerfstudio starts building a pipeline."""

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was built before the file was refused")

    monkeypatch.setattr(pipeline_module.GridPipeline, "__init__", refuse)


def _crafted(data: bytes, edit) -> bytes:
    header, sections = read_container(data)
    header = copy.deepcopy(header)
    edit(header, sections)
    return write_container(header, list(sections.items()))


def _set(key, value):
    def edit(header, sections):
        header["model"][key] = value

    return edit


def _drop(key):
    def edit(header, sections):
        del header["model"][key]

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("hidden_dim_color", 200000), r"model.hidden_dim_color is 200000, expected an int in 1..1024"),
        (_set("hidden_dim", -3), "model.hidden_dim is -3"),
        (_set("hidden_dim", 0), "model.hidden_dim is 0"),
        (_set("hidden_dim", 32.0), "model.hidden_dim is 32.0"),
        (_set("hidden_dim", True), "model.hidden_dim is True"),
        (_set("num_levels", "12"), "model.num_levels is '12'"),
        (_set("log2_hashmap_size", 40), "model.log2_hashmap_size is 40"),
        (_set("near_plane", float("1e300")), "model.near_plane"),
        (_set("far_plane", 0.01), "above near_plane"),
        (_set("background_color", [1, 2, 3]), "model.background_color"),
        (_set("num_proposal_samples_per_ray", [8]), "one count per proposal iteration"),
        (_set("num_proposal_samples_per_ray", [8, {"a": 1}]), r"num_proposal_samples_per_ray\[1\]"),
        (_set("proposal_net_args_list", [{"hidden_dim": 10**9}]), r"proposal_net_args_list\[0\].hidden_dim"),
        (_set("proposal_net_args_list", [{"eval": "x"}]), "keys among"),
        (
            lambda header, sections: header["model"].update(
                eval_num_rays_per_chunk=65536, num_nerf_samples_per_ray=4096
            ),
            f"at most {MAX_RENDER_SAMPLES} samples per chunk",
        ),
        (
            lambda header, sections: header["model"].update(latent_dim=3, decoder="shared"),
            "grid 'main' is stored as 'shacira' with settings {'latent_dim': 2}",
        ),
        (_set("latent_dim", 3), "decoder 'per-level' needs latent_dim == features_per_level"),
        (_set("decoder", "mlp"), "model.decoder is 'mlp', expected one of shared, per-level"),
        (_set("proposal_log2_hashmap_size", 30), "model.proposal_log2_hashmap_size is 30"),
        (_set("num_levels", 5), "grid 'main' stores"),
        (_set("log2_hashmap_size", 24), "grid 'main' stores"),
        (_set("unknown_field", 1), re.escape("unknown fields ['unknown_field']")),
        (_drop("hidden_dim"), re.escape("miss ['hidden_dim']")),
        (lambda header, sections: header.update(model=[1]), re.escape("header model is [1], expected a JSON object")),
        (lambda header, sections: header.update(cameras=10**6), "cameras section holds"),
        (lambda header, sections: header.update(cameras=-1), "header declares -1 cameras"),
        (lambda header, sections: header.update(grids=header["grids"][:2]), "header lists 2 grids"),
        (
            lambda header, sections: header["coder"].update(constriction="0.4.1"),
            r"range-coded by constriction 0.4.1, this installation has .* install constriction==0.4.\*",
        ),
        (lambda header, sections: header.update(coder="rANS"), "records its coder as 'rANS'"),
    ],
)
def test_hostile_model_settings_are_refused_before_the_model_is_built(
    small_export, tmp_path, never_built, edit, message
):
    data = _crafted(small_export.read_bytes(), edit)
    with pytest.raises(BitstreamError, match=message):
        decode_pipeline(data, tmp_path / "out")


def test_grids_past_the_cap_are_refused_from_the_settings_alone(small_export, tmp_path, never_built):
    def edit(header, sections):
        header["model"].update(num_levels=16, max_res=1024, log2_hashmap_size=24)

    with pytest.raises(BitstreamError, match=f"rows, the cap is {MAX_GRID_ROWS}"):
        decode_pipeline(_crafted(small_export.read_bytes(), edit), tmp_path / "out")


def test_a_consistent_header_that_claims_more_rows_than_its_sections_hold_is_refused_before_building(
    small_export, tmp_path, never_built
):
    """The settings, the grid entries and the sections agree except that level 3 of the main grid now
    has 2**16 rows: its stream cannot hold them, which the check on storage-less tables finds."""
    from nerfcompress.plugin.model import grid_layout

    def edit(header, sections):
        header["model"]["log2_hashmap_size"] = 16
        args = {k: header["model"][k] for k in ("num_levels", "base_res", "max_res", "log2_hashmap_size")}
        layout = grid_layout({**args, "features_per_level": header["model"]["features_per_level"]})
        main = header["grids"][0]
        main.update(rows=layout.num_rows, level_rows=list(layout.level_rows))

    with pytest.raises(BitstreamError, match="latent stream claims .* rows but its .* words can hold at most"):
        decode_pipeline(_crafted(small_export.read_bytes(), edit), tmp_path / "out")


@pytest.mark.slow
def test_the_issues_repro_through_ns_compress_import_is_one_line_fast_and_small(small_export, tmp_path):
    """Issue 11's attack: hidden_dim_color = 200000 with valid CRCs, then `ns-compress import`. The peak
    RSS of the refused import is compared with that of importing the unmodified file."""
    hostile = tmp_path / "hostile.ncmp"
    hostile.write_bytes(_crafted(small_export.read_bytes(), _set("hidden_dim_color", 200000)))

    def run(path, out):
        # VmHWM is this process's own peak: ru_maxrss would carry over the forking pytest's RSS through exec.
        code = "import re, sys; from nerfcompress.cli.main import entrypoint\n"
        code += "try:\n    entrypoint()\nfinally:\n"
        code += "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        code += "    print('RSS_KB', hwm, file=sys.stderr)"
        begin = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", code, "import", str(path), "--output-dir", str(out)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = result.stderr.strip().splitlines()
        return result.returncode, lines[:-1], int(lines[-1].split()[1]), time.perf_counter() - begin

    code, errors, hostile_rss, seconds = run(hostile, tmp_path / "hostile")
    assert code == 2 and len(errors) == 1 and "hidden_dim_color is 200000" in errors[0], errors
    assert not any("Traceback" in line for line in errors)
    ok_code, _, clean_rss, _ = run(small_export, tmp_path / "clean")
    assert ok_code == 0
    assert hostile_rss < clean_rss, (hostile_rss, clean_rss)
    assert seconds < 120
    assert hostile_rss < 4 * 1024 * 1024  # KB: far below the 160 GB the header asks for


def test_a_refused_file_leaves_no_output_directory(small_export, tmp_path, never_built):
    with pytest.raises(BitstreamError):
        decode_pipeline(_crafted(small_export.read_bytes(), _set("log2_hashmap_size", 24)), tmp_path / "out")
    assert not (tmp_path / "out").exists()
