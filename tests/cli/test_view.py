"""``ns-compress view`` in a real (headless) browser: the picture changes as the file's levels arrive.

The file is piped into ``ns-compress view -`` in two parts: first the prefix that holds level 1, then
the rest. The page is shot once level 1 has rendered at the viewer's max resolution, again a moment
later (nothing arrived: the picture must stay), and once every level is in (it must change).
Uses the DevTools client and canvas checks of scripts/viewer_screenshot.py. Needs Chromium (Debian:
``apt-get install -y chromium``); without it the test fails, on purpose.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nerfcompress.bitstream.container import read_container_index
from nerfcompress.bitstream.levels import level_prefix_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from viewer_screenshot import (  # noqa: E402
    CHROMIUM_FLAGS,
    PAGE_STATE,
    DevTools,
    canvas_box,
    canvas_centre,
    canvas_stats,
    free_port,
    http_ok,
    render_resolution,
    stop,
)

MAX_RES = 64  # the viewer's smallest "Max res": every render is small and fast on CPU
WINDOW = (800, 500)
TIMEOUT_S = 300.0  # each wait; the shared 2-core machine can be very busy


async def _page(profile: Path, browser: subprocess.Popen, url: str):
    import websockets

    deadline = time.monotonic() + TIMEOUT_S
    port_file = profile / "DevToolsActivePort"
    while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
        assert browser.poll() is None and time.monotonic() < deadline, "Chromium did not open its DevTools port"
        await asyncio.sleep(0.2)
    devtools_port = int(port_file.read_text().splitlines()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=10) as response:
        page = next(t for t in json.load(response) if t.get("type") == "page")
    return await websockets.connect(page["webSocketDebuggerUrl"], max_size=None)


async def _shot_when(tab: DevTools, viewer: subprocess.Popen, ready, what: str):
    """Polls the page until ``ready(text, resolution, centre)`` holds; returns that canvas centre."""
    deadline, last = time.monotonic() + TIMEOUT_S, "nothing yet"
    while time.monotonic() < deadline:
        assert viewer.poll() is None, f"ns-compress view exited with {viewer.returncode}"
        state = await tab.evaluate(PAGE_STATE) or {}
        text, box = state.get("text", ""), canvas_box(state)
        resolution = render_resolution(text)
        if box is not None and resolution is not None and max(resolution) >= MAX_RES:
            centre = canvas_centre(await tab.screenshot(), box)
            if ready(text, centre):
                return centre
            last = f"resolution {resolution}, page: {text[:300]!r}"
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} ({last})")


@pytest.mark.slow
def test_the_picture_changes_as_levels_arrive(contrasting_levels_export, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: install Debian's chromium (apt-get install -y chromium)")
    data = contrasting_levels_export.read_bytes()
    header, index = read_container_index(data)
    first_level = level_prefix_bytes(header["grids"], index)[0]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "view.log").open("wb")
    viewer = subprocess.Popen(
        [sys.executable, "-m", "nerfcompress.cli.main", "view", "-", "--websocket-host", "127.0.0.1",
         "--websocket-port", str(port), "--max-res", str(MAX_RES), "--max-num-display-images", "1"],
        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    browser = None
    try:
        viewer.stdin.write(data[:first_level])
        viewer.stdin.flush()
        deadline = time.monotonic() + TIMEOUT_S
        while not http_ok(url):
            assert viewer.poll() is None, (tmp_path / "view.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the viewer did not open on the first level"
            time.sleep(0.3)
        profile = tmp_path / "profile"
        profile.mkdir()
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
             "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

        async def run():
            async with await _page(profile, browser, url) as connection:
                tab = DevTools(connection)
                await tab.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1],
                               deviceScaleFactor=1, mobile=False)  # fmt: skip
                await tab.call("Page.navigate", url=url)
                previous = {}

                def settled(text, centre):  # the viewer may re-render (its camera arriving) before it rests
                    last, previous["centre"] = previous.get("centre"), centre
                    steady = last is not None and canvas_stats(centre, last).changed_fraction < 0.05
                    return "level 1 of 5, receiving" in text and steady

                coarse = await _shot_when(tab, viewer, settled, "level 1 to render the same twice")
                await asyncio.sleep(2.0)
                again = await _shot_when(tab, viewer, lambda text, _: "level 1 of 5" in text, "level 1 again")
                viewer.stdin.write(data[first_level:])
                viewer.stdin.close()  # the end of the stream

                def refined(text, centre):
                    changed = canvas_stats(centre, coarse).changed_fraction
                    return "level 5 of 5, complete" in text and changed >= 0.3

                fine = await _shot_when(tab, viewer, refined, "all 5 levels to render differently")
                return coarse, again, fine

        coarse, again, fine = asyncio.run(run())
    finally:
        stop(browser)
        stop(viewer)
        log.close()
    assert canvas_stats(again, coarse).changed_fraction < 0.05  # no new bytes, no new picture
    assert canvas_stats(fine, coarse).changed_fraction >= 0.3


def test_a_file_without_a_complete_first_level_is_one_error_line(contrasting_levels_export, tmp_path, capsys):
    from nerfcompress.cli.view import View

    data = contrasting_levels_export.read_bytes()
    header, index = read_container_index(data)
    short = tmp_path / "short.ncmp"
    short.write_bytes(data[: level_prefix_bytes(header["grids"], index)[0] - 1])
    for view, message in (
        (View(file=str(short)), "without a complete level"),
        (View(file=str(tmp_path / "none.ncmp")), "does not exist"),
        (View(file=str(short), rate_kbps=0.0), "--rate-kbps must be above 0"),
    ):
        with pytest.raises(SystemExit) as exit_:
            view.main()
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
