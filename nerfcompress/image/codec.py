"""An image model <-> one ``.ncmp`` file on the shared container (magic, version, CRC32 per section).

Header (JSON)::

    {"method": "shacira-image" | "vqad-image", "height": H, "width": W, "channels": C,
     "model": ImageModelConfig fields, "versions": {"nerfcompress": ...},
     "codings": [each grid's index codings]   (VQAD only: the model settings fix everything else),
     "coder": the range coder's record (:func:`~nerfcompress.entropy.coder.coder_record`)}

A file whose coder record the running constriction cannot honour is refused before any stream is
decoded (:func:`~nerfcompress.entropy.coder.check_coder_record`), as NeRF files are.

Sections: the grid tables as :func:`~nerfcompress.bitstream.model_codec.encode_tables` writes
them (one grid per table, named ``"g<k>"``; SHACIRA: per level its fp16 decoder, integer coding
tables and range-coded latents; VQAD: fp16 codebooks and coded indices per level), then
``"net"``: the synthesis network's tensors in ``named_parameters`` order, each quantised with
its own searched precision and range-coded (:mod:`nerfcompress.bitstream.quantized_tensors`, as
the NeRF files store their networks). Everything the decoder needs is in the file, and the file's
length is the size reported.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from nerfcompress.bitstream.container import read_container, required_section, write_container
from nerfcompress.bitstream.model_codec import decode_tables, encode_tables, implied_entries
from nerfcompress.bitstream.quantized_tensors import decode_quantized_tensors, encode_quantized_tensors
from nerfcompress.entropy.coder import check_coder_record, coder_record
from nerfcompress.entropy.context import IntegerContextModel
from nerfcompress.errors import BitstreamError
from nerfcompress.image.config import check_picture_size, config_from_header
from nerfcompress.image.model import ImageModel

METHOD_NAMES = {"shacira": "shacira-image", "vqad": "vqad-image"}
NETWORK_SECTION = "net"


def grid_names(model: ImageModel) -> list:
    return [f"g{k}" for k in range(len(model.tables))]


def network_tensors(model: ImageModel) -> list:
    """The networks' parameters in file order: the synthesis network's (``named_parameters``
    order), then the context model's if the model has one."""
    params = [param for _, param in model.synthesis.named_parameters()]
    if model.context is not None:
        params += [param for _, param in model.context.named_parameters()]
    return params


def integer_context(model: ImageModel) -> Optional[IntegerContextModel]:
    """The coding twin of the model's context model (None without one); the context model must
    hold the values its stored tensors decode to."""
    return None if model.context is None else IntegerContextModel.from_module(model.context)


def encode_image(model: ImageModel, network_precisions: Sequence[int]) -> bytes:
    """The file of a trained model whose network tensors keep ``network_precisions`` bits below
    their RMS (one per tensor, :func:`network_tensors` order; the network should already hold the
    values they round to, see :func:`~nerfcompress.image.pipeline.quantize_network`). The model's
    networks are set to the values the file stores before the latents are coded: the context
    model's coding twin must be the decoder's to the bit, and a value rounded once may round again
    (the step follows the tensor's RMS, which rounding moves).

    Raises:
        ValueError: a tensor cannot be stored (NaN or infinity), or a precision is out of range.
    """
    params = network_tensors(model)
    network = encode_quantized_tensors([param.detach().cpu().numpy() for param in params], network_precisions)
    with torch.no_grad():  # the model now holds what the decoder will (rounding twice can move a value)
        for param, value in zip(params, decode_quantized_tensors(network, [p.numel() for p in params])):
            param.copy_(torch.from_numpy(value).view_as(param))
    grids, sections = encode_tables(list(model.tables), grid_names(model), context=integer_context(model))
    sections.insert(0, (NETWORK_SECTION, network))
    header: Dict[str, Any] = {
        "method": METHOD_NAMES[model.config.method],
        "height": model.height,
        "width": model.width,
        "channels": model.channels,
        "model": model.config.to_header(),
        "versions": {"nerfcompress": _version("nerfcompress")},
        "coder": coder_record(),
    }
    if any("coding" in entry for entry in grids):
        header["codings"] = [entry.get("coding", []) for entry in grids]
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
    check_coder_record(header.get("coder"))  # before any stream is decoded
    config = config_from_header(header.get("model"))
    if METHOD_NAMES[config.method] != header["method"]:
        raise BitstreamError(f"file says method {header['method']} but its model is {config.method}")
    try:
        model = ImageModel(config, header["height"], header["width"], header["channels"])
    except ValueError as exc:
        raise BitstreamError(f"file declares a model that cannot be built ({exc}); the file is corrupt") from exc
    model.eval()
    params = network_tensors(model)
    values = decode_quantized_tensors(required_section(sections, NETWORK_SECTION), [p.numel() for p in params])
    for param, value in zip(params, values):
        param.copy_(torch.from_numpy(value).view_as(param))
    grids = implied_entries(list(model.tables), grid_names(model), header.get("codings"))
    decode_tables(grids, sections, list(model.tables), context=integer_context(model))
    for table in model.tables:
        table.clear_cache()
    return model, header


def to_uint8(channels: torch.Tensor) -> np.ndarray:
    """Rendered channels in [0, 1] (any shape) as uint8, rounded to nearest."""
    return torch.round(channels.clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
