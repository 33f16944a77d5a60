import numpy as np
import pytest
from PIL import Image

from nerfcompress.bitstream.cameras import MAX_IMAGE_SIDE, decode_cameras, encode_cameras
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.stored_cameras import PLACEHOLDER_FILENAME, write_stored_cameras


def _cameras(num=3, size=(100, 80)):
    c2w = np.tile(np.eye(4)[:3], (num, 1, 1))
    c2w[:, :, 3] = np.arange(num * 3).reshape(num, 3)
    intrinsics = np.tile([[50.0, 50.0, 50.0, 40.0]], (num, 1))
    return c2w, intrinsics, np.tile([size], (num, 1))


def test_cameras_round_trip_with_their_sizes():
    c2w, intrinsics, size = _cameras()
    decoded_c2w, decoded_intrinsics, decoded_size = decode_cameras(encode_cameras(c2w, intrinsics, size), 3)
    np.testing.assert_allclose(decoded_c2w, c2w, atol=1e-3)
    assert decoded_size.tolist() == size.tolist() and np.allclose(decoded_intrinsics, intrinsics)


def test_an_image_side_beyond_the_cap_is_refused_when_written_and_when_read():
    c2w, intrinsics, size = _cameras()
    with pytest.raises(ValueError, match="pixels a side"):
        encode_cameras(c2w, intrinsics, np.tile([[MAX_IMAGE_SIDE + 1, 16]], (3, 1)))
    payload = bytearray(encode_cameras(c2w, intrinsics, size))
    payload[17:21] = np.array([3_735_561], "<u4").tobytes()  # the shared entry's width (found by the fuzzer)
    with pytest.raises(BitstreamError, match="pixels a side"):
        decode_cameras(bytes(payload), 3)


def test_the_placeholder_image_stays_small_for_any_aspect_ratio(tmp_path):
    for size in ([MAX_IMAGE_SIDE, 1], [1, MAX_IMAGE_SIDE], [100, 80]):
        write_stored_cameras(tmp_path, {"size": [size]})
        with Image.open(tmp_path / PLACEHOLDER_FILENAME) as placeholder:
            assert placeholder.width * placeholder.height <= 32 * 32 * 64
