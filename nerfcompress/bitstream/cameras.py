"""The training cameras a file carries for the viewer's camera list, stored compactly.

They serve only the viewer (thumbnails, the camera list, a starting view), never rendering
quality, so poses are quantised: a unit quaternion as four int16 (``q * 32767``; decoded and
renormalised) and the position as three uint16 between the cameras' per-axis bounds (rotation
error about 1e-4 rad, position error at most 1/131070 of the cameras' extent per axis).
Intrinsics and image sizes are stored once when every camera shares them (the usual case),
else per camera. Payload (little-endian)::

    1        flags: bit 0 set = one shared intrinsics/size entry
    24 * M   M = 1 (shared) or N entries: fx, fy, cx, cy float32, width, height uint32
    24       position bounds: min xyz, max xyz, float32
    14 * N   per camera: quaternion w, x, y, z int16; position uint16 x 3

``N`` (the header's camera count) fixes the payload's length exactly, so a file cannot declare
more cameras than it holds.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from nerfcompress.errors import BitstreamError

_INTRINSICS = np.dtype([("focal_center", "<f4", (4,)), ("size", "<u4", (2,))])
_POSE = np.dtype([("quaternion", "<i2", (4,)), ("position", "<u2", (3,))])
_SHARED = 1
MAX_CAMERAS = 1 << 20
"""Most cameras a file may declare."""
MAX_IMAGE_SIDE = 1 << 16
"""Widest and tallest camera image a file may declare, in pixels (a 65,536-pixel side is 8x an
8K frame's; nerfstudio allocates per pixel of a camera when one renders it)."""


def camera_bytes(num_cameras: int, shared: bool) -> int:
    """Payload bytes of ``num_cameras`` cameras."""
    entries = 1 if shared else num_cameras
    return 1 + _INTRINSICS.itemsize * entries + 24 + _POSE.itemsize * num_cameras


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[N, 4]`` (w, x, y, z; w >= 0) of the rotations nearest to ``[N, 3, 3]``."""
    u, _, vt = np.linalg.svd(rotations.astype(np.float64))
    fix = np.ones((len(rotations), 3))
    fix[:, 2] = np.sign(np.linalg.det(u @ vt))
    r = (u * fix[:, None, :]) @ vt  # the nearest proper rotations
    # Shepperd's method: derive the quaternion from its largest component, stable for every angle.
    diagonal = np.stack([r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]], -1)
    squares = np.stack([1 + diagonal.sum(-1), *(1 + 2 * diagonal[:, i] - diagonal.sum(-1) for i in range(3))], -1)
    largest = squares.argmax(-1)
    big = np.sqrt(np.maximum(squares[np.arange(len(r)), largest], 1e-12))  # 2 * |largest component|
    antisymmetric = np.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], -1)
    symmetric = np.stack([r[:, 0, 1] + r[:, 1, 0], r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1]], -1)
    q = np.empty((len(r), 4))
    for index in range(4):
        rows = largest == index
        a_, s_, b_ = antisymmetric[rows], symmetric[rows], big[rows, None]
        if index == 0:
            q[rows] = np.concatenate([b_ * b_, a_], -1)
        elif index == 1:
            q[rows] = np.stack([a_[:, 0], b_[:, 0] ** 2, s_[:, 0], s_[:, 1]], -1)
        elif index == 2:
            q[rows] = np.stack([a_[:, 1], s_[:, 0], b_[:, 0] ** 2, s_[:, 2]], -1)
        else:
            q[rows] = np.stack([a_[:, 2], s_[:, 1], s_[:, 2], b_[:, 0] ** 2], -1)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)  # w >= 0
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _rotations(q: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` rotation matrices of quaternions ``[N, 4]`` (w, x, y, z), normalised first."""
    w, x, y, z = (q / np.linalg.norm(q, axis=-1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def encode_cameras(c2w: np.ndarray, intrinsics: np.ndarray, size: np.ndarray) -> bytes:
    """The camera payload.

    Args:
        c2w: float ``[N, 3, 4]`` camera-to-world matrices (rotation, position), finite.
        intrinsics: float ``[N, 4]``: fx, fy, cx, cy.
        size: integer ``[N, 2]``: width, height.

    Raises:
        ValueError: on wrong shapes, no camera, non-finite values, or an image side outside
            ``1 .. MAX_IMAGE_SIDE``.
    """
    c2w, intrinsics, size = np.asarray(c2w, np.float64), np.asarray(intrinsics, np.float32), np.asarray(size)
    num = len(c2w)
    if not (1 <= num <= MAX_CAMERAS and c2w.shape == (num, 3, 4) and intrinsics.shape == (num, 4)):
        raise ValueError(f"expected c2w [N, 3, 4] and intrinsics [N, 4], found {c2w.shape}, {intrinsics.shape}")
    if size.shape != (num, 2) or not (np.isfinite(c2w).all() and np.isfinite(intrinsics).all()):
        raise ValueError(f"expected size [N, 2] and finite poses and intrinsics, found size {size.shape}")
    if not ((size >= 1) & (size <= MAX_IMAGE_SIDE)).all():
        raise ValueError(f"camera images must be 1..{MAX_IMAGE_SIDE} pixels a side, found {size.min()}..{size.max()}")
    entries = np.zeros(num, _INTRINSICS)
    entries["focal_center"], entries["size"] = intrinsics, size
    shared = bool((entries == entries[0]).all())
    position = c2w[:, :, 3]
    low, high = position.min(axis=0).astype(np.float32), position.max(axis=0).astype(np.float32)
    span = np.where(high > low, high.astype(np.float64) - low, 1.0)
    poses = np.zeros(num, _POSE)
    poses["quaternion"] = np.rint(_quaternions(c2w[:, :, :3]) * 32767)
    poses["position"] = np.clip(np.rint((position - low) / span * 65535), 0, 65535)
    head = bytes([_SHARED if shared else 0])
    stored = entries[:1] if shared else entries
    return head + stored.tobytes() + np.concatenate([low, high]).tobytes() + poses.tobytes()


def decode_cameras(payload: bytes, num_cameras: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c2w float32 [N, 3, 4], intrinsics float32 [N, 4], size int64 [N, 2])`` of a payload.

    Args:
        payload: the section's bytes (untrusted).
        num_cameras: ``N`` from the header (untrusted).

    Raises:
        BitstreamError: if ``N`` is out of range or the payload is not exactly its length, or
            a value is not finite, a size is zero or above :data:`MAX_IMAGE_SIDE`, or a
            quaternion is zero.
    """
    if isinstance(num_cameras, bool) or not isinstance(num_cameras, int) or not 1 <= num_cameras <= MAX_CAMERAS:
        raise BitstreamError(f"header declares {num_cameras!r:.40} cameras, expected 1..{MAX_CAMERAS}; corrupt file")
    shared = bool(payload[:1]) and payload[0] == _SHARED
    if not payload or payload[0] not in (0, _SHARED) or len(payload) != camera_bytes(num_cameras, shared):
        raise BitstreamError(
            f"cameras section holds {len(payload)} bytes, {num_cameras} cameras take {camera_bytes(num_cameras, True)} "
            f"(shared intrinsics) or {camera_bytes(num_cameras, False)}; the file is corrupt"
        )
    offset = 1 + _INTRINSICS.itemsize * (1 if shared else num_cameras)
    entries = np.frombuffer(payload, _INTRINSICS, count=1 if shared else num_cameras, offset=1)
    bounds = np.frombuffer(payload, "<f4", count=6, offset=offset).astype(np.float64)
    poses = np.frombuffer(payload, _POSE, count=num_cameras, offset=offset + 24)
    quaternions = poses["quaternion"].astype(np.float64)
    if not (np.isfinite(entries["focal_center"]).all() and np.isfinite(bounds).all()):
        raise BitstreamError("stored cameras hold NaN or infinity; the file is corrupt")
    if (entries["size"] == 0).any() or (np.abs(quaternions).sum(axis=-1) == 0).any():
        raise BitstreamError("a stored camera has zero width, height or rotation; the file is corrupt")
    if (entries["size"] > MAX_IMAGE_SIDE).any():
        raise BitstreamError(
            f"a stored camera is {entries['size'].max()} pixels a side, at most {MAX_IMAGE_SIDE}; the file is corrupt"
        )
    low, high = bounds[:3], bounds[3:]
    position = low + poses["position"].astype(np.float64) / 65535 * np.maximum(high - low, 0)
    c2w = np.concatenate([_rotations(quaternions), position[:, :, None]], axis=-1).astype(np.float32)
    intrinsics = np.broadcast_to(entries["focal_center"], (num_cameras, 4)).astype(np.float32)
    size = np.broadcast_to(entries["size"], (num_cameras, 2)).astype(np.int64)
    return c2w, intrinsics, size
