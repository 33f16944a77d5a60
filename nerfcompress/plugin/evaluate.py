"""Image quality of a compressed file on a dataset's test split, next to its exact size."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Literal, Mapping, Optional

import numpy as np
from nerfstudio.configs.dataparser_configs import all_dataparsers
from nerfstudio.data.dataparsers.base_dataparser import DataParserConfig
from nerfstudio.utils.eval_utils import eval_setup

from nerfcompress.bitstream.container import read_container_index, read_container_prefix
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.config_fields import apply_config_json
from nerfcompress.plugin.dataparser import AutoDataParserConfig
from nerfcompress.plugin.import_model import import_file

_FRAME_TOLERANCE = 1e-4


class DatasetMismatchError(ValueError):
    """The dataset given for evaluation is not the one the model was trained on."""


def dataset_dataparser(header: Mapping[str, Any], dataset: Path) -> DataParserConfig:
    """The training run's dataparser settings, pointed at ``dataset``.

    Falls back to the auto-detecting parser when the run used a dataparser that is not
    registered here.
    """
    entry = header.get("dataparser")
    if not isinstance(entry, dict) or entry.get("name") not in all_dataparsers:
        return AutoDataParserConfig(data=dataset)
    config = copy.deepcopy(all_dataparsers[entry["name"]])
    apply_config_json(config, entry.get("fields", {}), "dataparser")
    config.data = dataset
    return config


def _check_same_scene(header: Mapping[str, Any], config: DataParserConfig, dataset: Path) -> None:
    outputs = config.setup().get_dataparser_outputs(split="train")
    scene = header.get("scene") or {}
    try:
        stored_transform = np.asarray(scene["dataparser_transform"], dtype=np.float64)
        stored_scale = float(scene["dataparser_scale"])
        num_cameras = header["cameras"][0]["shape"][0]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise BitstreamError(f"header scene or cameras entry is malformed ({exc}); the file is corrupt") from exc
    transform = outputs.dataparser_transform.double().numpy()
    same = transform.shape == stored_transform.shape and np.abs(transform - stored_transform).max() <= _FRAME_TOLERANCE
    same = same and abs(float(outputs.dataparser_scale) - stored_scale) <= _FRAME_TOLERANCE * abs(stored_scale)
    if not same or len(outputs.cameras) != num_cameras:
        raise DatasetMismatchError(
            f"dataset {dataset} does not match the scene this model was trained on (its dataparser frame or its "
            f"{len(outputs.cameras)} training cameras differ from the file's {num_cameras}); pass the training dataset"
        )


def evaluate_file(
    data: bytes,
    dataset: Path,
    work_dir: Path,
    max_levels: Optional[int] = None,
    prefix: bool = False,
    split: Literal["test", "val"] = "test",
) -> Dict[str, float]:
    """Decodes a file and renders the test (or validation) split of ``dataset``.

    Args:
        data: the compressed file, or with ``prefix`` a prefix of it.
        dataset: the dataset the model was trained on.
        work_dir: scratch directory for the decoded run.
        max_levels: decode and render at most this many levels of every grid.
        prefix: accept a truncated file and render the levels it holds completely.
        split: the views to render: ``"test"`` to report, ``"val"`` to choose settings on.

    Returns:
        nerfstudio's averaged image metrics (psnr, ssim, lpips when its weights are available,
        ...) plus ``file_size_bytes``, the exact size of ``data`` (the prefix's, with
        ``prefix``), and ``decoded_levels``, the levels rendered (of the grid with the most).

    Raises:
        BitstreamError: if the file is corrupt, foreign, or truncated (without ``prefix``).
        DatasetMismatchError: if ``dataset`` is not the training scene.
        ValueError: if ``max_levels`` is outside ``1 ..`` the levels of the file's grids, or
            ``split`` is neither ``"test"`` nor ``"val"``.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', found {split!r}")
    header = read_container_prefix(data)[0] if prefix else read_container_index(data)[0]
    dataparser = dataset_dataparser(header, dataset)
    _check_same_scene(header, dataparser, dataset)
    config_path = import_file(data, work_dir, max_levels=max_levels, prefix=prefix)

    def use_dataset(config):
        config.pipeline.datamanager.dataparser = dataparser
        config.pipeline.datamanager.data = None
        if hasattr(config.pipeline.datamanager, "num_processes"):
            config.pipeline.datamanager.num_processes = 0  # evaluation needs no training batches
        return config

    config, pipeline, _, _ = eval_setup(config_path, test_mode=split, update_config_callback=use_dataset)
    metrics = pipeline.get_average_eval_image_metrics()
    metrics = {k: float(v) for k, v in metrics.items() if not k.startswith("estimated_")}
    metrics["file_size_bytes"] = float(len(data))
    most_levels = max(e.layout.num_levels for e in pipeline.model.grid_encodings())
    metrics["decoded_levels"] = float(config.pipeline.model.active_levels or most_levels)
    return metrics
