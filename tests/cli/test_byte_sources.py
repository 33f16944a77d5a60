"""Where ns-compress view reads from: a path, an HTTP URL; and the rate limit."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import pytest

from nerfcompress.cli.byte_sources import open_source, rate_limited
from nerfcompress.cli.errors import CommandError


@pytest.fixture
def served(tmp_path):
    """``(url, bytes)`` of a file served over HTTP on a free local port."""
    payload = bytes(range(256)) * 40
    (tmp_path / "scene.ncmp").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/scene.ncmp", payload
    server.shutdown()
    server.server_close()


def test_a_url_and_a_path_give_the_same_bytes_and_size(served, tmp_path):
    url, payload = served
    for spec in (url, str(tmp_path / "scene.ncmp")):
        source = open_source(spec)
        try:
            assert b"".join(rate_limited(source.read, None)) == payload and source.total_bytes == len(payload)
        finally:
            source.close()


def test_the_rate_limit_spreads_the_bytes_over_time(served):
    url, payload = served
    source = open_source(url)
    start, arrivals = time.monotonic(), []
    for chunk in rate_limited(source.read, rate_kbps=400.0):  # 50,000 bytes per second
        arrivals.append((time.monotonic() - start, len(chunk)))
    source.close()
    assert sum(size for _, size in arrivals) == len(payload) and len(arrivals) >= 2
    assert arrivals[-1][0] >= 0.9 * len(payload) / 50_000  # 10,240 bytes: at least about 0.2 s


def test_missing_paths_bad_urls_and_rates_are_refused(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        open_source(str(tmp_path / "none.ncmp"))
    with pytest.raises(CommandError, match="cannot open"):
        open_source("http://127.0.0.1:9/none.ncmp")
    with pytest.raises(ValueError, match="rate_kbps"):
        next(rate_limited(lambda n: b"x", rate_kbps=0))
