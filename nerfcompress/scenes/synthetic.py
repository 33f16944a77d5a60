"""Deterministic procedural scene, written as a Blender-format (NeRF-synthetic) dataset.

The scene is a union of analytic signed distance functions (a grooved sphere, a tilted torus, a bumpy
rounded box, a capsule and a thin ring around them), all within radius 1.2 of the origin so that it
sits well inside the ``[-1.5, 1.5]^3`` scene box of nerfstudio's ``blender-data`` dataparser. Every
surface carries fine solid textures (checkers and stripes at several scales, colored bands, smooth
value noise) and is shaded with two fixed Lambertian lights plus ambient: the radiance depends on
position only, which is exactly what a NeRF can represent, and the detail needs a multi-resolution
hash grid to reproduce.

Rendering is numpy sphere tracing, vectorised over all rays of a view, with ``s x s`` supersampling.
Outputs are byte-identical for the same arguments on the same machine and numpy build (fixed seeds,
integer hashing for noise, no timestamps in PNG or JSON); transcendental functions may round
differently on other CPUs, so do not pin image hashes across machines.

Core module: imports only stdlib, numpy and Pillow.
"""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path

import numpy as np
from PIL import Image

CAMERA_ANGLE_X = 0.6911112070083618
"""Horizontal field of view in radians (the NeRF-synthetic value, about 39.6 degrees)."""
CAMERA_RADIUS = 4.0
"""Distance of every camera from the origin."""
SCENE_RADIUS = 1.2
"""Every surface lies within this distance of the origin."""
SPLITS = ("train", "val", "test")

_MAX_STEPS = 96
_HIT_EPS = 5e-4
_STEP_SCALE = 0.7  # < 1 / Lipschitz bound of the displaced SDF (about 1.4)
_NORMAL_EPS = 1e-3
_RAYS_PER_CHUNK = 1 << 16
_KEY_LIGHT = np.array([0.4, -0.5, 0.75]) / np.linalg.norm([0.4, -0.5, 0.75])
_FILL_LIGHT = np.array([-0.6, 0.5, -0.3]) / np.linalg.norm([-0.6, 0.5, -0.3])


def _rotation(axis: str, angle: float) -> np.ndarray:
    """Rotation matrix, float64 [3, 3], about a world axis by ``angle`` radians."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


# Placement of each primitive: local = (world - center) @ rotation (rotation maps local to world).
_SPHERE_CENTER, _SPHERE_RADIUS = np.array([-0.45, -0.25, 0.15]), 0.45
_TORUS_CENTER, _TORUS_ROT = np.array([0.45, 0.4, 0.25]), _rotation("x", 1.0) @ _rotation("z", 0.3)
_TORUS_RADII = (0.32, 0.11)
_BOX_CENTER, _BOX_ROT = np.array([0.35, -0.4, -0.3]), _rotation("z", 0.45)
_BOX_HALF, _BOX_ROUND = np.array([0.28, 0.2, 0.2]), 0.04
_CAPSULE_A, _CAPSULE_B, _CAPSULE_RADIUS = np.array([-0.3, 0.45, -0.6]), np.array([-0.1, 0.3, 0.55]), 0.09
_RING_ROT, _RING_RADII = _rotation("y", 0.35) @ _rotation("x", -0.2), (1.05, 0.022)
NUM_PRIMITIVES = 5


def _torus(local: np.ndarray, major: float, minor: float) -> np.ndarray:
    """SDF of a torus around the local z axis; ``local`` [N, 3] -> [N]."""
    ring = np.hypot(local[:, 0], local[:, 1]) - major
    return np.hypot(ring, local[:, 2]) - minor


def primitive_sdfs(points: np.ndarray) -> np.ndarray:
    """Signed distance of each point to each primitive.

    Args:
        points: world positions, float64 [N, 3].

    Returns:
        Distances, float64 [N, P] with ``P = NUM_PRIMITIVES`` columns in the order sphere, torus,
        box, capsule, ring. Displacements keep the Lipschitz bound below ``1 / _STEP_SCALE``.
    """
    out = np.empty((points.shape[0], NUM_PRIMITIVES))

    rel = points - _SPHERE_CENTER
    radius = np.linalg.norm(rel, axis=1)
    polar = np.arccos(np.clip(rel[:, 2] / np.maximum(radius, 1e-9), -1.0, 1.0))
    out[:, 0] = radius - _SPHERE_RADIUS + 0.008 * (0.5 + 0.5 * np.cos(28.0 * polar))  # latitude grooves

    out[:, 1] = _torus((points - _TORUS_CENTER) @ _TORUS_ROT, *_TORUS_RADII)

    local = (points - _BOX_CENTER) @ _BOX_ROT
    q = np.abs(local) - (_BOX_HALF - _BOX_ROUND)
    box = np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0) - _BOX_ROUND
    bumps = np.sin(40.0 * local[:, 0]) * np.sin(40.0 * local[:, 1]) * np.sin(40.0 * local[:, 2])
    out[:, 2] = box - 0.005 * bumps

    axis = _CAPSULE_B - _CAPSULE_A
    h = np.clip((points - _CAPSULE_A) @ axis / (axis @ axis), 0.0, 1.0)
    out[:, 3] = np.linalg.norm(points - _CAPSULE_A - h[:, None] * axis, axis=1) - _CAPSULE_RADIUS

    out[:, 4] = _torus(points @ _RING_ROT, *_RING_RADII)
    return out


def scene_sdf(points: np.ndarray) -> np.ndarray:
    """Signed distance to the whole scene (union of all primitives).

    Args:
        points: world positions, float64 [N, 3].

    Returns:
        Distances, float64 [N]; negative inside an object.
    """
    return primitive_sdfs(points).min(axis=1)


def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
    """Exact integer hash of lattice points, int64 [N] each -> float64 [N] in [0, 1)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791)
    h = (h & 0xFFFFFFFF).astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x846CA68B)
    h ^= h >> np.uint32(16)
    return h.astype(np.float64) / 2.0**32


