"""scripts/gpu_bench.py's in-process phases: grid kernel timing, training-step timing, host syncs.

Each function returns a JSON-able dict; times are medians of CUDA-synchronised wall clock (CUDA
events for the kernels) after warm-up. On CPU the same code runs at tiny sizes (Triton in its
interpreter), so the flow is tested; its times say nothing about a GPU.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import torch
import tyro

from nerfcompress.grid import GridLayout, interp_torch
from nerfcompress.host_sync import HostSyncAudit, SyncSite, caller_site
from nerfcompress.tables import host_values


def flags_to_args(flags: Dict[str, object]) -> List[str]:
    """``{"--a": 1, "--b": [2, 3]}`` -> ``["--a", "1", "--b", "2", "3"]``."""
    args: List[str] = []
    for flag, value in flags.items():
        values = value if isinstance(value, list) else [value]
        args += [flag, *(str(v) for v in values)]
    return args


def model_flags_for(method: str, flags: Dict[str, object]) -> tuple[Dict[str, object], List[str]]:
    """The flags whose ``--pipeline.model.*`` field ``method``'s model config has, and the dropped ones
    (nerfstudio's nerfacto lacks ours, e.g. ``proposal-log2-hashmap-size``)."""
    import dataclasses

    from nerfstudio.configs.method_configs import all_methods

    fields = {f.name.replace("_", "-") for f in dataclasses.fields(all_methods[method].pipeline.model)}
    kept, dropped = {}, []
    for flag, value in flags.items():
        name = flag[len("--pipeline.model.") :] if flag.startswith("--pipeline.model.") else None
        if name is not None and name.split(".")[0] not in fields:
            dropped.append(flag)
        else:
            kept[flag] = value
    return kept, dropped


def build_trainer(method: str, flags: Dict[str, object], data: Path, output_dir: Path, device: str):
    """A set-up nerfstudio Trainer for ``method`` with ``flags``, as ``ns-train`` would parse them."""
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    from nerfcompress.plugin.compat import lazy_lpips_in_nerfacto
    from nerfcompress.plugin.dataparser import AutoDataParserConfig

    base = {
        "--machine.device-type": device,
        "--vis": "tensorboard",
        "--viewer.quit-on-train-completion": "True",
        "--logging.local-writer.enable": "False",
        "--output-dir": str(output_dir),
    }
    config = tyro.cli(AnnotatedBaseConfigUnion, args=[method, *flags_to_args({**base, **flags})])
    config.pipeline.datamanager.dataparser = AutoDataParserConfig(data=data)  # one parser for every method
    config.pipeline.datamanager.data = data
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    with lazy_lpips_in_nerfacto():  # nerfstudio's nerfacto would download AlexNet; ours never do
        trainer.setup()
    return trainer


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_step(trainer, step: int) -> None:
    """One iteration as ``Trainer.train`` runs it: callbacks before, the iteration, callbacks after."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    trainer.train_iteration(step)
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)


def bench_kernels(settings: dict, device: str) -> dict:
    """Forward + backward of every interpolation backend at one size, and Triton's error.

    Two cases: the table gradient only, and with the positions' gradient as well (nerfacto's
    positions need it when its camera optimizer is on)."""
    from nerfcompress.grid.backends import missing_for_tcnn
    from nerfcompress.grid.interp_triton import interp_triton

    layout = GridLayout.from_resolution_range(
        3,
        settings["num_levels"],
        settings["base_res"],
        settings["max_res"],
        settings["log2_hashmap_size"],
        settings["features_per_level"],
    )
    g = torch.Generator(device=device).manual_seed(0)
    num_points = 2 ** settings["log2_points"]
    table = torch.randn(layout.num_rows, layout.features_per_level, device=device, generator=g) * 1e-2
    points = torch.rand(num_points, 3, device=device, generator=g)
    upstream = torch.randn(num_points, layout.output_dim, device=device, generator=g)
    backends: Dict[str, Callable] = {"torch": interp_torch}
    backends.update({f"triton-block{b}": partial(interp_triton, block=b) for b in settings["blocks"]})
    tcnn_note = missing_for_tcnn(torch.device(device))
    if tcnn_note is None:
        from nerfcompress.grid.interp_tcnn import interp_tcnn, tcnn_mismatch

        tcnn_note = tcnn_mismatch([layout], torch.device(device))
        if tcnn_note is None:
            backends["tcnn"] = interp_tcnn

    def run(interpolate, position_grad: bool):
        leaf = table.detach().requires_grad_()
        x = points.detach().requires_grad_(position_grad)
        out = interpolate(layout, leaf, x)
        out.backward(upstream)
        return out, leaf.grad, x.grad

    times: Dict[str, Dict[str, float]] = {}
    for name, interpolate in backends.items():
        times[name] = {}
        for case, position_grad in (("table_grad_ms", False), ("table_and_position_grad_ms", True)):
            samples = []
            for repeat in range(settings["warmup"] + settings["repeats"]):
                _synchronize(device)
                start = time.perf_counter()
                run(interpolate, position_grad)
                _synchronize(device)
                if repeat >= settings["warmup"]:
                    samples.append(1e3 * (time.perf_counter() - start))
            times[name][case] = statistics.median(samples)
    reference = run(interp_torch, True)
    errors = {}
    for name in [n for n in backends if n != "torch"]:
        found = run(backends[name], True)
        errors[name] = {
            part: float((f - r).abs().max() / r.abs().max().clamp_min(1e-30))
            for part, f, r in zip(("forward", "table_grad", "position_grad"), found, reference)
        }
    triton = min((n for n in times if n.startswith("triton")), key=lambda n: times[n]["table_grad_ms"])
    return {
        "layout": {"rows": layout.num_rows, "levels": layout.num_levels, "features": layout.features_per_level},
        "points": num_points,
        "times": times,
        "best_triton": triton,
        "speedup_triton_over_torch": times["torch"]["table_grad_ms"] / times[triton]["table_grad_ms"],
        "speedup_with_position_grad": times["torch"]["table_and_position_grad_ms"]
        / times[triton]["table_and_position_grad_ms"],
        "max_relative_error_vs_torch": errors,
        "tcnn": "measured" if "tcnn" in backends else f"not measured: {tcnn_note}",
    }


def bench_steps(runs: Dict[str, tuple], settings: dict, data: Path, work_dir: Path, device: str) -> dict:
    """CUDA-synchronised median step time of each ``name -> (method, flags)``, in interleaved rounds.

    A run that fails to build or to step is reported in ``errors`` and the others go on."""
    trainers, notes, errors = {}, {}, {}
    for name, (method, flags) in runs.items():
        kept, dropped = model_flags_for(method, flags)
        if dropped:
            notes[name] = f"flags its config lacks, left out: {dropped}"
        try:
            trainers[name] = build_trainer(method, kept, data, work_dir / name.replace(" ", "_"), device)
        except Exception as exc:
            errors[name] = f"setup failed: {type(exc).__name__}: {exc}"
    samples: Dict[str, List[float]] = {name: [] for name in trainers}
    for step in range(settings["warmup"] + settings["steps"]):
        for name, trainer in list(trainers.items()):
            _synchronize(device)
            start = time.perf_counter()
            try:
                train_step(trainer, step)
            except Exception as exc:
                errors[name] = f"step {step} failed: {type(exc).__name__}: {exc}"
                del trainers[name], samples[name]
                continue
            _synchronize(device)
            if step >= settings["warmup"]:
                samples[name].append(1e3 * (time.perf_counter() - start))
    backends = {name: getattr(t.pipeline.model, "grid_backend", None) for name, t in trainers.items()}
    return {
        "median_step_ms": {name: statistics.median(s) for name, s in samples.items()},
        "grid_backend": {name: b.name if b is not None else "nerfstudio HashEncoding" for name, b in backends.items()},
        "notes": notes,
        "errors": errors,
        "steps": settings["steps"],
        "warmup": settings["warmup"],
        "trainers": trainers,  # handed to the sync checks; removed before the JSON is written
    }


@contextlib.contextmanager
def cuda_sync_sites() -> Iterator[List[SyncSite]]:
    """Records the line of every synchronisation ``torch.cuda.set_sync_debug_mode("warn")`` reports."""
    sites: List[SyncSite] = []

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            site = caller_site("cuda sync")
            if site is not None:
                sites.append(site)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield sites
        finally:
            torch.cuda.set_sync_debug_mode("default")


def _our_pieces(trainer, step: int) -> None:
    """What our code does in a step, by itself: the schedule callbacks, every grid's table and
    rate, interpolation forward and backward."""
    model = trainer.pipeline.model
    model.set_step(step)
    if model.learning_rate_scaled_groups():
        model.apply_learning_rate_scales(trainer.optimizers, step)
    loss = 0.0
    for encoding in model.grid_encodings():
        x = torch.rand(4096, encoding.layout.num_dims, device=model.device, requires_grad=True)
        loss = loss + encoding(x).float().square().mean() + encoding.table.rate_bits() * 1e-9
    loss.backward()
    trainer.optimizers.zero_grad_all()


def check_host_syncs(trainers: Dict[str, object], device: str, start_step: int) -> dict:
    """Per trainer: every waiting operation of one full training step and whether it is ours
    (audit; on CUDA also the synchronisations the debug mode reports), and on CUDA whether our
    pieces alone run under ``set_sync_debug_mode("error")``."""
    out = {}
    for offset, (name, trainer) in enumerate(trainers.items()):
        step = start_step + offset
        entry: Dict[str, object] = {}
        with HostSyncAudit(allowed=[host_values.__file__]) as audit:
            train_step(trainer, step)
        entry["audit_ours"] = [str(s) for s in audit.sites if s.ours]
        entry["audit_others"] = audit.summary(ours=False)[:12]
        if device == "cuda":
            with cuda_sync_sites() as sites:
                train_step(trainer, step + 100)
            entry["cuda_syncs_ours"] = sorted({str(s) for s in sites if s.ours})
            entry["cuda_syncs_others"] = sorted({str(s) for s in sites if not s.ours})[:12]
            entry["cuda_sync_count"] = len(sites)
            if not hasattr(trainer.pipeline.model, "grid_encodings"):  # nerfstudio's own model
                out[name] = entry
                continue
            strict: Optional[str] = None
            torch.cuda.set_sync_debug_mode("error")
            try:
                _our_pieces(trainer, step + 200)
            except RuntimeError as exc:
                strict = str(exc).splitlines()[0]
            finally:
                torch.cuda.set_sync_debug_mode("default")
            entry["our_pieces_under_error_mode"] = "passed" if strict is None else f"failed: {strict}"
        out[name] = entry
    return out
