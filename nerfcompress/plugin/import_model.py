"""``.ncmp`` file -> a run directory that ``ns-viewer``, ``ns-render`` and ``eval_setup`` load.

The model config is rebuilt from the method's registered ``TrainerConfig`` plus the plain
fields stored in the header (never from YAML or pickle in the file); VQAD tables then keep
uint8 indices instead of training logits (:func:`set_decoded_storage`). The pipeline is built in
inference mode on :class:`StoredCamerasDataParserConfig` (the stored cameras, no images), the
decoded networks and grids are loaded into it, and the directory gets::

    DIR/config.yml                              nerfstudio TrainerConfig
    DIR/cameras.json, DIR/placeholder.png       what the stored-cameras dataparser serves
    DIR/nerfstudio_models/step-XXXXXXXXX.ckpt   {"step", "pipeline": state dict}

Paths in ``config.yml`` are absolute (nerfstudio resolves them from the working directory).

Level of detail: a prefix of a file (``prefix=True``) decodes the levels it holds completely
(every grid's levels ``0 .. k-1``, see :mod:`nerfcompress.bitstream.levels`), and
``max_levels`` asks for fewer; the model config's ``active_levels`` then records ``k`` so that
the import renders those levels only, and the rows of finer levels are zero.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import yaml
from nerfstudio.configs.method_configs import all_methods
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.pipelines.base_pipeline import Pipeline

from nerfcompress.bitstream.container import read_container, read_container_prefix
from nerfcompress.bitstream.levels import levels_to_decode
from nerfcompress.bitstream.model_codec import decode_tables
from nerfcompress.bitstream.tensors import unpack_tensors
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.config_fields import apply_config_json
from nerfcompress.plugin.export import APPEARANCE_KEY, exportable_methods, is_exportable, network_parameters
from nerfcompress.plugin.model import GridModel, grid_layout
from nerfcompress.plugin.stored_cameras import StoredCamerasDataParserConfig, write_stored_cameras
from nerfcompress.plugin.table_settings import VqadTableSettings


def _field(header: Mapping[str, Any], key: str, kind: type) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BitstreamError(f"header field '{key}' is {value!r:.80}, expected a {kind.__name__}; the file is corrupt")
    return value


def set_decoded_storage(model_config: ModelConfig) -> None:
    """Makes ``model_config`` hold what a file stores rather than training state: VQAD tables
    keep their uint8 indices (``fixed_indices``), not ``2**bits`` fp32 logits per row. The grid
    backend is this machine's choice, not the file's: ``auto``."""
    if isinstance(model_config, VqadTableSettings):
        model_config.fixed_indices = True
    model_config.grid_backend = "auto"


def rebuild_config(header: Mapping[str, Any], output_dir: Path) -> TrainerConfig:
    """The run config of a file: registered method defaults + stored model fields.

    Args:
        header: the file header (untrusted).
        output_dir: the import directory (absolute); checkpoints and cameras live there.

    Returns:
        A config whose checkpoint directory is ``output_dir / "nerfstudio_models"``.

    Raises:
        BitstreamError: if the method is unknown or not exportable, or the stored fields do
            not fit its config.
    """
    method = _field(header, "method", str)
    if method not in all_methods or not is_exportable(all_methods[method]):
        raise BitstreamError(
            f"file was written by method '{method:.80}', which this installation cannot decode "
            f"(it decodes {', '.join(exportable_methods())}): install the plugin that registers it or upgrade"
        )
    config: TrainerConfig = copy.deepcopy(all_methods[method])
    apply_config_json(config.pipeline.model, header.get("model"), "model")
    set_decoded_storage(config.pipeline.model)
    try:
        config.pipeline.model.__post_init__()  # re-validate the settings the file changed
    except ValueError as exc:
        raise BitstreamError(f"stored model settings are invalid ({exc}); the file is corrupt") from exc
    config.pipeline.datamanager.dataparser = StoredCamerasDataParserConfig(data=output_dir)
    config.pipeline.datamanager.data = None
    config.output_dir = output_dir
    config.experiment_name = "viewer"
    config.timestamp = "imported"
    config.relative_model_dir = output_dir / "nerfstudio_models"  # absolute: get_checkpoint_dir() ignores the base
    config.load_dir = None
    return config


def _scene_and_cameras(header: Mapping[str, Any], sections: Mapping[str, bytes]) -> Dict[str, Any]:
    """``cameras.json`` contents from the ``cameras`` section and the header's scene entry."""
    arrays = unpack_tensors(header.get("cameras"), sections.get("cameras", b""))
    shapes = {name: a.shape for name, a in arrays.items()}
    num = shapes.get("c2w", (0,))[0]
    if num < 1 or shapes != {"c2w": (num, 3, 4), "intrinsics": (num, 4), "size": (num, 2)}:
        raise BitstreamError(f"cameras section holds {shapes}, expected c2w [N, 3, 4], intrinsics [N, 4], size [N, 2]")
    scene = _field(header, "scene", dict)
    try:
        box = np.asarray(scene["scene_box"], dtype=np.float64)
        transform = np.asarray(scene["dataparser_transform"], dtype=np.float64)
        scale = float(scene["dataparser_scale"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BitstreamError(f"header scene entry is malformed ({exc}); the file is corrupt") from exc
    if (
        box.shape != (2, 3)
        or transform.shape != (3, 4)
        or not np.isfinite([*box.ravel(), *transform.ravel(), scale]).all()
    ):
        raise BitstreamError("header scene entry has a wrong shape or non-finite values; the file is corrupt")
    if (arrays["size"] == 0).any():
        raise BitstreamError("a stored camera has zero width or height; the file is corrupt")
    return {
        "c2w": arrays["c2w"].tolist(),
        "intrinsics": arrays["intrinsics"].tolist(),
        "size": arrays["size"].tolist(),
        "scene_box": box.tolist(),
        "dataparser_transform": transform.tolist(),
        "dataparser_scale": scale,
    }


def load_networks(header: Mapping[str, Any], sections: Mapping[str, bytes], model: GridModel) -> None:
    """Copies the fp16 networks and the average appearance embedding into ``model``.

    Raises:
        BitstreamError: if the stored tensors do not match the model's parameters.
    """
    arrays = unpack_tensors(header.get("networks"), sections.get("networks", b""))
    params = network_parameters(model)
    embedding = getattr(model.field, "embedding_appearance", None)
    expected = {name: tuple(p.shape) for name, p in params.items()}
    if embedding is not None:
        expected[APPEARANCE_KEY] = (embedding.get_out_dim(),)
    found = {name: tuple(a.shape) for name, a in arrays.items()}
    if found != expected:
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise BitstreamError(
            f"networks section does not match the rebuilt model (missing {missing[:5]}, unexpected {extra[:5]}, "
            "or different shapes); the file is corrupt or from another version"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(torch.from_numpy(arrays[name].astype(np.float32)))
        if embedding is not None:
            average = torch.from_numpy(arrays[APPEARANCE_KEY].astype(np.float32))
            embedding.embedding.weight.copy_(average.expand_as(embedding.embedding.weight))


def read_file(data: bytes, prefix: bool = False) -> Tuple[Dict[str, Any], Mapping[str, bytes]]:
    """``(header, sections)`` of a file, or of the complete sections of a prefix of one.

    Raises:
        BitstreamError: as :func:`~nerfcompress.bitstream.container.read_container` (a
            truncated file too), or with ``prefix`` as
            :func:`~nerfcompress.bitstream.container.read_container_prefix`.
    """
    if not prefix:
        return read_container(data)
    header, sections, _ = read_container_prefix(data)
    return header, sections


def decode_pipeline(
    data: bytes, output_dir: Path, max_levels: Optional[int] = None, prefix: bool = False
) -> tuple[TrainerConfig, Pipeline, int]:
    """Decodes a file into a pipeline on CPU and prepares ``output_dir`` for it.

    Args:
        data: the file, or with ``prefix`` a prefix of it (a partial download).
        output_dir: the import directory; created, and ``cameras.json`` written into it.
        max_levels: decode at most this many levels of every grid (None: all there are).
        prefix: accept a truncated file and decode the levels it holds completely; without
            it a truncated file raises.

    Returns:
        ``(config, pipeline, step)`` with the decoded model in eval mode; when fewer levels
        than the file has are decoded, ``config.pipeline.model.active_levels`` says how many.

    Raises:
        BitstreamError: if the file is corrupt, foreign, truncated (without ``prefix``) or a
            prefix too short for one level, or does not match the method.
        ValueError: if ``max_levels`` is outside ``1 ..`` the most levels of the file's grids.
    """
    header, sections = read_file(data, prefix)
    levels, most_levels = levels_to_decode(header.get("grids"), list(sections) if prefix else None, max_levels)
    output_dir = output_dir.resolve()
    config = rebuild_config(header, output_dir)
    levels = min(levels, config.pipeline.model.active_levels or most_levels)  # a file may store fewer
    config.pipeline.model.active_levels = levels if levels < most_levels else None
    cameras = _scene_and_cameras(header, sections)
    step = _field(header, "step", int)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_stored_cameras(output_dir, cameras)
    layouts = [dataclasses.asdict(grid_layout(args)) for _, args in config.pipeline.model.grid_layout_args()]
    if header.get("layouts") != layouts:  # checked before the grids are allocated
        raise BitstreamError("grid layouts in the header differ from the rebuilt model's; the file is corrupt")
    pipeline = config.pipeline.setup(device="cpu", test_mode="inference")
    pipeline.eval()
    model = pipeline.model
    load_networks(header, sections, model)
    model.load_extra_sections(header.get("extras", {}), sections)
    decode_tables(header.get("grids"), sections, model.tables(), num_levels=levels)
    return config, pipeline, step


def import_file(data: bytes, output_dir: Path, max_levels: Optional[int] = None, prefix: bool = False) -> Path:
    """Writes a loadable run directory for a file.

    Args:
        data: the file (or a prefix of it, with ``prefix``).
        output_dir: the directory to write (created if needed).
        max_levels: decode at most this many levels (see :func:`decode_pipeline`).
        prefix: accept a truncated file (see :func:`decode_pipeline`).

    Returns:
        The path of ``config.yml``.

    Raises:
        BitstreamError: as :func:`decode_pipeline`.
        ValueError: as :func:`decode_pipeline`.
    """
    config, pipeline, step = decode_pipeline(data, output_dir, max_levels=max_levels, prefix=prefix)
    checkpoint_dir = config.get_checkpoint_dir()
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    # ns-viewer writes its log into get_base_dir() (output_dir/viewer/<method>/imported) with a
    # non-recursive mkdir: without this, ns-viewer --load-config on an import crashes at start.
    config.get_base_dir().mkdir(parents=True, exist_ok=True)
    for stale in checkpoint_dir.glob("step-*.ckpt"):
        stale.unlink()  # eval_setup loads the highest step: only ours may be there
    torch.save({"step": step, "pipeline": pipeline.state_dict()}, checkpoint_dir / f"step-{step:09d}.ckpt")
    config_path = config.output_dir / "config.yml"
    config_path.write_text(yaml.dump(config), encoding="utf8")
    return config_path
