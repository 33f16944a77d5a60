import copy
from types import SimpleNamespace

import pytest
import torch
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.field_components.field_heads import FieldHeadNames
from ns_training import SMALL_MODEL as SMALL

from nerfcompress.bitstream.container import section_frame_bytes, write_container
from nerfcompress.grid import coarse_to_fine_levels, interp_torch
from nerfcompress.plugin.encoding import GridEncoding
from nerfcompress.plugin.file_layout import FileContext, model_file
from nerfcompress.plugin.model import (
    GridNerfactoModel,
    PlainNerfactoModelConfig,
    ShaciraNerfactoModelConfig,
    VqadNerfactoModelConfig,
)
from nerfcompress.plugin.trainer import run_optimizer_settings
from nerfcompress.tables import PlainTable, ShaciraTable, VqadTable


def _context(num_cameras: int = 4) -> FileContext:
    """What a pipeline would tell the model: 4 cameras on a circle, a blender-style dataparser."""
    angles = torch.linspace(0, 6.0, num_cameras)
    c2w = torch.zeros(num_cameras, 3, 4)
    c2w[:, 0, 0], c2w[:, 1, 1], c2w[:, 2, 2] = angles.cos(), angles.cos(), 1.0
    c2w[:, :, 3] = torch.stack([angles.sin(), angles.cos(), torch.full_like(angles, 0.5)], -1)
    return FileContext(
        method="shacira-nerfacto",
        dataparser={"name": "blender-data", "fields": {"data": "data/scene", "scale_factor": 1.0}},
        scene={
            "scene_box": [[-1.5] * 3, [1.5] * 3],
            "dataparser_transform": [[1.0, 0, 0, 0]] * 3,
            "dataparser_scale": 1,
        },
        cameras={
            "c2w": c2w,
            "intrinsics": torch.tensor([[50.0, 50.0, 32.0, 32.0]]).expand(num_cameras, 4),
            "size": torch.tensor([[64, 64]], dtype=torch.int32).expand(num_cameras, 2),
        },
    )


def _model(config) -> GridNerfactoModel:
    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]]))
    model = config.setup(scene_box=box, num_train_data=4, metadata={})
    model.file_context = _context()
    return model


@pytest.fixture(scope="module")
def shacira_model() -> GridNerfactoModel:
    return _model(ShaciraNerfactoModelConfig(**SMALL, rate_weight=1e-2))


def test_every_grid_is_a_grid_encoding_with_the_configured_table(shacira_model):
    encodings = shacira_model.grid_encodings()
    assert len(encodings) == 1 + len(shacira_model.proposal_networks)
    assert all(isinstance(e, GridEncoding) and isinstance(e.table, ShaciraTable) for e in encodings)
    main = encodings[0].layout
    assert (main.num_levels, main.hashmap_size) == (4, 2**10)
    assert all(e.layout.hashmap_size == 2**8 for e in encodings[1:])
    plain = _model(PlainNerfactoModelConfig(**SMALL))
    assert all(isinstance(t, PlainTable) for t in plain.tables())


def test_no_nerfstudio_hash_table_is_left_in_the_model(shacira_model):
    from nerfstudio.field_components.encodings import HashEncoding

    assert not any(isinstance(m, HashEncoding) for m in shacira_model.modules())


def _group_params(entries) -> list:
    """Parameters of one optimizer group: a flat list, or torch parameter-group dicts."""
    return [p for entry in entries for p in (entry["params"] if isinstance(entry, dict) else [entry])]


def test_param_groups_partition_parameters_with_tables_in_their_own_groups(shacira_model):
    groups = shacira_model.get_param_groups()
    ids = [id(p) for entries in groups.values() for p in _group_params(entries)]
    assert len(ids) == len(set(ids)), "a parameter is in two optimizer groups"
    trainable = {id(p) for name, p in shacira_model.named_parameters() if name != "device_indicator_param"}
    assert set(ids) == trainable
    tables = shacira_model.tables()
    assert groups["latents"] == [{"params": [t.latents], "table": i} for i, t in enumerate(tables)]
    decoders = {id(p) for t in tables for p in t.decoder.parameters()}
    assert decoders <= {id(p) for p in groups["grids"]}
    priors = {id(p) for t in tables for p in t.prior.parameters()}
    assert priors == {id(p) for p in groups["entropy"]}


