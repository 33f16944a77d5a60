"""Gigapixel benchmark: encode and decode a large procedural picture, timing each and measuring peak RSS.

Writes the picture as a uint8 ``.npy`` strip by strip (the encoder memory-maps it), then runs
``ns-compress image encode`` and ``ns-compress image decode`` (to ``.npy``) each in a fresh
interpreter that reports its wall and CPU seconds and its peak RSS (``resource.getrusage``)
above its RSS after imports, and finally the PSNR of the decoded picture, strip by strip.

    .venv/bin/python scripts/bench_image_gigapixel.py --height 8192 --width 12288 --work-dir /tmp/giga
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import tyro

REPO = Path(__file__).resolve().parent.parent

_DRIVER = """
import json, resource, sys, time, tyro
from nerfcompress.cli.image import ImageDecode, ImageEncode
import torch, nerfcompress.image.pipeline, png  # everything the command imports, before the baseline
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
tyro.cli(ImageEncode if sys.argv[1] == "encode" else ImageDecode, args=sys.argv[2:]).main()
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "baseline_rss": baseline,
    "peak_rss": after.ru_maxrss * 1024,
    "wall_seconds": time.perf_counter() - start,
    "cpu_seconds": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
}))
"""

GIGAPIXEL_MODEL = ("--num-levels", "6", "--finest-stride", "16", "--log2-hashmap-size", "16", "--hidden", "16")
"""A model small enough for a few hundred CPU steps on a gigapixel (the test's)."""


def run_measured(*args: str, timeout: float = 3600) -> Dict[str, float]:
    """``ns-compress image ARGS`` in a fresh interpreter: peak and post-import RSS (bytes),
    wall and CPU seconds of the command.

    Raises:
        RuntimeError: the command failed (its stderr's tail in the message).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def strip_psnr(decoded: Path, height: int, width: int, rows: int = 256) -> float:
    from nerfcompress.image.procedural import procedural_strip

    out = np.load(decoded, mmap_mode="r")
    squared = 0.0
    for start in range(0, height, rows):
        end = min(start + rows, height)
        diff = np.asarray(out[start:end], dtype=np.float64) - procedural_strip(start, end, width, height)
        squared += float(np.sum(diff * diff))
    return 10 * math.log10(255**2 / (squared / (height * width * 3)))


@dataclass
class GigapixelBench:
    """Encode and decode a procedural picture of HEIGHT x WIDTH; report s/MP and peak RSS."""

    work_dir: Path = Path("outputs/gigapixel")
    height: int = 8192
    width: int = 12288
    steps: int = 300
    model: Tuple[str, ...] = GIGAPIXEL_MODEL
    batch_pixels: int = 1 << 16

    def main(self) -> None:
        from nerfcompress.image.procedural import write_procedural

        self.work_dir.mkdir(parents=True, exist_ok=True)
        photo, encoded, decoded = (self.work_dir / n for n in ("picture.npy", "picture.ncmp", "decoded.npy"))
        start = time.perf_counter()
        write_procedural(photo, self.height, self.width)
        megapixels = self.height * self.width / 1e6
        result = {"megapixels": megapixels, "write_picture_seconds": time.perf_counter() - start}
        flags = ("--steps", str(self.steps), "--batch-pixels", str(self.batch_pixels), *self.model)
        result["encode"] = run_measured("encode", str(photo), "-o", str(encoded), *flags)
        result["decode"] = run_measured("decode", str(encoded), "-o", str(decoded))
        result["file_bytes"] = encoded.stat().st_size
        result["bpp"] = 8 * encoded.stat().st_size / (self.height * self.width)
        result["psnr"] = strip_psnr(decoded, self.height, self.width)
        for part in ("encode", "decode"):
            stats = result[part]
            stats["wall_seconds_per_megapixel"] = stats["wall_seconds"] / megapixels
            stats["cpu_seconds_per_megapixel"] = stats["cpu_seconds"] / megapixels
            stats["rss_above_imports_mb"] = (stats["peak_rss"] - stats["baseline_rss"]) / 2**20
        result["picture_mb"] = self.height * self.width * 3 / 2**20
        result["settings"] = {"steps": self.steps, "model": list(self.model), "batch_pixels": self.batch_pixels}
        print(json.dumps(result, indent=2))
        for path in (photo, decoded):
            path.unlink()


if __name__ == "__main__":
    tyro.cli(GigapixelBench).main()
