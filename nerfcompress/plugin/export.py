"""Trained run -> ``.ncmp`` file: header JSON, cameras, networks (fp16) and coded grids.

Sections in file order: ``cameras`` (fp32 ``c2w [N, 3, 4]``, ``intrinsics [N, 4]`` = fx, fy,
cx, cy, uint32 ``size [N, 2]`` = width, height), ``networks`` (every parameter rendering needs
besides the grids, fp16, plus the average appearance embedding), the model's extra sections
(Instant-NGP's ``occupancy``, :meth:`GridModel.extra_sections`), then the grids' sections:
every grid's per-grid parts (main field first, then the proposal grids), then level 0 of every
grid, level 1 of every grid, ..., so that a prefix of the file decodes the coarse levels (see
:mod:`nerfcompress.bitstream.model_codec` and :mod:`nerfcompress.bitstream.levels`).
The header holds the method name, the model config's plain fields, grid layouts, scene box,
dataparser transform/scale and settings, the tensor specs and the coder's name and version.

Post hoc (``posthoc``): the grids of an uncompressed run (PlainTables: plain-nerfacto,
plain-nerfacto-big) can be written as fp32 or fp16 rows or as uniform ``b``-bit symbols
(:data:`POSTHOC_CHOICES`, :func:`~nerfcompress.bitstream.model_codec.plain_codec`); each
grid's header entry records the codec, so the import rebuilds the same plain model.
"""

from __future__ import annotations

import dataclasses
import glob
from collections import OrderedDict
from importlib.metadata import version
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import yaml
from nerfstudio.configs.dataparser_configs import all_dataparsers
from nerfstudio.configs.method_configs import all_methods
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import Pipeline
from torch import nn

from nerfcompress.bitstream.container import section_frame_bytes, write_container
from nerfcompress.bitstream.model_codec import (
    PLAIN_STORAGES,
    TableCodec,
    UnsupportedTableError,
    encode_tables,
    plain_codec,
)
from nerfcompress.bitstream.tensors import pack_tensors
from nerfcompress.errors import ExportError
from nerfcompress.plugin.config_fields import config_to_json
from nerfcompress.plugin.model import GridModel, GridModelSettings
from nerfcompress.plugin.table_settings import PlainTableSettings

APPEARANCE_KEY = "appearance_average"
"""Name of the average appearance embedding ``[appearance_embed_dim]`` in the networks section."""

POSTHOC_CHOICES = ("none", *PLAIN_STORAGES)
"""``posthoc`` values: ``"none"`` (the method's own coding) or a plain storage (``"fp32"``,
``"fp16"``, ``"uniform2"`` .. ``"uniform8"``) for runs whose grids are PlainTables."""


def grid_names(num_grids: int) -> List[str]:
    """Section prefixes of the grids in :meth:`GridNerfactoModel.grid_encodings` order."""
    return ["main", *(f"prop{i}" for i in range(num_grids - 1))]


def exportable_methods() -> List[str]:
    """Registered methods whose models :func:`export_pipeline` can write."""
    return sorted(name for name, cfg in all_methods.items() if is_exportable(cfg))


def is_exportable(config: object) -> bool:
    """Whether a method's config builds a model that :func:`export_pipeline` can write (nerfstudio
    lists uninstalled external methods as dummy configs without a pipeline)."""
    pipeline = getattr(config, "pipeline", None)
    return isinstance(getattr(pipeline, "model", None), GridModelSettings)


def posthoc_methods() -> List[str]:
    """Registered methods whose grids are PlainTables, the runs a post-hoc coding applies to."""
    return sorted(
        name
        for name, cfg in all_methods.items()
        if is_exportable(cfg) and isinstance(cfg.pipeline.model, PlainTableSettings)
    )