def _optimizers(model: GridNerfactoModel, method: str) -> Optimizers:
    from nerfcompress.plugin import methods

    config = run_optimizer_settings(copy.deepcopy(getattr(methods, method).config))  # tests may change it
    return Optimizers(config, model.get_param_groups())


def _attributes(optimizers: Optimizers) -> TrainingCallbackAttributes:
    return TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=None, trainer=None)


def test_each_tables_latents_learn_at_the_scheduled_rate_over_its_decoder_norm():
    model = _model(ShaciraNerfactoModelConfig(**SMALL, decoder="shared"))
    tables = model.tables()
    with torch.no_grad():
        for i, table in enumerate(tables):
            table.decoder.weight.fill_(0.1 * (i + 1))  # [2, 2]: norm 0.2 (i + 1)
    optimizers = _optimizers(model, "shacira_nerfacto")
    callbacks = model.get_training_callbacks(_attributes(optimizers))
    latent_groups = optimizers.optimizers["latents"].param_groups
    for step in range(3):  # the scheduler decays the rate; the scale must not compound
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        scheduled = optimizers.schedulers["latents"].get_last_lr()
        assert len(latent_groups) == len(tables) == len(scheduled)
        for i, group in enumerate(latent_groups):
            assert group["lr"] == pytest.approx(scheduled[i] / (0.2 * (i + 1)))
        optimizers.scheduler_step_all(step)
    assert optimizers.schedulers["latents"].get_last_lr()[0] < optimizers.config["latents"]["optimizer"].lr


def test_gradient_clipping_works_on_the_per_table_latent_groups():
    model = _model(ShaciraNerfactoModelConfig(**SMALL))
    optimizers = _optimizers(model, "shacira_nerfacto")
    optimizers.config["latents"]["optimizer"].max_norm = 1e-3
    model.get_training_callbacks(_attributes(optimizers))
    for table in model.tables():
        table.latents.grad = torch.ones_like(table.latents)
    optimizers.optimizer_step_all()  # clips optimizers.parameters["latents"], then steps
    grads = torch.cat([t.latents.grad.flatten() for t in model.tables()])
    assert float(grads.norm()) == pytest.approx(1e-3, rel=1e-3)


def test_latent_rates_without_a_scheduler_use_the_configured_rate():
    model = _model(ShaciraNerfactoModelConfig(**SMALL))
    optimizers = _optimizers(model, "shacira_nerfacto")
    del optimizers.schedulers["latents"]
    configured = optimizers.config["latents"]["optimizer"].lr
    for step in range(2):
        model.apply_learning_rate_scales(optimizers, step=step)
    for group, table in zip(optimizers.optimizers["latents"].param_groups, model.tables()):
        assert group["lr"] == pytest.approx(configured / table.decoder_norm())


def test_tables_without_scaled_rates_keep_flat_parameter_groups():
    plain = _model(PlainNerfactoModelConfig(**SMALL))
    assert plain.learning_rate_scaled_groups() == []
    groups = plain.get_param_groups()
    assert "latents" not in groups
    assert all(isinstance(p, torch.nn.Parameter) for entries in groups.values() for p in entries)
    _optimizers(plain, "plain_nerfacto")  # nerfstudio builds its optimizers from them


def _bundle_and_batch(num_rays: int):
    """A training ray bundle into the small model's box and a random target colour per ray."""
    from nerfstudio.cameras.rays import RayBundle

    generator = torch.Generator().manual_seed(1)
    directions = torch.nn.functional.normalize(
        torch.randn(num_rays, 3, generator=generator) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1
    )
    bundle = RayBundle(
        origins=torch.tensor([0.0, 0.0, -1.2]).expand(num_rays, 3),
        directions=directions,
        pixel_area=torch.full((num_rays, 1), 1e-4),
        camera_indices=torch.zeros(num_rays, 1, dtype=torch.long),
        nears=torch.full((num_rays, 1), 0.05),
        fars=torch.full((num_rays, 1), 2.5),
    )
    return bundle, {"image": torch.rand(num_rays, 3, generator=generator)}


def _training_loss(model: GridNerfactoModel, num_rays: int = 64, with_metrics: bool = False):
    """One training forward through the model's own metrics and loss dicts, as nerfstudio's pipeline
    runs it; returns the loss dict (and the metrics dict with ``with_metrics``)."""
    bundle, batch = _bundle_and_batch(num_rays)
    outputs = model(bundle)
    metrics = model.get_metrics_dict(outputs, batch)
    losses = model.get_loss_dict(outputs, batch, metrics)
    return (losses, metrics) if with_metrics else losses


