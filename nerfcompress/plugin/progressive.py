"""A decoded model that refines while its file arrives: the first level opens it, finer ones swap in.

:class:`ProgressiveModel` reads a file's bytes from an iterator of chunks (a file read at a rate
limit, a pipe, a download) on one background thread, as a network delivers them whatever the
reader does, and feeds everything that has arrived to a
:class:`~nerfcompress.bitstream.level_stream.LevelStream` on another (so when decoding is slower
than the network, it skips to the finest level that is in). The first prefix that holds a
complete level is decoded into a pipeline (:func:`~nerfcompress.plugin.import_model.decode_pipeline`)
and :attr:`ProgressiveModel.first_level` is set. Each later level count is decoded into fresh
tables on the background thread, with no lock held; only the swap (every grid's table, the
model's ``active_levels``) takes ``lock``, the lock the renderer holds while it renders. Then
``on_change`` is called, so a viewer can re-render. Rendering therefore never waits for a
decode, only for a swap of references.

The stored training cameras come last in a file; until they arrive the pipeline has
stand-in cameras (:func:`~nerfcompress.plugin.import_model.stand_in_cameras`). When they do, they
are written to ``work_dir`` and :attr:`StreamStatus.cameras` turns True, so a viewer can draw them.

A stream that ends early, is damaged, or decodes to something the model cannot take stops
refining: :attr:`StreamStatus.error` says why, and the model keeps the last good level.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Union

import torch
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import Pipeline

from nerfcompress.bitstream.level_stream import DEFAULT_MAX_BYTES, LevelArrival, LevelStream
from nerfcompress.bitstream.model_codec import decode_tables
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.import_model import decode_pipeline, rebuild_config, stored_cameras
from nerfcompress.plugin.model import GridModel
from nerfcompress.plugin.stored_cameras import write_stored_cameras
from nerfcompress.tables import FeatureTable


@dataclass(frozen=True)
class StreamStatus:
    """Where a stream stands.

    Attributes:
        bytes_received: bytes read so far.
        total_bytes: the file's size if the source knows it, else None.
        levels: levels the model renders now (0 before the first level).
        most_levels: the most levels of any grid, once the header is in.
        complete: the whole file arrived and every level is decoded.
        error: why the stream stopped refining, or None.
        cameras: the stored training cameras have arrived (``work_dir/cameras.json`` holds them).
    """

    bytes_received: int
    total_bytes: Optional[int]
    levels: int
    most_levels: Optional[int]
    complete: bool
    error: Optional[str]
    cameras: bool = False

    def describe(self) -> str:
        """One line for people, e.g. ``"45,123 of 120,426 bytes (37%), level 4 of 12"``."""
        received = f"{self.bytes_received:,}"
        if self.total_bytes:
            received += f" of {self.total_bytes:,} bytes ({100 * self.bytes_received / self.total_bytes:.0f}%)"
        else:
            received += " bytes"
        level = "no level yet" if self.levels == 0 else f"level {self.levels} of {self.most_levels}"
        state = "complete" if self.complete else (f"stopped: {self.error}" if self.error else "receiving")
        return f"{received}, {level}, {state}"


class ProgressiveModel:
    """A pipeline decoded from a file as it arrives, refined level by level.

    Args:
        chunks: the file's bytes in order, as they arrive; exhausting it ends the stream.
            ``OSError`` raised by it stops the stream with its message.
        work_dir: where the import writes the stored cameras (see ``decode_pipeline``).
        lock: held while grids are swapped; pass the lock the renderer holds.
        total_bytes: the file's size if known (shown in the status, and bounds the stream).
        on_change: called with the new :class:`StreamStatus` after the decoder has taken what
            arrived (and swapped in a level, if one came), and when the stream stops; on the
            decoder thread.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        work_dir: Path,
        lock: threading.Lock,
        total_bytes: Optional[int] = None,
        on_change: Callable[[StreamStatus], None] = lambda status: None,
    ) -> None:
        self._chunks = chunks
        self.work_dir = work_dir
        self.lock = lock
        self.total_bytes = total_bytes
        self.on_change = on_change
        self._stream = LevelStream(max_bytes=total_bytes or DEFAULT_MAX_BYTES)
        self._decode_error: Optional[str] = None
        self._most_rendered: Optional[int] = None  # a file may store fewer active levels than it holds
        self._cameras = False
        self.levels = 0
        """Levels the model renders now."""
        self.config: Optional[TrainerConfig] = None
        self.pipeline: Optional[Pipeline] = None
        self.step = 0
        self.first_level = threading.Event()
        """Set once the pipeline exists, or once the stream stopped without a first level."""
        self.finished = threading.Event()
        """Set when the stream has ended or stopped."""
        self._arrived: "queue.Queue[Union[bytes, OSError, None]]" = queue.Queue()  # None: the end
        self._bytes_read = 0
        self._stop_reading = threading.Event()
        self._reader = threading.Thread(target=self._read, name="ncmp-read", daemon=True)
        self._decoder = threading.Thread(target=self._run, name="ncmp-decode", daemon=True)

    def start(self) -> "ProgressiveModel":
        """Starts reading and decoding on the background threads."""
        self._reader.start()
        self._decoder.start()
        return self

    def status(self) -> StreamStatus:
        """The stream's state now."""
        stream = self._stream
        return StreamStatus(
            bytes_received=self._bytes_read,
            total_bytes=self.total_bytes,
            levels=self.levels,
            most_levels=stream.most_levels,
            complete=stream.complete and self._decode_error is None,
            error=self._decode_error or stream.error,
            cameras=self._cameras,
        )

    def _read(self) -> None:
        """Moves chunks from the source to the queue as they come (the reader thread)."""
        try:
            for chunk in self._chunks:
                self._bytes_read += len(chunk)
                self._arrived.put(chunk)
                if self._stop_reading.is_set() or self._bytes_read > self._stream.max_bytes:
                    break  # the decoder stopped, or will refuse a stream this long
        except OSError as exc:
            self._arrived.put(exc)
        finally:
            self._arrived.put(None)

    def _run(self) -> None:
        """Feeds what has arrived to the level stream and applies new levels (the decoder thread)."""
        ended = False
        try:
            while not ended and not self._stream.stopped and self._decode_error is None:
                items = [self._arrived.get()]
                while not self._arrived.empty():
                    items.append(self._arrived.get_nowait())
                failures = [item for item in items if isinstance(item, OSError)]
                if failures:
                    self._decode_error = f"reading the stream failed after {self._bytes_read:,} bytes ({failures[0]})"
                    break
                ended = items[-1] is None
                self._apply(self._stream.feed(b"".join(item for item in items if item is not None)))
                if ended and not self._stream.stopped:
                    self._apply(self._stream.end())
                self._take_cameras()
                self.on_change(self.status())
        finally:
            self._stop_reading.set()
            self.first_level.set()
            self.finished.set()
            self.on_change(self.status())

    def _apply(self, arrival: Optional[LevelArrival]) -> None:
        if arrival is None or self._decode_error is not None:
            return
        try:
            if self.pipeline is None:
                stored = rebuild_config(arrival.header, self.work_dir).pipeline.model.active_levels
                self._most_rendered = stored or arrival.most_levels
                self.config, self.pipeline, self.step = decode_pipeline(arrival.data, self.work_dir, prefix=True)
                self.levels = min(arrival.levels, self._most_rendered)
                self.first_level.set()
            elif min(arrival.levels, self._most_rendered) > self.levels:
                self._swap_in(arrival, min(arrival.levels, self._most_rendered))
        except BitstreamError as exc:
            self._decode_error = f"level {arrival.levels} does not decode ({exc}); keeping {self.levels} levels"

    def _take_cameras(self) -> None:
        """Writes the stored cameras into ``work_dir`` once they have arrived after the first level."""
        if self._cameras or self.pipeline is None or "cameras" not in self._stream.sections:
            return
        try:
            write_stored_cameras(self.work_dir, stored_cameras(self._stream.header, self._stream.sections, False))
        except BitstreamError as exc:
            self._decode_error = f"the stored cameras do not decode ({exc}); keeping {self.levels} levels"
            return
        self._cameras = True

    def _swap_in(self, arrival: LevelArrival, levels: int) -> None:
        """Decodes ``levels`` levels of ``arrival`` into fresh tables, then swaps them in under the lock."""
        model = self.pipeline.model
        assert isinstance(model, GridModel)
        encodings = model.grid_encodings()
        with torch.no_grad():
            tables: List[FeatureTable] = [model.config.build_table(e.layout).eval() for e in encodings]
        decode_tables(arrival.header.get("grids"), arrival.sections, tables, num_levels=levels)
        with self.lock:
            for encoding, table in zip(encodings, tables, strict=True):
                encoding.table = table
            model.config.active_levels = levels if levels < arrival.most_levels else None
            model.eval()  # every grid renders the new level count
            self.levels = levels
