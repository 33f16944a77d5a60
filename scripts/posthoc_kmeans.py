"""Post-hoc k-means VQ of a trained plain-nerfacto run (the kmVQ baseline of the VQAD paper).

Every grid's float rows are quantised level by level with k-means to ``2**bits`` codes and
written as a ``vqad-nerfacto`` run whose VqadTables decode to exactly the k-means
reconstruction (one-hot logits at the chosen codes), so nerfstudio's tools load it:

    .venv/bin/python scripts/posthoc_kmeans.py --load-config outputs/.../plain-nerfacto/.../config.yml \\
        --output-dir outputs/kmvq-b4 --bits 4
    ns-eval --load-config outputs/kmvq-b4/config.yml --output-path outputs/kmvq-b4/eval.json

The checkpoint holds only the pipeline weights (no optimizer state): it is for evaluation and
viewing, not for resuming training.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import torch
import tyro
import yaml
from nerfstudio.utils.eval_utils import eval_setup
from rich.console import Console

from nerfcompress.plugin.encoding import GridEncoding
from nerfcompress.plugin.model import PlainNerfactoModelConfig, VqadNerfactoModelConfig
from nerfcompress.tables import PlainTable, VqadTable
from nerfcompress.tables.kmeans import kmeans_quantize

CONSOLE = Console()


def quantize_encoding(encoding: GridEncoding, bits: int, iterations: int, seed: int) -> VqadTable:
    """A VqadTable that decodes to the level-by-level k-means reconstruction of a PlainTable grid."""
    if not isinstance(encoding.table, PlainTable):
        raise ValueError(f"expected a PlainTable grid (a plain-nerfacto run), found {type(encoding.table).__name__}")
    level_rows = encoding.layout.level_rows
    quantized = VqadTable(level_rows, encoding.layout.features_per_level, bits=bits)
    codebooks, indices = [], []
    for level, rows in enumerate(encoding.table.rows.detach().cpu().float().split(level_rows)):
        codebook, level_indices = kmeans_quantize(rows, quantized.codebook_size, iterations, seed + level)
        codebooks.append(codebook)
        indices.append(level_indices)
    quantized.assign_codes(torch.cat(indices), torch.stack(codebooks))
    return quantized


@dataclass
class PosthocKmeans:
    """Quantises a trained plain-nerfacto run with post-hoc k-means into a vqad-nerfacto run."""

    load_config: Path
    """config.yml of the trained plain-nerfacto run."""
    output_dir: Path
    """Directory for the new run (config.yml + nerfstudio_models/)."""
    bits: int = 4
    """Index width; each level gets 2**bits k-means codes."""
    iterations: int = 20
    """Lloyd iterations per level."""
    seed: int = 0
    """Seed of the k-means++ draws (level l uses seed + l)."""

    def main(self) -> None:
        config, pipeline, checkpoint_path, step = eval_setup(self.load_config, test_mode="inference")
        if not isinstance(config.pipeline.model, PlainNerfactoModelConfig):
            raise ValueError(f"--load-config must be a plain-nerfacto run, found {config.method_name}")
        state = torch.load(checkpoint_path, map_location="cpu")["pipeline"]

        tables: Dict[int, VqadTable] = {}  # by id of the encoding (proposal grids have two names)
        for name, module in pipeline.named_modules(remove_duplicate=False):
            if not isinstance(module, GridEncoding):
                continue
            if id(module) not in tables:
                table = quantize_encoding(module, self.bits, self.iterations, self.seed).eval()
                with torch.no_grad():
                    error = (table() - module.table.rows.cpu()).square().mean()
                CONSOLE.print(f"{name}: {module.layout.num_rows} rows, k-means MSE {float(error):.3e}")
                tables[id(module)] = table
            del state[f"{name}.table.rows"]
            state.update({f"{name}.table.{key}": value for key, value in tables[id(module)].state_dict().items()})

        vqad_config = copy.deepcopy(config)
        model_fields = {
            f.name: getattr(config.pipeline.model, f.name) for f in dataclasses.fields(config.pipeline.model) if f.init
        }
        vqad_config.pipeline.model = VqadNerfactoModelConfig(**model_fields, bits=self.bits)
        vqad_config.method_name = vqad_config.pipeline.method_name = "vqad-nerfacto"
        vqad_config.output_dir = self.output_dir
        # An absolute model dir: ns-eval finds the checkpoint next to OUTPUT_DIR/config.yml.
        vqad_config.relative_model_dir = self.output_dir.resolve() / "nerfstudio_models"
        vqad_config.load_dir = None
        vqad_config.relative_model_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"step": step, "pipeline": state}, vqad_config.relative_model_dir / f"step-{step:09d}.ckpt")
        config_path = self.output_dir / "config.yml"
        config_path.write_text(yaml.dump(vqad_config), "utf8")
        grid_bits = sum(table.fixed_width_bits() for table in tables.values())
        CONSOLE.print(f"grids: {grid_bits / 8e6:.3f} MB (estimate: fixed-width indices + fp16 codebooks)")
        CONSOLE.print(f"wrote {config_path}; evaluate with: ns-eval --load-config {config_path}")


if __name__ == "__main__":
    tyro.cli(PosthocKmeans).main()