def test_the_loss_dict_holds_the_rate_and_its_gradient_reaches_every_grids_latents():
    model = _model(ShaciraNerfactoModelConfig(**SMALL, rate_weight=1e-2))
    model.train()
    losses = _training_loss(model)
    assert "rate_loss" in losses and losses["rate_loss"] > 0
    losses["rate_loss"].backward()  # the rate term alone: it must reach main and proposal latents
    for table in model.tables():
        assert table.latents.grad is not None and table.latents.grad.abs().sum() > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in table.prior.parameters())


def test_a_proposal_grid_pays_rate_only_on_the_steps_its_distortion_trains_it():
    for follows in (True, False):
        model = _model(ShaciraNerfactoModelConfig(**SMALL, rate_weight=1e-2, rate_follows_distortion=follows))
        model.train()
        sampler = model.proposal_sampler
        sampler._step, sampler._steps_since_update = 100, 0  # past the first steps: no proposal update now
        losses = _training_loss(model)
        main, *proposals = model.grid_encodings()
        assert main.received_gradients and not any(e.received_gradients for e in proposals)
        losses["rate_loss"].backward()
        assert main.table.latents.grad.abs().sum() > 0
        for encoding in proposals:
            grad = encoding.table.latents.grad
            assert (grad is not None and grad.abs().sum() > 0) == (not follows)


def test_step_callback_sets_rounding_phase_of_every_table():
    config = ShaciraNerfactoModelConfig(**SMALL, anneal_start_step=0, anneal_end_step=100, temperature_end=0.1)
    model = _model(config)
    model.set_step(50)
    expected = config.rounding_schedule().temperature(50)
    assert all(float(t.temperature) == pytest.approx(expected) for t in model.tables())
    model.set_step(100)
    assert all(bool(t.hard_rounding) for t in model.tables())


def test_size_is_logged_every_interval_and_at_the_last_step(shacira_model, monkeypatch):
    logged = []
    monkeypatch.setattr(shacira_model, "log_estimated_size", lambda step: logged.append(step))
    trainer = SimpleNamespace(config=SimpleNamespace(max_num_iterations=250), _start_step=30)
    attributes = TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=None, trainer=trainer)
    callbacks = shacira_model.get_training_callbacks(attributes)
    for step in range(30, 280):
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    interval = shacira_model.config.size_log_interval
    assert logged == [s for s in range(30, 280) if s % interval == 0] + [279]


def _grid_bytes(sections) -> int:
    return sum(section_frame_bytes(n) + len(p) for n, p in sections if n not in ("cameras", "networks"))


@pytest.mark.parametrize(
    "config_class", [PlainNerfactoModelConfig, ShaciraNerfactoModelConfig, VqadNerfactoModelConfig]
)
def test_estimated_size_is_the_exact_size_of_the_file_an_export_writes(config_class):
    model = _model(config_class(**SMALL))
    model.set_step(7)
    size = model.estimated_size_bytes()
    header, sections = model_file(model, model.file_context, 7)
    assert header["step"] == 7
    assert size["total"] == len(write_container(header, sections))
    assert size["grids"] == _grid_bytes(sections)
    assert size["total"] == size["grids"] + size["networks"] + size["metadata"]
    if config_class is PlainNerfactoModelConfig:  # fp16 rows, F = 2, plus each section's framing
        rows = sum(t.num_rows for t in model.tables())
        frames = sum(section_frame_bytes(n) for n, _ in sections if n not in ("cameras", "networks"))
        assert size["grids"] == 2 * 2 * rows + frames


def test_a_model_without_its_runs_cameras_cannot_count_its_file_and_logs_nothing():
    model = _model(PlainNerfactoModelConfig(**SMALL))
    model.file_context = None
    with pytest.raises(RuntimeError, match="GridPipelineConfig"):
        model.estimated_size_bytes()
    model.log_estimated_size(3)
    assert model.viewer_estimated_size.value == "not measured yet"


