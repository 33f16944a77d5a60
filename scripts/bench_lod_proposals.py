"""Which makes low levels of detail render better per byte: proposal grids whole, or trained truncated?

Two ways to make every prefix of a file a model that was trained (issue 11, part 2):

* **proposals first** (``--whole``): a run trained with coarse-to-fine on the main grid only;
  the proposal grids' sections would all come before the main grid's levels, so level ``k``
  renders the main grid's coarsest ``k`` levels with whole proposal grids and its prefix holds
  every proposal section;
* **proposals truncated** (``--truncated``): a run trained with
  ``--pipeline.model.coarse-to-fine-proposals True``; level ``k`` cuts every grid at ``k`` levels,
  as the file is laid out now (the prefix ``ns-compress info`` lists).

For each file and each level count this renders the split of ``--data`` and prints PSNR against
the prefix bytes (for "proposals first" the bytes of a file with the proposal sections moved
before the main grid's levels, counted from the real sections), and writes ``--output`` (JSON).

    .venv/bin/python scripts/bench_lod_proposals.py --whole A.ncmp --truncated B.ncmp --data DATA --split val
"""

from __future__ import annotations

import json
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional

import tyro
from rich.console import Console

from nerfcompress.bitstream.container import read_container_index, section_frame_bytes, split_level_section
from nerfcompress.bitstream.levels import level_prefix_bytes

CONSOLE = Console()


def proposals_first_prefix_bytes(data: bytes) -> List[int]:
    """Prefix bytes of each main-grid level count if every proposal level section came right after
    the sections before the levels (the sections after the levels, the cameras, are not needed)."""
    _, index = read_container_index(data)
    header_bytes = len(data) - sum(section_frame_bytes(e.name) + e.length for e in index)
    first_level = next(i for i, e in enumerate(index) if split_level_section(e.name))
    fixed = header_bytes + sum(section_frame_bytes(e.name) + e.length for e in index[:first_level])
    levels = [(split_level_section(e.name), section_frame_bytes(e.name) + e.length) for e in index]
    fixed += sum(size for where, size in levels if where is not None and where[0] != "main")
    main = sorted((where[1], size) for where, size in levels if where is not None and where[0] == "main")
    out, total = [], fixed
    for _, size in main:
        total += size
        out.append(total)
    return out


def evaluate_levels(
    data: bytes, dataset: Path, split: str, levels: int, proposals_whole: bool, work_dir: Path
) -> Dict[str, float]:
    """Metrics of the whole file's model rendering ``levels`` levels of the main grid, and of every
    proposal grid (or all of theirs with ``proposals_whole``)."""
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfcompress.plugin.evaluate import dataset_dataparser
    from nerfcompress.plugin.import_model import import_file

    header = read_container_index(data)[0]
    dataparser = dataset_dataparser(header, dataset)
    config_path = import_file(data, work_dir)

    def use_dataset(config):
        config.pipeline.datamanager.dataparser = dataparser
        config.pipeline.datamanager.data = None
        config.pipeline.model.active_levels = levels
        if hasattr(config.pipeline.datamanager, "num_processes"):
            config.pipeline.datamanager.num_processes = 0
        return config

    _, pipeline, _, _ = eval_setup(config_path, test_mode=split, update_config_callback=use_dataset)
    model = pipeline.model
    if proposals_whole:
        main_levels = None if levels >= model.grid_encodings()[0].layout.num_levels else levels
        proposals = [None] * (len(model.grid_encodings()) - 1)
        model.evaluation_levels = types.MethodType(lambda self: [main_levels, *proposals], model)
    metrics = pipeline.get_average_eval_image_metrics()
    return {"psnr": float(metrics["psnr"]), "ssim": float(metrics["ssim"])}


@dataclass
class BenchLodProposals:
    """PSNR per prefix byte of the two ways to make low levels of detail trained models."""

    data: Path
    """The dataset both were trained on."""
    whole: Optional[Path] = None
    """File of a run trained with coarse-to-fine on the main grid only (proposal grids whole)."""
    truncated: Optional[Path] = None
    """File of a run trained with --pipeline.model.coarse-to-fine-proposals True."""
    split: Literal["test", "val"] = "val"
    """Views to render."""
    levels: Optional[List[int]] = None
    """Level counts to evaluate (default: all of the main grid's)."""
    output: Path = Path("outputs/bench_lod_proposals.json")
    """Where to write the results."""

    def main(self) -> None:
        results = json.loads(self.output.read_text()) if self.output.exists() else {}
        files = {"proposals first": (self.whole, True), "proposals truncated": (self.truncated, False)}
        for label, (file, proposals_whole) in files.items():
            if file is None:
                continue
            data = file.read_bytes()
            header, index = read_container_index(data)
            first = proposals_first_prefix_bytes(data)
            prefix = first if proposals_whole else level_prefix_bytes(header["grids"], index)
            for levels in self.levels or range(1, len(first) + 1):
                key = f"{label}/{levels}"
                if key in results:  # rendered before; the bytes follow the file as it is laid out now
                    results[key].update(prefix_bytes=prefix[levels - 1], file_bytes=len(data))
                    continue
                with tempfile.TemporaryDirectory() as work_dir:
                    metrics = evaluate_levels(data, self.data, self.split, levels, proposals_whole, Path(work_dir))
                results[key] = {"variant": label, "file": str(file), "levels": levels, "split": self.split,
                                "prefix_bytes": prefix[levels - 1], "file_bytes": len(data), **metrics}  # fmt: skip
                self.output.parent.mkdir(parents=True, exist_ok=True)
                self.output.write_text(json.dumps(results, indent=2))
        self.output.write_text(json.dumps(results, indent=2))
        for row in sorted(results.values(), key=lambda r: (r["variant"], r["levels"])):
            CONSOLE.print(f"{row['variant']}, {row['levels']} levels: {row['prefix_bytes']:,} of {row['file_bytes']:,} "
                          f"bytes ({100 * row['prefix_bytes'] / row['file_bytes']:.1f}%), PSNR {row['psnr']:.2f} dB "
                          f"({row['split']})")  # fmt: skip


if __name__ == "__main__":
    tyro.cli(BenchLodProposals).main()
