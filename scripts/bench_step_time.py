"""Training step time of each method at the same configuration, measured in one process.

Builds each method's TrainerConfig from the demo flags (``configs/demo.yaml``), exactly as
``ns-train`` would parse them, sets up the trainer on the synthetic scene and times
``train_iteration`` after a warm-up. Methods are interleaved round by round so that machine
noise hits all of them alike.

    .venv/bin/python scripts/bench_step_time.py --scene outputs/demo/scene --steps 30
    .venv/bin/python scripts/bench_step_time.py --methods plain-nerfacto shacira-nerfacto --variants \
        "joint=shacira-nerfacto,pipeline.model.coarse-to-fine-min-levels=1,pipeline.model.coarse-to-fine-joint-rays=0.25"
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import tyro
import yaml
from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
from ns_runs import flags_to_args  # scripts/ is on sys.path when run as a script
from rich.console import Console

from nerfcompress.scenes.synthetic import write_synthetic_scene

CONSOLE = Console()
REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchStepTime:
    """Times training iterations of several methods at one configuration."""

    config: Path = REPO / "configs" / "demo.yaml"
    """Demo settings whose ns-train flags define the configuration."""
    scene: Path = REPO / "outputs" / "demo" / "scene"
    """Synthetic scene (generated with the config's scene settings if missing)."""
    methods: Tuple[str, ...] = ("plain-nerfacto", "shacira-nerfacto")
    """Methods to compare; the first is the reference of the ratios."""
    variants: Tuple[str, ...] = ()
    """More runs to compare, each ``LABEL=METHOD,NAME=VALUE,...``: the method with more ns-train flags
    (names without the dashes), timed beside the methods and reported under LABEL."""
    steps: int = 30
    """Timed iterations per method (after warm-up)."""
    warmup: int = 5
    """Untimed iterations per method first."""
    output: Optional[Path] = None
    """Optional JSON file for the measurements."""

    def main(self) -> None:
        settings = yaml.safe_load(self.config.read_text())
        if not (self.scene / "transforms_train.json").exists():
            write_synthetic_scene(self.scene, **settings["scene"])
        torch.manual_seed(0)
        trainers = {}
        runs = [(method, method, {}) for method in self.methods] + [parse_variant(text) for text in self.variants]
        for label, method, extra in runs:
            flags = {**settings["train_flags"], **settings.get("method_flags", {}).get(method, {}), **extra}
            args = [method, *flags_to_args(flags), "--data", str(self.scene), "--output-dir", "/tmp/bench-step-time"]
            config = tyro.cli(AnnotatedBaseConfigUnion, args=args)
            config.pipeline.datamanager.data = self.scene
            config.set_timestamp()
            trainer = config.setup(local_rank=0, world_size=1)
            trainer.setup()
            trainers[label] = trainer
        step_seconds: Dict[str, List[float]] = {label: [] for label in trainers}
        for step in range(self.warmup + self.steps):
            for method, trainer in trainers.items():
                trainer.pipeline.model.set_step(step)
                start = time.perf_counter()
                trainer.train_iteration(step)
                if step >= self.warmup:
                    step_seconds[method].append(time.perf_counter() - start)
        reference = statistics.median(step_seconds[runs[0][0]])
        report = {
            "threads": torch.get_num_threads(),
            "steps": self.steps,
            "median_step_seconds": {m: statistics.median(s) for m, s in step_seconds.items()},
            "ratio_to_first": {m: statistics.median(s) / reference for m, s in step_seconds.items()},
        }
        CONSOLE.print_json(data=report)
        if self.output is not None:
            self.output.write_text(json.dumps(report, indent=2))
        for trainer in trainers.values():
            trainer.pipeline.datamanager.__del__()  # stop data workers


def parse_variant(text: str) -> Tuple[str, str, Dict[str, str]]:
    """``"LABEL=METHOD,NAME=VALUE,..."`` -> ``(LABEL, METHOD, {"--NAME": VALUE, ...})``.

    Raises:
        ValueError: without a label and method, or a flag without ``=``.
    """
    label, _, rest = text.partition("=")
    method, *flags = rest.split(",")
    if not label or not method:
        raise ValueError(f"--variants takes LABEL=METHOD,NAME=VALUE,... found {text!r}")
    extra = {}
    for flag in flags:
        name, equals, value = flag.partition("=")
        if not equals or not name:
            raise ValueError(f"--variants: a flag is NAME=VALUE, found {flag!r} in {text!r}")
        extra["--" + name.lstrip("-")] = value
    return label, method, extra


if __name__ == "__main__":
    tyro.cli(BenchStepTime).main()
