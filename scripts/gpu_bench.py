"""The GPU path's benchmark (issue 12), one command, JSON and a Markdown table.

On a lent GPU machine with torch but no package registry (carried wheels, ../shared/gpu/README.md),
from the repository root with ``.whl`` (``bash ../shared/gpu/fetch-wheels.sh .whl``) and
``.nsdata/lego100`` carried:

    source .whl/device-env.sh || exit; python3 -m pip install -q --no-deps --no-build-isolation -e . \\
        && PYTHONUNBUFFERED=1 python3 scripts/gpu_bench.py --output-dir $OUT/bench --lego .nsdata/lego100

On CPU, the same flow at tiny sizes (Triton kernels in Triton's interpreter; tests/scripts/):

    .venv/bin/python scripts/gpu_bench.py --device cpu --tiny --output-dir /tmp/gpu-bench

Phases, each recorded even if a later one fails or runs out of time (``budget_s`` in
configs/gpu_bench.yaml; the JSON is rewritten after every phase): grid kernels (torch, Triton,
tcnn if installed), training-step medians of plain/shacira/vqad-nerfacto with the torch and
Triton backends and of nerfstudio's nerfacto, host syncs of a step, short trainings with export,
file bytes and decoded-file PSNR (nerfacto variants on the procedural scene and lego100, the
Instant-NGP variants on the procedural scene). The procedural scene is written and nerfacc's
CUDA kernels are compiled in the background while the first phases run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Dict, List, Literal, Optional

import tyro
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent
_PACKAGES = ("torch", "triton", "nerfstudio", "nerfacc", "constriction", "nerfcompress", "tinycudann")


def _versions() -> Dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _background(code: str, log: Path, env: Optional[dict] = None) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen([sys.executable, "-c", code], stdout=handle, stderr=subprocess.STDOUT, env=env)


def _wait(process: subprocess.Popen, deadline: float) -> Optional[int]:
    try:
        return process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        return None


@dataclass
class GpuBench:
    """Benchmark the Triton/tcnn grid backends, training steps and short trainings on a GPU (or tiny on CPU)."""

    output_dir: Path = REPO / "outputs" / "gpu_bench"
    """Where gpu_bench.json and gpu_bench.md go (nothing else: runs and files go to work_dir)."""
    work_dir: Path = Path("/tmp/gpu-bench-work")
    """Scratch: the procedural scene, runs, checkpoints, exported files, logs."""
    device: Literal["cuda", "cpu"] = "cuda"
    """cuda: the real benchmark; cpu: only with --tiny, to exercise the flow."""
    tiny: bool = False
    """The 'tiny' settings of the config: CPU-sized, seconds per phase."""
    lego: Optional[Path] = None
    """lego100 in Blender format (copied to .nsdata/ to travel); without it its runs are listed as not run."""
    config: Path = REPO / "configs" / "gpu_bench.yaml"
    """Benchmark settings."""
    budget_s: Optional[float] = None
    """Overrides the config's budget (seconds after which no new work starts)."""

    def main(self) -> None:
        if self.device == "cpu":
            if not self.tiny:
                sys.exit("gpu_bench: --device cpu needs --tiny (CPU times say nothing about a GPU)")
            os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            sys.exit("gpu_bench: no CUDA device here; run with --device cpu --tiny to test the flow")
        settings = yaml.safe_load(self.config.read_text())["tiny" if self.tiny else "full"]
        start = time.monotonic()
        self.deadline = start + (self.budget_s or settings["budget_s"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.results = {
            "environment": {
                "device": self.device,
                "gpu": torch.cuda.get_device_name() if self.device == "cuda" else "none (CPU)",
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": _versions(),
                "command": " ".join(sys.argv),
            },
            "budget_s": self.budget_s or settings["budget_s"],
            "settings": settings,
            "notes": [],
        }
        scene_job, nerfacc_job = self._start_background(settings)
        self._phase("kernel", lambda: self._kernel(settings))
        step_data = self.lego if self.lego is not None and self.lego.is_dir() else self._scene(scene_job)
        self._phase("step", lambda: self._steps(settings, step_data))
        self._phase("training", lambda: self._trainings(settings, scene_job, nerfacc_job))
        self.results["elapsed_s"] = time.monotonic() - start
        self._write()
        print(f"gpu_bench: wrote {self.output_dir / 'gpu_bench.json'} and gpu_bench.md", flush=True)

    def _start_background(self, settings: dict):
        scene_dir = self.work_dir / "procedural"
        code = (
            "from nerfcompress.scenes.synthetic import write_synthetic_scene; "
            f"write_synthetic_scene({str(scene_dir)!r}, **{settings['scene']!r})"
        )
        scene_job = _background(code, self.work_dir / "scene.log")
        nerfacc_job = None
        if self.device == "cuda":
            import torch

            major, minor = torch.cuda.get_device_capability()
            env = {**os.environ, "TORCH_CUDA_ARCH_LIST": f"{major}.{minor}", "MAX_JOBS": str(os.cpu_count() or 8)}
            nerfacc_job = _background("import nerfacc.cuda._backend", self.work_dir / "nerfacc_build.log", env)
        return scene_job, nerfacc_job

    def _scene(self, scene_job: subprocess.Popen) -> Path:
        code = _wait(scene_job, self.deadline)
        if code != 0:
            raise RuntimeError(f"the procedural scene was not written (exit {code}); see {self.work_dir / 'scene.log'}")
        return self.work_dir / "procedural"

    def _phase(self, name: str, run) -> None:
        started = time.monotonic()
        print(f"gpu_bench: {name} ...", flush=True)
        try:
            run()
        except Exception as exc:  # a failed phase is reported, the next one still runs
            import traceback

            self.results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
            self.results["notes"].append(f"{name} failed: {traceback.format_exc().splitlines()[-1]}")
        self.results.setdefault("phase_s", {})[name] = time.monotonic() - started
        self._write()

    def _write(self) -> None:
        from gpu_bench_report import markdown, targets

        self.results["targets"] = targets(self.results)
        (self.output_dir / "gpu_bench.json").write_text(json.dumps(self.results, indent=2, default=str))
        (self.output_dir / "gpu_bench.md").write_text(markdown(self.results))

    def _kernel(self, settings: dict) -> None:
        from gpu_bench_steps import bench_kernels

        self.results["kernel"] = bench_kernels(settings["kernel"], self.device)

    def _steps(self, settings: dict, data: Path) -> None:
        import torch
        from gpu_bench_steps import bench_steps, check_host_syncs

        step = settings["step"]
        flags = {**settings["scene_flags"], **step["flags"]}
        runs = {
            f"{method} ({backend})": (method, {**flags, "--pipeline.model.grid-backend": backend})
            for backend in step["backends"]
            for method in step["methods"]
        }
        runs[step["reference"]] = (step["reference"], flags)
        result = bench_steps(runs, step, data, self.work_dir / "step", self.device)
        result["data"] = str(data)
        trainers = result.pop("trainers")
        self.results["step"] = result
        self._write()
        checked = {name: t for name, t in trainers.items() if "triton" in name or name == step["reference"]}
        try:
            self.results["host_syncs"] = check_host_syncs(checked, self.device, step["warmup"] + step["steps"])
        finally:
            for trainer in trainers.values():
                if hasattr(trainer.pipeline.datamanager, "__del__"):
                    trainer.pipeline.datamanager.__del__()  # stop the parallel datamanager's workers
            del trainers, checked
            if self.device == "cuda":
                torch.cuda.empty_cache()

    def _specs(self, settings: dict, scene: Path) -> List[dict]:
        scenes = {"procedural": scene, "lego100": self.lego if self.lego is not None and self.lego.is_dir() else None}
        specs = []
        for part in ("train", "instant_ngp"):
            phase = settings[part]
            base = {**(settings["scene_flags"] if part == "train" else {}), **phase["flags"]}
            for scene_name in phase["scenes"]:
                for method in phase["methods"]:
                    flags = {
                        **base,
                        **phase["method_flags"].get(method, {}),
                        "--pipeline.model.grid-backend": phase["backend"],
                    }
                    steps = phase["steps"] if part == "train" or self.device == "cuda" else 0
                    specs.append(
                        {
                            "method": method,
                            "scene": scene_name,
                            "data": str(scenes[scene_name] or ""),
                            "flags": flags,
                            "steps": steps,
                            "device": self.device,
                            "instant_ngp": part == "instant_ngp",
                            "work_dir": str(self.work_dir / "train" / f"{scene_name}-{method}"),
                        }
                    )
        return specs

    def _trainings(self, settings: dict, scene_job, nerfacc_job) -> None:
        specs = self._specs(settings, self._scene(scene_job))
        runs: List[dict] = []
        self.results["training"] = {"runs": runs}
        nerfacc_ready = None
        pending = list(specs)
        active: List[tuple] = []
        parallel, margin = settings["train"]["parallel"], settings["train"]["launch_margin_s"]
        self.export_margin_s = settings["train"]["export_margin_s"]
        while pending or active:
            while pending and len(active) < parallel and time.monotonic() < self.deadline - margin:
                spec = pending.pop(0)
                if not spec["data"]:
                    runs.append({**_brief(spec), "not_run": "no lego100 given (--lego)"})
                    continue
                if spec["instant_ngp"] and nerfacc_job is not None:
                    if nerfacc_ready is None:
                        nerfacc_ready = _wait(nerfacc_job, self.deadline) == 0
                    if not nerfacc_ready:
                        runs.append(
                            {
                                **_brief(spec),
                                "not_run": f"nerfacc did not compile ({self.work_dir / 'nerfacc_build.log'})",
                            }
                        )
                        continue
                active.append(self._launch(spec))
            for entry in list(active):
                process, spec, result_path, log_path = entry
                if process.poll() is None and time.monotonic() < self.deadline:
                    continue
                if process.poll() is None:
                    process.kill()
                    process.wait()
                    runs.append({**_brief(spec), "not_run": "stopped at the time budget"})
                elif result_path.exists():
                    runs.append(json.loads(result_path.read_text()))
                else:
                    runs.append({**_brief(spec), "error": f"worker exited {process.returncode}; see {log_path}"})
                active.remove(entry)
                self._write()
            if not active and pending and time.monotonic() >= self.deadline - margin:
                runs.extend({**_brief(spec), "not_run": "not started: time budget"} for spec in pending)
                pending.clear()
            time.sleep(1)

    def _launch(self, spec: dict) -> tuple:
        work_dir = Path(spec["work_dir"])
        work_dir.mkdir(parents=True, exist_ok=True)
        spec_path, result_path = work_dir / "spec.json", work_dir / "result.json"
        remaining = self.deadline - time.monotonic() - self.export_margin_s
        spec = {**spec, "deadline_unix_s": time.time() + max(remaining, 0)}
        spec_path.write_text(json.dumps(spec, indent=2))
        result_path.unlink(missing_ok=True)
        log_path = work_dir / "worker.log"
        command = [sys.executable, str(SCRIPTS / "gpu_bench_train.py"), str(spec_path), str(result_path)]
        with log_path.open("w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        return process, spec, result_path, log_path


def _brief(spec: dict) -> dict:
    return {"method": spec["method"], "scene": spec["scene"], "steps": spec["steps"]}


if __name__ == "__main__":
    tyro.cli(GpuBench).main()
