"""Importing a file, a prefix of it, or fewer of its levels (on a small untrained export)."""

from __future__ import annotations

import pytest
import torch
import yaml

from nerfcompress.bitstream.container import read_container_index
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.import_model import decode_pipeline, import_file


def _section(data: bytes, name: str):
    return next(e for e in read_container_index(data)[1] if e.name == name)


def _render(pipeline, camera) -> torch.Tensor:
    """RGB of ``camera`` (a prefix without the stored cameras has stand-ins: pass the whole file's)."""
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera)["rgb"]


@pytest.fixture(scope="module")
def whole(small_export, tmp_path_factory):
    """The whole file decoded: its render, latents and first stored camera."""
    _, pipeline, _ = decode_pipeline(small_export.read_bytes(), tmp_path_factory.mktemp("whole"))
    camera = pipeline.datamanager.train_dataparser_outputs.cameras[0:1]
    return _render(pipeline, camera), [t.integer_latents() for t in pipeline.model.tables()], camera


@pytest.mark.parametrize("levels", [1, 3, 4])
def test_a_prefix_cut_inside_level_k_renders_like_the_whole_file_limited_to_k_levels(
    small_export, whole, tmp_path, levels
):
    data = small_export.read_bytes()
    cut = _section(data, f"prop0.l{levels}")  # main has levels 0..3, the proposal grids 0..4
    prefix = data[: cut.offset + cut.length // 2]
    config, pipeline, _ = decode_pipeline(prefix, tmp_path / "prefix", prefix=True)
    assert config.pipeline.model.active_levels == levels
    expected_levels = [None if levels >= e.layout.num_levels else levels for e in pipeline.model.grid_encodings()]
    assert [e.num_active_levels for e in pipeline.model.grid_encodings()] == expected_levels
    _, limited, _ = decode_pipeline(data, tmp_path / "limited", max_levels=levels)
    rgb = _render(pipeline, whole[2])
    assert torch.equal(rgb, _render(limited, whole[2]))
    assert not torch.equal(rgb, whole[0])  # the finer levels are really left out
    for encoding, latents in zip(pipeline.model.grid_encodings(), whole[1]):
        decoded = min(levels, encoding.layout.num_levels)
        rows = sum(encoding.layout.level_rows[:decoded])
        assert torch.equal(encoding.table.integer_latents()[:rows], latents[:rows])
        assert not encoding.table.integer_latents()[rows:].any()


def test_the_imported_config_renders_only_the_decoded_levels_where_ns_viewer_loads_it(small_export, tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    data = small_export.read_bytes()
    config_path = import_file(data, tmp_path / "decoded", max_levels=2)
    assert yaml.load(config_path.read_text(), Loader=yaml.Loader).pipeline.model.active_levels == 2
    _, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
    assert [e.num_active_levels for e in pipeline.model.grid_encodings()] == [2, 2, 2]
    whole_path = import_file(data, tmp_path / "whole")
    assert yaml.load(whole_path.read_text(), Loader=yaml.Loader).pipeline.model.active_levels is None


def test_truncated_files_short_prefixes_and_impossible_level_counts_raise(small_export, tmp_path):
    data = small_export.read_bytes()
    level1 = _section(data, "main.l1")
    with pytest.raises(BitstreamError, match="truncated"):
        decode_pipeline(data[: level1.offset], tmp_path)
    networks = _section(data, "networks")  # the last section before the levels
    with pytest.raises(BitstreamError, match="without reaching a level section"):
        decode_pipeline(data[: networks.offset + 3], tmp_path, prefix=True)
    level0 = _section(data, "prop1.l0")
    with pytest.raises(BitstreamError, match="no complete level"):
        decode_pipeline(data[: level0.offset + 3], tmp_path, prefix=True)
    for max_levels in (0, 6):
        with pytest.raises(ValueError, match=r"max_levels must be in 1\.\.5"):
            decode_pipeline(data, tmp_path, max_levels=max_levels)


def test_an_imported_vqad_run_keeps_uint8_indices_and_decodes_the_exported_tables(tiny_scene, tmp_path):
    """(tests/plugin/test_export_e2e.py renders a trained VQAD model both ways.)"""
    from conftest import _small_untrained_pipeline
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfcompress.bitstream.container import write_container
    from nerfcompress.plugin.export import export_pipeline

    config, exported = _small_untrained_pipeline("vqad-nerfacto", tiny_scene)
    generator = torch.Generator().manual_seed(0)
    for table in exported.model.tables():
        indices = torch.randint(0, table.codebook_size, (table.num_rows,), generator=generator)
        table.assign_codes(indices, torch.randn(table.codebooks.shape, generator=generator).half().float())
    data = write_container(*export_pipeline(config, exported, 5))
    config_path = import_file(data, tmp_path / "decoded")
    assert yaml.load(config_path.read_text(), Loader=yaml.Loader).pipeline.model.fixed_indices is True
    checkpoint = torch.load(next((tmp_path / "decoded" / "nerfstudio_models").glob("step-*.ckpt")))
    assert not any(key.endswith(".logits") for key in checkpoint["pipeline"])
    stored = [value for key, value in checkpoint["pipeline"].items() if key.endswith(".table.indices")]
    assert all(value.dtype == torch.uint8 for value in stored)
    assert len({value.data_ptr() for value in stored}) == 3  # main grid + 2 proposal grids (listed twice)
    _, imported, _, _ = eval_setup(config_path, test_mode="inference")
    for ours, theirs in zip(exported.model.tables(), imported.model.tables()):
        assert torch.equal(ours.integer_indices(), theirs.integer_indices())
        with torch.no_grad():
            assert torch.equal(ours.eval()(), theirs.eval()())  # the codebooks were fp16 values already


def test_a_prefix_before_the_stored_cameras_gets_as_many_stand_ins(small_export, tmp_path):
    data = small_export.read_bytes()
    cameras = _section(data, "cameras")
    header = read_container_index(data)[0]
    config, pipeline, _ = decode_pipeline(data[: cameras.offset + 2], tmp_path / "prefix", prefix=True)
    stand_ins = pipeline.datamanager.train_dataparser_outputs.cameras
    assert len(stand_ins) == header["cameras"] and config.pipeline.model.active_levels is None
    assert torch.equal(stand_ins.camera_to_worlds[0], stand_ins.camera_to_worlds[-1])
    _, whole, _ = decode_pipeline(data, tmp_path / "whole")
    assert not torch.equal(
        whole.datamanager.train_dataparser_outputs.cameras.camera_to_worlds[0:1], stand_ins[0:1].camera_to_worlds
    )


@pytest.mark.parametrize("count", [10**9, 0, -1, "x", None, [3], True])
def test_stand_ins_are_refused_for_a_camera_count_out_of_bounds(count):
    import numpy as np

    from nerfcompress.plugin.import_model import stand_in_cameras

    with pytest.raises(BitstreamError, match="training cameras"):
        stand_in_cameras(count, np.array([[-1.0, -1, -1], [1, 1, 1]]))