def test_lpips_is_lazy_and_not_in_the_state_dict(shacira_model):
    assert not any(key.startswith("lpips") for key in shacira_model.state_dict())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(latent_dim=0), "latent_dim"),
        (dict(latent_dim=-3), "latent_dim"),
        (dict(rate_weight=-1.0), "rate_weight"),
        (dict(log2_hashmap_size=40), "log2_hashmap_size"),
        (dict(proposal_log2_hashmap_size=2), "log2_hashmap_size"),
        (dict(anneal_start_step=1000, anneal_end_step=10), "anneal_end_step"),
        (dict(temperature_end=0.0), "temperature_end"),
        (dict(num_levels=0), "num_levels"),
        (dict(rate_row_stride=0), "rate_row_stride"),
    ],
)
def test_nonsense_parameters_are_rejected_when_the_config_is_built(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ShaciraNerfactoModelConfig(**{**SMALL, **kwargs})


def test_vqad_config_builds_vqad_tables_with_its_bits_on_every_grid():
    model = _model(VqadNerfactoModelConfig(**SMALL, bits=3))
    tables = model.tables()
    assert all(isinstance(t, VqadTable) and t.bits == 3 for t in tables)
    assert all(t.level_rows == e.layout.level_rows for t, e in zip(tables, model.grid_encodings()))
    grids = {id(p) for p in model.get_param_groups()["grids"]}
    assert all(id(t.logits) in grids and id(t.codebooks) in grids for t in tables)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(bits=0), "bits"),
        (dict(bits=9), "bits"),
        (dict(codebook_init_scale=-1.0), "codebook_init_scale"),
        (dict(logit_init_scale=-1.0), "logit_init_scale"),
        (dict(coarse_to_fine_min_levels=0), "coarse_to_fine_min_levels"),
        (dict(coarse_to_fine_min_levels=5), "coarse_to_fine_min_levels"),
        (dict(coarse_to_fine_full_fraction=1.5), "coarse_to_fine_full_fraction"),
        (dict(coarse_to_fine_joint_rays=-0.1), "coarse_to_fine_joint_rays"),
        (dict(coarse_to_fine_joint_rays=1.5), "coarse_to_fine_joint_rays"),
        (dict(coarse_to_fine_joint_weight=0.0), "coarse_to_fine_joint_weight"),
        (dict(coarse_to_fine_joint_weight=float("nan")), "coarse_to_fine_joint_weight"),
        (dict(coarse_to_fine_joint_rays=0.25, coarse_to_fine_proposals=True), "coarse_to_fine_proposals"),
        (dict(coarse_to_fine_joint_rays=0.25, coarse_to_fine_min_levels=4), "coarse_to_fine_min_levels"),
    ],
)
def test_nonsense_vqad_and_coarse_to_fine_parameters_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VqadNerfactoModelConfig(**{**SMALL, **kwargs})


def _active_levels_per_step(model, steps):
    """``[(main grid's active levels, [each proposal grid's])]`` after ``set_step`` of each training step."""
    main, *proposals = model.grid_encodings()
    model.train()
    out = []
    for step in range(steps):
        model.set_step(step)
        out.append((main.num_active_levels, [p.num_active_levels for p in proposals]))
    return out


@pytest.mark.parametrize(
    "config_class", [PlainNerfactoModelConfig, ShaciraNerfactoModelConfig, VqadNerfactoModelConfig]
)
def test_coarse_to_fine_truncates_the_main_grid_per_step_and_never_in_eval(config_class):
    model = _model(
        config_class(
            **SMALL,
            coarse_to_fine_min_levels=2,
            coarse_to_fine_joint_rays=0.0,  # the step schedule
            coarse_to_fine_proposals=False,
            coarse_to_fine_full_fraction=0.0,
        )
    )
    main, *proposals = model.grid_encodings()
    per_step = _active_levels_per_step(model, 12)
    counts = [levels for levels, _ in per_step]
    assert all(level is None for _, of_proposals in per_step for level in of_proposals)
    assert counts == [coarse_to_fine_levels(step, 2, 4) for step in range(12)]
    assert len(set(counts)) > 1 and set(counts) <= {2, 3, 4}
    step = counts.index(2)
    model.set_step(step)
    points = torch.rand(5, 3)
    assert bool((main(points)[:, 2 * 2 :] == 0).all())  # levels 2 and 3 (F = 2) are zeroed
    model.eval()
    assert main.num_active_levels is None
    with torch.no_grad():
        assert torch.equal(main(points), interp_torch(main.layout, main.table(), points))