def value_noise(points: np.ndarray, frequency: float) -> np.ndarray:
    """Smooth 3D value noise (lattice hash, smoothstep-trilinear interpolation).

    Args:
        points: positions, float64 [N, 3].
        frequency: lattice cells per unit length.

    Returns:
        Noise, float64 [N] in [0, 1].
    """
    scaled = points * frequency
    cell = np.floor(scaled)
    frac = scaled - cell
    w = frac * frac * (3.0 - 2.0 * frac)
    cell = cell.astype(np.int64)
    total = np.zeros(points.shape[0])
    for corner in range(8):
        offset = np.array([(corner >> 0) & 1, (corner >> 1) & 1, (corner >> 2) & 1])
        weight = np.prod(np.where(offset == 1, w, 1.0 - w), axis=1)
        c = cell + offset
        total += weight * _hash01(c[:, 0], c[:, 1], c[:, 2])
    return total


def _hue(t: np.ndarray) -> np.ndarray:
    """Cosine rainbow palette, float64 [N] -> [N, 3] in [0, 1]."""
    return 0.5 + 0.5 * np.cos(2.0 * np.pi * (t[:, None] + np.array([0.0, 1.0 / 3.0, 2.0 / 3.0])))


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend colors a, b [3] or [N, 3] by t [N] -> [N, 3]."""
    return a + (b - a) * t[:, None]


def albedo(points: np.ndarray, primitive: np.ndarray) -> np.ndarray:
    """Procedural surface color of each hit point.

    Args:
        points: world positions on the surface, float64 [N, 3].
        primitive: index of the primitive hit, int64 [N] in ``[0, NUM_PRIMITIVES)``.

    Returns:
        Albedo, float64 [N, 3] in [0, 1].
    """
    color = np.zeros((points.shape[0], 3))
    fine = np.floor(points / 0.03).astype(np.int64).sum(axis=1) & 1  # 3D checker, 3 cm cells

    m = primitive == 0  # sphere: latitude rainbow bands x lat-long checker
    rel = points[m] - _SPHERE_CENTER
    polar = np.arccos(np.clip(rel[:, 2] / np.linalg.norm(rel, axis=1), -1.0, 1.0))
    azimuth = np.arctan2(rel[:, 1], rel[:, 0])
    checker = (np.floor(polar * 16.0 / np.pi) + np.floor(azimuth * 32.0 / (2.0 * np.pi))).astype(np.int64) & 1
    color[m] = _hue(np.floor(polar * 7.0 / np.pi) / 7.0) * (0.45 + 0.4 * checker + 0.15 * fine[m])[:, None]

    m = primitive == 1  # torus: 20 hue bands around, 12 stripes across, noise speckle
    local = (points[m] - _TORUS_CENTER) @ _TORUS_ROT
    around = np.arctan2(local[:, 1], local[:, 0]) / (2.0 * np.pi) + 0.5
    across = np.arctan2(local[:, 2], np.hypot(local[:, 0], local[:, 1]) - _TORUS_RADII[0])
    stripe = np.floor(across * 12.0 / (2.0 * np.pi)).astype(np.int64) & 1
    speckle = value_noise(points[m], 60.0)
    color[m] = _hue(np.floor(around * 20.0) / 20.0) * (0.5 + 0.3 * stripe + 0.2 * speckle)[:, None]

    m = primitive == 2  # box: fbm marble ramp x fine checker
    local = (points[m] - _BOX_CENTER) @ _BOX_ROT
    fbm = (value_noise(local, 5.0) + 0.5 * value_noise(local, 11.0) + 0.25 * value_noise(local, 23.0)) / 1.75
    veins = 0.5 + 0.5 * np.sin(30.0 * local[:, 0] + 12.0 * fbm)
    base = _mix(np.array([0.85, 0.35, 0.1]), np.array([0.1, 0.35, 0.8]), veins)
    color[m] = base * (0.7 + 0.3 * fine[m])[:, None]

    m = primitive == 3  # capsule: three-color helical stripes
    rel = points[m] - _CAPSULE_A
    axis = _CAPSULE_B - _CAPSULE_A
    height = rel @ axis / np.linalg.norm(axis)
    turn = np.arctan2(rel[:, 0] - rel[:, 1], rel[:, 2] * 0.3 + rel[:, 0] + rel[:, 1])
    band = np.floor(3.0 * (turn / (2.0 * np.pi) + 6.0 * height)).astype(np.int64) % 3
    palette = np.array([[0.95, 0.9, 0.2], [0.15, 0.6, 0.25], [0.6, 0.1, 0.5]])
    color[m] = palette[band]

    m = primitive == 4  # ring: 48 alternating segments with thin white seams
    local = points[m] @ _RING_ROT
    segment = np.arctan2(local[:, 1], local[:, 0]) * 48.0 / (2.0 * np.pi)
    seam = np.abs(segment - np.round(segment)) < 0.08
    two = _mix(np.array([0.95, 0.75, 0.1]), np.array([0.1, 0.2, 0.9]), (np.floor(segment) % 2 == 0) * 1.0)
    color[m] = np.where(seam[:, None], 1.0, two)
    return np.clip(color, 0.0, 1.0)


def _normals(points: np.ndarray) -> np.ndarray:
    """Unit SDF gradients by the tetrahedron rule, float64 [N, 3] -> [N, 3]."""
    taps = np.array([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
    grad = np.zeros_like(points)
    for tap in taps:
        grad += tap * scene_sdf(points + _NORMAL_EPS * tap)[:, None]
    return grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)


def trace_rays(origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sphere-trace rays against the scene, at most ``_MAX_STEPS`` steps each.

    Args:
        origins: ray origins, float64 [N, 3].
        directions: unit ray directions, float64 [N, 3].

    Returns:
        ``(hit, t)``: bool [N] whether the ray hits a surface and float64 [N] its ray parameter
        (meaningless where ``hit`` is False).
    """
    n = origins.shape[0]
    b = np.einsum("ij,ij->i", origins, directions)
    disc = b * b - (np.einsum("ij,ij->i", origins, origins) - (SCENE_RADIUS + 0.05) ** 2)
    root = np.sqrt(np.maximum(disc, 0.0))
    t = np.maximum(-b - root, 0.0)
    t_far = -b + root
    hit = np.zeros(n, dtype=bool)
    last = np.full(n, np.inf)
    active = np.flatnonzero(disc > 0.0)
    for _ in range(_MAX_STEPS):
        if active.size == 0:
            break
        dist = scene_sdf(origins[active] + t[active, None] * directions[active])
        last[active] = dist
        done = dist < _HIT_EPS
        hit[active[done]] = True
        t[active] += _STEP_SCALE * dist
        active = active[~done & (t[active] < t_far[active])]
    hit[active[last[active] < 20.0 * _HIT_EPS]] = True  # grazing rays that ran out of steps
    return hit, t


