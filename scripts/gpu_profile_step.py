"""Where a training step's time goes: torch.profiler over a few steps of each method (issue 12).

``scripts/gpu_bench.py`` measures the step medians; this says what fills them. On the lent GPU
machine (``.whl`` and ``.nsdata/lego100`` carried, see BENCHMARKS.md "GPU path"):

    source .whl/device-env.sh || exit; python3 -m pip install -q --no-deps --no-build-isolation -e . \\
        && PYTHONUNBUFFERED=1 python3 scripts/gpu_profile_step.py --data .nsdata/lego100 --output-dir $OUT/profile

On CPU at tiny sizes (the flow only; its times say nothing about a GPU):

    .venv/bin/python scripts/gpu_profile_step.py --data data/synthetic --preset tiny --device cpu \\
        --output-dir /tmp/profile

Per method it writes ``<method>.txt``: the step's wall time against the device's busy time (a
step whose kernels fill a small share of its wall time is bound by the host, launches and Python),
the operators by device time (self), and the same grouped by the five innermost source lines,
so that each operator is charged to the line of ours or nerfstudio's that called it.
``profile.json`` holds the step medians and busy shares of all methods.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal

import torch
import tyro
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_bench_steps import _synchronize, build_trainer, model_flags_for, train_step  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
_LABEL = "nerfcompress."


def _label_table_pieces() -> None:
    """Wraps every table's ``decode`` and ``rate_bits`` and the grid interpolation in a
    ``record_function`` range named after it, so the profile charges their operators to them."""
    from nerfcompress import tables  # noqa: F401  (every table class defined)
    from nerfcompress.plugin import encoding
    from nerfcompress.tables import base

    def labelled(owner, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            with torch.profiler.record_function(f"{_LABEL}{owner.__name__}.{name}"):
                return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    for table in _subclasses(base.FeatureTable):
        for name in ("decode", "rate_bits"):
            if name in vars(table):
                labelled(table, name)
    labelled(encoding.GridEncoding, "forward")


def _subclasses(cls) -> List[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@dataclass
class ProfileStep:
    """Profile training steps of each method at the GPU bench's step settings."""

    data: Path
    """A Blender-format scene (lego100 on the device)."""
    output_dir: Path = Path("outputs/profile")
    preset: Literal["full", "tiny"] = "full"
    """The section of configs/gpu_bench.yaml whose step and scene flags are used."""
    device: Literal["cuda", "cpu"] = "cuda"
    methods: List[str] = field(default_factory=lambda: ["plain-nerfacto", "shacira-nerfacto", "vqad-nerfacto"])
    """Runs to profile: a method, optionally followed by ``;--flag=value`` pairs of its own
    (``"shacira-nerfacto;--pipeline.model.rate-row-stride=8"``)."""
    backend: str = "triton"
    """``--pipeline.model.grid-backend`` of every method (``auto`` on CPU)."""
    warmup: int = 10
    timed_steps: int = 10
    """Steps timed without the profiler (the median is reported beside the profiled one)."""
    profiled_steps: int = 3
    row_limit: int = 30

    def main(self) -> None:
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile

        settings = yaml.safe_load((REPO / "configs" / "gpu_bench.yaml").read_text())[self.preset]
        flags = {**settings["scene_flags"], **settings["step"]["flags"], "--pipeline.model.grid-backend": self.backend}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device == "cuda" else [])
        device_time = "self_device_time_total" if self.device == "cuda" else "self_cpu_time_total"
        summary = {"device": torch.cuda.get_device_name() if self.device == "cuda" else "cpu", "methods": {}}
        _label_table_pieces()
        for run in self.methods:
            method, *own = run.split(";")
            own_flags = dict(pair.split("=", 1) for pair in own)
            kept, _ = model_flags_for(method, {**flags, **own_flags})
            name = run.replace(";", "_").replace("--pipeline.model.", "").replace("=", "")
            trainer = build_trainer(method, kept, self.data, self.output_dir / "runs" / name, self.device)
            step = 0
            samples = []
            for _ in range(self.warmup + self.timed_steps):
                _synchronize(self.device)
                start = time.perf_counter()
                train_step(trainer, step)
                _synchronize(self.device)
                samples.append(1e3 * (time.perf_counter() - start))
                step += 1
            _synchronize(self.device)
            with profile(activities=activities, with_stack=True) as prof:
                start = time.perf_counter()
                for _ in range(self.profiled_steps):
                    train_step(trainer, step)
                    step += 1
                _synchronize(self.device)
                profiled_ms = 1e3 * (time.perf_counter() - start) / self.profiled_steps
            events = prof.key_averages()
            kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
            busy_ms = sum(e.time_range.elapsed_us() for e in kernels) / 1e3 / self.profiled_steps
            entry = {
                "median_step_ms": statistics.median(samples[self.warmup :]),
                "profiled_step_ms": profiled_ms,
                "device_busy_ms_per_step": busy_ms,  # kernels' time; 0 on CPU
            }
            summary["methods"][run] = entry
            labelled = [e for e in events if e.key.startswith(_LABEL)]
            text = [
                f"# {run} ({self.backend}), {summary['device']}",
                json.dumps(entry),
                "",
                events.table(sort_by=device_time, row_limit=self.row_limit, max_name_column_width=60),
                "",
                "Our table pieces, forward only (totals: what each one launched; per call and calls):",
                *(
                    f"  {e.key}: cpu {e.cpu_time_total / 1e3:.2f} ms, device "
                    f"{getattr(e, 'device_time_total', 0.0) / 1e3:.2f} ms, {e.count} calls"
                    for e in labelled
                ),
                "",
                prof.key_averages(group_by_stack_n=5).table(
                    sort_by=device_time, row_limit=self.row_limit, max_name_column_width=60, max_src_column_width=120
                ),
            ]
            (self.output_dir / f"{name}.txt").write_text("\n".join(text))
            (self.output_dir / "profile.json").write_text(json.dumps(summary, indent=1))
            print(f"gpu_profile_step: {run}: {entry}", flush=True)
            del trainer
            if self.device == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    tyro.cli(ProfileStep).main()
