"""Trained run -> ``.ncmp`` file: what :func:`~nerfcompress.plugin.file_layout.model_file` lays out.

Post hoc (``posthoc``): the grids of an uncompressed run (PlainTables: plain-nerfacto,
plain-nerfacto-big, plain-instant-ngp) can be written as fp32 or fp16 rows or as uniform ``b``-bit symbols
(:data:`POSTHOC_CHOICES`, :func:`~nerfcompress.bitstream.model_codec.plain_codec`); each
grid's header entry records its storage, so the import rebuilds the same plain model.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml
from nerfstudio.configs.method_configs import all_methods
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import Pipeline

from nerfcompress.bitstream.container import write_container
from nerfcompress.bitstream.model_codec import PLAIN_STORAGES, TableCodec, UnsupportedTableError, plain_codec
from nerfcompress.errors import ExportError
from nerfcompress.plugin.file_layout import FileContext, model_file, section_sizes
from nerfcompress.plugin.grid_settings import GridModelSettings
from nerfcompress.plugin.model import GridModel
from nerfcompress.plugin.table_settings import PlainTableSettings

POSTHOC_CHOICES = ("none", *PLAIN_STORAGES)
"""``posthoc`` values: ``"none"`` (the method's own coding) or a plain storage (``"fp32"``,
``"fp16"``, ``"uniform2"`` .. ``"uniform8"``) for runs whose grids are PlainTables."""


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
    codec = posthoc_codec(config, posthoc)
    dataparser = config.pipeline.datamanager.dataparser
    context = FileContext.from_datamanager(config.method_name, pipeline.datamanager, dataparser)
    try:
        return model_file(model, context, step, codec)
    except UnsupportedTableError as exc:
        how = "yet" if codec is None else f"with --posthoc {posthoc}"
        raise ExportError(f"method '{config.method_name}' cannot be exported {how}: {exc}") from exc


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
    return write_container(header, sections), section_sizes(header, sections)
