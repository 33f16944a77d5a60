"""Tests for nerfcompress.plugin.compat (checkpoint globals, offline LPIPS)."""

import collections
import json
import math
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfcompress.plugin import compat
from nerfcompress.plugin.compat import (
    ALEXNET_WEIGHTS_FILENAME,
    LazyLPIPS,
    alexnet_weights_path,
    drop_unavailable_lpips,
    lazy_lpips_in_nerfacto,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class TaggedDict(collections.OrderedDict):
    """An OrderedDict subclass: a global that no allowlist should admit."""


class RunsShell:
    """Unpickles into a call of os.system."""

    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def _nerfstudio_checkpoint() -> dict:
    """A checkpoint shaped like Trainer.save_checkpoint's, built with nerfstudio's own optimizers."""
    from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    model = torch.nn.Linear(3, 2)
    config = {
        "fields": {
            "optimizer": AdamOptimizerConfig(lr=1e-2),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=100),
        }
    }
    optimizers = Optimizers(config, {"fields": list(model.parameters())})
    for step in range(3):
        model(torch.randn(4, 3)).sum().backward()
        optimizers.optimizer_step_all()
        optimizers.scheduler_step_all(step)
    return {
        "step": 3,
        "pipeline": model.state_dict(),
        "optimizers": {k: v.state_dict() for k, v in optimizers.optimizers.items()},
        "schedulers": {k: v.state_dict() for k, v in optimizers.schedulers.items()},
        "scalers": torch.amp.GradScaler("cuda", enabled=False).state_dict(),
    }


def test_nerfstudio_scheduler_puts_numpy_scalars_in_checkpoint() -> None:
    checkpoint = _nerfstudio_checkpoint()
    assert type(checkpoint["optimizers"]["fields"]["param_groups"][0]["lr"]) is np.float64
    assert type(checkpoint["schedulers"]["fields"]["_last_lr"][0]) is np.float64


_LOAD_SCRIPT = textwrap.dedent(
    """
    import json, pickle, sys
    import numpy as np, torch
    from nerfcompress.plugin.compat import allow_nerfstudio_checkpoint_globals

    def refused(path):
        try:
            torch.load(path)
        except pickle.UnpicklingError as error:
            return str(error)
        return None

    ckpt_path, tagged_path, shell_path = sys.argv[1:]
    result = {"before": refused(ckpt_path)}
    allow_nerfstudio_checkpoint_globals()
    num_safe = len(torch.serialization.get_safe_globals())
    allow_nerfstudio_checkpoint_globals()
    result["idempotent"] = num_safe == len(torch.serialization.get_safe_globals())
    loaded = torch.load(ckpt_path)
    result["lr_type"] = type(loaded["optimizers"]["fields"]["param_groups"][0]["lr"]).__name__
    result["step"] = loaded["step"]
    result["tagged"] = refused(tagged_path)
    result["shell"] = refused(shell_path)
    print(json.dumps(result))
    """
)


def test_checkpoint_loads_with_weights_only_after_allowlisting(tmp_path: Path) -> None:
    checkpoint = _nerfstudio_checkpoint()
    ckpt_path, tagged_path, shell_path = tmp_path / "step.ckpt", tmp_path / "tagged.pt", tmp_path / "shell.pt"
    torch.save(checkpoint, ckpt_path)
    torch.save({"step": 1, "extra": TaggedDict(a=1)}, tagged_path)
    torch.save({"step": 1, "extra": RunsShell()}, shell_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    run = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(ckpt_path), str(tagged_path), str(shell_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["before"] is not None and "numpy" in result["before"]
    assert result["idempotent"]
    assert result["lr_type"] == "float64" and result["step"] == 3
    assert result["tagged"] is not None and "TaggedDict" in result["tagged"]
    assert result["shell"] is not None and "system" in result["shell"]
    assert "should-never-run" not in run.stdout


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache under a temporary TORCH_HOME; the LPIPS warning is re-armed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(compat, "_lpips_skip_warned", False)
    return Path(torch.hub.get_dir())


def _images(seed: int) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_weights_filename_matches_torchvision() -> None:
    from torchvision.models import AlexNet_Weights

    assert AlexNet_Weights.IMAGENET1K_V1.url.endswith("/" + ALEXNET_WEIGHTS_FILENAME)


def test_lazy_lpips_without_weights_is_nan_and_warns_once(hub_dir: Path, offline: None) -> None:
    assert alexnet_weights_path() == str(hub_dir / "checkpoints" / ALEXNET_WEIGHTS_FILENAME)
    metrics = [LazyLPIPS(), LazyLPIPS()]
    with pytest.warns(UserWarning) as record:
        values = [metric(_images(0), _images(1)) for metric in metrics for _ in range(3)]
    assert all(torch.isnan(value) and value.ndim == 0 for value in values)
    lpips_warnings = [w for w in record if "LPIPS is skipped" in str(w.message)]
    assert len(lpips_warnings) == 1
    assert alexnet_weights_path() in str(lpips_warnings[0].message)


def test_lazy_lpips_with_cached_weights_is_finite(hub_dir: Path, offline: None) -> None:
    import torchvision

    weights_path = Path(alexnet_weights_path())
    weights_path.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), weights_path)
    metric = LazyLPIPS()
    value = metric(_images(0), _images(1))
    assert value.ndim == 0 and math.isfinite(value.item())
    assert metric(_images(2), _images(2)).item() == pytest.approx(0.0, abs=1e-6)


def test_drop_unavailable_lpips() -> None:
    metrics = {"psnr": 20.0, "ssim": 0.5, "lpips": float("nan")}
    assert drop_unavailable_lpips(metrics) == {"psnr": 20.0, "ssim": 0.5}
    assert "lpips" in metrics
    assert drop_unavailable_lpips({"psnr": 20.0, "lpips": 0.1}) == {"psnr": 20.0, "lpips": 0.1}


def test_nerfacto_builds_offline_with_lazy_lpips(hub_dir: Path, offline: None) -> None:
    import torchmetrics.image.lpip as lpip_module
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    real_lpips = lpip_module.LearnedPerceptualImagePatchSimilarity
    scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    with lazy_lpips_in_nerfacto():
        model = NerfactoModelConfig().setup(scene_box=scene_box, num_train_data=4, metadata={})
    assert lpip_module.LearnedPerceptualImagePatchSimilarity is real_lpips
    assert isinstance(model.lpips, LazyLPIPS)
    assert not any("lpips" in key for key in model.state_dict())

    size = 16
    names = ("accumulation", "depth", "prop_depth_0", "prop_depth_1")
    outputs = {name: torch.rand(size, size, 1) for name in names}
    outputs["rgb"] = torch.rand(size, size, 3)
    with pytest.warns(UserWarning, match="LPIPS is skipped"):
        metrics, _ = model.get_image_metrics_and_images(outputs, {"image": torch.rand(size, size, 3)})
    assert math.isnan(metrics["lpips"])
    assert set(drop_unavailable_lpips(metrics)) == {"psnr", "ssim"}
