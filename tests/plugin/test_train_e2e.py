"""End-to-end through nerfstudio: the training smoke test of nerfstudio's tests/test_train.py for
every method we register, checkpoint loading as ns-eval / ns-viewer do it, and resume."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from nerfstudio.utils.eval_utils import eval_setup
from ns_training import close_event_writers, reduced_config, train_in_process

pytestmark = pytest.mark.slow

OUR_METHODS = sorted(
    ep.name for ep in entry_points(group="nerfstudio.method_configs") if ep.value.startswith("nerfcompress.")
)
# Instant-NGP samples with nerfacc's CUDA kernels: it trains on a GPU only (scripts/gpu_bench.py);
# tests/plugin/test_instant_ngp.py builds, exports and imports it on CPU.
CPU_TRAINABLE_METHODS = [method for method in OUR_METHODS if not method.endswith("instant-ngp")]


def test_all_methods_are_registered_with_descriptions():
    from nerfstudio.configs.method_configs import all_descriptions

    assert set(OUR_METHODS) == {
        "plain-nerfacto",
        "plain-nerfacto-big",
        "shacira-nerfacto",
        "shacira-nerfacto-big",
        "vqad-nerfacto",
        "vqad-nerfacto-big",
        "plain-instant-ngp",
        "shacira-instant-ngp",
        "vqad-instant-ngp",
    }
    assert all(all_descriptions[m] for m in OUR_METHODS)


def test_ns_train_help_lists_our_methods():
    ns_train = Path(sys.executable).parent / "ns-train"
    result = subprocess.run([str(ns_train), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for method in OUR_METHODS:
        assert method in result.stdout


@pytest.mark.parametrize("method", CPU_TRAINABLE_METHODS)
def test_two_training_iterations(method, tiny_scene, tmp_path):
    config = reduced_config(method, tiny_scene, tmp_path)
    train_in_process(config)
    checkpoints = list(tmp_path.glob(f"*/{method}/test/nerfstudio_models/step-*.ckpt"))
    assert checkpoints, "training wrote no checkpoint"


def test_checkpoint_loads_like_ns_eval_and_reports_estimated_size(tiny_scene, tmp_path):
    config = reduced_config("shacira-nerfacto", tiny_scene, tmp_path)
    config.save_config()  # as ns-train does before train_loop
    train_in_process(config)
    config_path = config.get_base_dir() / "config.yml"
    # eval_setup uses torch.load's default weights_only unpickler, as ns-eval/ns-viewer/ns-render do.
    _, pipeline, _, step = eval_setup(config_path, test_mode="test")
    assert step == 1
    metrics = pipeline.get_average_eval_image_metrics()
    assert metrics["estimated_size_bytes"] > metrics["estimated_grid_size_bytes"] > 0
    assert "psnr" in metrics and "ssim" in metrics


def test_resume_restores_the_rounding_phase_exactly(tiny_scene, tmp_path):
    config = reduced_config("shacira-nerfacto", tiny_scene, tmp_path, iterations=3)
    config.pipeline.model.anneal_start_step = 0
    config.pipeline.model.anneal_end_step = 4
    train_in_process(config)
    run_dir = next(tmp_path.glob("*/shacira-nerfacto/test"))
    saved = torch.load(next((run_dir / "nerfstudio_models").glob("step-*.ckpt")), map_location="cpu")
    saved_temperature = saved["pipeline"]["_model.field.mlp_base.0.table.temperature"]

    resumed = reduced_config("shacira-nerfacto", tiny_scene, tmp_path / "resumed", iterations=6)
    resumed.pipeline.model.anneal_start_step = 0
    resumed.pipeline.model.anneal_end_step = 4
    resumed.load_dir = run_dir / "nerfstudio_models"
    trainer = resumed.setup(local_rank=0, world_size=1)
    trainer.setup()
    close_event_writers()
    model = trainer.pipeline.model
    assert float(model.tables()[0].temperature) == pytest.approx(float(saved_temperature))
    schedule = resumed.pipeline.model.rounding_schedule()
    model.set_step(trainer._start_step)  # what the BEFORE_TRAIN_ITERATION callback does on the first resumed step
    assert float(model.tables()[0].temperature) == pytest.approx(schedule.temperature(trainer._start_step))
    trainer.pipeline.datamanager.__del__()


def test_missing_dataset_fails_before_training_with_a_clear_message(tmp_path):
    config = reduced_config("shacira-nerfacto", tmp_path / "no-such-scene", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_in_process(config)


def test_resume_migrates_a_checkpoint_written_before_the_latents_optimizer_group(tiny_scene, tmp_path):
    """The checkpoint of a 2-iteration run rewritten as the code before the 'latents' group saved it
    (SHACIRA's latents inside 'grids', no 'latents' optimizer or scheduler), then resumed for 2 more."""
    config = reduced_config("shacira-nerfacto", tiny_scene, tmp_path)
    train_in_process(config)
    run_dir = next(tmp_path.glob("*/shacira-nerfacto/test"))
    path = next((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    saved = torch.load(path, map_location="cpu")
    latents_state = saved["optimizers"].pop("latents")
    saved["schedulers"].pop("latents")
    grids = saved["optimizers"]["grids"]
    per_table = len(grids["param_groups"][0]["params"]) // 3  # decoder weight and bias of each of 3 tables
    state, order = {}, []
    for table in range(3):
        order.append(("latents", table))
        order += [("grids", table * per_table + k) for k in range(per_table)]
    for index, (group, old) in enumerate(order):
        source = latents_state if group == "latents" else grids
        if old in source["state"]:
            state[index] = source["state"][old]
    hyper = {k: v for k, v in grids["param_groups"][0].items() if k != "params"}
    saved["optimizers"]["grids"] = {"state": state, "param_groups": [{**hyper, "params": list(range(len(order)))}]}
    torch.save(saved, path)

    resumed = reduced_config("shacira-nerfacto", tiny_scene, tmp_path / "resumed", iterations=2)
    resumed.load_dir = run_dir / "nerfstudio_models"
    train_in_process(resumed)  # resumes at step 2 and trains steps 2 and 3
    assert list((tmp_path / "resumed").glob("*/shacira-nerfacto/test/nerfstudio_models/step-000000003.ckpt"))
