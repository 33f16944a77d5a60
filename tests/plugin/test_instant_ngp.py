"""shacira-, vqad- and plain-instant-ngp on CPU: registration, construction, export and import of
untrained models. Training needs nerfacc's CUDA kernels: scripts/gpu_bench.py covers it."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from nerfstudio.configs.method_configs import all_methods

from nerfcompress.bitstream.container import read_container, read_container_index, write_container
from nerfcompress.bitstream.quantized_tensors import round_trip
from nerfcompress.errors import BitstreamError
from nerfcompress.grid import GridLayout
from nerfcompress.plugin.dataparser import AutoDataParserConfig
from nerfcompress.plugin.export import export_pipeline, exportable_methods, posthoc_methods
from nerfcompress.plugin.file_layout import NETWORK_PRECISION_BITS, section_sizes
from nerfcompress.plugin.import_model import decode_pipeline
from nerfcompress.plugin.instant_ngp import GridInstantNGPModel, ShaciraInstantNGPModelConfig
from nerfcompress.plugin.model_settings import METHOD_SETTINGS, settings_for
from nerfcompress.plugin.pipeline import GridDynamicBatchPipeline
from nerfcompress.plugin.trainer import GridTrainerConfig
from nerfcompress.tables import PlainTable, ShaciraTable, VqadTable

METHODS = {"shacira-instant-ngp": ShaciraTable, "vqad-instant-ngp": VqadTable, "plain-instant-ngp": PlainTable}


def _small_pipeline(method: str, scene):
    """An untrained ``method`` on ``scene`` on CPU: a 4-level grid, a 2-level 16^3 occupancy grid."""
    config = copy.deepcopy(all_methods[method])
    config.machine.device_type = "cpu"
    config.pipeline.datamanager.dataparser = AutoDataParserConfig(data=scene)
    model = config.pipeline.model
    model.num_levels, model.max_res, model.log2_hashmap_size, model.hidden_dim = 4, 64, 10, 16
    model.grid_resolution, model.grid_levels = 16, 2
    torch.manual_seed(0)
    return config, config.pipeline.setup(device="cpu", test_mode="inference")


def _fill(pipeline, seed: int = 0) -> None:
    """Seeded grid contents and a seeded occupancy grid (an untrained model's is empty)."""
    model = pipeline.model
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for table in model.tables():
            if isinstance(table, ShaciraTable):
                table.latents.copy_(torch.from_numpy(np.round(rng.laplace(0, 1.5, tuple(table.latents.shape)))))
            elif isinstance(table, VqadTable):
                indices = torch.from_numpy(rng.integers(0, table.codebook_size, table.num_rows))
                table.assign_codes(indices, torch.randn(table.codebooks.shape).half().float())
            else:
                table.rows.copy_(torch.from_numpy(rng.laplace(0, 0.1, tuple(table.rows.shape)).astype(np.float32)))
        binaries = model.occupancy_grid.binaries
        binaries.copy_(torch.from_numpy(rng.random(tuple(binaries.shape)) < 0.2))


def test_the_three_methods_are_registered_exportable_and_plain_takes_posthoc_codings():
    layout = GridLayout(3, 2, 2, 16, 4, 2.0)
    for method, table_type in METHODS.items():
        config = all_methods[method]
        assert config.pipeline.model._target is GridInstantNGPModel
        assert type(config.pipeline.model.build_table(layout)) is table_type
        assert config.pipeline.model.grid_backend == "auto"
        assert config.method_name == method and config.pipeline.method_name == method
        assert isinstance(config, GridTrainerConfig)
    assert set(METHODS) <= set(exportable_methods())
    assert "plain-instant-ngp" in posthoc_methods() and "shacira-instant-ngp" not in posthoc_methods()


@pytest.mark.parametrize("method", list(METHODS))
def test_construction_puts_our_table_in_a_torch_field_without_a_hash_encoding(method, tiny_scene, monkeypatch):
    from nerfstudio.field_components.encodings import HashEncoding
    from nerfstudio.models import instant_ngp

    field_kwargs = []
    real_field = instant_ngp.NerfactoField
    monkeypatch.setattr(instant_ngp, "NerfactoField", lambda *a, **kw: field_kwargs.append(kw) or real_field(*a, **kw))
    _, pipeline = _small_pipeline(method, tiny_scene)
    model = pipeline.model
    assert isinstance(model, GridInstantNGPModel) and isinstance(pipeline, GridDynamicBatchPipeline)
    assert model.file_context is not None and model.file_context.method == method
    assert field_kwargs[0]["implementation"] == "torch"  # portable weights, never tiny-cuda-nn's padded blobs
    (encoding,) = model.grid_encodings()
    assert isinstance(encoding.table, METHODS[method]) and encoding.layout.num_levels == 4
    assert not any(isinstance(m, HashEncoding) for m in model.modules())
    groups = model.get_param_groups()
    ids = [id(p) for entries in groups.values() for e in entries for p in (e["params"] if isinstance(e, dict) else [e])]
    assert len(ids) == len(set(ids))
    assert {id(p) for p in encoding.table.parameters()}.isdisjoint(id(p) for p in groups["fields"])
    assert "scene_aabb" not in model.network_parameters()


@pytest.mark.parametrize("method", list(METHODS))
def test_export_stores_the_occupancy_grid_and_import_restores_model_and_grid(method, tiny_scene, tmp_path):
    config, pipeline = _small_pipeline(method, tiny_scene)
    _fill(pipeline)
    header, sections = export_pipeline(config, pipeline, step=7)
    data = write_container(header, sections)
    assert header["extras"]["occupancy"] == {"shape": [2, 16, 16, 16], "coding": "packbits-little+zlib"}
    parts = dict(section_sizes(header, sections))
    assert parts["occupancy"] > 0 and sum(parts.values()) == len(data)
    names = [name for name, _ in sections]
    assert names[:2] == ["networks", "occupancy"] and names[-1] == "cameras"  # before every grid level
    estimate = pipeline.model.estimated_size_bytes(step=7)
    assert estimate["total"] == len(data)
    assert estimate["metadata"] == parts["header"] + parts["occupancy"] + parts["cameras"]

    decoded_config, decoded, step = decode_pipeline(data, tmp_path / "decoded")
    assert step == 7 and decoded_config.method_name == method and decoded_config.pipeline.model.grid_backend == "auto"
    ours, theirs = pipeline.model, decoded.model
    assert torch.equal(theirs.occupancy_grid.binaries, ours.occupancy_grid.binaries)
    assert torch.equal(theirs.scene_aabb, ours.scene_aabb)
    (our_table,), (their_table,) = ours.tables(), theirs.tables()
    if isinstance(our_table, ShaciraTable):
        assert torch.equal(their_table.integer_latents(), our_table.integer_latents())
    elif isinstance(our_table, VqadTable):
        assert torch.equal(their_table.integer_indices(), our_table.integer_indices())
        assert torch.equal(their_table.codebooks, our_table.codebooks)  # fp16 values already
    else:
        assert torch.equal(their_table.rows, our_table.rows.detach().half().float())
    with torch.no_grad():
        for name, param in ours.network_parameters().items():
            stored = torch.from_numpy(round_trip(param.detach().numpy(), NETWORK_PRECISION_BITS))
            assert torch.equal(theirs.network_parameters()[name], stored), name


def test_a_corrupt_or_missing_occupancy_grid_is_a_bitstream_error(tiny_scene, tmp_path):
    config, pipeline = _small_pipeline("shacira-instant-ngp", tiny_scene)
    _fill(pipeline)
    header, sections = export_pipeline(config, pipeline, step=1)
    broken = [(name, payload[:-3] if name == "occupancy" else payload) for name, payload in sections]
    with pytest.raises(BitstreamError, match="occupancy section"):
        decode_pipeline(write_container(header, broken), tmp_path / "a")
    wrong_shape = copy.deepcopy(header)
    wrong_shape["extras"]["occupancy"]["shape"] = [4, 128, 128, 128]
    with pytest.raises(BitstreamError, match="occupancy grid entry"):
        decode_pipeline(write_container(wrong_shape, sections), tmp_path / "b")
    data = write_container(header, sections)
    assert read_container(data)[0]["extras"] == header["extras"]
    assert [e.name for e in read_container_index(data)[1]][1] == "occupancy"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h.update(extras=[1]), r"header extras is \[1\], expected a JSON object"),
        (lambda h: h.update(extras={f"x{i}": {} for i in range(9)}), "at most 8 entries"),
        (lambda h: h["extras"].update(networks={}), "extras entry 'networks'"),
        (lambda h: h["extras"].update(absent={}), r"extras entry 'absent' .* \(section present: False\)"),
        (lambda h: h["extras"].update(occupancy=[2, 16]), "extras entry 'occupancy' is \\[2, 16\\]"),
        (lambda h: h["extras"].update(main={}), "extras entry 'main'"),
        (lambda h: h.pop("extras"), "occupancy grid entry is None"),
        (lambda h: h["extras"]["occupancy"].update(coding="raw"), "occupancy grid entry"),
        (lambda h: h["model"].update(grid_resolution=512, grid_levels=8), "at most 33554432 occupancy cells"),
        (lambda h: h["model"].update(grid_levels=9), "model.grid_levels is 9"),
        (lambda h: h["model"].update(render_step_size=0.0), "model.render_step_size is 0.0"),
        (
            lambda h: h["model"].update(num_proposal_iterations=2),
            re.escape("unknown fields ['num_proposal_iterations']"),
        ),
    ],
)
def test_hostile_extras_and_instant_ngp_settings_are_one_bitstream_error(tiny_scene, tmp_path, edit, message):
    config, pipeline = _small_pipeline("shacira-instant-ngp", tiny_scene)
    _fill(pipeline)
    header, sections = export_pipeline(config, pipeline, step=1)
    header = copy.deepcopy(header)
    edit(header)
    with pytest.raises(BitstreamError, match=message):
        decode_pipeline(write_container(header, sections), tmp_path / "out")


