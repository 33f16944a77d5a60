"""An image model <-> one ``.ncmp`` file on the shared container (magic, version, CRC32 per section).

Header (JSON)::

    {"method": "shacira-image" | "vqad-image", "height": H, "width": W, "channels": C,
     "model": ImageModelConfig fields, "grids": [table entries], "network": [{"e", "order"}],
     "versions": {...}}

Sections: the grid tables as :func:`~nerfcompress.bitstream.model_codec.encode_tables` writes
them (one grid per table, named ``"g<k>"``; SHACIRA: integer coding tables, fp16 decoder,
range-coded latents per level; VQAD: fp16 codebooks and coded indices per level), then
``"net"``: the synthesis network, quantised and exp-Golomb coded
(:mod:`nerfcompress.image.network_codec`). Everything the decoder needs is in the file, and the
file's length is the size reported.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import numpy as np
import torch

from nerfcompress.bitstream.container import read_container, required_section, write_container
from nerfcompress.bitstream.model_codec import decode_tables, encode_tables
from nerfcompress.errors import BitstreamError
from nerfcompress.image.config import check_picture_size, config_from_header
from nerfcompress.image.model import ImageModel
from nerfcompress.image.network_codec import decode_network, encode_network

METHOD_NAMES = {"shacira": "shacira-image", "vqad": "vqad-image"}
NETWORK_SECTION = "net"


def grid_names(model: ImageModel) -> list:
    return [f"g{k}" for k in range(len(model.tables))]


def encode_image(model: ImageModel, network_steps: list) -> bytes:
    """The file of a trained model whose network is quantised with ``network_steps``.

    Raises:
        ValueError: a tensor cannot be stored (NaN or infinity).
    """
    grids, sections = encode_tables(list(model.tables), grid_names(model))
    sections.insert(0, (NETWORK_SECTION, encode_network(model.synthesis, network_steps)))
    header: Dict[str, Any] = {
        "method": METHOD_NAMES[model.config.method],
        "height": model.height,
        "width": model.width,
        "channels": model.channels,
        "model": model.config.to_header(),
        "grids": grids,
        "network": network_steps,
        "versions": {name: _version(name) for name in ("nerfcompress", "constriction")},
    }
    return write_container(header, sections)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def read_image_header(data: bytes) -> Tuple[Dict[str, Any], Mapping[str, bytes]]:
    """Header and sections of an image file, its picture size checked.

    Raises:
        BitstreamError: not an image file of ours, or damaged.
    """
    header, sections = read_container(data)
    if header.get("method") not in METHOD_NAMES.values():
        raise BitstreamError(
            f"file holds method {header.get('method')!r:.40}, not an image ({', '.join(METHOD_NAMES.values())}); "
            "decode NeRF files with `ns-compress import`"
        )
    check_picture_size(header.get("height"), header.get("width"), header.get("channels"))
    return header, sections


@torch.no_grad()
def decode_image(data: bytes) -> Tuple[ImageModel, Dict[str, Any]]:
    """The model a file holds, in eval mode, and the file's header.

    Raises:
        BitstreamError: the file is not an image file, is damaged, or declares sizes out of range.
    """
    header, sections = read_image_header(data)
    config = config_from_header(header.get("model"))
    if METHOD_NAMES[config.method] != header["method"]:
        raise BitstreamError(f"file says method {header['method']} but its model is {config.method}")
    try:
        model = ImageModel(config, header["height"], header["width"], header["channels"])
    except ValueError as exc:
        raise BitstreamError(f"file declares a model that cannot be built ({exc}); the file is corrupt") from exc
    model.eval()
    decode_tables(header.get("grids"), sections, list(model.tables))
    decode_network(model.synthesis, header.get("network"), required_section(sections, NETWORK_SECTION))
    for table in model.tables:
        table.clear_cache()
    return model, header


def to_uint8(channels: torch.Tensor) -> np.ndarray:
    """Rendered channels in [0, 1] (any shape) as uint8, rounded to nearest."""
    return torch.round(channels.clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
