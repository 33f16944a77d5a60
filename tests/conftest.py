"""Shared fixtures: a tiny procedural Blender scene written once per test session.

Without a CUDA device, Triton kernels run in Triton's CPU interpreter: ``TRITON_INTERPRET``
must be set before any module defining a kernel is imported, so it is set here.
"""

import os
from pathlib import Path

import pytest
import torch

from nerfcompress.scenes.synthetic import write_synthetic_scene

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """16x16 px synthetic scene: 3 train, 1 val, 2 test views."""
    path = tmp_path_factory.mktemp("scenes") / "tiny"
    return write_synthetic_scene(
        path, resolution=16, num_train_views=3, num_val_views=1, num_test_views=2, supersample=1
    )


def _small_untrained_pipeline(method: str, scene: Path):
    """``(config, pipeline)`` of an untrained ``method`` on ``scene`` on CPU: main grid 4 levels,
    proposal grids 5 levels each, 16-wide networks (torch seeded, so deterministic)."""
    import copy

    import torch
    from nerfstudio.configs.method_configs import all_methods

    from nerfcompress.plugin.dataparser import AutoDataParserConfig

    config = copy.deepcopy(all_methods[method])
    config.machine.device_type = "cpu"
    config.pipeline.datamanager.dataparser = AutoDataParserConfig(data=scene)
    model = config.pipeline.model
    model.num_levels, model.max_res, model.log2_hashmap_size, model.proposal_log2_hashmap_size = 4, 64, 10, 8
    model.hidden_dim = model.hidden_dim_color = 16
    torch.manual_seed(0)
    return config, config.pipeline.setup(device="cpu", test_mode="inference")


@pytest.fixture(scope="session")
def small_export(tiny_scene, tmp_path_factory) -> Path:
    """A small untrained shacira-nerfacto on ``tiny_scene`` (seeded Laplace latents, no training),
    exported to a file: main grid 4 levels, proposal grids 5 levels each."""
    import numpy as np
    import torch

    from nerfcompress.bitstream.container import write_container
    from nerfcompress.plugin.export import export_pipeline

    config, pipeline = _small_untrained_pipeline("shacira-nerfacto", tiny_scene)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for table in pipeline.model.tables():
            table.latents.copy_(torch.from_numpy(np.round(rng.laplace(0, 1.5, tuple(table.latents.shape)))))
    path = tmp_path_factory.mktemp("export") / "small.ncmp"
    path.write_bytes(write_container(*export_pipeline(config, pipeline, 5)))
    return path


@pytest.fixture(scope="session")
def small_plain_run(tiny_scene, tmp_path_factory) -> Path:
    """``config.yml`` of an untrained plain-nerfacto run on ``tiny_scene`` with a checkpoint, as
    ``ns-compress export`` loads it: seeded Laplace rows (no training), main grid 4 levels,
    proposal grids 5 levels each."""
    import numpy as np
    import torch

    config, pipeline = _small_untrained_pipeline("plain-nerfacto", tiny_scene)
    config.output_dir = tmp_path_factory.mktemp("plain-run")
    config.timestamp = "untrained"
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for table in pipeline.model.tables():
            table.rows.copy_(torch.from_numpy(rng.laplace(0, 0.1, tuple(table.rows.shape)).astype(np.float32)))
    config.save_config()
    checkpoint_dir = config.get_checkpoint_dir()
    checkpoint_dir.mkdir(parents=True)
    torch.save({"step": 5, "pipeline": pipeline.state_dict()}, checkpoint_dir / "step-000000005.ckpt")
    return config.get_base_dir() / "config.yml"


@pytest.fixture(scope="session")
def contrasting_levels_export(tiny_scene, tmp_path_factory) -> Path:
    """A small untrained plain-nerfacto on ``tiny_scene`` exported to a file whose levels of detail
    render very differently: seeded Laplace rows (scale 1) and the density and colour MLPs' first
    layers scaled up (30x, 10x), so that every level moves the picture (mean |RGB change| from
    1 level to all 5: about 0.3). Main grid 4 levels, proposal grids 5 levels each."""
    import numpy as np
    import torch

    from nerfcompress.bitstream.container import write_container
    from nerfcompress.plugin.export import export_pipeline

    config, pipeline = _small_untrained_pipeline("plain-nerfacto", tiny_scene)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for table in pipeline.model.tables():
            table.rows.copy_(torch.from_numpy(rng.laplace(0, 1.0, tuple(table.rows.shape)).astype(np.float32)))
        pipeline.model.field.mlp_base[1].layers[0].weight.mul_(30)
        pipeline.model.field.mlp_head.layers[0].weight.mul_(10)
    path = tmp_path_factory.mktemp("contrast") / "contrast.ncmp"
    path.write_bytes(write_container(*export_pipeline(config, pipeline, 5)))
    return path
