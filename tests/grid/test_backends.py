"""grid_backend resolution, and interp_tcnn's glue code against a stand-in for tinycudann.

tinycudann is never installed on CPU machines; the stand-in below computes what tcnn's HashGrid
computes (with interp_torch) so that padding, level masking, dtypes, the self-check and the
fallback are tested here. Real tcnn is checked at start-up on CUDA (and by scripts/gpu_bench.py).
"""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from nerfcompress.grid import backends
from nerfcompress.grid.backends import GridBackendUnavailable, missing_package, select_grid_backend
from nerfcompress.grid.interp import interp_torch
from nerfcompress.grid.layout import GridLayout

LAYOUT = GridLayout(3, 3, 2, 256, 4, 2.0)
REPO = Path(__file__).resolve().parents[2]


def _fake_tinycudann(monkeypatch, per_level_scale_error: float = 0.0, batch_granularity: int = 128):
    """Installs a ``tinycudann`` whose HashGrid is interp_torch on the layout its config describes
    (``per_level_scale_error`` makes it disagree with ours)."""
    calls = []

    class Native:
        def __init__(self, layout):
            self.layout = layout

        def n_params(self):
            return self.layout.num_rows * self.layout.features_per_level

    class Encoding:
        def __init__(self, n_input_dims, config, dtype=None):
            assert dtype == torch.float32 and config["otype"] == "Grid" and config["type"] == "Hash"
            layout = GridLayout(
                n_input_dims,
                config["n_levels"],
                config["n_features_per_level"],
                2 ** config["log2_hashmap_size"],
                config["base_resolution"],
                config["per_level_scale"] + per_level_scale_error,
            )
            self.native_tcnn_module = Native(layout)

    class ModuleFunction:
        @staticmethod
        def apply(native, points, params, loss_scale):
            calls.append((points.shape[0], params.dtype, loss_scale))
            assert points.shape[0] % batch_granularity == 0 and params.dim() == 1
            return interp_torch(native.layout, params.view(-1, native.layout.features_per_level), points)

    package = types.ModuleType("tinycudann")
    package.Encoding = Encoding
    modules = types.ModuleType("tinycudann.modules")
    modules._module_function = ModuleFunction
    modules._C = types.SimpleNamespace(batch_size_granularity=lambda: batch_granularity)
    package.modules = modules
    monkeypatch.setitem(sys.modules, "tinycudann", package)
    monkeypatch.setitem(sys.modules, "tinycudann.modules", modules)
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: object() if name else None)
    monkeypatch.setattr(backends, "_cuda_missing", lambda device: None)  # pretend to be on CUDA
    from nerfcompress.grid import interp_tcnn

    monkeypatch.setattr(interp_tcnn, "_ENCODINGS", {})
    return calls


def test_interp_tcnn_pads_to_tcnns_granularity_masks_levels_and_keeps_gradients(monkeypatch):
    calls = _fake_tinycudann(monkeypatch)
    from nerfcompress.grid.interp_tcnn import interp_tcnn

    g = torch.Generator().manual_seed(0)
    table = torch.randn(LAYOUT.num_rows, 2, generator=g)
    x = torch.rand(5, 7, 3, generator=g) * 1.2 - 0.1
    for levels in (None, 2):
        results = []
        for interpolate in (interp_torch, interp_tcnn):
            leaf, points = table.clone().requires_grad_(), x.clone().requires_grad_()
            out = interpolate(LAYOUT, leaf, points, levels)
            out.backward(torch.ones_like(out))
            results.append((out, leaf.grad, points.grad))
        for ours, theirs in zip(*results):
            torch.testing.assert_close(ours, theirs)
    assert calls[0] == (128, torch.float32, 1.0)  # 35 points padded to 128, fp32 parameters, loss scale 1
    half = interp_tcnn(LAYOUT, table.half(), x)
    assert half.dtype == torch.float16


def test_tcnn_that_passes_the_self_check_is_selected(monkeypatch):
    _fake_tinycudann(monkeypatch)
    backend = select_grid_backend("tcnn", "cpu", [LAYOUT, LAYOUT])
    assert backend.name == "tcnn" and "self-check" in backend.reason


@pytest.mark.parametrize("requested", ["tcnn", "auto"])
def test_a_tcnn_mismatch_warns_once_naming_it_and_falls_back(monkeypatch, requested, recwarn):
    _fake_tinycudann(monkeypatch, per_level_scale_error=0.3)
    backend = select_grid_backend(requested, "cpu", [LAYOUT])
    assert backend.name == "torch" and backend.interpolate is interp_torch
    messages = [str(w.message) for w in recwarn.list]
    assert len(messages) == 1
    assert f"grid_backend={requested}" in messages[0] and "forward differs from interp_torch" in messages[0]
    assert "falling back to torch" in messages[0]


def test_explicit_native_backends_fail_early_naming_the_setting_and_what_is_missing(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(
        GridBackendUnavailable, match=r"grid_backend=triton needs a CUDA device \(this model runs on cpu\)"
    ):
        select_grid_backend("triton", "cpu", [LAYOUT])
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GridBackendUnavailable, match="grid_backend=triton needs the triton package"):
        select_grid_backend("triton", "cuda", [LAYOUT])
    with pytest.raises(GridBackendUnavailable, match="grid_backend=tcnn needs the tinycudann package"):
        select_grid_backend("tcnn", "cuda", [LAYOUT])
    assert missing_package("tcnn") == "tinycudann" and missing_package("torch") is None
    with pytest.raises(ValueError, match="grid_backend must be one of auto, torch, triton, tcnn"):
        select_grid_backend("cuda", "cpu", [LAYOUT])


def test_auto_on_cpu_picks_torch_and_imports_no_native_module():
    code = (
        "import sys; from nerfcompress.grid.backends import select_grid_backend;"
        "from nerfcompress.grid import GridLayout;"
        "b = select_grid_backend('auto', 'cpu', [GridLayout(3, 2, 2, 16, 4, 2.0)]);"
        "assert b.name == 'torch', b;"
        "assert 'tinycudann' not in sys.modules and 'nerfcompress.grid.interp_triton' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_triton_in_the_interpreter_is_allowed_when_asked_for(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    backend = select_grid_backend("triton", "cpu", [LAYOUT])
    from nerfcompress.grid.interp_triton import interp_triton

    assert backend.interpolate is interp_triton and "interpreter" in backend.reason
    assert select_grid_backend("auto", "cpu", [LAYOUT]).name == "torch"  # auto never picks the slow interpreter
