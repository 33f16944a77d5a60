"""Resuming a checkpoint written before SHACIRA's latents had their own optimizer group."""

from __future__ import annotations

import copy

import pytest
import torch
from nerfstudio.configs.method_configs import all_methods
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.optimizers import Optimizers

from nerfcompress.plugin.trainer import RUN_LENGTH, CheckpointError, GridOptimizers, GridTrainer, run_optimizer_settings

SMALL = dict(num_levels=4, max_res=64, log2_hashmap_size=10, proposal_log2_hashmap_size=8, hidden_dim=16)


def _model():
    torch.manual_seed(0)
    config = copy.deepcopy(all_methods["shacira-nerfacto"].pipeline.model)
    for key, value in SMALL.items():
        setattr(config, key, value)
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    return config.setup(scene_box=box, num_train_data=3, metadata={})


def _settings():
    return run_optimizer_settings(copy.deepcopy(all_methods["shacira-nerfacto"]))


def _optimizers(model) -> GridOptimizers:
    return GridOptimizers(_settings(), model.get_param_groups(), model)


def _trained_optimizers(model, steps: int = 3) -> GridOptimizers:
    optimizers = _optimizers(model)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        for param in model.parameters():
            param.grad = torch.randn(param.shape, generator=generator)
        optimizers.optimizer_step_all()
        optimizers.scheduler_step_all(step)
    return optimizers


def _old_style(model, optimizers: GridOptimizers):
    """The checkpoint's optimizer and scheduler states as the code before the 'latents' group wrote
    them: one 'grids' group of every table's [latents, decoder.weight, decoder.bias]."""
    old_params = [p for t in model.tables() for p in (t.latents, *t.decoder.parameters())]
    grids = optimizers.optimizers["grids"]
    hyper = {k: v for k, v in grids.state_dict()["param_groups"][0].items() if k != "params"}
    every = {id(p): opt for opt in optimizers.optimizers.values() for g in opt.param_groups for p in g["params"]}
    state = {i: copy.deepcopy(every[id(p)].state[p]) for i, p in enumerate(old_params)}
    saved = {k: o.state_dict() for k, o in optimizers.optimizers.items() if k != "latents"}
    saved["grids"] = {"state": state, "param_groups": [{**hyper, "params": list(range(len(old_params)))}]}
    schedulers = {k: s.state_dict() for k, s in optimizers.schedulers.items() if k != "latents"}
    return saved, schedulers


def test_an_old_checkpoint_fails_in_torch_with_nerfstudios_optimizers():
    model = _model()
    saved, _ = _old_style(model, _trained_optimizers(model))
    plain = Optimizers(_settings(), model.get_param_groups())
    with pytest.raises(ValueError, match="doesn't match the size"):
        plain.load_optimizers(saved)


def test_an_old_checkpoint_is_migrated_every_parameter_keeping_its_adam_state():
    trained_model = _model()
    trained = _trained_optimizers(trained_model)
    saved, schedulers = _old_style(trained_model, trained)
    model = _model()
    resumed = _optimizers(model)
    resumed.load_optimizers(saved)
    resumed.load_schedulers(schedulers)
    for old_table, table in zip(trained_model.tables(), model.tables()):
        for old, new, group in [(old_table.latents, table.latents, "latents")] + [
            (o, n, "grids") for o, n in zip(old_table.decoder.parameters(), table.decoder.parameters())
        ]:
            expected = trained.optimizers[group].state[old]
            found = resumed.optimizers[group].state[new]
            assert torch.equal(found["exp_avg"], expected["exp_avg"]) and torch.equal(
                found["exp_avg_sq"], expected["exp_avg_sq"]
            )
    tables = [group["table"] for group in resumed.optimizers["latents"].param_groups]
    assert tables == [0, 1, 2]  # the learning-rate callback finds each table's group again
    assert resumed.schedulers["latents"].last_epoch == trained.schedulers["grids"].last_epoch == 3
    model.apply_learning_rate_scales(resumed, 3)  # what the callback does before the first resumed step


def test_a_checkpoint_of_the_current_layout_loads_unchanged_and_an_unknown_one_is_refused_with_what_to_do():
    trained_model = _model()
    trained = _trained_optimizers(trained_model)
    current = {k: o.state_dict() for k, o in trained.optimizers.items()}
    _optimizers(_model()).load_optimizers(current)
    saved, _ = _old_style(trained_model, trained)
    saved["grids"]["param_groups"][0]["params"] = saved["grids"]["param_groups"][0]["params"][:-1]
    with pytest.raises(CheckpointError, match="cannot be resumed. Train from scratch, or export or evaluate it"):
        _optimizers(_model()).load_optimizers(saved)


def test_our_methods_train_with_the_migrating_trainer():
    for name in ("shacira-nerfacto", "vqad-nerfacto-big", "plain-nerfacto"):
        assert all_methods[name]._target is GridTrainer


def test_the_latents_learning_rate_decays_over_the_run_whatever_its_length_and_a_set_length_is_kept():
    model = _model()
    for steps in (10, 800):
        config = copy.deepcopy(all_methods["shacira-nerfacto"])
        config.max_num_iterations = steps
        settings = run_optimizer_settings(config)
        assert config.optimizers["latents"]["scheduler"].max_steps == RUN_LENGTH  # the config is not changed
        optimizers = Optimizers(settings, model.get_param_groups())
        start = optimizers.optimizers["latents"].param_groups[0]["lr"]
        for step in range(steps):
            optimizers.scheduler_step_all(step)
        end = optimizers.optimizers["latents"].param_groups[0]["lr"]
        assert start == pytest.approx(3e-2) and end == pytest.approx(3e-3, rel=0.02)
    config = copy.deepcopy(all_methods["shacira-nerfacto"])
    config.optimizers["latents"]["scheduler"].max_steps = 5000  # --optimizers.latents.scheduler.max-steps 5000
    assert run_optimizer_settings(config)["latents"]["scheduler"].max_steps == 5000
    assert run_optimizer_settings(config)["grids"] is config.optimizers["grids"]
