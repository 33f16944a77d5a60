"""Named arrays <-> one section payload, with dtypes and shapes kept in a JSON spec.

A payload is the arrays' little-endian bytes back to back, in spec order. The spec is a list
of ``{"name": str, "dtype": str, "shape": [int, ...]}`` that the caller stores in the file
header; :func:`unpack_tensors` validates it against the payload before touching any data
(``prod(shape) * itemsize`` summed over the arrays must equal the payload length).

Example:
    >>> spec, payload = pack_tensors({"w": np.ones((2, 3), np.float32)}, "<f2")
    >>> unpack_tensors(spec, payload)["w"].dtype
    dtype('float16')
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from nerfcompress.errors import BitstreamError

DTYPES = ("<f2", "<f4", "<i4", "<u4")
"""The on-disk dtypes a tensor section may hold."""

_MAX_DIMS = 8


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def pack_tensors(arrays: Mapping[str, Any], dtype: Optional[str] = "<f2") -> Tuple[List[Dict[str, Any]], bytes]:
    """Packs named arrays into one payload.

    Args:
        arrays: ``name -> array`` (numpy or torch, any shape) in payload order.
        dtype: on-disk dtype of every array, one of :data:`DTYPES`; ``None`` keeps each
            array's own dtype (which must then be one of :data:`DTYPES` up to byte order).

    Returns:
        ``(spec, payload)``: the JSON-able spec to store in the header, and the bytes.

    Raises:
        ValueError: if a dtype is not allowed, or a float array holds values that the
            on-disk dtype cannot represent (NaN, infinity, or overflow to infinity in fp16).
    """
    spec, parts = [], []
    for name, value in arrays.items():
        array = _as_numpy(value)
        target = np.dtype(dtype if dtype is not None else array.dtype).newbyteorder("<")
        if target.str not in DTYPES:
            raise ValueError(f"tensor '{name}': dtype {target.str} is not one of {DTYPES}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"tensor '{name}' holds NaN or infinity")
        with np.errstate(over="ignore"):
            stored = array.astype(target)
        if target.kind == "f" and not np.isfinite(stored).all():
            raise ValueError(f"tensor '{name}' overflows {target.str}; store it as '<f4'")
        spec.append({"name": str(name), "dtype": target.str, "shape": [int(n) for n in array.shape]})
        parts.append(stored.tobytes())
    return spec, b"".join(parts)


def _validated_spec(spec: Any) -> List[Tuple[str, np.dtype, Tuple[int, ...], int]]:
    """``(name, dtype, shape, nbytes)`` per entry of a spec read from a file."""
    if not isinstance(spec, list):
        raise BitstreamError(f"tensor spec must be a list, found {type(spec).__name__}; the file is corrupt")
    entries, names = [], set()
    for i, entry in enumerate(spec):
        ok = isinstance(entry, dict) and set(entry) == {"name", "dtype", "shape"}
        ok = ok and isinstance(entry["name"], str) and entry["dtype"] in DTYPES
        shape = entry.get("shape") if isinstance(entry, dict) else None
        ok = ok and isinstance(shape, list) and len(shape) <= _MAX_DIMS
        ok = ok and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        if not ok:
            raise BitstreamError(f"tensor spec entry #{i} is malformed ({entry!r:.200}); the file is corrupt")
        if entry["name"] in names:
            raise BitstreamError(f"tensor spec names '{entry['name']}' twice; the file is corrupt")
        names.add(entry["name"])
        dtype = np.dtype(entry["dtype"])
        entries.append((entry["name"], dtype, tuple(shape), math.prod(shape) * dtype.itemsize))
    return entries


def unpack_tensors(spec: Any, payload: bytes) -> "OrderedDict[str, np.ndarray]":
    """Unpacks what :func:`pack_tensors` wrote.

    Args:
        spec: the spec from the file header (untrusted).
        payload: the section payload.

    Returns:
        ``name -> array`` in the stored dtype (native byte order) and shape, in spec order.

    Raises:
        BitstreamError: if the spec is malformed or does not account for exactly the
            payload's bytes, or a float array holds NaN or infinity.
    """
    entries = _validated_spec(spec)
    expected = sum(nbytes for *_, nbytes in entries)
    if expected != len(payload):
        raise BitstreamError(
            f"tensor spec describes {expected} bytes but the section holds {len(payload)}; the file is corrupt"
        )
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    offset = 0
    for name, dtype, shape, nbytes in entries:
        array = np.frombuffer(payload, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)
        array = array.astype(dtype.newbyteorder("=")).reshape(shape)
        if dtype.kind == "f" and not np.isfinite(array).all():
            raise BitstreamError(f"tensor '{name}' holds NaN or infinity; the file is corrupt")
        out[name] = array
        offset += nbytes
    return out