def test_a_nerfacto_file_with_extra_entries_is_refused(tiny_scene, tmp_path):
    from nerfcompress.plugin.model import GridNerfactoModel

    with pytest.raises(BitstreamError, match="stores none"):
        GridNerfactoModel.load_extra_sections(None, {"occupancy": {}}, {"occupancy": b""})


def test_the_stored_settings_are_exactly_the_allow_list_for_every_exportable_method():
    """Every registered method's model config has an allow-list entry, and its file stores exactly it."""
    configs = {
        type(all_methods[m].pipeline.model).__name__: all_methods[m].pipeline.model for m in exportable_methods()
    }
    assert set(configs) == set(METHOD_SETTINGS)
    ngp = settings_for(all_methods["vqad-instant-ngp"].pipeline.model)
    assert {"grid_resolution", "grid_levels", "render_step_size", "bits"} <= set(ngp)
    assert not {"rate_weight", "num_proposal_iterations", "grid_backend"} & set(ngp)


def test_nonsense_settings_are_rejected_when_the_config_is_built():
    with pytest.raises(ValueError, match="latent_dim"):
        ShaciraInstantNGPModelConfig(latent_dim=0)
    with pytest.raises(ValueError, match="coarse_to_fine_min_levels"):
        ShaciraInstantNGPModelConfig(coarse_to_fine_min_levels=17)
    with pytest.raises(ValueError, match="coarse_to_fine_joint_rays"):  # nerfacto's samples only
        ShaciraInstantNGPModelConfig(coarse_to_fine_min_levels=2, coarse_to_fine_joint_rays=0.25)
    with pytest.raises(ValueError, match="log2_hashmap_size"):
        ShaciraInstantNGPModelConfig(log2_hashmap_size=3)