def shade(points: np.ndarray) -> np.ndarray:
    """Lambertian color of surface points under the fixed lights.

    Args:
        points: world positions on the surface, float64 [N, 3].

    Returns:
        Linear color, float64 [N, 3] in [0, 1].
    """
    normals = _normals(points)
    light = 0.3 + 0.7 * np.maximum(normals @ _KEY_LIGHT, 0.0) + 0.25 * np.maximum(normals @ _FILL_LIGHT, 0.0)
    primitive = primitive_sdfs(points).argmin(axis=1)
    return np.clip(albedo(points, primitive) * light[:, None], 0.0, 1.0)


def render_view(
    c2w: np.ndarray, resolution: int, camera_angle_x: float = CAMERA_ANGLE_X, supersample: int = 2
) -> np.ndarray:
    """Render one square RGBA view of the scene.

    Pixel (i, j) covers ``[j, j + 1) x [i, i + 1)`` in image coordinates with the principal point at
    the image center (nerfstudio's convention); ``supersample x supersample`` stratified rays per
    pixel are averaged. RGB is straight (not premultiplied) alpha; background is (0, 0, 0, 0).

    Args:
        c2w: camera-to-world transform, float [4, 4] (or [3, 4]), OpenGL convention (camera looks
            down -Z, +Y up).
        resolution: image height and width H = W in pixels.
        camera_angle_x: horizontal field of view in radians.
        supersample: rays per pixel along each axis.

    Returns:
        Image, uint8 [H, W, 4].
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    focal = 0.5 * resolution / math.tan(0.5 * camera_angle_x)
    sub = (np.arange(supersample) + 0.5) / supersample
    coords = np.arange(resolution)[:, None] + sub[None, :]  # [H, s]
    u = np.broadcast_to(coords[None, :, None, :], (resolution, resolution, supersample, supersample))
    v = np.broadcast_to(coords[:, None, :, None], (resolution, resolution, supersample, supersample))
    cam = np.stack([(u - 0.5 * resolution) / focal, -(v - 0.5 * resolution) / focal, -np.ones(u.shape)], -1)
    directions = cam.reshape(-1, 3) @ c2w[:3, :3].T
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origins = np.broadcast_to(c2w[:3, 3], directions.shape)

    rgb = np.zeros(directions.shape)
    coverage = np.zeros(directions.shape[0])
    for start in range(0, directions.shape[0], _RAYS_PER_CHUNK):
        chunk = slice(start, start + _RAYS_PER_CHUNK)
        hit, t = trace_rays(np.ascontiguousarray(origins[chunk]), directions[chunk])
        idx = np.flatnonzero(hit) + start
        rgb[idx] = shade(origins[idx] + t[hit, None] * directions[idx])
        coverage[idx] = 1.0

    samples = supersample * supersample
    rgb_sum = rgb.reshape(resolution, resolution, samples, 3).sum(axis=2)
    hits = coverage.reshape(resolution, resolution, samples).sum(axis=2)
    rgb_mean = rgb_sum / np.maximum(hits, 1.0)[..., None]
    rgba = np.concatenate([rgb_mean, (hits / samples)[..., None]], axis=-1)
    return np.floor(np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def look_at_origin(position: np.ndarray) -> np.ndarray:
    """Camera-to-world transform of a camera at ``position`` looking at the origin, world +Z up.

    Args:
        position: camera center, float [3]; must not be on the z axis.

    Returns:
        Transform, float64 [4, 4], OpenGL convention (camera -Z points at the origin, +Y up-ish).
    """
    position = np.asarray(position, dtype=np.float64)
    back = position / np.linalg.norm(position)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, position
    return c2w


def sample_camera_poses(num_views: int, seed: int, split: str = "train") -> np.ndarray:
    """Camera poses on a sphere of radius ``CAMERA_RADIUS``, all looking at the origin.

    Directions follow a Fibonacci spiral over elevations ``asin(-0.25)`` to ``asin(0.95)`` (upper
    hemisphere plus a band below the horizon), with a random azimuth offset and elevation jitter
    drawn from ``(seed, split)``, so each split sees different directions.

    Args:
        num_views: number of poses.
        seed: non-negative seed.
        split: one of ``SPLITS``.

    Returns:
        Camera-to-world transforms, float64 [num_views, 4, 4].

    Raises:
        ValueError: unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, found {split!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    azimuth_offset, jitter = rng.random(2)
    z_low, z_high = -0.25, 0.95
    i = np.arange(num_views)
    z = z_high - (i + 0.25 + 0.5 * jitter) / num_views * (z_high - z_low)
    azimuth = 2.0 * np.pi * azimuth_offset + i * np.pi * (3.0 - math.sqrt(5.0))
    ring = np.sqrt(1.0 - z * z)
    directions = np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=1)
    return np.stack([look_at_origin(CAMERA_RADIUS * d) for d in directions])


