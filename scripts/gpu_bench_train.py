"""One short training of scripts/gpu_bench.py, run in its own process: train, export, decode, evaluate.

    python scripts/gpu_bench_train.py SPEC.json RESULT.json

SPEC holds ``method``, ``flags``, ``data``, ``work_dir``, ``device``, ``steps`` and
``deadline_unix_s``: training stops there even short of ``steps`` (``steps_done`` says how far
it got), so the export and evaluation still fit in the benchmark's budget. With
``steps == 0`` (Instant-NGP on CPU: nerfacc is CUDA-only) the untrained model is exported and
imported instead. RESULT gets the training time, the file's exact bytes by part, and the decoded
file's metrics on the test split (``ns-compress eval``'s path: the file is imported and rendered).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from gpu_bench_steps import build_trainer, model_flags_for, train_step


def train_export_evaluate(spec: dict) -> dict:
    from nerfcompress.bitstream.container import write_container
    from nerfcompress.plugin.evaluate import evaluate_file
    from nerfcompress.plugin.export import export_pipeline, export_run
    from nerfcompress.plugin.file_layout import section_sizes
    from nerfcompress.plugin.import_model import decode_pipeline

    work_dir = Path(spec["work_dir"])
    steps = spec["steps"]
    flags, dropped = model_flags_for(spec["method"], spec["flags"])
    flags.update({"--max-num-iterations": max(steps, 1), "--steps-per-save": max(steps, 1)})
    flags.update({"--steps-per-eval-batch": 0, "--steps-per-eval-image": 0, "--steps-per-eval-all-images": 10**9})
    result = {"method": spec["method"], "scene": spec["scene"], "steps": steps, "dropped_flags": dropped}
    start = time.perf_counter()
    trainer = build_trainer(spec["method"], flags, Path(spec["data"]), work_dir / "runs", spec["device"])
    result["setup_s"] = time.perf_counter() - start
    model = trainer.pipeline.model
    result["grid_backend"] = model.grid_backend.name
    config_path = trainer.config.get_base_dir() / "config.yml"
    trainer.config.save_config()  # what ns-train writes first; export loads the run from it
    if steps > 0:
        start = time.perf_counter()
        done = 0
        while done < steps and time.time() < spec["deadline_unix_s"]:
            train_step(trainer, done)
            done += 1
        trainer.save_checkpoint(done - 1)
        result["train_s"] = time.perf_counter() - start
        result["steps_done"] = done
        data, parts = export_run(config_path)
    else:  # untrained: export the live pipeline (there is no checkpoint)
        header, sections = export_pipeline(trainer.config, trainer.pipeline, step=0)
        data = write_container(header, sections)
        parts = section_sizes(header, sections)
    file_path = work_dir / f"{spec['method']}.ncmp"
    file_path.write_bytes(data)
    result["file_bytes"] = len(data)
    result["bytes_by_part"] = dict(parts)
    result["estimated_bytes"] = model.estimated_size_bytes()["total"]
    if steps > 0:
        start = time.perf_counter()
        metrics = evaluate_file(data, Path(spec["data"]), work_dir / "decoded")
        result["eval_s"] = time.perf_counter() - start
        result["decoded_metrics"] = {k: v for k, v in metrics.items() if k in ("psnr", "ssim", "lpips")}
    else:
        _, decoded, _ = decode_pipeline(data, work_dir / "decoded")
        model.eval()
        with torch.no_grad():
            errors = [(a().cpu() - b()).abs().max() for a, b in zip(model.tables(), decoded.model.tables())]
        result["decoded_grid_max_abs_error"] = float(max(errors))  # fp16 networks/codebooks/rows
        result["decoded_metrics"] = "not rendered: nerfacc's sampler is CUDA-only"
    datamanager = trainer.pipeline.datamanager
    if hasattr(datamanager, "__del__"):
        datamanager.__del__()  # stop the parallel datamanager's workers
    return result


def main() -> None:
    spec_path, result_path = (Path(arg) for arg in sys.argv[1:3])
    spec = json.loads(spec_path.read_text())
    try:
        result = train_export_evaluate(spec)
    except Exception as exc:  # reported in the bench's JSON, not lost in a log
        result = {"method": spec["method"], "scene": spec["scene"], "error": f"{type(exc).__name__}: {exc}"}
        import traceback

        result["traceback_tail"] = traceback.format_exc().splitlines()[-12:]
    result_path.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
