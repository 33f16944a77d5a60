import copy
import hashlib
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from nerfcompress.bitstream import container
from nerfcompress.bitstream.container import (
    FORMAT_VERSION,
    MAGIC,
    OLDEST_READ_VERSION,
    level_section_name,
    read_container,
    read_container_index,
    read_container_prefix,
    split_level_section,
    write_container,
)
from nerfcompress.bitstream.header_dictionary import EXAMPLE_HEADERS
from nerfcompress.errors import BitstreamError

HEADER = {"method": "shacira-nerfacto", "grids": [{"name": "g0", "rows": 8}], "scale": 0.5}
HEADER_DICTIONARY_SHA256 = "c73f12bd761ded656e88db87b09f65c57e44375dd00a6ef5ad026ee416511228"
SECTIONS = [("cameras", b"\x01\x02\x03" * 10), ("g0.latents", bytes(range(200))), ("empty", b"")]


@pytest.fixture(scope="module")
def data() -> bytes:
    return write_container(HEADER, SECTIONS)


def _boundaries(data: bytes) -> list[int]:
    """Every offset where a header, section entry or payload starts or ends."""
    _, index = read_container_index(data)
    cuts = {4, 6, 10, 14, 18}
    for entry in index:
        cuts |= {entry.offset - 12 - len(entry.name) - 1, entry.offset - 12, entry.offset, entry.offset + entry.length}
    return sorted(c for c in cuts if c < len(data))


def test_round_trip(data):
    header, sections = read_container(data)
    assert header == HEADER
    assert list(sections.items()) == SECTIONS


def test_index_locates_payloads_without_copying(data):
    header, index = read_container_index(data)
    assert header == HEADER
    assert [(e.name, e.length) for e in index] == [(n, len(p)) for n, p in SECTIONS]
    assert all(data[e.offset : e.offset + e.length] == p for e, (_, p) in zip(index, SECTIONS))


def test_truncation_at_every_boundary_and_random_offsets(data):
    cuts = _boundaries(data) + random.Random(0).sample(range(len(data)), 40)
    for cut in cuts:
        with pytest.raises(BitstreamError):
            read_container(data[:cut])


def test_truncated_section_message_names_the_section(data):
    with pytest.raises(BitstreamError, match=r"file ends after \d+ bytes but section 'g0.latents' declares 200"):
        read_container(data[: read_container_index(data)[1][1].offset + 100])


def test_random_byte_flips_raise_bitstream_error_only(data):
    rng = random.Random(1)
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        if bytes(damaged) == data:
            continue
        with pytest.raises(BitstreamError):
            read_container(bytes(damaged))


def test_wrong_magic_is_a_foreign_file(data):
    with pytest.raises(BitstreamError, match="not a nerfcompress file"):
        read_container(b"PK\x03\x04" + data[4:])
    with pytest.raises(BitstreamError, match="not a nerfcompress file"):
        read_container(b"GIF")


def test_newer_version_asks_to_upgrade(data):
    newer = data[:4] + struct.pack("<H", FORMAT_VERSION + 1) + data[6:]
    with pytest.raises(BitstreamError, match=rf"format version {FORMAT_VERSION + 1} is newer .* upgrade"):
        read_container(newer)


def test_older_version_asks_to_re_export(data):
    older = data[:4] + struct.pack("<H", OLDEST_READ_VERSION - 1) + data[6:]
    with pytest.raises(BitstreamError, match=rf"format version {OLDEST_READ_VERSION - 1} is older .* re-export"):
        read_container(older)


def _zlib_header_file(data: bytes, version: int) -> bytes:
    """``data`` rewritten as a format-``version`` (6 or 7) file: the same sections, the header a
    zlib stream without the preset dictionary."""
    header_len = struct.unpack_from("<I", data, 6)[0]
    header_bytes = zlib.compress(container._header_text(read_container(data)[0]), 9)
    sections = data[18 + header_len :]
    count = struct.unpack_from("<I", data, 14)[0]
    preamble = struct.pack("<4sHIII", MAGIC, version, len(header_bytes), zlib.crc32(header_bytes), count)
    return preamble + header_bytes + sections


@pytest.mark.parametrize("version", [6, 7])
def test_the_previous_formats_still_read(data, version):
    """Format 8 only changed how the header is deflated, format 7 only added context-coded image
    levels: files of formats 6 and 7 read as they are."""
    assert OLDEST_READ_VERSION == 6 and container.FIRST_DICTIONARY_VERSION == FORMAT_VERSION == 8
    assert read_container(_zlib_header_file(data, version)) == read_container(data)


