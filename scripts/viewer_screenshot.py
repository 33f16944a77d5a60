"""Screenshot of a model in nerfstudio's web viewer, taken by a real (headless) browser.

Starts ``ns-viewer`` on a free local port, opens its page in headless Chromium driven over the
Chrome DevTools protocol, waits until the viewer is connected and its render has stopped
refining, saves a PNG, and checks that the 3D canvas shows a rendered image rather than an empty
background. Everything it started is shut down before it exits.

    .venv/bin/python scripts/viewer_screenshot.py --file scene.ncmp --output shot.png
    .venv/bin/python scripts/viewer_screenshot.py --load-config decoded/config.yml --output shot.png

``--file`` imports the file first (``ns-compress import``, into ``--import-dir`` or a temporary
directory). Needs Chromium: on Debian ``apt-get install -y chromium``. Exits with status 1 and one
line on stderr when something fails.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tyro
from PIL import Image
from rich.console import Console

CONSOLE = Console()
ERR = Console(stderr=True)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
    # The viewer page links an analytics script; resolve nothing but the local viewer.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
RESOLUTION = re.compile(r"Resolution:\s*(\d+)\s*\S\s*(\d+)\s*px")


class ScreenshotError(Exception):
    """A failure reported as one line."""


@dataclass
class CanvasStats:
    """How the centre of the 3D canvas looks in a screenshot, and how much of it a render changed."""

    distinct_colours: int
    background_fraction: float  # share of the most common colour
    changed_fraction: Optional[float]  # share of pixels unlike the empty canvas; None without a reference

    def __str__(self) -> str:
        text = f"{self.distinct_colours} distinct colours, most common colour {self.background_fraction:.0%}"
        if self.changed_fraction is not None:
            text += f", {self.changed_fraction:.0%} of pixels changed from the empty canvas"
        return text


def canvas_centre(png: bytes, box: Tuple[int, int, int, int]) -> Image.Image:
    """The central 60% of ``box`` (left, top, right, bottom; CSS px = image px) as an RGB image.

    The centre leaves out the axes gizmo in the canvas corner, which is drawn even when no
    render has arrived.
    """
    image = Image.open(io.BytesIO(png)).convert("RGB")
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if width < 10 or height < 10:
        raise ScreenshotError(f"the viewer's canvas is {width}x{height} px: the page did not lay out")
    return image.crop((left + width // 5, top + height // 5, right - width // 5, bottom - height // 5))


def canvas_stats(centre: Image.Image, empty_centre: Optional[Image.Image], tolerance: int = 6) -> CanvasStats:
    """Statistics of a canvas centre; ``empty_centre`` is the same region before any render arrived.

    A pixel counts as changed when some channel differs from the empty canvas by more than
    ``tolerance`` (JPEG noise in the streamed render stays below it).
    """
    total = centre.width * centre.height
    colours = centre.getcolors(maxcolors=total) or []  # (count, colour) pairs
    changed = None
    if empty_centre is not None and empty_centre.size == centre.size:
        difference = np.abs(np.asarray(centre, np.int16) - np.asarray(empty_centre, np.int16)).max(axis=-1)
        changed = float((difference > tolerance).mean())
    return CanvasStats(len(colours), max(count for count, _ in colours) / total, changed)


def render_resolution(page_text: str) -> Optional[Tuple[int, int]]:
    """The render resolution the viewer's panel shows; None until a first render arrived (0x0)."""
    match = RESOLUTION.search(page_text)
    if match is None or 0 in (size := (int(match.group(1)), int(match.group(2)))):
        return None
    return size


