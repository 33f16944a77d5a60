"""What each step of the image codec's training recipe buys: one change at a time, on one photo crop.

Starts from the reference's choices (hashed fine levels, one prior for all levels, constant
learning rate, annealed soft rounding to the end) and adds, one at a time and then together,
dense levels, one prior per level, a cosine learning rate and a final hard-rounding phase. Each
variant is encoded at two rate weights; the table gives bpp and PSNR of the real files and the
BD-rate of each variant against the reference's recipe (negative = fewer bits at equal PSNR).

    .venv/bin/python scripts/image_ablation.py --photo astronaut --crop 192 256 --steps 300
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Tuple

import tyro
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_rd import bd_rate_percent, load_photo  # noqa: E402

from nerfcompress.image.config import ImageModelConfig  # noqa: E402
from nerfcompress.image.pipeline import encode_picture, evaluate  # noqa: E402
from nerfcompress.image.pixels import PixelSource  # noqa: E402
from nerfcompress.image.train import TrainSettings  # noqa: E402

REFERENCE = (
    {"per_level_prior": False, "log2_hashmap_size": 12},
    {"final_lr_ratio": 1.0, "hard_fraction": 0.0},
)
STEPS = {
    "reference recipe": ({}, {}),
    "all (the default)": (
        {"log2_hashmap_size": 22, "per_level_prior": True},
        {"final_lr_ratio": 0.02, "hard_fraction": 0.1},
    ),
    "+ dense levels": ({"log2_hashmap_size": 22}, {}),
    "+ prior per level": ({"per_level_prior": True}, {}),
    "+ cosine LR": ({}, {"final_lr_ratio": 0.02}),
    "+ hard rounding (last 10 %)": ({}, {"hard_fraction": 0.1}),
}


@dataclass
class Ablation:
    """Encode a crop with each variant of the recipe at two rate weights."""

    photo: str = "astronaut"
    crop: Tuple[int, int] = (192, 256)
    """Rows and columns of the top-left-centred crop."""
    steps: int = 300
    lambdas: Tuple[float, float] = (0.003, 0.012)
    output: Path = Path("outputs/image_ablation.json")

    def main(self) -> None:
        photo = load_photo(self.photo)
        top = (photo.shape[0] - self.crop[0]) // 2
        left = (photo.shape[1] - self.crop[1]) // 2
        source = PixelSource(photo[top : top + self.crop[0], left : left + self.crop[1]].copy())
        done: Dict[str, List[dict]] = json.loads(self.output.read_text()) if self.output.exists() else {}
        for name, (model_changes, train_changes) in STEPS.items():
            if name in done:
                continue
            config = replace(ImageModelConfig(num_levels=7, hidden=(16, 16)), **{**REFERENCE[0], **model_changes})
            points = []
            for lmbda in self.lambdas:
                settings = replace(TrainSettings(steps=self.steps, lmbda=lmbda), **{**REFERENCE[1], **train_changes})
                data, info = encode_picture(source, config, settings)
                metrics = evaluate(data, source)
                points.append({"lambda": lmbda, "bpp": metrics["bpp"], "psnr": metrics["psnr"], **info})
                Console().print(f"{name} lambda {lmbda:g}: {metrics['bpp']:.3f} bpp {metrics['psnr']:.2f} dB")
            done[name] = points
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self.output.write_text(json.dumps(done, indent=1))
        table = Table(
            title=f"{self.photo} crop {self.crop[1]}x{self.crop[0]}, {self.steps} steps, lambdas {self.lambdas}"
        )
        for column in ("variant", "bpp", "PSNR dB", "BD-rate vs reference"):
            table.add_column(column)
        for name, points in done.items():
            table.add_row(
                name,
                " / ".join(f"{p['bpp']:.3f}" for p in points),
                " / ".join(f"{p['psnr']:.2f}" for p in points),
                f"{bd_rate_percent(done['reference recipe'], points):+.1f} %",
            )
        Console().print(table)


if __name__ == "__main__":
    tyro.cli(Ablation).main()