def posthoc_codec(config: TrainerConfig, posthoc: str) -> Optional[TableCodec]:
    """The codec that writes a run's grids for ``posthoc``; None for the method's own.

    Args:
        config: the run's config.
        posthoc: one of :data:`POSTHOC_CHOICES`.

    Raises:
        ExportError: if ``posthoc`` is not ``"none"`` and the run's grids are not PlainTables.
        ValueError: if ``posthoc`` is not one of :data:`POSTHOC_CHOICES`.
    """
    if posthoc not in POSTHOC_CHOICES:
        raise ValueError(f"posthoc must be one of {', '.join(POSTHOC_CHOICES)}, found {posthoc!r}")
    if posthoc == "none":
        return None
    if not isinstance(config.pipeline.model, PlainTableSettings):
        raise ExportError(
            f"--posthoc {posthoc} applies to uncompressed runs only (methods {', '.join(posthoc_methods())}); "
            f"method '{config.method_name}' has its own coding: export it without --posthoc"
        )
    return plain_codec(posthoc)


def check_run(config_path: Path, posthoc: str = "none") -> TrainerConfig:
    """Loads a run's ``config.yml`` and checks that it can be exported, before any heavy work.

    Args:
        config_path: ``outputs/.../config.yml`` written by ``ns-train`` (a trusted local file).
        posthoc: the post-hoc coding asked for (:data:`POSTHOC_CHOICES`).

    Returns:
        The run's config.

    Raises:
        ExportError: if the config is missing or unreadable, the method is not exportable,
            ``posthoc`` does not apply to it, or the run has no checkpoint.
        ValueError: if ``posthoc`` is not one of :data:`POSTHOC_CHOICES`.
    """
    if not config_path.is_file():
        raise ExportError(f"config {config_path} does not exist; pass --load-config outputs/<run>/config.yml")
    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except Exception as exc:  # yaml errors, unknown classes, unreadable files: all one message
        raise ExportError(f"cannot read {config_path} as a nerfstudio config ({type(exc).__name__}: {exc})") from exc
    if not isinstance(config, TrainerConfig):
        raise ExportError(f"{config_path} is not a nerfstudio TrainerConfig")
    if not is_exportable(config):
        raise ExportError(
            f"method '{config.method_name}' cannot be exported; methods that can: {', '.join(exportable_methods())}"
        )
    posthoc_codec(config, posthoc)
    checkpoint_dir = config.get_checkpoint_dir()
    if not glob.glob(str(checkpoint_dir / "step-*.ckpt")):
        raise ExportError(f"run has no checkpoint: no step-*.ckpt in {checkpoint_dir}; train it first (ns-train)")
    return config


def network_parameters(model: GridModel) -> "OrderedDict[str, nn.Parameter]":
    """Parameters that rendering needs besides the grids (:meth:`GridModel.network_parameters`)."""
    return model.network_parameters()


def _cameras_section(pipeline: Pipeline) -> Tuple[List[Dict[str, Any]], bytes]:
    cameras = pipeline.datamanager.train_dataparser_outputs.cameras
    intrinsics = torch.cat([cameras.fx, cameras.fy, cameras.cx, cameras.cy], dim=-1)  # [N, 4]
    size = torch.cat([cameras.width, cameras.height], dim=-1).to(torch.int32).numpy().astype("<u4")  # [N, 2]
    return pack_tensors({"c2w": cameras.camera_to_worlds.float(), "intrinsics": intrinsics.float(), "size": size}, None)


def _dataparser_entry(config: TrainerConfig) -> Dict[str, Any]:
    dataparser = config.pipeline.datamanager.dataparser
    names = [name for name, cfg in all_dataparsers.items() if type(cfg) is type(dataparser)]
    return {"name": names[0] if names else None, "fields": config_to_json(dataparser)}


