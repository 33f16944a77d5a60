"""``ns-compress scene``: write the procedural Blender-format test scene."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from rich.console import Console

from nerfcompress.cli.errors import CommandError, one_line_errors
from nerfcompress.scenes.synthetic import write_synthetic_scene


@dataclass
class MakeScene:
    """Render the deterministic procedural scene as a Blender-format dataset (RGBA PNGs + transforms)."""

    output_dir: Path
    """Dataset directory; created if missing; must be empty or hold a previous scene."""
    resolution: int = 100
    """Image height and width in pixels, in [8, 4096]."""
    num_train_views: int = 100
    """Number of training views."""
    num_val_views: int = 10
    """Number of validation views."""
    num_test_views: int = 10
    """Number of held-out test views (directions differ from the training views)."""
    supersample: int = 2
    """Rays per pixel along each axis, for antialiasing."""
    seed: int = 0
    """Seed of the camera poses; the scene itself is fixed."""

    def main(self) -> None:
        """Write the dataset and print a one-line summary."""
        start_s = time.perf_counter()
        with one_line_errors():
            try:
                write_synthetic_scene(
                    self.output_dir,
                    resolution=self.resolution,
                    num_train_views=self.num_train_views,
                    num_val_views=self.num_val_views,
                    num_test_views=self.num_test_views,
                    supersample=self.supersample,
                    seed=self.seed,
                )
            except ValueError as exc:  # bad arguments or an output directory we must not touch
                raise CommandError(str(exc)) from exc
        elapsed_s = time.perf_counter() - start_s
        Console().print(
            f"[bold green]Wrote synthetic scene[/bold green] to {self.output_dir}: "
            f"{self.num_train_views}/{self.num_val_views}/{self.num_test_views} train/val/test views, "
            f"{self.resolution}x{self.resolution} px, supersample {self.supersample}, "
            f"seed {self.seed} ({elapsed_s:.1f} s)"
        )


def entrypoint() -> None:
    """Command-line entry point."""
    tyro.cli(MakeScene).main()


if __name__ == "__main__":
    entrypoint()
