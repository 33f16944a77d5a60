"""Shared fixtures: a tiny procedural Blender scene written once per test session."""

from pathlib import Path

import pytest

from nerfcompress.scenes.synthetic import write_synthetic_scene


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """16x16 px synthetic scene: 3 train, 1 val, 2 test views."""
    path = tmp_path_factory.mktemp("scenes") / "tiny"
    return write_synthetic_scene(
        path, resolution=16, num_train_views=3, num_val_views=1, num_test_views=2, supersample=1
    )