def export_pipeline(
    config: TrainerConfig, pipeline: Pipeline, step: int, posthoc: str = "none"
) -> Tuple[Dict[str, Any], List[Tuple[str, bytes]]]:
    """Header and sections of a trained model.

    Args:
        config: the run's config.
        pipeline: the loaded pipeline (``eval_setup(..., test_mode="inference")``).
        step: the checkpoint's training step.
        posthoc: ``"none"`` (each table kind's own coding) or how to store the rows of an
            uncompressed run's grids (:data:`POSTHOC_CHOICES`).

    Returns:
        ``(header, sections)`` for :func:`~nerfcompress.bitstream.container.write_container`.

    Raises:
        ExportError: if the model is not a :class:`GridModel`, holds a table kind
            without a codec (the message lists those that have one), or ``posthoc`` does not
            apply to it.
        ValueError: if ``posthoc`` is not one of :data:`POSTHOC_CHOICES`.
    """
    model = pipeline.model
    if not isinstance(model, GridModel):
        raise ExportError(
            f"model {type(model).__name__} cannot be exported; methods that can: {', '.join(exportable_methods())}"
        )
    networks: Dict[str, Any] = dict(network_parameters(model))
    embedding = getattr(model.field, "embedding_appearance", None)
    if embedding is not None:
        networks[APPEARANCE_KEY] = embedding.mean(dim=0)
    network_spec, network_bytes = pack_tensors(networks, "<f2")
    camera_spec, camera_bytes = _cameras_section(pipeline)
    outputs = pipeline.datamanager.train_dataparser_outputs
    encodings = model.grid_encodings()
    codec = posthoc_codec(config, posthoc)
    extras, extra_sections = model.extra_sections()
    try:
        grids, grid_sections = encode_tables([e.table for e in encodings], grid_names(len(encodings)), codec)
    except UnsupportedTableError as exc:
        how = "yet" if codec is None else f"with --posthoc {posthoc}"
        raise ExportError(f"method '{config.method_name}' cannot be exported {how}: {exc}") from exc
    header = {
        "method": config.method_name,
        "step": int(step),
        "versions": {name: version(name) for name in ("nerfcompress", "nerfstudio", "constriction")},
        "coder": "constriction.stream.queue.RangeEncoder, Categorical(perfect=False) from stored uint32 counts",
        "model": config_to_json(config.pipeline.model),
        "dataparser": _dataparser_entry(config),
        "scene": {
            "scene_box": outputs.scene_box.aabb.float().tolist(),
            "dataparser_transform": outputs.dataparser_transform.float().tolist(),
            "dataparser_scale": float(outputs.dataparser_scale),
        },
        "layouts": [dataclasses.asdict(e.layout) for e in encodings],
        "cameras": camera_spec,
        "networks": network_spec,
        "grids": grids,
    }
    if extras:
        header["extras"] = extras
    sections = [("cameras", camera_bytes), ("networks", network_bytes), *extra_sections, *grid_sections]
    return header, sections


def size_breakdown(data: bytes, sections: List[Tuple[str, bytes]]) -> List[Tuple[str, int]]:
    """Exact bytes of every part of a file; they sum to ``len(data)``.

    Args:
        data: the file written from ``sections``.
        sections: the ``(name, payload)`` pairs it holds.

    Returns:
        ``("header", preamble + JSON bytes)`` then ``(name, framing + payload bytes)`` per section.
    """
    parts = [(name, section_frame_bytes(name) + len(payload)) for name, payload in sections]
    return [("header", len(data) - sum(size for _, size in parts)), *parts]


def export_run(config_path: Path, posthoc: str = "none") -> Tuple[bytes, List[Tuple[str, int]]]:
    """Loads a trained run and returns its file and size breakdown.

    Args:
        config_path: the run's ``config.yml``.
        posthoc: see :func:`export_pipeline`.

    Raises:
        ExportError: as :func:`check_run` / :func:`export_pipeline`.
        ValueError: as :func:`check_run`.
    """
    from nerfstudio.utils.eval_utils import eval_setup

    check_run(config_path, posthoc)
    config, pipeline, _, step = eval_setup(config_path, test_mode="inference")
    header, sections = export_pipeline(config, pipeline, step, posthoc)
    data = write_container(header, sections)
    return data, size_breakdown(data, sections)
