"""ProgressiveModel: a file fed in chunks opens at its first level and refines; early ends and damage keep
the last good level; grids are decoded without the renderer's lock."""

from __future__ import annotations

import threading
import time
from typing import Iterator, List

import pytest
import torch

import nerfcompress.plugin.progressive as progressive
from nerfcompress.bitstream.container import read_container_index
from nerfcompress.bitstream.levels import level_prefix_bytes
from nerfcompress.plugin.import_model import decode_pipeline
from nerfcompress.plugin.progressive import ProgressiveModel, StreamStatus


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _render(pipeline, camera) -> torch.Tensor:
    pipeline.model.eval()
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera)["rgb"]


def _stream(data: bytes, tmp_path, chunks=None) -> tuple[ProgressiveModel, List[StreamStatus]]:
    statuses: List[StreamStatus] = []
    chunks = _chunks(data, 997) if chunks is None else chunks
    model = ProgressiveModel(chunks, tmp_path, threading.Lock(), total_bytes=len(data), on_change=statuses.append)
    model.start()
    assert model.finished.wait(300), "the stream did not finish"
    return model, statuses


def _level_by_level(data: bytes, prefix_bytes: List[int], model_box: list) -> Iterator[bytes]:
    """The file in one chunk per level, each sent once the model renders the level before (a slow network)."""
    start = 0
    for level, end in enumerate([*prefix_bytes, len(data)]):
        deadline = time.monotonic() + 300
        while level and model_box[0].levels < level:
            assert time.monotonic() < deadline, f"level {level} did not arrive"
            time.sleep(0.02)
        yield data[start:end]
        start = end


@pytest.fixture(scope="module")
def file_data(contrasting_levels_export) -> bytes:
    return contrasting_levels_export.read_bytes()


@pytest.fixture(scope="module")
def prefix_bytes(file_data) -> List[int]:
    header, index = read_container_index(file_data)
    return level_prefix_bytes(header["grids"], index)


def test_levels_arrive_in_order_and_the_last_renders_like_the_whole_file(file_data, prefix_bytes, tmp_path):
    box: list = []
    statuses: List[StreamStatus] = []
    model = ProgressiveModel(
        _level_by_level(file_data, prefix_bytes, box), tmp_path / "stream", threading.Lock(), len(file_data),
        on_change=statuses.append,
    )  # fmt: skip
    box.append(model)
    model.start()
    assert model.finished.wait(300), "the stream did not finish"
    levels = [s.levels for s in statuses]
    assert levels == sorted(levels) and set(levels) == set(range(1, len(prefix_bytes) + 1))
    assert [s.bytes_received for s in statuses if s.levels == 1][0] == prefix_bytes[0]
    final = model.status()
    assert final.complete and final.error is None and final.bytes_received == len(file_data)
    assert "level 5 of 5, complete" in final.describe()
    _, whole, _ = decode_pipeline(file_data, tmp_path / "whole")
    camera = whole.datamanager.train_dataparser_outputs.cameras[0:1]
    assert torch.equal(_render(model.pipeline, camera), _render(whole, camera))
    assert model.pipeline.model.config.active_levels is None
    assert (
        final.cameras
        and (tmp_path / "stream" / "cameras.json").read_text() == (tmp_path / "whole" / "cameras.json").read_text()
    )  # the stand-ins of the first level were replaced by the stored cameras


def test_a_truncated_stream_keeps_the_last_good_level(file_data, prefix_bytes, tmp_path):
    model, _ = _stream(file_data[: prefix_bytes[2] + 5], tmp_path / "stream")
    status = model.status()
    assert status.levels == 3 and not status.complete
    assert "ended after" in status.error and "showing 3 of 5 levels" in status.error
    assert model.pipeline.model.config.active_levels == 3
    _, limited, _ = decode_pipeline(file_data, tmp_path / "limited", max_levels=3)
    camera = limited.datamanager.train_dataparser_outputs.cameras[0:1]
    assert torch.equal(_render(model.pipeline, camera), _render(limited, camera))
    assert not status.cameras  # they come last


def test_a_corrupt_section_stops_refining_with_a_message(file_data, prefix_bytes, tmp_path):
    _, index = read_container_index(file_data)
    section = next(e for e in index if e.name == "main.l2")
    damaged = bytearray(file_data)
    damaged[section.offset + section.length // 2] ^= 0x10
    model, statuses = _stream(bytes(damaged), tmp_path / "stream")
    status = model.status()
    assert status.levels == 2 and not status.complete
    assert "damaged" in status.error and "'main.l2' fails its CRC32" in status.error
    assert "keeping 2 levels" in status.describe()
    assert max(s.levels for s in statuses) == 2


def test_a_stream_without_a_complete_level_opens_nothing(file_data, prefix_bytes, tmp_path):
    model, _ = _stream(file_data[: prefix_bytes[0] - 1], tmp_path / "stream")
    assert model.first_level.is_set() and model.pipeline is None
    assert model.status().levels == 0 and "without a complete level" in model.status().error


def test_grids_decode_while_the_renderer_holds_its_lock_and_only_the_swap_waits(
    file_data, prefix_bytes, tmp_path, monkeypatch
):
    lock = threading.Lock()
    decoded_levels: List[int] = []

    def decode_without_lock(grids, sections, tables, num_levels=None):
        decoded_levels.append((num_levels, lock.locked()))  # the test holds it, as a long render would
        return decode_tables(grids, sections, tables, num_levels=num_levels)

    decode_tables = progressive.decode_tables
    monkeypatch.setattr(progressive, "decode_tables", decode_without_lock)
    box: list = []
    model = ProgressiveModel(_level_by_level(file_data[: prefix_bytes[1]], prefix_bytes[:1], box), tmp_path, lock)
    box.append(model)
    with lock:  # a render in progress
        model.start()
        model.first_level.wait(300)
        assert model.levels == 1
        deadline = time.monotonic() + 300
        while not decoded_levels and time.monotonic() < deadline:
            time.sleep(0.05)  # level 2 decodes although the lock is held...
        assert decoded_levels == [(2, True)] and model.levels == 1  # ...and waits to be swapped in
    assert model.finished.wait(300) and model.levels == 2