def test_coarse_to_fine_can_truncate_the_proposal_grids_and_keep_every_level_on_a_share_of_steps():
    config = ShaciraNerfactoModelConfig(
        **SMALL,
        coarse_to_fine_min_levels=1,
        coarse_to_fine_joint_rays=0.0,
        coarse_to_fine_proposals=True,
        coarse_to_fine_full_fraction=0.5,
    )
    model = _model(config)
    _, *proposals = model.grid_encodings()
    per_step = _active_levels_per_step(model, 40)
    counts = [levels for levels, _ in per_step]
    for levels, of_proposals in per_step:  # the same count, capped at each proposal grid's own levels
        assert of_proposals == [levels if levels < p.layout.num_levels else None for p in proposals]
    assert counts == [coarse_to_fine_levels(step, 1, 4, 0.5) for step in range(40)]
    assert counts.count(4) > 40 // 4 + 5  # about 5/8 of the steps, not 1/4


@pytest.mark.parametrize("config_class", [ShaciraNerfactoModelConfig, VqadNerfactoModelConfig])
def test_joint_coarse_to_fine_trains_the_whole_grid_every_step_and_a_prefix_beside_it(config_class, monkeypatch):
    from nerfcompress.grid import joint_prefix_levels

    model = _model(
        config_class(
            **SMALL, coarse_to_fine_min_levels=1, coarse_to_fine_joint_rays=0.25, coarse_to_fine_joint_weight=0.5
        )
    )
    main = model.grid_encodings()[0]
    per_step = _active_levels_per_step(model, 30)
    assert all(levels is None for levels, _ in per_step)  # no step truncates the whole render
    drawn = []
    for step in range(30):
        model.set_step(step)
        drawn.append(model.coarse_prefix_levels)
    assert drawn == [joint_prefix_levels(step, 1, 4) for step in range(30)] and set(drawn) == {1, 2, 3}

    model.set_step(drawn.index(2))  # a prefix of the coarsest 2 of 4 levels
    decoded = main.table()  # one training decode (SHACIRA's is noisy), its graph kept for the backward below
    decodes = []
    monkeypatch.setattr(main.table, "forward", lambda: decodes.append(1) or decoded)
    bundle, batch = _bundle_and_batch(64)
    outputs = model(bundle)
    assert len(decodes) == 1  # the prefix render reuses the whole render's rows
    assert outputs["coarse_prefix_rgb"].shape == (16, 3) and outputs["coarse_prefix_accumulation"].shape == (16, 1)
    assert main.num_active_levels is None and main._last_rows is None  # restored, rows released
    samples = outputs["ray_samples_list"][-1][:16]
    with torch.no_grad():  # the same render as a model whose grid is cut at 2 levels
        main.num_active_levels = 2
        field_outputs = model.field.forward(samples)
        main.num_active_levels = None
        weights = samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        expected = model.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights)
    torch.testing.assert_close(outputs["coarse_prefix_rgb"], expected)
    assert not torch.allclose(outputs["coarse_prefix_rgb"], outputs["rgb"][:16])

    losses = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
    prefix_mse = torch.nn.functional.mse_loss(outputs["coarse_prefix_rgb"], batch["image"][:16])  # white background
    torch.testing.assert_close(losses["coarse_prefix_rgb_loss"], 0.25 * 0.5 * prefix_mse)  # share x weight
    losses["coarse_prefix_rgb_loss"].backward()  # reaches the two coarse levels' rows only
    parameter = main.table.latents if config_class is ShaciraNerfactoModelConfig else main.table.logits
    offsets, rows = main.layout.level_offsets, main.layout.level_rows
    grad = parameter.grad.abs()
    assert grad[: offsets[2]].sum() > 0 and grad[offsets[2] : offsets[-1] + rows[-1]].sum() == 0

    model.eval()
    with torch.no_grad():
        assert "coarse_prefix_rgb" not in model.get_outputs(bundle)  # evaluation renders once


def test_joint_coarse_to_fine_stops_after_the_last_step():
    model = _model(
        ShaciraNerfactoModelConfig(
            **SMALL, coarse_to_fine_min_levels=1, coarse_to_fine_joint_rays=0.5, coarse_to_fine_last_step=3
        )
    )
    model.train()
    model.set_step(3)
    assert model.coarse_prefix_levels is not None
    model.set_step(4)
    assert model.coarse_prefix_levels is None
    bundle, batch = _bundle_and_batch(8)
    outputs = model(bundle)
    assert "coarse_prefix_rgb" not in outputs
    assert "coarse_prefix_rgb_loss" not in model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))


def test_coarse_to_fine_is_off_by_default():
    model = _model(PlainNerfactoModelConfig(**SMALL))
    model.train()
    model.set_step(3)
    assert all(e.num_active_levels is None for e in model.grid_encodings())