def test_the_preset_dictionary_is_frozen_and_pays():
    """Changing the dictionary changes how every format-8 header reads: it is pinned. On a header
    like the demo's it is most of the header's bytes."""
    assert hashlib.sha256(container.HEADER_DICTIONARY).hexdigest() == HEADER_DICTIONARY_SHA256
    typical = copy.deepcopy(EXAMPLE_HEADERS[-1])
    typical.update(step=1234, cameras=37)
    typical["model"]["hidden_dim"] = 48
    text = container._header_text(typical)
    assert len(container._deflate(text)) * 4 < len(zlib.compress(text, 9))


def test_level_section_names():
    assert level_section_name("main", 3) == "main.l3"
    assert split_level_section("main.l3") == ("main", 3)
    assert split_level_section("prop0.l12") == ("prop0", 12)
    for name in ("main.cdf", "main.l", "main.l03", ".l1", "main.lx", "cameras"):
        assert split_level_section(name) is None


def test_prefix_reader_returns_the_complete_sections_of_a_levelled_file():
    sections = [("cameras", b"c" * 30), ("g0.l0", b"a" * 50), ("g0.l1", b"b" * 70)]
    data = write_container(HEADER, sections)
    _, index = read_container_index(data)
    header, read, num_sections = read_container_prefix(data)
    assert header == HEADER and list(read.items()) == sections and num_sections == 3
    for cut, expected in ((index[1].offset, ["cameras"]), (index[2].offset - 1, ["cameras", "g0.l0"])):
        _, read, num_sections = read_container_prefix(data[:cut])
        assert list(read) == expected and num_sections == 3
    with pytest.raises(BitstreamError, match="follow the last section"):
        read_container_prefix(data + b"x")
    with pytest.raises(BitstreamError, match="inside section 'cameras'"):
        read_container_prefix(data[: index[0].offset + 5])


def _with_section_length(data: bytes, name: str, length: int) -> bytes:
    _, index = read_container_index(data)
    entry = next(e for e in index if e.name == name)
    at = entry.offset - 12
    return data[:at] + struct.pack("<Q", length) + data[at + 8 :]


@pytest.mark.parametrize("length", [2**60, 2**64 - 1, 10**9])
def test_absurd_section_length_fails_fast(data, length):
    with pytest.raises(BitstreamError, match="declares"):
        read_container(_with_section_length(data, "cameras", length))


def test_absurd_header_length_and_section_count(data):
    with pytest.raises(BitstreamError, match="header declares"):
        read_container(data[:6] + struct.pack("<I", 2**32 - 1) + data[10:])
    with pytest.raises(BitstreamError, match="sections"):
        read_container(data[:14] + struct.pack("<I", 2**32 - 1) + data[18:])


def _container(text: bytes, tail: bytes = b"", compress: bool = True) -> bytes:
    header_bytes = container._deflate(text) if compress else text
    return (
        struct.pack("<4sHIII", MAGIC, FORMAT_VERSION, len(header_bytes), zlib.crc32(header_bytes), 0)
        + header_bytes
        + tail
    )


@pytest.mark.parametrize("header", [b"[1, 2]", b'{"a": NaN}', b'{"a": 1, "a": 2}', b"\xff\xfe", b"{" * 100000])
def test_header_must_be_a_strict_json_object(header):
    with pytest.raises(BitstreamError):
        read_container(_container(header))


def test_header_must_be_bounded_complete_deflate():
    with pytest.raises(BitstreamError, match="not deflate"):
        read_container(_container(b"\xff\xff", compress=False))
    with pytest.raises(BitstreamError, match="incomplete"):
        read_container(_container(container._deflate(b'{"method": "x"}')[:-2], compress=False))
    with pytest.raises(BitstreamError, match="followed by junk"):
        read_container(_container(container._deflate(b"{}") + b"\0", compress=False))
    bomb = b'{"a": "' + b"x" * (2 << 20) + b'"}'  # inflates past the limit
    with pytest.raises(BitstreamError, match="inflates beyond"):
        read_container(_container(bomb))


def test_trailing_bytes_are_rejected():
    with pytest.raises(BitstreamError, match="follow the last section"):
        read_container(_container(b"{}", b"junk"))


def test_writer_rejects_bad_input():
    with pytest.raises(ValueError):
        write_container({"x": float("nan")}, [])
    with pytest.raises(ValueError):
        write_container({}, [("a b", b"")])
    with pytest.raises(ValueError):
        write_container({}, [("a", b""), ("a", b"")])


def test_bitstream_core_does_not_import_nerfstudio():
    code = (
        "import sys, nerfcompress.bitstream, nerfcompress.cli.info, nerfcompress.cli.image, "
        "nerfcompress.image.pipeline, nerfcompress.image.writers; "
        "assert 'nerfstudio' not in sys.modules, 'nerfstudio imported'"
    )
    repo_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo_root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
