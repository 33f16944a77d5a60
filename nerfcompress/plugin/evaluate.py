"""Image quality of a compressed file on a dataset's test split, next to its exact size."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
from nerfstudio.configs.dataparser_configs import all_dataparsers
from nerfstudio.data.dataparsers.base_dataparser import DataParserConfig
from nerfstudio.utils.eval_utils import eval_setup

from nerfcompress.bitstream.container import read_container_index
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


def evaluate_file(data: bytes, dataset: Path, work_dir: Path) -> Dict[str, float]:
    """Decodes a file and renders the test split of ``dataset``.

    Args:
        data: the compressed file.
        dataset: the dataset the model was trained on.
        work_dir: scratch directory for the decoded run.

    Returns:
        nerfstudio's averaged image metrics (psnr, ssim, lpips when its weights are available,
        ...) plus ``file_size_bytes``, the exact size of the file.

    Raises:
        BitstreamError: if the file is corrupt or foreign.
        DatasetMismatchError: if ``dataset`` is not the training scene.
    """
    header, _ = read_container_index(data)
    dataparser = dataset_dataparser(header, dataset)
    _check_same_scene(header, dataparser, dataset)
    config_path = import_file(data, work_dir)

    def use_dataset(config):
        config.pipeline.datamanager.dataparser = dataparser
        config.pipeline.datamanager.data = None
        if hasattr(config.pipeline.datamanager, "num_processes"):
            config.pipeline.datamanager.num_processes = 0  # evaluation needs no training batches
        return config

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test", update_config_callback=use_dataset)
    metrics = pipeline.get_average_eval_image_metrics()
    metrics = {k: float(v) for k, v in metrics.items() if not k.startswith("estimated_")}
    metrics["file_size_bytes"] = float(len(data))
    return metrics
