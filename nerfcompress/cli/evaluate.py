"""``ns-compress eval``: decode a compressed file and measure it on a dataset's test split."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro
from rich.console import Console

from nerfcompress.cli.errors import CommandError, one_line_errors, readable_file, writable_file


@dataclass
class Evaluate:
    """Decode a compressed file, render the test (or val) split of DATASET, report PSNR/SSIM/LPIPS and the file size."""

    file: tyro.conf.Positional[Path]
    """The compressed file (.ncmp)."""
    data: Path
    """The dataset the model was trained on."""
    output_path: Optional[Path] = None
    """Write the metrics here as JSON."""
    max_levels: Optional[int] = None
    """Render only the coarsest N levels of every grid (a lower level of detail)."""
    prefix_bytes: Optional[int] = None
    """Decode only the first B bytes of FILE (a partial download); `ns-compress info` lists the bytes per level."""
    split: Literal["test", "val"] = "test"
    """The views to render: test to report results, val to choose settings on."""

    def main(self) -> None:
        """Evaluate and print (and optionally write) the metrics."""
        with one_line_errors():
            content = readable_file(self.file)
            if self.prefix_bytes is not None:
                if not 1 <= self.prefix_bytes <= len(content):
                    raise CommandError(
                        f"--prefix-bytes must be in 1..{len(content):,} (the size of {self.file}), "
                        f"found {self.prefix_bytes:,}"
                    )
                content = content[: self.prefix_bytes]
            if not self.data.exists():
                raise CommandError(f"dataset {self.data} does not exist")
            if self.output_path is not None:
                writable_file(self.output_path)
            from nerfcompress.cli.levels import check_levels

            check_levels(content, self.max_levels, self.prefix_bytes is not None, "--prefix-bytes")
            from nerfcompress.plugin.evaluate import DatasetMismatchError, evaluate_file

            try:
                with tempfile.TemporaryDirectory(prefix="ncmp-eval-") as work_dir:
                    metrics = evaluate_file(
                        content,
                        self.data,
                        Path(work_dir),
                        max_levels=self.max_levels,
                        prefix=self.prefix_bytes is not None,
                        split=self.split,
                    )
            except DatasetMismatchError as exc:
                raise CommandError(str(exc)) from exc
            result = {"file": str(self.file), "data": str(self.data), "split": self.split, "metrics": metrics}
            if self.output_path is not None:
                self.output_path.write_text(json.dumps(result, indent=2), encoding="utf8")
        Console().print_json(json.dumps(result))


def entrypoint() -> None:
    """Command-line entry point."""
    tyro.cli(Evaluate).main()