def test_estimated_size_is_shown_in_the_web_viewer(shacira_model):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerElement

    elements = dict(parse_object(shacira_model, ViewerElement, "Custom Elements"))
    text = elements["Custom Elements/viewer_estimated_size"]
    shacira_model.log_estimated_size(7)
    expected_mb = shacira_model.estimated_size_bytes()["total"] / 1e6
    assert f"{expected_mb:.3f} MB total" in text.value and "step 7" in text.value


def test_active_levels_truncate_every_grid_in_evaluation_only():
    model = _model(
        ShaciraNerfactoModelConfig(
            **SMALL,
            active_levels=2,
            coarse_to_fine_min_levels=3,
            coarse_to_fine_joint_rays=0.0,
            coarse_to_fine_proposals=True,
        )
    )
    main, *proposals = model.grid_encodings()
    model.eval()
    assert [e.num_active_levels for e in model.grid_encodings()] == [2] * (1 + len(proposals))
    points = torch.rand(5, 3)
    with torch.no_grad():
        assert torch.equal(main(points), interp_torch(main.layout, main.table(), points, 2))
        assert bool((main(points)[:, 2 * 2 :] == 0).all())
    model.train()
    assert all(e.num_active_levels is None for e in model.grid_encodings())
    model.set_step(0)
    levels = main.num_active_levels
    assert levels in (3, 4)
    assert all(p.num_active_levels == (levels if levels < p.layout.num_levels else None) for p in proposals)
    model.eval()
    assert main.num_active_levels == 2


def test_active_levels_beyond_a_grid_keep_that_grid_whole():
    model = _model(PlainNerfactoModelConfig(**SMALL, active_levels=5))  # main has 4 levels, proposals 5
    model.eval()
    assert all(e.num_active_levels is None for e in model.grid_encodings())


@pytest.mark.parametrize("levels", [0, 6, True, 2.0])
def test_active_levels_outside_the_grids_are_rejected(levels):
    with pytest.raises(ValueError, match="active_levels"):
        PlainNerfactoModelConfig(**SMALL, active_levels=levels)


def test_the_rate_weight_warms_up_linearly_from_zero():
    model = _model(ShaciraNerfactoModelConfig(**SMALL, rate_weight=1e-2, rate_weight_warmup_steps=100))
    model.train()
    for step, weight in ((0, 0.0), (25, 2.5e-3), (100, 1e-2), (500, 1e-2)):
        model.set_step(step)
        assert model.config.rate_loss_weight(model.step) == pytest.approx(weight)
    model.set_step(50)
    losses, metrics = _training_loss(model, with_metrics=True)
    assert float(losses["rate_loss"]) == pytest.approx(5e-3 * float(metrics["rate_bits"]) / model.num_grid_rows())
    assert float(losses["rate_loss"]) > 0
    with pytest.raises(ValueError, match="rate_weight_warmup_steps"):
        ShaciraNerfactoModelConfig(**SMALL, rate_weight_warmup_steps=-1)


def test_vqad_has_a_rate_loss_only_when_asked_and_it_reaches_the_logits():
    plain_vqad = _model(VqadNerfactoModelConfig(**SMALL))
    plain_vqad.train()
    assert "rate_loss" not in _training_loss(plain_vqad)  # the paper's VQAD: no rate term
    model = _model(VqadNerfactoModelConfig(**SMALL, rate_weight=1e-2))
    model.train()
    losses = _training_loss(model)
    losses["rate_loss"].backward()
    assert all(table.logits.grad.abs().sum() > 0 for table in model.tables())


def test_a_prefix_of_the_last_forward_needs_a_forward_that_kept_its_rows():
    main = _model(ShaciraNerfactoModelConfig(**SMALL)).grid_encodings()[0]
    points = torch.rand(6, 3)
    main(points)  # keeps_rows off: nothing is kept
    with pytest.raises(RuntimeError, match="keeps_rows"):
        with main.coarse_prefix_of_last_forward(2):
            pass
    main.keeps_rows = True
    whole = main(points)
    with main.coarse_prefix_of_last_forward(2):
        prefix = main(points)
    assert torch.equal(prefix[:, :4], whole[:, :4]) and bool((prefix[:, 4:] == 0).all())  # F = 2: levels 0-1 kept
    assert main.num_active_levels is None and main._last_rows is None
