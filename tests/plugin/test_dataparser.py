"""Tests for nerfcompress.plugin.dataparser (format detection, delegation, errors)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from PIL import Image

from nerfcompress.plugin.dataparser import (
    AutoDataParser,
    AutoDataParserConfig,
    DatasetFormatError,
    detect_format,
    nerfcompress_data,
)

IMAGE_SIZE = 8


def _pose(angle: float) -> list:
    """Camera-to-world [4, 4] on a circle of radius 4 around the origin."""
    c, s = math.cos(angle), math.sin(angle)
    return [[c, 0.0, s, 4.0 * s], [s, 0.0, -c, -4.0 * c], [0.0, 1.0, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0]]


def _write_png(path: Path, seed: int, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, channels), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)


@pytest.fixture
def blender_scene(tmp_path: Path) -> Path:
    """A Blender-format scene: transforms_{train,val,test}.json and RGBA PNGs."""
    scene = tmp_path / "blender_scene"
    for seed_base, (split, count) in enumerate((("train", 3), ("val", 2), ("test", 2))):
        frames = []
        for i in range(count):
            _write_png(scene / split / f"r_{i}.png", seed=10 * seed_base + i, mode="RGBA")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": _pose(0.7 * i)})
        meta = {"camera_angle_x": 0.69, "frames": frames}
        (scene / f"transforms_{split}.json").write_text(json.dumps(meta))
    return scene


@pytest.fixture
def nerfstudio_scene(tmp_path: Path) -> Path:
    """A nerfstudio-format scene: transforms.json with intrinsics and 4 RGB frames."""
    scene = tmp_path / "ns_scene"
    frames = []
    for i in range(4):
        _write_png(scene / "images" / f"frame_{i:05d}.png", seed=i, mode="RGB")
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": _pose(0.5 * i)})
    intrinsics = {"fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 4.0, "w": IMAGE_SIZE, "h": IMAGE_SIZE}
    meta = {**intrinsics, "frames": frames}
    (scene / "transforms.json").write_text(json.dumps(meta))
    return scene


def test_blender_scene_matches_blender_dataparser(blender_scene: Path) -> None:
    parser = AutoDataParserConfig(data=blender_scene).setup()
    reference = BlenderDataParserConfig(data=blender_scene).setup()
    assert isinstance(parser, AutoDataParser) and parser.format == "blender"
    for split in ("train", "val", "test"):
        ours = parser.get_dataparser_outputs(split)
        theirs = reference.get_dataparser_outputs(split)
        assert ours.image_filenames == theirs.image_filenames
        assert len(ours.cameras) == len(theirs.cameras)
        assert torch.equal(ours.cameras.camera_to_worlds, theirs.cameras.camera_to_worlds)
        assert torch.equal(ours.cameras.fx, theirs.cameras.fx)
        assert torch.equal(ours.scene_box.aabb, theirs.scene_box.aabb)
        assert ours.dataparser_scale == theirs.dataparser_scale
        assert torch.equal(ours.alpha_color, theirs.alpha_color)
    assert len(parser.get_dataparser_outputs("train").cameras) == 3


def test_blender_settings_come_from_nested_config(blender_scene: Path) -> None:
    config = AutoDataParserConfig(data=blender_scene, blender=BlenderDataParserConfig(scale_factor=0.5))
    outputs = config.setup().get_dataparser_outputs("train")
    reference_parser = BlenderDataParserConfig(data=blender_scene, scale_factor=0.5).setup()
    reference = reference_parser.get_dataparser_outputs("train")
    assert outputs.dataparser_scale == 0.5
    assert torch.equal(outputs.cameras.camera_to_worlds, reference.cameras.camera_to_worlds)


def test_nerfstudio_scene_is_detected_and_parsed(nerfstudio_scene: Path) -> None:
    config = AutoDataParserConfig(
        data=nerfstudio_scene, nerfstudio=NerfstudioDataParserConfig(train_split_fraction=0.5)
    )
    parser = config.setup()
    assert parser.format == "nerfstudio"
    train = parser.get_dataparser_outputs("train")
    val = parser.get_dataparser_outputs("val")
    reference = NerfstudioDataParserConfig(data=nerfstudio_scene, train_split_fraction=0.5).setup()
    expected = reference.get_dataparser_outputs("train")
    assert len(train.cameras) == 2 and len(val.cameras) == 2
    assert train.image_filenames == expected.image_filenames
    assert torch.equal(train.cameras.camera_to_worlds, expected.cameras.camera_to_worlds)
    assert torch.equal(train.scene_box.aabb, expected.scene_box.aabb)
    assert train.dataparser_scale == expected.dataparser_scale
    assert torch.equal(train.dataparser_transform, expected.dataparser_transform)


def test_nerfstudio_json_file_is_accepted(nerfstudio_scene: Path) -> None:
    assert detect_format(nerfstudio_scene / "transforms.json") == "nerfstudio"
    config = AutoDataParserConfig(
        data=nerfstudio_scene / "transforms.json",
        nerfstudio=NerfstudioDataParserConfig(train_split_fraction=0.5),
    )
    assert len(config.setup().get_dataparser_outputs("train").cameras) == 2


def test_inference_downscale_factor_reaches_nerfstudio_delegate(nerfstudio_scene: Path) -> None:
    """Datamanagers set downscale_factor = 1 in inference mode so that no image is opened."""
    for image in (nerfstudio_scene / "images").iterdir():
        image.unlink()
    config = AutoDataParserConfig(
        data=nerfstudio_scene, nerfstudio=NerfstudioDataParserConfig(train_split_fraction=0.5)
    )
    parser = config.setup()
    parser.downscale_factor = 1
    assert len(parser.get_dataparser_outputs("train").cameras) == 2


def test_missing_path_names_path_and_expected_files(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_scene"
    with pytest.raises(FileNotFoundError) as info:
        AutoDataParserConfig(data=missing).setup()
    message = str(info.value)
    assert f"dataset path {missing} does not exist" in message
    assert "--data" in message and "transforms.json" in message and "transforms_train.json" in message


def test_wrong_format_directory_names_contents_and_expected_files(tmp_path: Path) -> None:
    scene = tmp_path / "photos"
    _write_png(scene / "a.png", seed=0, mode="RGB")
    (scene / "cameras.txt").write_text("")
    with pytest.raises(DatasetFormatError) as info:
        AutoDataParserConfig(data=scene).setup()
    message = str(info.value)
    assert str(scene) in message
    assert "transforms.json" in message and "transforms_train.json" in message
    assert "a.png" in message and "cameras.txt" in message
    assert isinstance(info.value, ValueError)


def test_blender_split_file_and_missing_split_are_explained(blender_scene: Path) -> None:
    with pytest.raises(DatasetFormatError, match="pass --data"):
        detect_format(blender_scene / "transforms_train.json")
    (blender_scene / "transforms_val.json").unlink()
    parser = AutoDataParserConfig(data=blender_scene).setup()
    with pytest.raises(FileNotFoundError, match="transforms_val.json") as info:
        parser.get_dataparser_outputs("val")
    assert str(blender_scene) in str(info.value)


def test_datamanager_data_alias_reaches_auto_parser(blender_scene: Path) -> None:
    """`ns-train ... --data X` sets datamanager.data, which the datamanager copies into the dataparser."""
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    config = VanillaDataManagerConfig(dataparser=AutoDataParserConfig(), data=blender_scene)
    datamanager = config.setup(device="cpu", test_mode="val")
    assert isinstance(datamanager.dataparser, AutoDataParser)
    assert datamanager.dataparser.config.data == blender_scene
    assert len(datamanager.train_dataset) == 3 and len(datamanager.eval_dataset) == 2


def test_specification_wraps_auto_config() -> None:
    assert isinstance(nerfcompress_data, DataParserSpecification)
    assert isinstance(nerfcompress_data.config, AutoDataParserConfig)
    assert nerfcompress_data.description
