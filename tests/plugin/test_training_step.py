"""One training step of each method at model level on CPU: no host syncs in our code, the rate
inside the forward, the grid backend setting, mixed precision."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from ns_training import SMALL_MODEL as SMALL

from nerfcompress.grid.backends import GridBackendUnavailable
from nerfcompress.host_sync import HostSyncAudit
from nerfcompress.plugin import methods
from nerfcompress.plugin.model import PlainNerfactoModelConfig, ShaciraNerfactoModelConfig, VqadNerfactoModelConfig
from nerfcompress.plugin.trainer import run_optimizer_settings
from nerfcompress.tables import host_values

CONFIGS = {
    "shacira_nerfacto": lambda **kw: ShaciraNerfactoModelConfig(**SMALL, rate_weight=1e-2, rate_row_stride=2, **kw),
    # hard rounding from step 1 (the audited steps): the rate of the rounded latents (rounded_rate, the default)
    "shacira_nerfacto_rounded_rate": lambda **kw: ShaciraNerfactoModelConfig(
        **SMALL, rate_weight=1e-2, anneal_end_step=1, **kw
    ),
    "vqad_nerfacto": lambda **kw: VqadNerfactoModelConfig(**SMALL, **kw),
    "vqad_nerfacto_rate": lambda **kw: VqadNerfactoModelConfig(**SMALL, rate_weight=1e-2, **kw),
    "plain_nerfacto": lambda **kw: PlainNerfactoModelConfig(**SMALL, **kw),
}


def _model(method: str, **kwargs):
    torch.manual_seed(0)
    box = SceneBox(aabb=torch.tensor([[-1.5] * 3, [1.5] * 3]))
    return CONFIGS[method](**kwargs).setup(scene_box=box, num_train_data=4, metadata={})


def _rays(n: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(
        torch.randn(n, 3, generator=g) * 0.2 + torch.tensor([0, 0, -1.0]), dim=-1
    )
    bundle = RayBundle(
        origins=torch.zeros(n, 3) + torch.tensor([0.0, 0.0, 3.0]),
        directions=directions,
        pixel_area=torch.full((n, 1), 1e-4),
        camera_indices=torch.zeros(n, 1, dtype=torch.long),
        nears=torch.full((n, 1), 0.5),
        fars=torch.full((n, 1), 6.0),
    )
    return bundle, {"image": torch.rand(n, 3, generator=g)}


def _callbacks(model, method: str):
    registered = getattr(methods, method.replace("_rounded_rate", "").replace("_rate", ""))
    optimizers = Optimizers(run_optimizer_settings(copy.deepcopy(registered.config)), model.get_param_groups())
    attributes = TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=None, trainer=None)
    return model.get_training_callbacks(attributes), optimizers


def _step(model, callbacks, step: int):
    """What nerfstudio's train_iteration does for the model, before the optimizer step."""
    for callback in callbacks:
        callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    bundle, batch = _rays(seed=step)
    outputs = model(bundle)
    metrics = model.get_metrics_dict(outputs, batch)
    loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
    loss.backward()
    return outputs, metrics


def test_the_audit_finds_waiting_operations_and_their_lines():
    values = torch.arange(4.0)
    with HostSyncAudit() as audit:
        float(values[0])
        values[values > 1].sum()
        values.tolist()
        values + 1  # no wait
    assert [site.operation for site in audit.sites] == ["__float__", "__getitem__", "tolist"]
    assert all(site.filename == __file__ and not site.ours for site in audit.sites)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_a_training_step_makes_no_host_sync_in_our_code(method):
    model = _model(method)
    model.train()
    callbacks, optimizers = _callbacks(model, method)
    _step(model, callbacks, 0)  # warm-up: lazy buffers, first draws
    optimizers.optimizer_step_all()
    with HostSyncAudit(allowed=[host_values.__file__]) as audit:
        for step in (1, 2):
            outputs, metrics = _step(model, callbacks, step)
    ours = [str(site) for site in audit.sites if site.ours]
    assert ours == [], ours
    if method.startswith("shacira") or method == "vqad_nerfacto_rate":
        assert outputs["rate_bits"].requires_grad and metrics["rate_bits"] is outputs["rate_bits"]


def test_the_rate_is_part_of_the_forward_in_training_only():
    model = _model("shacira_nerfacto")
    bundle, _ = _rays()
    model.train()
    outputs = model(bundle)
    rate = outputs["rate_bits"]
    (prior_grad,) = torch.autograd.grad(rate, [model.tables()[0].prior.biases[0]])
    assert prior_grad.abs().sum() > 0  # the priors are reached from the forward's outputs
    model.eval()
    with torch.no_grad():
        assert "rate_bits" not in model(bundle)
    assert "rate_bits" not in _model("plain_nerfacto").train()(bundle)


@pytest.mark.parametrize("decoder", ["shared", "per-level"])
def test_the_rate_is_unchanged_under_bfloat16_autocast(decoder):
    model = _model("shacira_nerfacto", decoder=decoder)
    model.train()
    for table in model.tables():
        table._training_uniform("rounding")  # one noise draw for both evaluations
    torch.manual_seed(5)  # the same rows (rate_row_stride 2)
    expected = [table.rate_bits() for table in model.tables()]
    for table in model.tables():
        table._uniform_users.discard("rate")
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        found = [table.rate_bits() for table in model.tables()]
        decoded = model.tables()[0]()
    # autocast is really on: the shared (linear) decoder computes in bfloat16; the per-level one's
    # addcmul is not an autocast op and stays float32
    assert decoded.dtype == (torch.bfloat16 if decoder == "shared" else torch.float32)
    assert all(f.dtype == torch.float32 and torch.equal(f, e) for f, e in zip(found, expected))


def test_the_grid_backend_is_resolved_once_and_logged(capsys):
    model = _model("plain_nerfacto")
    assert model.grid_backend.name == "torch"
    assert capsys.readouterr().out.count("nerfcompress grid backend: torch") == 1


def test_asking_for_an_unavailable_backend_fails_before_training(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(
        GridBackendUnavailable, match=r"grid_backend=triton needs a CUDA device \(this model runs on cpu\)"
    ):
        _model("plain_nerfacto", grid_backend="triton")
    with pytest.raises(ValueError, match="grid_backend=tcnn needs the tinycudann package, which is not installed"):
        PlainNerfactoModelConfig(grid_backend="tcnn")


def test_a_model_on_the_triton_backend_renders_like_the_torch_backend():
    """grid_backend=triton in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET)."""
    torch_model = _model("shacira_nerfacto")
    triton_model = _model("shacira_nerfacto", grid_backend="triton")
    assert triton_model.grid_backend.name == "triton"
    triton_model.load_state_dict(torch_model.state_dict())
    bundle, _ = _rays(n=4)
    for model in (torch_model, triton_model):
        model.eval()
    with torch.no_grad():
        expected, found = torch_model(bundle), triton_model(bundle)
    torch.testing.assert_close(found["rgb"], expected["rgb"], rtol=1e-5, atol=1e-6)


def test_our_package_files_are_what_the_audit_calls_ours():
    from nerfcompress.host_sync import SyncSite

    assert SyncSite("item", host_values.__file__, 1, "f").ours
    assert not SyncSite("item", str(Path(torch.__file__)), 1, "f").ours
