"""``.ncmp`` file -> a run directory that ``ns-viewer``, ``ns-render`` and ``eval_setup`` load.

The model config is rebuilt from the method's registered ``TrainerConfig`` plus the settings
stored in the header, each checked against the allow-list of
:mod:`nerfcompress.plugin.model_settings` (never from YAML or pickle in the file); VQAD tables
then keep uint8 indices instead of training logits (:func:`set_decoded_storage`). Before anything
is built, the grids the settings imply are checked against the caps, the header's grid entries
and the bytes of their sections (:func:`check_grids`, on tables without storage), and the form
of the header's extra entries (:func:`~nerfcompress.plugin.file_layout.check_extras`). The pipeline is
then built in inference mode on :class:`StoredCamerasDataParserConfig` (the stored cameras, no
images), the decoded networks, extra sections (the model checks their entries) and grids are loaded into
it, and the directory gets::

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
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import yaml
from nerfstudio.configs.method_configs import all_methods
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.pipelines.base_pipeline import Pipeline

from nerfcompress.bitstream.cameras import decode_cameras
from nerfcompress.bitstream.container import read_container, read_container_prefix
from nerfcompress.bitstream.levels import levels_to_decode
from nerfcompress.bitstream.model_codec import check_tables, decode_tables
from nerfcompress.bitstream.quantized_tensors import decode_quantized_tensors
from nerfcompress.entropy.coder import check_coder_record
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.export import exportable_methods, is_exportable
from nerfcompress.plugin.file_layout import check_extras, stored_networks
from nerfcompress.plugin.grid_settings import GridModelSettings, grid_layout
from nerfcompress.plugin.model import GridModel
from nerfcompress.plugin.model_settings import MAX_GRID_ROWS, apply_settings
from nerfcompress.plugin.stored_cameras import StoredCamerasDataParserConfig, write_stored_cameras
from nerfcompress.plugin.table_settings import VqadTableSettings


def _field(header: Mapping[str, Any], key: str, kind: type) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BitstreamError(f"header field '{key}' is {value!r:.80}, expected a {kind.__name__}; the file is corrupt")
    return value


def set_decoded_storage(model_config: ModelConfig) -> None:
    """Makes ``model_config`` hold what a file stores rather than training state: VQAD tables
    keep their uint8 indices (``fixed_indices``), not ``2**bits`` fp32 logits per row."""
    if isinstance(model_config, VqadTableSettings):
        model_config.fixed_indices = True


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
    apply_settings(config.pipeline.model, header.get("model"))
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


MAX_STAND_IN_CAMERAS = 10_000
"""Most training cameras a prefix without the cameras section may declare (nothing bounds them)."""


def stand_in_cameras(num_cameras: Any, box: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c2w [N, 3, 4], intrinsics [N, 4], size [N, 2])``: as many cameras as the header declares,
    all above the scene box ``[2, 3]`` looking down at its centre (64x64 px, 53 degree field of
    view), for a prefix that ends before the stored cameras: the pipeline needs its training
    cameras' count (the appearance embedding has a row per camera), and no render depends on
    their poses.

    Raises:
        BitstreamError: if ``num_cameras`` (untrusted) is not an int in ``1 .. MAX_STAND_IN_CAMERAS``.
    """
    count = num_cameras
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_STAND_IN_CAMERAS:
        raise BitstreamError(
            f"header declares {count!r:.40} training cameras, expected 1 .. {MAX_STAND_IN_CAMERAS:,} for a prefix "
            "without the cameras section; the file is corrupt (or decode the whole file)"
        )
    centre, extent = box.mean(axis=0), float((box[1] - box[0]).max())
    c2w = np.concatenate([np.eye(3), (centre + [0.0, 0.0, 1.5 * extent])[:, None]], axis=1)  # looks along -z
    return (
        np.repeat(c2w[None], count, axis=0),
        np.repeat([[64.0, 64.0, 32.0, 32.0]], count, axis=0),
        np.repeat([[64, 64]], count, axis=0),
    )


