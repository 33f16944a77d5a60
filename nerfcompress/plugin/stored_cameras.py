"""A dataparser that serves the cameras stored in a compressed file, without any images.

``ns-compress import`` writes ``DIR/cameras.json`` (training cameras already in the model's
frame, scene box, dataparser transform and scale) and a tiny grey ``DIR/placeholder.png``.
This parser returns those cameras for every split, each pointing at the placeholder, so that
``ns-viewer`` (which draws a thumbnail per camera), ``ns-render`` and ``eval_setup`` can build
the pipeline of a decoded model without the training images. Image metrics computed against
the placeholder are meaningless: evaluate with ``ns-compress eval --data DATASET``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Type

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from PIL import Image

CAMERAS_FILENAME = "cameras.json"
PLACEHOLDER_FILENAME = "placeholder.png"
_PLACEHOLDER_HEIGHT = 32
_PLACEHOLDER_MAX_ASPECT = 64
"""The placeholder image keeps the first camera's aspect ratio up to this (a file declared
3,735,561 x 16 pixels in the fuzzer: a 7.5-megapixel-wide placeholder took 1.6 GB to write)."""


def write_stored_cameras(directory: Path, cameras: Dict[str, Any]) -> None:
    """Writes ``cameras.json`` and the placeholder image into ``directory``.

    Args:
        directory: the import directory (must exist).
        cameras: ``c2w`` ``[N, 3, 4]``, ``intrinsics`` ``[N, 4]`` (fx, fy, cx, cy), ``size``
            ``[N, 2]`` (width, height) as nested lists, plus ``scene_box`` ``[2, 3]``,
            ``dataparser_transform`` ``[3, 4]`` and ``dataparser_scale``.
    """
    (directory / CAMERAS_FILENAME).write_text(json.dumps(cameras), encoding="utf-8")
    width, height = cameras["size"][0]
    aspect = min(max(width / height, 1 / _PLACEHOLDER_MAX_ASPECT), _PLACEHOLDER_MAX_ASPECT)  # bounded: a file sets it
    placeholder_width = max(1, round(_PLACEHOLDER_HEIGHT * aspect))
    Image.new("RGB", (placeholder_width, _PLACEHOLDER_HEIGHT), (128, 128, 128)).save(directory / PLACEHOLDER_FILENAME)


@dataclass
class StoredCamerasDataParserConfig(DataParserConfig):
    """Cameras of a decoded model (``cameras.json`` written by ``ns-compress import``)."""

    _target: Type = field(default_factory=lambda: StoredCamerasDataParser)
    """Target class to instantiate."""
    data: Path = Path()
    """Directory written by ``ns-compress import`` (holds cameras.json and placeholder.png)."""


class StoredCamerasDataParser(DataParser):
    """Serves the stored training cameras for every split, with a placeholder image each."""

    config: StoredCamerasDataParserConfig
    downscale_factor = 1
    """Set by nerfstudio's datamanagers in inference mode; nothing to downscale here."""

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        """Cameras, scene box and dataparser transform of the decoded model.

        Args:
            split: any split; every split gets the training cameras.

        Returns:
            The dataparser outputs.

        Raises:
            FileNotFoundError: if ``cameras.json`` is missing from ``config.data``.
        """
        path = self.config.data / CAMERAS_FILENAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; run `ns-compress import FILE --output-dir {self.config.data}`"
            )
        stored = json.loads(path.read_text(encoding="utf-8"))
        intrinsics = torch.tensor(stored["intrinsics"], dtype=torch.float32)  # [N, 4]
        size = torch.tensor(stored["size"], dtype=torch.int64)  # [N, 2]
        cameras = Cameras(
            camera_to_worlds=torch.tensor(stored["c2w"], dtype=torch.float32),
            fx=intrinsics[:, 0:1],
            fy=intrinsics[:, 1:2],
            cx=intrinsics[:, 2:3],
            cy=intrinsics[:, 3:4],
            width=size[:, 0:1],
            height=size[:, 1:2],
            camera_type=CameraType.PERSPECTIVE,
        )
        return DataparserOutputs(
            image_filenames=[self.config.data / PLACEHOLDER_FILENAME] * len(cameras),
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor(stored["scene_box"], dtype=torch.float32)),
            dataparser_transform=torch.tensor(np.asarray(stored["dataparser_transform"]), dtype=torch.float32),
            dataparser_scale=float(stored["dataparser_scale"]),
        )