def _check_int(name: str, value: object, low: int, high: int | None) -> int:
    """Return ``value`` as an int, or raise ValueError naming ``name`` and its allowed range."""
    allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer {allowed}, found {value!r}") from None
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be in {allowed}, found {number}")
    return number


def _prepare_output_dir(output_dir: Path) -> None:
    """Create ``output_dir``, or clear a previous scene's files from it; refuse foreign content."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir must be a directory, found a file at {output_dir}")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not (output_dir / "transforms_train.json").is_file():
            raise ValueError(
                f"output_dir {output_dir} is not empty and holds no previous scene "
                "(no transforms_train.json); choose an empty or new directory"
            )
        for split in SPLITS:
            (output_dir / f"transforms_{split}.json").unlink(missing_ok=True)
            if (output_dir / split).is_dir():
                for png in (output_dir / split).glob("r_*.png"):
                    png.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)


def write_synthetic_scene(
    output_dir: Path,
    resolution: int = 100,
    num_train_views: int = 100,
    num_val_views: int = 10,
    num_test_views: int = 10,
    supersample: int = 2,
    seed: int = 0,
) -> Path:
    """Render the procedural scene and write it as a Blender-format dataset.

    Writes ``transforms_{train,val,test}.json`` (``camera_angle_x`` and ``frames`` with
    ``file_path`` ``./<split>/r_<i>``, ``rotation`` and a 4x4 OpenGL camera-to-world
    ``transform_matrix``) and RGBA PNGs ``<split>/r_<i>.png`` of ``resolution x resolution`` pixels
    with a transparent background. Same arguments give byte-identical files. A previous scene in
    ``output_dir`` (recognised by ``transforms_train.json``) is replaced.

    Args:
        output_dir: dataset directory; created if missing; must be empty or hold a previous scene.
        resolution: image height and width in pixels, in [8, 4096].
        num_train_views: training views, in [1, 10000].
        num_val_views: validation views, in [1, 10000].
        num_test_views: held-out test views, in [1, 10000].
        supersample: rays per pixel along each axis (antialiasing), in [1, 16].
        seed: non-negative seed of the camera poses; the scene itself is fixed.

    Returns:
        ``output_dir``.

    Raises:
        ValueError: an argument is out of range, or ``output_dir`` holds other content.
    """
    resolution = _check_int("resolution", resolution, 8, 4096)
    counts = {
        "train": _check_int("num_train_views", num_train_views, 1, 10000),
        "val": _check_int("num_val_views", num_val_views, 1, 10000),
        "test": _check_int("num_test_views", num_test_views, 1, 10000),
    }
    supersample = _check_int("supersample", supersample, 1, 16)
    seed = _check_int("seed", seed, 0, None)
    output_dir = Path(output_dir)
    _prepare_output_dir(output_dir)

    for split, num_views in counts.items():
        (output_dir / split).mkdir(exist_ok=True)
        frames = []
        for i, c2w in enumerate(sample_camera_poses(num_views, seed, split)):
            image = render_view(c2w, resolution, CAMERA_ANGLE_X, supersample)
            Image.fromarray(image).save(output_dir / split / f"r_{i}.png", format="PNG")
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": c2w.tolist()})
        meta = {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}
        (output_dir / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return output_dir