def stored_cameras(header: Mapping[str, Any], sections: Mapping[str, bytes], prefix: bool) -> Dict[str, Any]:
    """``cameras.json`` contents from the ``cameras`` section and the header's scene entry; for a
    prefix that ends before the cameras (they come last), :func:`stand_in_cameras`."""
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
    if prefix and "cameras" not in sections:
        c2w, intrinsics, size = stand_in_cameras(header.get("cameras"), box)
    else:
        c2w, intrinsics, size = decode_cameras(sections.get("cameras", b""), header.get("cameras"))
    return {
        "c2w": c2w.tolist(),
        "intrinsics": intrinsics.tolist(),
        "size": size.tolist(),
        "scene_box": box.tolist(),
        "dataparser_transform": transform.tolist(),
        "dataparser_scale": scale,
    }


def load_networks(sections: Mapping[str, bytes], model: GridModel) -> None:
    """Copies the stored networks and the average appearance embedding into ``model``.

    Raises:
        BitstreamError: if the section does not decode to exactly the model's tensors.
    """
    shapes = [t.shape for t in stored_networks(model)]  # what the exporter wrote, in its order
    values = decode_quantized_tensors(sections.get("networks", b""), [math.prod(shape) for shape in shapes])
    values = [torch.from_numpy(value).reshape(shape) for value, shape in zip(values, shapes)]
    params = list(model.network_parameters().values())
    with torch.no_grad():
        for param, value in zip(params, values):
            param.copy_(value)
        embedding = getattr(model.field, "embedding_appearance", None)
        if embedding is not None:  # the last stored tensor: the average embedding [appearance_embed_dim]
            embedding.embedding.weight.copy_(values[-1].expand_as(embedding.embedding.weight))


def check_grids(
    header: Mapping[str, Any], sections: Mapping[str, bytes], config: GridModelSettings, levels: int
) -> None:
    """Refuses a file whose grids the model would build differently, before building anything.

    The layouts the settings give are checked against :data:`MAX_GRID_ROWS`; then tables
    without storage (meta device) are checked against the header's grid entries and the bytes
    of the sections the decoder will read (:func:`~nerfcompress.bitstream.model_codec.check_tables`).

    Raises:
        BitstreamError: on too many rows, or entries or sections that do not fit the tables.
    """
    layouts = [grid_layout(args) for _, args in config.grid_layout_args()]
    rows = sum(layout.num_rows for layout in layouts)
    if rows > MAX_GRID_ROWS:
        raise BitstreamError(
            f"header model settings give grids of {rows} rows, the cap is {MAX_GRID_ROWS}; the file is corrupt"
        )
    with torch.device("meta"):
        tables = [config.build_table(layout) for layout in layouts]
    check_tables(header.get("grids"), sections, tables, num_levels=levels)


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
            it a truncated file raises. A prefix that ends before the stored cameras (the last
            section) gets :func:`stand_in_cameras` instead.

    Returns:
        ``(config, pipeline, step)`` with the decoded model in eval mode; when fewer levels
        than the file has are decoded, ``config.pipeline.model.active_levels`` says how many.

    Raises:
        BitstreamError: if the file is corrupt, foreign, truncated (without ``prefix``) or a
            prefix too short for one level, or does not match the method.
        ValueError: if ``max_levels`` is outside ``1 ..`` the most levels of the file's grids.
    """
    header, sections = read_file(data, prefix)
    check_coder_record(header.get("coder"))  # before any stream is decoded
    levels, most_levels = levels_to_decode(header.get("grids"), list(sections) if prefix else None, max_levels)
    output_dir = output_dir.resolve()
    config = rebuild_config(header, output_dir)
    levels = min(levels, config.pipeline.model.active_levels or most_levels)  # a file may store fewer
    config.pipeline.model.active_levels = levels if levels < most_levels else None
    cameras = stored_cameras(header, sections, prefix)
    step = _field(header, "step", int)
    check_grids(header, sections, config.pipeline.model, levels)  # before anything is written or built
    extras = check_extras(header, sections)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_stored_cameras(output_dir, cameras)
    pipeline = config.pipeline.setup(device="cpu", test_mode="inference")
    pipeline.eval()
    model = pipeline.model
    load_networks(sections, model)
    model.load_extra_sections(extras, sections)
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
