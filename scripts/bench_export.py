"""Export and import time of a full-size model, without training.

Builds a method's model with its registered default config (``shacira-nerfacto``: main grid
16 levels, max_res 2048, log2_hashmap_size 19; nerfacto's proposal grids), fills the tables
with a realistic integer distribution instead of training (SHACIRA: latents rounded from a
Laplace of scale ``--laplace-scale``; VQAD: indices rounded from a Laplace around ``K/2``),
and times, in one process after nerfstudio is imported and the model built:

* ``export``: model -> file bytes (``model_file`` + ``write_container``, what ``ns-compress
  export`` does after loading the run), with ``--num-train-data`` stand-in cameras;
* ``size account``: ``model.estimated_size_bytes()``, what training logs every
  ``size_log_interval`` steps (the same layout, counted without writing the file);
* ``import``: file bytes -> model state (container + CRCs, networks, every grid decoded into
  a freshly built model's tables), what ``decode_pipeline`` does after building the model
  (built as an import builds it: VQAD keeps uint8 indices, not logits);
* the range coder alone: symbols per second encoding and decoding the main grid's latents.

The SHACIRA prior is left untrained (its pmf is whatever initialisation gives), so the file is
larger than a trained model's would be; the coder's speed hardly depends on it.

Building the model (nerfstudio ``setup``) is timed separately and not included in either.
``state_dict_bytes`` gives what ``torch.save`` writes of the trained-form and of the imported
model's state (the checkpoint ``ns-compress import`` writes; a training checkpoint also holds
optimizer state).

    .venv/bin/python scripts/bench_export.py --method shacira-nerfacto --repeats 3
"""

from __future__ import annotations

import copy
import io
import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import tyro
from nerfstudio.configs.method_configs import all_methods
from nerfstudio.data.scene_box import SceneBox

from nerfcompress.bitstream.container import read_container, write_container
from nerfcompress.bitstream.model_codec import decode_tables
from nerfcompress.entropy.coder import build_tables, decode_latents, encode_latents
from nerfcompress.plugin.file_layout import FileContext, model_file
from nerfcompress.plugin.import_model import load_networks, set_decoded_storage
from nerfcompress.plugin.model import GridNerfactoModel
from nerfcompress.tables import ShaciraTable, VqadTable


def build_model(method: str, num_train_data: int, seed: int = 0, decoded: bool = False) -> GridNerfactoModel:
    """The method's default model; ``decoded``: built as an import builds it (no training state)."""
    torch.manual_seed(seed)  # the untrained prior, MLPs and codebooks
    config = copy.deepcopy(all_methods[method].pipeline.model)
    if decoded:
        set_decoded_storage(config)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = config.setup(scene_box=box, num_train_data=num_train_data, metadata={})
    return model.eval()


@torch.no_grad()
def fill_tables(model: GridNerfactoModel, laplace_scale: float, seed: int) -> None:
    """Stand-in for training: integer latents / indices from a rounded Laplace."""
    rng = np.random.default_rng(seed)
    for table in model.tables():
        if isinstance(table, ShaciraTable):
            latents = np.round(rng.laplace(0.0, laplace_scale, tuple(table.latents.shape)))
            table.latents.copy_(torch.from_numpy(latents.astype(np.float32)))
        elif isinstance(table, VqadTable):
            size = table.codebook_size
            indices = np.clip(np.round(rng.laplace(size / 2, laplace_scale, table.num_rows)), 0, size - 1)
            table.assign_codes(torch.from_numpy(indices.astype(np.int64)), table.codebooks.detach().clone())
        table.clear_cache()


def stand_in_context(method: str, num_cameras: int, seed: int) -> FileContext:
    """Cameras on a sphere looking inwards, a blender-style dataparser entry: what a pipeline
    would hand the model."""
    generator = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(num_cameras, 3, 3, generator=generator))
    position = torch.nn.functional.normalize(torch.randn(num_cameras, 3, generator=generator), dim=-1) * 4.0
    return FileContext(
        method=method,
        dataparser={"name": "blender-data", "fields": {"data": "data/lego", "scale_factor": 1.0}},
        scene={
            "scene_box": [[-1.5] * 3, [1.5] * 3],
            "dataparser_transform": [[1.0, 0, 0, 0]] * 3,
            "dataparser_scale": 1,
        },
        cameras={
            "c2w": torch.cat([rotation, position[..., None]], dim=-1),
            "intrinsics": torch.tensor([[138.9, 138.9, 50.0, 50.0]]).expand(num_cameras, 4),
            "size": torch.tensor([[100, 100]], dtype=torch.int32).expand(num_cameras, 2),
        },
    )


