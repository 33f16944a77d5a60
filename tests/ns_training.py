"""Training through nerfstudio inside the test process (as nerfstudio's tests/test_train.py does)."""

from __future__ import annotations

import copy
from pathlib import Path

from nerfstudio.configs.method_configs import all_methods
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.scripts.train import train_loop
from nerfstudio.utils import writer

from nerfcompress.plugin.dataparser import AutoDataParserConfig

SMALL_MODEL = dict(
    num_levels=4,
    max_res=64,
    log2_hashmap_size=10,
    proposal_log2_hashmap_size=8,
    hidden_dim=16,
    hidden_dim_color=16,
    num_nerf_samples_per_ray=8,
    num_proposal_samples_per_ray=(8, 8),
)
"""Model settings of a nerfacto-like model small enough to build and step in a unit test."""


def reduced_config(method: str, scene: Path, output_dir: Path, iterations: int = 2) -> TrainerConfig:
    """nerfstudio's set_reduced_config, on CPU with our tiny scene."""
    config = copy.deepcopy(all_methods[method])
    config.machine.device_type = "cpu"
    config.mixed_precision = False
    config.max_num_iterations = iterations
    config.steps_per_save = iterations
    config.pipeline.datamanager.dataparser = AutoDataParserConfig(data=scene)
    config.pipeline.datamanager.train_num_images_to_sample_from = 1
    config.pipeline.datamanager.train_num_rays_per_batch = 4
    config.vis = "tensorboard"
    config.output_dir = output_dir
    config.timestamp = "test"
    config.viewer.quit_on_train_completion = True
    config.logging.local_writer.enable = False
    return config


def close_event_writers() -> None:
    """Close and forget the event writers nerfstudio keeps in module globals.

    Every ``Trainer.setup`` appends its writers to ``writer.EVENT_WRITERS`` and nothing removes
    them, so in one process a later training would also write to the tensorboard files of every
    earlier one, whose temporary directories pytest may already have removed."""
    for event_writer in writer.EVENT_WRITERS:
        if isinstance(event_writer, writer.TensorboardWriter):
            event_writer.tb_writer.close()
    writer.EVENT_WRITERS.clear()
    writer.EVENT_STORAGE.clear()
    writer.GLOBAL_BUFFER.clear()


def train_in_process(config: TrainerConfig) -> None:
    """nerfstudio's ``train_loop`` on one CPU process, then :func:`close_event_writers`."""
    try:
        train_loop(local_rank=0, world_size=0, config=config)
    finally:
        close_event_writers()
