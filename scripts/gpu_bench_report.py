"""scripts/gpu_bench.py's targets (issue 12) and its Markdown report, from the results dict."""

from __future__ import annotations

from typing import Dict, List, Optional


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    return None if numerator is None or not denominator else numerator / denominator


def targets(results: dict) -> List[dict]:
    """The issue's targets with the measured value and whether it is met (None: not measured)."""
    on_gpu = results.get("environment", {}).get("device") == "cuda"
    kernel = results.get("kernel", {})
    steps = results.get("step", {}).get("median_step_ms", {})
    rows = [
        (
            "Triton kernel forward+backward >= 5x faster than interp_torch",
            kernel.get("speedup_triton_over_torch"),
            5.0,
            ">=",
        ),
    ]
    for backend in ("torch", "triton"):
        shacira = _ratio(steps.get(f"shacira-nerfacto ({backend})"), steps.get(f"plain-nerfacto ({backend})"))
        rows.append((f"shacira-nerfacto step <= 1.2x plain-nerfacto's ({backend})", shacira, 1.2, "<="))
    plain_vs_nerfacto = _ratio(steps.get("plain-nerfacto (triton)"), steps.get("nerfacto"))
    rows.append(("plain-nerfacto (Triton) step no slower than nerfstudio's nerfacto", plain_vs_nerfacto, 1.0, "<="))
    out = []
    for name, value, bound, sense in rows:
        met = None
        if value is not None and on_gpu:
            met = value >= bound if sense == ">=" else value <= bound
        out.append({"target": name, "measured": value, "bound": f"{sense} {bound}", "met": met})
    return out


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(results: dict) -> str:
    """The report: environment, kernel, step times, host syncs, trainings, targets, what did not run."""
    env = results.get("environment", {})
    lines = [
        "# GPU benchmark (scripts/gpu_bench.py)",
        "",
        f"- machine: {env.get('gpu', 'no GPU')}; device {env.get('device')}; {env.get('date')}",
        f"- versions: {env.get('versions')}",
        f"- command: `{env.get('command')}`",
        f"- elapsed: {_fmt(results.get('elapsed_s'), 0)} s of a {_fmt(results.get('budget_s'), 0)} s budget",
    ]
    if env.get("device") != "cuda":
        lines.append("- **CPU run (--tiny): the flow is exercised; no time below says anything about a GPU.**")
    kernel = results.get("kernel", {})
    lines += ["", "## Grid interpolation, forward + backward", ""]
    if "times" in kernel:
        lines.append(f"{kernel['layout']} table, {kernel['points']:,} points, 3D; tcnn: {kernel['tcnn']}")
        lines.append("")
        errors: Dict[str, dict] = kernel.get("max_relative_error_vs_torch", {})
        rows = [
            [name, _fmt(t["table_grad_ms"], 3), _fmt(t["table_and_position_grad_ms"], 3), _fmt(errors.get(name))]
            for name, t in kernel["times"].items()
        ]
        lines += _table(["backend", "table grad (ms)", "table + position grad (ms)", "max rel. error vs torch"], rows)
    else:
        lines.append(f"not measured: {kernel.get('error', 'not run')}")
    step = results.get("step", {})
    lines += ["", "## Training step (median, CUDA-synchronised, after warm-up)", ""]
    if "median_step_ms" in step:
        median = step["median_step_ms"]
        rows = []
        for name, ms in median.items():
            backend = name.split("(")[-1].rstrip(")") if "(" in name else None
            plain = median.get(f"plain-nerfacto ({backend})") if backend else None
            rows.append(
                [
                    name,
                    step["grid_backend"][name],
                    _fmt(ms),
                    _fmt(_ratio(ms, plain)),
                    _fmt(_ratio(ms, median.get("nerfacto"))),
                ]
            )
        lines += _table(["run", "grid backend", "ms / step", "x plain (same backend)", "x nerfacto"], rows)
        lines += [f"- {name}: {note}" for name, note in step.get("notes", {}).items()]
        lines += [f"- {name}: **{error}**" for name, error in step.get("errors", {}).items()]
    else:
        lines.append(f"not measured: {step.get('error', 'not run')}")
    syncs = results.get("host_syncs", {})
    lines += ["", "## Host syncs in one training step", ""]
    if isinstance(syncs, dict) and syncs and "error" not in syncs:
        rows = [
            [
                name,
                str(len(entry["audit_ours"])),
                str(len(entry.get("cuda_syncs_ours", []))) if "cuda_syncs_ours" in entry else "n/a (CPU)",
                str(entry.get("cuda_sync_count", "n/a")),
                entry.get("our_pieces_under_error_mode", "n/a"),
            ]
            for name, entry in syncs.items()
        ]
        header = ["run", "ours (audit)", "ours (CUDA debug mode)", "all CUDA syncs", "our pieces, mode error"]
        lines += _table(header, rows)
    else:
        lines.append(f"not checked: {syncs.get('error', 'not run') if isinstance(syncs, dict) else syncs}")
    lines += ["", "## Short trainings: exported file and decoded-file quality (test split)", ""]
    runs = results.get("training", {}).get("runs", [])
    rows = []
    for run in runs:
        metrics = run.get("decoded_metrics")
        psnr = metrics.get("psnr") if isinstance(metrics, dict) else None
        ssim = metrics.get("ssim") if isinstance(metrics, dict) else None
        occupancy = run.get("bytes_by_part", {}).get("occupancy")
        status = run.get("error") or run.get("not_run") or "ok"
        rows.append(
            [
                run.get("scene", ""),
                run.get("method", ""),
                f"{_fmt(run.get('steps_done', 0))} of {_fmt(run.get('steps'))}",
                _fmt(run.get("train_s"), 1),
                _fmt(run.get("file_bytes")),
                _fmt(occupancy),
                _fmt(psnr),
                _fmt(ssim, 3),
                status[:120],
            ]
        )
    header = ["scene", "method", "steps done", "train s", "file bytes", "occupancy bytes", "PSNR", "SSIM", "status"]
    lines += _table(header, rows) if rows else ["no training ran"]
    lines += ["", "## Targets", ""]
    not_measured = (
        "not measured (no GPU: a CPU value is no measurement)" if env.get("device") != "cuda" else "not measured"
    )
    rows = [
        [t["target"], _fmt(t["measured"]), t["bound"], {True: "met", False: "NOT met", None: not_measured}[t["met"]]]
        for t in results.get("targets", [])
    ]
    lines += _table(["target", "measured", "bound", "status"], rows)
    notes = results.get("notes", [])
    if notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"