def canvas_box(page_state: Dict[str, Any]) -> Optional[Tuple[int, int, int, int]]:
    """The largest canvas's box in screenshot pixels (PAGE_STATE gives CSS px and the pixel ratio)."""
    if not page_state.get("canvas"):
        return None
    scale = page_state.get("dpr") or 1
    left, top, right, bottom = (round(value * scale) for value in page_state["canvas"])
    return left, top, right, bottom


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def stop(process: Optional[subprocess.Popen], timeout: float = 10.0) -> None:
    """Terminates a process started here (with its own process group), then kills it."""
    if process is None or process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class DevTools:
    """A minimal Chrome DevTools protocol client on one page target."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> Dict[str, Any]:
        call_id = next(self.ids)
        await self.connection.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScreenshotError(f"Chromium did not answer {method} within {timeout:.0f} s")
            message = json.loads(await asyncio.wait_for(self.connection.recv(), timeout=left))
            if message.get("id") == call_id:
                if "error" in message:
                    raise ScreenshotError(f"Chromium refused {method}: {message['error'].get('message')}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def screenshot(self) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png", timeout=60.0)
        return base64.b64decode(result["data"])


PAGE_STATE = """(() => {
  const canvases = [...document.querySelectorAll("canvas")];
  let best = null, area = 0;
  for (const c of canvases) {
    const r = c.getBoundingClientRect();
    if (r.width * r.height > area) { area = r.width * r.height; best = r; }
  }
  return {
    text: document.body ? document.body.innerText : "",
    canvas: best ? [best.left, best.top, best.right, best.bottom] : null,
    dpr: window.devicePixelRatio,
  };
})()"""


@dataclass
class ViewerScreenshot:
    """Screenshot of nerfstudio's web viewer (ns-viewer) in headless Chromium."""

    file: Optional[Path] = None
    """A .ncmp file to import (ns-compress import) and view."""
    load_config: Optional[Path] = None
    """Or: the config.yml of a run (trained, or an import's)."""
    output: Path = Path("viewer_screenshot.png")
    """Where to write the PNG."""
    import_dir: Optional[Path] = None
    """Where --file is imported; a temporary directory (removed afterwards) if unset."""
    chromium: str = "chromium"
    """The Chromium executable (name on PATH or a path)."""
    window_size: Tuple[int, int] = (1280, 800)
    """Browser window width and height in px."""
    settle_seconds: float = 6.0
    """Capture once the viewer's render resolution stayed unchanged this long, or at once at --max-res."""
    max_res: int = 512
    """The viewer's "Max res" setting (512 unless changed in its GUI): its final, full-resolution render."""
    timeout_seconds: float = 300.0
    """Bound on each wait: the viewer's port, the page connecting, the render settling."""
    max_num_display_images: int = 8
    """Passed to ns-viewer: training-camera thumbnails to show (each is rendered into the scene)."""
    min_changed_fraction: float = 0.5
    """Share of the canvas centre the render must change from the empty canvas shot before it (see _capture)."""
    min_distinct_colours: int = 64
    """Without an empty-canvas shot (the render came first): the centre needs this many distinct colours..."""
    max_background_fraction: float = 0.5
    """...and its most common colour may cover at most this share (an empty canvas is 1 colour, 100%)."""
    verbose: bool = False
    """Print each render resolution the viewer reports while waiting."""

    def main(self) -> None:
        try:
            self.run()
        except ScreenshotError as error:
            ERR.print(f"[bold red]viewer_screenshot failed:[/bold red] {error}", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            ERR.print("viewer_screenshot interrupted")
            sys.exit(130)

    def run(self) -> None:
        if (self.file is None) == (self.load_config is None):
            raise ScreenshotError("give exactly one of --file and --load-config")
        chromium = shutil.which(self.chromium)
        if chromium is None:
            raise ScreenshotError(
                f"{self.chromium!r} not found: install Chromium (Debian: apt-get install -y chromium) "
                "or pass --chromium"
            )
        bin_dir = Path(sys.executable).parent
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="viewer_screenshot_") as tmp:
            tmp_dir = Path(tmp)
            if self.file is not None:
                config = self._import(bin_dir / "ns-compress", tmp_dir)
            else:
                config = self.load_config
                if not config.is_file():
                    raise ScreenshotError(f"{config} does not exist")
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            viewer = browser = None
            viewer_log = tmp_dir / "ns-viewer.log"
            try:
                t0 = time.monotonic()
                with viewer_log.open("wb") as log:
                    viewer = subprocess.Popen(
                        [str(bin_dir / "ns-viewer"), "--load-config", str(config),
                         "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port),
                         "--viewer.max-num-display-images", str(self.max_num_display_images)],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                self._wait_for_viewer(viewer, url, viewer_log)
                CONSOLE.print(f"ns-viewer answers at {url} after {time.monotonic() - t0:.1f} s")
                t0 = time.monotonic()
                profile = tmp_dir / "chromium-profile"
                profile.mkdir()
                with (tmp_dir / "chromium.log").open("wb") as log:
                    browser = subprocess.Popen(
                        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                         f"--window-size={self.window_size[0]},{self.window_size[1]}",
                         "--remote-debugging-port=0", "about:blank"],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                png, stats, note = asyncio.run(self._capture(browser, profile, url, viewer, viewer_log))
                CONSOLE.print(f"Chromium captured the page after {time.monotonic() - t0:.1f} s ({note})")
            finally:
                stop(browser)
                stop(viewer)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(io.BytesIO(png))
        image.save(self.output, optimize=True)
        CONSOLE.print(
            f"[bold green]Saved[/bold green] {self.output} ({image.width}x{image.height}, "
            f"{self.output.stat().st_size / 1024:.0f} KiB; canvas: {stats}) in {time.monotonic() - started:.1f} s"
        )

    def _import(self, ns_compress: Path, tmp_dir: Path) -> Path:
        assert self.file is not None
        if not self.file.is_file():
            raise ScreenshotError(f"{self.file} does not exist")
        target = self.import_dir if self.import_dir is not None else tmp_dir / "decoded"
        t0 = time.monotonic()
        result = subprocess.run(
            [str(ns_compress), "import", str(self.file), "--output-dir", str(target)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=self.timeout_seconds,
        )  # fmt: skip
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise ScreenshotError(f"ns-compress import failed: {lines[-1] if lines else result.returncode}")
        CONSOLE.print(f"Imported {self.file} into {target} in {time.monotonic() - t0:.1f} s")
        return target / "config.yml"

    def _wait_for_viewer(self, viewer: subprocess.Popen, url: str, log: Path) -> None:
        deadline = time.monotonic() + self.timeout_seconds
        while not http_ok(url):
            if viewer.poll() is not None:
                raise ScreenshotError(f"ns-viewer exited with status {viewer.returncode}: {last_line(log)}")
            if time.monotonic() > deadline:
                raise ScreenshotError(f"ns-viewer did not answer at {url} within {self.timeout_seconds:.0f} s")
            time.sleep(0.5)

    async def _capture(
        self, browser: subprocess.Popen, profile: Path, url: str, viewer: subprocess.Popen, viewer_log: Path
    ) -> Tuple[bytes, CanvasStats, str]:
        """Opens the viewer page and returns (screenshot PNG, canvas statistics, a note on the render).

        The page is shot once while connected but before the first render arrives (the empty canvas),
        and again once the render settles; the render must have changed at least --min-changed-fraction
        of the canvas centre. A barely trained model renders a near-uniform image, so the difference
        from the empty canvas, not the image's own variety, tells a render from the empty scene.
        """
        import websockets

        started = time.monotonic()
        deadline = started + self.timeout_seconds
        port_file = profile / "DevToolsActivePort"
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if browser.poll() is not None:
                raise ScreenshotError(f"Chromium exited with status {browser.returncode} at start")
            if time.monotonic() > deadline:
                raise ScreenshotError("Chromium did not open its DevTools port")
            await asyncio.sleep(0.2)
        devtools_port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=10) as response:
            pages = [target for target in json.load(response) if target.get("type") == "page"]
        if not pages:
            raise ScreenshotError("Chromium has no page open")
        async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as connection:
            tab = DevTools(connection)
            width, height = self.window_size
            await tab.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                           deviceScaleFactor=1, mobile=False)  # fmt: skip
            await tab.call("Page.navigate", url=url)
            last_resolution, since, failure = None, time.monotonic(), "the page never drew a canvas"
            empty_png: Optional[bytes] = None  # the page before any render arrived
            while True:
                if viewer.poll() is not None:
                    raise ScreenshotError(f"ns-viewer exited with status {viewer.returncode}: {last_line(viewer_log)}")
                state = await tab.evaluate(PAGE_STATE) or {}
                text = state.get("text", "")
                resolution = render_resolution(text)
                if resolution != last_resolution:
                    if self.verbose:
                        CONSOLE.print(f"  {time.monotonic() - started:6.1f} s: render resolution {resolution}")
                    last_resolution, since = resolution, time.monotonic()
                connected = "Connected" in text and "Disconnected" not in text
                box = canvas_box(state)
                if connected and box is not None and resolution is None and empty_png is None:
                    shot = await tab.screenshot()
                    # the viewer sends an image before its resolution text: keep the shot only if no
                    # render had arrived when it was taken, nor just after
                    if render_resolution((await tab.evaluate(PAGE_STATE) or {}).get("text", "")) is None:
                        empty_png = shot
                        if self.verbose:
                            CONSOLE.print(f"  {time.monotonic() - started:6.1f} s: captured the empty canvas")
                # A render at "Max res" is the viewer's last refinement of a still camera: take it at once.
                final = resolution is not None and max(resolution) >= self.max_res
                settled = resolution is not None and (final or time.monotonic() - since >= self.settle_seconds)
                if connected and settled and box is not None:
                    png = await tab.screenshot()
                    empty_centre = None if empty_png is None else canvas_centre(empty_png, box)
                    stats = canvas_stats(canvas_centre(png, box), empty_centre)
                    if self._looks_rendered(stats):
                        steady = "at max res" if final else f"unchanged for {self.settle_seconds:.0f} s"
                        note = f"render {resolution[0]}x{resolution[1]} px, {steady}"
                        return png, stats, note
                    failure = f"the canvas looks empty ({stats})"
                elif not connected:
                    failure = "the page never showed 'Connected' to the viewer's websocket"
                elif resolution is None:
                    failure = "no render arrived (the viewer's resolution stayed 0x0)"
                else:
                    failure = f"the render resolution kept changing (last {resolution[0]}x{resolution[1]} px)"
                if time.monotonic() > deadline:
                    raise ScreenshotError(f"after {self.timeout_seconds:.0f} s: {failure}")
                await asyncio.sleep(1.0)

    def _looks_rendered(self, stats: CanvasStats) -> bool:
        if stats.changed_fraction is not None:
            return stats.changed_fraction >= self.min_changed_fraction
        return (
            stats.distinct_colours >= self.min_distinct_colours
            and stats.background_fraction <= self.max_background_fraction
        )


def entrypoint() -> None:
    tyro.cli(ViewerScreenshot).main()


if __name__ == "__main__":
    entrypoint()
