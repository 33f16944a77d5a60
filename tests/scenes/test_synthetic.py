"""Tests for nerfcompress.scenes.synthetic (procedural Blender-format scene)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfcompress.scenes.synthetic import (
    CAMERA_ANGLE_X,
    SCENE_RADIUS,
    SPLITS,
    render_view,
    sample_camera_poses,
    scene_sdf,
    write_synthetic_scene,
)

SMALL = dict(resolution=24, num_train_views=4, num_val_views=2, num_test_views=3, supersample=2, seed=0)
COUNTS = {"train": 4, "val": 2, "test": 3}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_scene(tmp_path_factory.mktemp("scene") / "synthetic", **SMALL)


def _load_rgba(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        return np.asarray(image)


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class TestLayout:
    def test_files_and_json_structure(self, scene_dir: Path) -> None:
        for split in SPLITS:
            meta = json.loads((scene_dir / f"transforms_{split}.json").read_text())
            assert meta["camera_angle_x"] == pytest.approx(CAMERA_ANGLE_X)
            assert len(meta["frames"]) == COUNTS[split]
            assert len(list((scene_dir / split).glob("*.png"))) == COUNTS[split]
            for i, frame in enumerate(meta["frames"]):
                assert frame["file_path"] == f"./{split}/r_{i}"
                assert isinstance(frame["rotation"], float)
                c2w = np.array(frame["transform_matrix"])
                assert c2w.shape == (4, 4)
                np.testing.assert_allclose(c2w[3], [0.0, 0.0, 0.0, 1.0])
                np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
                png = scene_dir / (frame["file_path"].replace("./", "") + ".png")
                assert _load_rgba(png).shape == (24, 24, 4)

    def test_cameras_outside_box_and_look_at_origin(self, scene_dir: Path) -> None:
        for split in SPLITS:
            meta = json.loads((scene_dir / f"transforms_{split}.json").read_text())
            for frame in meta["frames"]:
                c2w = np.array(frame["transform_matrix"])
                origin, forward = c2w[:3, 3], -c2w[:3, 2]  # OpenGL: camera looks down -Z
                assert np.abs(origin).max() > 1.5 + 1.0
                np.testing.assert_allclose(forward, -origin / np.linalg.norm(origin), atol=1e-12)
                assert c2w[2, 1] > 0.0  # camera +Y points up-ish (world +Z up)

    def test_splits_have_different_view_directions(self) -> None:
        directions = {s: sample_camera_poses(20, 0, s)[:, :3, 2] for s in SPLITS}
        for a, b in [("train", "test"), ("train", "val"), ("val", "test")]:
            cos = np.clip(directions[a] @ directions[b].T, -1.0, 1.0)
            assert np.arccos(cos).min() > 1e-3

    def test_scene_inside_scene_box(self) -> None:
        rng = np.random.default_rng(0)
        shell = rng.normal(size=(20000, 3))
        shell *= SCENE_RADIUS / np.linalg.norm(shell, axis=1, keepdims=True)
        assert scene_sdf(shell).min() > 0.0
        assert SCENE_RADIUS < 1.5


class TestImages:
    def test_alpha_background_and_object(self, scene_dir: Path) -> None:
        for split in SPLITS:
            for png in (scene_dir / split).glob("*.png"):
                alpha = _load_rgba(png)[..., 3]
                assert (alpha == 0).mean() > 0.2
                assert (alpha == 255).mean() > 0.05
                assert _load_rgba(png)[alpha == 0][:, :3].max() == 0

    def test_fine_texture(self) -> None:
        """Thresholds sit between this scene and two flat variants (one grey albedo: rgb-gradient
        median 48, 108 colours, 1 chroma bin; one colour per primitive: 32, 602, 8 bins), which keep
        the geometric grooves and bumps but lose the texture."""
        c2w = sample_camera_poses(1, 0, "train")[0]
        image = render_view(c2w, 96, supersample=1).astype(np.float64)
        inside = image[..., 3] == 255
        # Pixels whose right and lower neighbours are also opaque: gradients stay inside the object.
        both = inside[:-1, :-1] & inside[1:, :-1] & inside[:-1, 1:]
        assert both.sum() > 500
        rgb = image[..., :3]
        chroma = rgb / np.maximum(rgb.sum(-1, keepdims=True), 1.0)  # shading-invariant

        def grad(x: np.ndarray) -> np.ndarray:
            return (np.abs(x[1:, :-1] - x[:-1, :-1]) + np.abs(x[:-1, 1:] - x[:-1, :-1])).sum(-1)[both]

        assert np.median(grad(rgb)) > 80.0  # this scene: 121
        assert (grad(chroma) > 0.05).mean() > 0.3  # this scene: 0.45
        assert len(np.unique(rgb[inside], axis=0)) > 800  # this scene: 1251
        assert len(np.unique(np.round(chroma[inside] * 20.0), axis=0)) > 30  # this scene: 59


class TestDeterminism:
    def test_two_writes_are_byte_identical(self, tmp_path: Path, scene_dir: Path) -> None:
        again = write_synthetic_scene(tmp_path / "again", **SMALL)
        assert _all_files(again) == _all_files(scene_dir)

    def test_seed_changes_poses(self) -> None:
        assert not np.allclose(sample_camera_poses(5, 0, "train"), sample_camera_poses(5, 1, "train"))

    def test_overwrite_previous_scene(self, tmp_path: Path) -> None:
        out = tmp_path / "scene"
        write_synthetic_scene(out, resolution=16, num_train_views=3, num_val_views=1, num_test_views=1)
        write_synthetic_scene(out, resolution=16, num_train_views=1, num_val_views=1, num_test_views=1)
        assert sorted(p.name for p in (out / "train").iterdir()) == ["r_0.png"]

    def test_refuse_foreign_nonempty_dir(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("keep me")
        with pytest.raises(ValueError, match="not empty"):
            write_synthetic_scene(tmp_path, resolution=16, num_train_views=1, num_val_views=1, num_test_views=1)
        assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "name, value",
    [
        ("resolution", 7),
        ("resolution", 4097),
        ("resolution", 32.0),
        ("num_train_views", 0),
        ("num_val_views", 0),
        ("num_test_views", -1),
        ("supersample", 0),
        ("seed", -1),
    ],
)
def test_bad_arguments(tmp_path: Path, name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name) as info:
        write_synthetic_scene(tmp_path / "out", **{name: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_nerfstudio_blender_dataparser_reads_it(scene_dir: Path) -> None:
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    parser = BlenderDataParserConfig(data=scene_dir).setup()
    for split in SPLITS:
        outputs = parser.get_dataparser_outputs(split)
        assert len(outputs.image_filenames) == COUNTS[split]
        assert all(Path(f).is_file() for f in outputs.image_filenames)
        assert int(outputs.cameras.width[0]) == 24 and int(outputs.cameras.height[0]) == 24
        assert float(outputs.cameras.cx[0]) == 12.0


def test_core_import_is_light() -> None:
    code = (
        "import sys, nerfcompress.scenes.synthetic; "
        "bad = [m for m in ('nerfstudio', 'torch', 'tyro') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