def export_bytes(model: GridNerfactoModel) -> Tuple[bytes, Dict[str, Any]]:
    """model -> file, as ``ns-compress export`` after loading the run."""
    header, sections = model_file(model, model.file_context, 0)
    data = write_container(header, sections)
    return data, {name: len(payload) for name, payload in sections}


def import_bytes(data: bytes, model: GridNerfactoModel) -> None:
    """file -> model state, as ``decode_pipeline`` after the model is built."""
    header, sections = read_container(data)
    load_networks(sections, model)
    decode_tables(header.get("grids"), sections, model.tables())


def _saved_bytes(model: GridNerfactoModel) -> int:
    """Bytes of ``torch.save(model.state_dict())``: a checkpoint's pipeline part, optimizers aside."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


@dataclass
class BenchExport:
    """Times export and import of a full-size untrained model."""

    method: str = "shacira-nerfacto"
    """Registered method whose default model config is built."""
    laplace_scale: float = 2.0
    """Scale of the Laplace the integer latents (or indices) are rounded from."""
    repeats: int = 3
    """Timed repetitions (the minimum and all values are reported)."""
    num_train_data: int = 100
    """Training images the model is built for (size of the appearance embedding)."""
    threads: int = 0
    """torch threads (0: leave torch's default)."""
    seed: int = 0

    def main(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        begin = time.perf_counter()
        model = build_model(self.method, self.num_train_data, self.seed)
        build_seconds = time.perf_counter() - begin
        model.file_context = stand_in_context(self.method, self.num_train_data, self.seed)
        fill_tables(model, self.laplace_scale, self.seed)
        target = build_model(self.method, self.num_train_data, self.seed + 1, decoded=True)
        export_s: List[float] = []
        import_s: List[float] = []
        account_s: List[float] = []
        for _ in range(self.repeats):
            begin = time.perf_counter()
            account = model.estimated_size_bytes()
            account_s.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            data, sizes = export_bytes(model)
            export_s.append(time.perf_counter() - begin)
            if account["total"] != len(data):
                raise RuntimeError(f"size account {account['total']} differs from the file's {len(data)} bytes")
            begin = time.perf_counter()
            import_bytes(data, target)
            import_s.append(time.perf_counter() - begin)
        for ours, theirs in zip(model.tables(), target.tables()):
            if isinstance(ours, ShaciraTable) and not torch.equal(ours.integer_latents(), theirs.integer_latents()):
                raise RuntimeError("decoded latents differ from the exported ones")
            if isinstance(ours, VqadTable) and not torch.equal(ours.integer_indices(), theirs.integer_indices()):
                raise RuntimeError("decoded indices differ from the exported ones")
        result: Dict[str, Any] = {
            "method": self.method,
            "torch_threads": torch.get_num_threads(),
            "grid_rows": [t.num_rows for t in model.tables()],
            "file_bytes": len(data),
            "bytes_by_part": {"networks": sizes["networks"], "grids": len(data) - sizes["networks"]},
            "model_build_seconds (not timed below)": build_seconds,
            "size_account_seconds (training log)": {"min": min(account_s), "all": account_s},
            "export_seconds": {"min": min(export_s), "all": export_s},
            "import_seconds": {"min": min(import_s), "all": import_s},
            "export_plus_import_seconds_min": min(export_s) + min(import_s),
            "state_dict_bytes": {"trained_model": _saved_bytes(model), "imported_model": _saved_bytes(target)},
        }
        main = model.tables()[0]
        if isinstance(main, ShaciraTable):
            latents = main.integer_latents().numpy()  # int32 [rows, D]
            tables = build_tables(latents, main.prior.pmf)
            begin = time.perf_counter()
            stream = encode_latents(latents, tables)
            encode_seconds = time.perf_counter() - begin
            begin = time.perf_counter()
            decoded = decode_latents(stream, len(latents), tables)
            decode_seconds = time.perf_counter() - begin
            if not np.array_equal(decoded, latents):
                raise RuntimeError("range coder round trip failed")
            result["coder_main_grid"] = {
                "symbols": int(latents.size),
                "bits_per_symbol": 8 * len(stream) / latents.size,
                "encode_symbols_per_second": latents.size / encode_seconds,
                "decode_symbols_per_second": latents.size / decode_seconds,
            }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    tyro.cli(BenchExport).main()
