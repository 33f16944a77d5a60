"""What the benchmark scripts share: ns-train flags, training runs, their logs, export and eval of files.

``export_file`` and ``evaluate_file`` run the ``ns-compress export`` / ``eval`` commands' own code
in the calling process (one nerfstudio import instead of one per call); training runs
``ns-train`` in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
TRAIN_TIME_TAG = "Train Iter (time)"  # nerfstudio's EventName.ITER_TRAIN_TIME, seconds per step
TRAIN_PSNR_TAG = "Train Metrics Dict/psnr"
ESTIMATED_SIZE_TAG = "export_size_MB"  # GridModel.log_estimated_size
ESTIMATED_GRID_SIZE_TAG = "export_grid_size_MB"


class CommandFailed(Exception):
    """A command of a benchmark failed; the message says where to look."""


def flags_to_args(flags: Dict[str, object]) -> List[str]:
    """``{"--a": 1, "--b": [2, 3]}`` -> ``["--a", "1", "--b", "2", "3"]``."""
    args: List[str] = []
    for flag, value in flags.items():
        values = value if isinstance(value, list) else [value]
        args += [flag, *(str(v) for v in values)]
    return args


def ns_train_command(method: str, flags: Dict[str, object], data: Path, output_dir: Path, experiment: str,
                     timestamp: str, seed: int) -> List[str]:  # fmt: skip
    """The ``ns-train`` command line of one run; its directory is ``output_dir/experiment/method/timestamp``."""
    return [
        str(Path(sys.executable).parent / "ns-train"),
        method,
        *flags_to_args(flags),
        "--machine.seed", str(seed),
        "--output-dir", str(output_dir),
        "--experiment-name", experiment,
        "--timestamp", timestamp,
        "--data", str(data),
    ]  # fmt: skip


def _failure(command: Sequence[str], returncode: int, log_path: Path) -> CommandFailed:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    tail = "\n".join(lines[-15:])
    return CommandFailed(f"{Path(command[0]).name} exited with {returncode}; last lines of {log_path}:\n{tail}")


def run_logged(command: Sequence[str], log_path: Path, threads: Optional[int] = None) -> float:
    """Runs a command with its output in ``log_path``; returns its seconds.

    Args:
        command: the command line.
        log_path: where its stdout and stderr go.
        threads: ``OMP_NUM_THREADS`` for the command (None: inherited).

    Raises:
        CommandFailed: the command exited non-zero (the message quotes the end of its log).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with log_path.open("w") as log:
        result = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, stdin=subprocess.DEVNULL, env=env
        )
    if result.returncode != 0:
        raise _failure(command, result.returncode, log_path)
    return time.perf_counter() - start


def run_logged_concurrently(commands: Sequence[Tuple[Sequence[str], Path]]) -> List[float]:
    """Runs the commands at the same time, each with an equal share of the CPU's threads
    (``OMP_NUM_THREADS``); returns each one's seconds.

    Small training batches use a CPU's cores poorly from one process: two trainings side by side
    finish sooner than one after the other.

    Raises:
        CommandFailed: a command exited non-zero (the others are waited for first).
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, len(commands)))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    running = []
    start = time.perf_counter()
    for command, log_path in commands:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("w")
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, stdin=subprocess.DEVNULL, env=env
        )
        running.append((command, log_path, log, process))
    seconds, failure = [], None
    for command, log_path, log, process in running:
        returncode = process.wait()
        log.close()
        seconds.append(time.perf_counter() - start)
        if returncode != 0 and failure is None:
            failure = _failure(command, returncode, log_path)
    if failure is not None:
        raise failure
    return seconds


def tensorboard_scalars(run_dir: Path, tag: str) -> List[Tuple[int, float]]:
    """``(step, value)`` of one logged scalar of a training run (its newest events file)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(run_dir.glob("events.out.tfevents.*"))
    if not events:
        return []
    accumulator = EventAccumulator(str(events[-1]), size_guidance={"scalars": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags().get("scalars", []):
        return []
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def median_step_seconds(run_dir: Path) -> Optional[float]:
    """Median of nerfstudio's logged per-step training time, first 10% skipped."""
    values = [value for _, value in tensorboard_scalars(run_dir, TRAIN_TIME_TAG)]
    return statistics.median(values[len(values) // 10 :]) if values else None


def final_train_psnr(run_dir: Path, last_fraction: float = 0.125) -> Optional[float]:
    """Mean training-batch PSNR over the last ``last_fraction`` of the logged steps."""
    values = [value for _, value in tensorboard_scalars(run_dir, TRAIN_PSNR_TAG)]
    tail = values[-max(1, int(len(values) * last_fraction)) :]
    return statistics.fmean(tail) if values else None


def final_estimate_bytes(run_dir: Path) -> Dict[str, Optional[float]]:
    """The size estimate the run logged last (at its final step): ``{"total", "grids"}`` in bytes."""
    out: Dict[str, Optional[float]] = {}
    for key, tag in (("total", ESTIMATED_SIZE_TAG), ("grids", ESTIMATED_GRID_SIZE_TAG)):
        values = tensorboard_scalars(run_dir, tag)
        out[key] = 1e6 * values[-1][1] if values else None
    return out


def _in_process(run: Callable[[], None], name: str) -> None:
    try:
        run()
    except SystemExit as exit_:  # the ns-compress commands exit 2 after printing one line
        if exit_.code not in (None, 0):
            raise CommandFailed(f"{name} failed (its message is above)") from None


def export_file(config_path: Path, file: Path, posthoc: Optional[str] = None) -> float:
    """``ns-compress export`` in this process; returns its seconds."""
    from nerfcompress.cli.export import Export

    file.parent.mkdir(parents=True, exist_ok=True)
    options = {} if posthoc is None else {"posthoc": posthoc}
    start = time.perf_counter()
    _in_process(lambda: Export(load_config=config_path, output=file, **options).main(), "ns-compress export")
    return time.perf_counter() - start


def evaluate_file(file: Path, data: Path, output: Path, split: str = "test") -> Dict[str, float]:
    """``ns-compress eval`` of a file in this process on one split; returns its metrics."""
    from nerfcompress.cli.evaluate import Evaluate

    output.parent.mkdir(parents=True, exist_ok=True)
    _in_process(lambda: Evaluate(file=file, data=data, output_path=output, split=split).main(), "ns-compress eval")
    return json.loads(output.read_text())["metrics"]
