"""The one account of a ``.ncmp`` file: the header and sections an export of a model holds.

:func:`model_file` lays out the header and every section exactly as ``ns-compress export``
writes them, and :func:`section_sizes` counts their bytes, framing included, without writing
the file. The exporter writes what :func:`model_file` returns; the size logged during training
and ``estimated_size_bytes`` in ``ns-eval`` count the same thing
(:meth:`~nerfcompress.plugin.model.GridModel.estimated_size_bytes`), so the logged size
is the size of the file an export at that step writes, to the byte.

Sections in file order: ``networks`` (every parameter rendering needs besides the grids, then
the average appearance embedding, in :meth:`~nerfcompress.plugin.model.GridModel.network_parameters`
order, each tensor quantised with its own step and range-coded,
:mod:`nerfcompress.bitstream.quantized_tensors`), then the model's extra sections (Instant-NGP's
``occupancy`` grid, :meth:`~nerfcompress.plugin.model.GridModel.extra_sections`), then the
grids' sections: every grid's shared sections (main field first, then the proposal grids), then
level 0 of every grid, level 1 of every grid, ... (:mod:`nerfcompress.bitstream.model_codec`),
so that a prefix of the file decodes the coarse levels; last the ``cameras`` (the training
cameras for the viewer, quantised poses and shared intrinsics,
:mod:`nerfcompress.bitstream.cameras`), which only a viewer needs, so that no level of detail
waits for them.

The header holds the method name, the step, the versions that wrote the file and the coder, the
allow-listed model settings (:mod:`nerfcompress.plugin.model_settings`), the dataparser's
registered name and the fields where it differs from that parser's defaults (the dataset path
left out), the scene box and dataparser transform and scale (float32 values, written in the
shortest decimal that reads back to them), the camera count, the grid entries and, for a model
with extra sections, ``"extras"``: one entry per extra section, keyed by the section's name
(:func:`check_extras` is what an import accepts of it). Tensor shapes are not stored: the
importer rebuilds the model from the settings and reads what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from nerfstudio.configs.dataparser_configs import all_dataparsers

from nerfcompress.bitstream.cameras import encode_cameras
from nerfcompress.bitstream.container import header_size_bytes, section_frame_bytes
from nerfcompress.bitstream.model_codec import TableCodec, encode_tables
from nerfcompress.bitstream.quantized_tensors import encode_quantized_tensors
from nerfcompress.entropy.coder import coder_record
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.config_fields import config_diff
from nerfcompress.plugin.model_settings import stored_settings

NETWORK_PRECISION_BITS = 3
"""Bits each network tensor keeps below its RMS in the file (its quantisation step is
``2**(floor(log2 rms) - NETWORK_PRECISION_BITS)``). Chosen on the val views of five runs (SHACIRA
and VQAD, lego100 and the synthetic scene) re-exported at each precision (BENCHMARKS.md, "Smaller
files for every method"): 3 renders as 6 did (-0.01 to +0.12 dB) and saves ~1.85 kB a file; 2 lost
0.09-0.46 dB on four of the five."""

Sections = List[Tuple[str, bytes]]


MAX_EXTRAS = 8
"""Most extra sections (header ``"extras"`` entries) a file may declare."""

RESERVED_SECTIONS = ("networks", "cameras")
"""Section names that no extra section may take."""


def grid_names(num_grids: int) -> List[str]:
    """Section prefixes of the grids in :meth:`GridModel.grid_encodings` order."""
    return ["main", *(f"prop{i}" for i in range(num_grids - 1))]


def _float32(values: Any) -> Any:
    """Nested lists of floats as the shortest decimals that read back to the same float32."""
    return np.vectorize(lambda v: float(str(np.float32(v))), otypes=[object])(np.asarray(values)).tolist()


def stored_networks(model) -> List[torch.Tensor]:
    """The tensors of the ``networks`` section, in order: the model's
    :meth:`~nerfcompress.plugin.model.GridModel.network_parameters`, then the average appearance
    embedding ``[appearance_embed_dim]`` if the model has one."""
    tensors = [p.detach().cpu() for p in model.network_parameters().values()]
    embedding = getattr(model.field, "embedding_appearance", None)
    if embedding is not None:
        tensors.append(embedding.mean(dim=0).detach().cpu())
    return tensors


@dataclass(frozen=True)
class FileContext:
    """What a file holds besides the model: the run's method, dataparser and training cameras.

    Attributes:
        method: the registered method name (``TrainerConfig.method_name``).
        dataparser: the header's ``"dataparser"`` entry (registered name and plain fields).
        scene: the header's ``"scene"`` entry (scene box, dataparser transform and scale).
        cameras: ``c2w`` float32 ``[N, 3, 4]``, ``intrinsics`` float32 ``[N, 4]`` (fx, fy, cx,
            cy), ``size`` int32 ``[N, 2]`` (width, height), on CPU.
    """

    method: str
    dataparser: Dict[str, Any]
    scene: Dict[str, Any]
    cameras: Dict[str, torch.Tensor]

    @classmethod
    def from_datamanager(cls, method: str, datamanager, dataparser_config) -> "FileContext":
        """The context of a pipeline's datamanager (its training dataparser outputs)."""
        outputs = datamanager.train_dataparser_outputs
        cameras = outputs.cameras
        names = [name for name, cfg in all_dataparsers.items() if type(cfg) is type(dataparser_config)]
        fields = config_diff(dataparser_config, all_dataparsers[names[0]]) if names else {}
        fields.pop("data", None)  # the dataset's path on the training machine: evaluation passes its own
        return cls(
            method=method,
            dataparser={"name": names[0] if names else None, "fields": fields},
            scene={
                "scene_box": _float32(outputs.scene_box.aabb.float()),
                "dataparser_transform": _float32(outputs.dataparser_transform.float()),
                "dataparser_scale": _float32(float(outputs.dataparser_scale)),
            },
            cameras={
                "c2w": cameras.camera_to_worlds.detach().float().cpu(),
                "intrinsics": torch.cat([cameras.fx, cameras.fy, cameras.cx, cameras.cy], dim=-1).float().cpu(),
                "size": torch.cat([cameras.width, cameras.height], dim=-1).to(torch.int32).cpu(),
            },
        )


def model_file(
    model,
    context: FileContext,
    step: int,
    codec: Optional[TableCodec] = None,
    network_precision_bits: int = NETWORK_PRECISION_BITS,
) -> Tuple[dict, Sections]:
    """Header and sections of the file that exports ``model`` (a GridModel).

    Args:
        model: the model.
        context: the run's method, dataparser and cameras.
        step: the training step recorded in the header.
        codec: a storage for every table (post hoc, e.g. ``plain_codec("uniform8")``); None:
            each table's default.
        network_precision_bits: bits each network tensor keeps below its RMS (the default is
            what ``ns-compress export`` writes; other values are for measuring the choice).

    Returns:
        ``(header, sections)`` for :func:`~nerfcompress.bitstream.container.write_container`.

    Raises:
        UnsupportedTableError: if a table has no stored form (or not ``codec``'s).
        ValueError: if the model's extra sections and their header entries differ in names.
    """
    network_bytes = encode_quantized_tensors([t.numpy() for t in stored_networks(model)], network_precision_bits)
    cameras = context.cameras
    camera_bytes = encode_cameras(cameras["c2w"].numpy(), cameras["intrinsics"].numpy(), cameras["size"].numpy())
    encodings = model.grid_encodings()
    grids, grid_sections = encode_tables([e.table for e in encodings], grid_names(len(encodings)), codec)
    extras, extra_sections = model.extra_sections()
    if list(extras) != [name for name, _ in extra_sections]:
        raise ValueError(f"extra header entries {list(extras)} must name the extra sections, in their order")
    header = {
        "method": context.method,
        "step": int(step),
        "versions": {name: version(name) for name in ("nerfcompress", "nerfstudio")},
        "coder": coder_record(),
        "model": stored_settings(model.config),
        "dataparser": context.dataparser,
        "scene": context.scene,
        "cameras": len(cameras["c2w"]),
        "grids": grids,
    }
    if extras:
        header["extras"] = extras
    return header, [("networks", network_bytes), *extra_sections, *grid_sections, ("cameras", camera_bytes)]


def check_extras(header: Mapping[str, Any], sections: Mapping[str, bytes]) -> Dict[str, Dict[str, Any]]:
    """The header's ``"extras"`` (untrusted) once its form is checked: a JSON object of at most
    :data:`MAX_EXTRAS` entries, each a JSON object keyed by the name of a section the file holds
    (none of :data:`RESERVED_SECTIONS` nor a grid's); ``{}`` if the header has none. What each
    entry holds is the model's to check (:meth:`~nerfcompress.plugin.model.GridModel.load_extra_sections`).

    Raises:
        BitstreamError: on any other form.
    """
    extras = header.get("extras", {})
    if not isinstance(extras, dict) or len(extras) > MAX_EXTRAS:
        raise BitstreamError(
            f"header extras is {extras!r:.80}, expected a JSON object of at most {MAX_EXTRAS} entries; "
            "the file is corrupt"
        )
    entries = header.get("grids")
    grids = {entry.get("name") for entry in entries if isinstance(entry, dict)} if isinstance(entries, list) else set()
    for name, entry in extras.items():
        reserved = name in RESERVED_SECTIONS or name.split(".")[0] in grids
        if reserved or name not in sections or not isinstance(entry, dict):
            raise BitstreamError(
                f"header extras entry {name!r:.40} is {entry!r:.80} (section present: {name in sections}), expected "
                "a JSON object naming an extra section of the file; the file is corrupt"
            )
    return extras


def section_sizes(header: dict, sections: Sections) -> List[Tuple[str, int]]:
    """Exact bytes of every part of the file ``write_container(header, sections)``; they sum to
    its length.

    Returns:
        ``("header", preamble + header bytes)`` then ``(name, framing + payload bytes)`` per section.
    """
    return [("header", header_size_bytes(header))] + [
        (name, section_frame_bytes(name) + len(payload)) for name, payload in sections
    ]


def file_size_bytes(header: dict, sections: Sections) -> Dict[str, int]:
    """The file's bytes by part: ``grids`` (every grid section), ``networks``, ``metadata``
    (header, extra sections and cameras) and ``total``, framing included."""
    sizes = section_sizes(header, sections)
    networks = sum(size for name, size in sizes if name == "networks")
    metadata_names = {"header", "cameras", *header.get("extras", {})}
    metadata = sum(size for name, size in sizes if name in metadata_names)
    total = sum(size for _, size in sizes)
    return {"grids": total - networks - metadata, "networks": networks, "metadata": metadata, "total": total}
