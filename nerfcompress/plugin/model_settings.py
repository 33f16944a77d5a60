"""The model settings a file may carry: an allow-list of fields, types and ranges, checked before anything is built.

A file stores only what rebuilding and rendering the model needs (:data:`METHOD_SETTINGS`, by
model config class: the model's settings, :data:`NERFACTO_SETTINGS` or :data:`INSTANT_NGP_SETTINGS`,
plus its table kind's, :data:`TABLE_SETTINGS`); training-only fields (loss weights, schedules, rate
weights) keep the registered method's defaults on import. Every stored value is checked against
its type and range here, and the sizes the settings imply against documented caps, before
nerfstudio builds anything: a hostile header (``hidden_dim_color = 200000``, a 1.6e9-row grid)
is refused with one :class:`BitstreamError` line instead of an allocation.

Caps (what a file may make an import allocate, at most):

* every grid: ``num_levels <= 32``, ``log2_hashmap_size <= 24``, resolutions ``<= 2**16``,
  ``features_per_level <= 8``; all grids together at most :data:`MAX_GRID_ROWS` rows (2.9x
  nerfacto-big's 23.4M), checked by the importer on the layouts the settings give;
* MLP widths and the appearance embedding ``<= 1024``, at most 4 proposal networks;
* rendering: ``eval_num_rays_per_chunk * (samples per ray, all passes) <= 2**26`` (nerfacto);
* Instant-NGP's occupancy grid: ``grid_levels * grid_resolution**3 <= 2**25`` cells (4x the
  default), :data:`MAX_OCCUPANCY_CELLS`.

The appearance embedding's rows are the stored cameras, whose section holds a fixed number of
bytes per camera (:mod:`nerfcompress.bitstream.cameras`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

from nerfcompress.errors import BitstreamError

MAX_GRID_ROWS = 1 << 26
"""Most rows all grids of a file's model may have together."""

MAX_RENDER_SAMPLES = 1 << 26
"""Most samples one rendering chunk may hold (rays per chunk times samples per ray, all passes)."""

MAX_OCCUPANCY_CELLS = 1 << 25
"""Most cells an Instant-NGP occupancy grid may have (levels times resolution cubed)."""


@dataclass(frozen=True)
class Int:
    """An int (not a bool) in ``lo .. hi``."""

    lo: int
    hi: int

    def check(self, value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            _refuse(where, value, f"an int in {self.lo}..{self.hi}")
        return value


@dataclass(frozen=True)
class Float:
    """A finite number in ``lo .. hi`` (an int is accepted and converted)."""

    lo: float
    hi: float

    def check(self, value: Any, where: str) -> Any:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not self.lo <= value <= self.hi:
            _refuse(where, value, f"a number in {self.lo:g}..{self.hi:g}")
        return float(value)


@dataclass(frozen=True)
class Bool:
    """true or false."""

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, bool):
            _refuse(where, value, "true or false")
        return value


@dataclass(frozen=True)
class OneOf:
    """One of a few strings."""

    values: Tuple[str, ...]

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, str) or value not in self.values:
            _refuse(where, value, f"one of {', '.join(self.values)}")
        return value


@dataclass(frozen=True)
class Maybe:
    """null (the config's ``None``: the setting is unset) or a value of one kind."""

    item: Any

    def check(self, value: Any, where: str) -> Any:
        return None if value is None else self.item.check(value, where)


@dataclass(frozen=True)
class ListOf:
    """A list of ``min_len .. max_len`` items of one kind, restored as a list or a tuple."""

    item: Any
    min_len: int
    max_len: int
    as_tuple: bool = False

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            _refuse(where, value, f"a list of {self.min_len}..{self.max_len} items")
        items = [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if self.as_tuple else items


@dataclass(frozen=True)
class Record:
    """A JSON object whose keys are some of ``fields`` (each checked by its own kind)."""

    fields: Mapping[str, Any]

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict) or not set(value) <= set(self.fields):
            _refuse(where, value, f"an object with keys among {sorted(self.fields)}")
        return {key: self.fields[key].check(v, f"{where}.{key}") for key, v in value.items()}


def _refuse(where: str, value: Any, expected: str) -> None:
    raise BitstreamError(
        f"header {where} is {value!r:.60}, expected {expected}; the file is corrupt or was written by another version"
    )


_WIDTH = Int(1, 1024)
_GRID = {
    "num_levels": Int(1, 32),
    "base_res": Int(1, 1 << 16),
    "max_res": Int(1, 1 << 16),
    "log2_hashmap_size": Int(4, 24),
    "features_per_level": Int(1, 8),
}
_PROPOSAL_NETWORK = Record({**_GRID, "hidden_dim": _WIDTH, "num_layers": Int(1, 8), "use_linear": Bool()})

_RENDERED = {
    "near_plane": Float(0.0, 1e6),
    "far_plane": Float(0.0, 1e6),
    "background_color": OneOf(("random", "last_sample", "black", "white")),
    "disable_scene_contraction": Bool(),
    "eval_num_rays_per_chunk": Int(1, 1 << 16),
    "active_levels": Maybe(Int(1, 32)),
}

NERFACTO_SETTINGS: Dict[str, Any] = {
    **_GRID,
    **_RENDERED,
    "hidden_dim": _WIDTH,
    "hidden_dim_color": _WIDTH,
    "num_nerf_samples_per_ray": Int(1, 4096),
    "num_proposal_samples_per_ray": ListOf(Int(1, 4096), 1, 4, as_tuple=True),
    "num_proposal_iterations": Int(1, 4),
    "use_same_proposal_network": Bool(),
    "proposal_net_args_list": ListOf(_PROPOSAL_NETWORK, 1, 4),
    "proposal_initial_sampler": OneOf(("uniform", "piecewise")),
    "proposal_log2_hashmap_size": Maybe(Int(4, 24)),
    "use_appearance_embedding": Bool(),
    "use_average_appearance_embedding": Bool(),
    "appearance_embed_dim": Int(0, 1024),
    "predict_normals": Bool(),
    "average_init_density": Float(1e-6, 1e6),
    "implementation": OneOf(("torch", "tcnn")),
}
"""What every nerfacto file stores: the grids' layouts, the networks' shapes and what rendering
reads (planes, samples, background, density scale, the levels an export of a lower level of
detail renders)."""

INSTANT_NGP_SETTINGS: Dict[str, Any] = {
    **_GRID,
    **_RENDERED,
    "hidden_dim": _WIDTH,
    "use_appearance_embedding": Bool(),
    "grid_resolution": Int(1, 512),
    "grid_levels": Int(1, 8),
    "alpha_thre": Float(0.0, 1.0),
    "cone_angle": Float(0.0, 1.0),
    "render_step_size": Maybe(Float(1e-6, 1e3)),
}
"""What every Instant-NGP file stores: the grid's layout, the networks' shapes (the appearance
setting decides the embedding's width), the occupancy grid's shape (its cells are a section of
their own) and what the ray marching reads."""

TABLE_SETTINGS: Dict[str, Dict[str, Any]] = {
    "ShaciraTableSettings": {"latent_dim": Int(1, 8), "decoder": OneOf(("shared", "per-level"))},
    "VqadTableSettings": {"bits": Int(1, 8)},
    "PlainTableSettings": {},
}
"""Settings a table kind adds, by table-settings mixin (:mod:`nerfcompress.plugin.table_settings`)."""

METHOD_SETTINGS: Dict[str, Dict[str, Any]] = {
    "ShaciraNerfactoModelConfig": {**NERFACTO_SETTINGS, **TABLE_SETTINGS["ShaciraTableSettings"]},
    "VqadNerfactoModelConfig": {**NERFACTO_SETTINGS, **TABLE_SETTINGS["VqadTableSettings"]},
    "PlainNerfactoModelConfig": {**NERFACTO_SETTINGS, **TABLE_SETTINGS["PlainTableSettings"]},
    "ShaciraInstantNGPModelConfig": {**INSTANT_NGP_SETTINGS, **TABLE_SETTINGS["ShaciraTableSettings"]},
    "VqadInstantNGPModelConfig": {**INSTANT_NGP_SETTINGS, **TABLE_SETTINGS["VqadTableSettings"]},
    "PlainInstantNGPModelConfig": {**INSTANT_NGP_SETTINGS, **TABLE_SETTINGS["PlainTableSettings"]},
}
"""What a file stores, by model config class name (exact: a subclass is not known)."""


def settings_for(config: Any) -> Dict[str, Any]:
    """``field -> kind`` of what a file of ``config``'s model stores.

    Raises:
        BitstreamError: if ``config`` is not a model config this module knows.
    """
    name = type(config).__name__
    if name not in METHOD_SETTINGS:
        raise BitstreamError(f"model config {name} has no stored settings (known: {sorted(METHOD_SETTINGS)})")
    return dict(METHOD_SETTINGS[name])


def stored_settings(config: Any) -> Dict[str, Any]:
    """The allow-listed fields of a model config as plain JSON (what the header's ``"model"`` holds)."""
    out = {}
    for name in settings_for(config):
        value = copy.deepcopy(getattr(config, name))
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def apply_settings(config: Any, stored: Any) -> None:
    """Checks a header's ``"model"`` entry and writes it onto a fresh (registered) config.

    Every allow-listed field must be present with the right type and range; unknown fields,
    missing fields and settings whose sizes exceed the caps are refused.

    Args:
        config: the registered method's model config (a copy), changed in place.
        stored: the header's ``"model"`` entry (untrusted).

    Raises:
        BitstreamError: on anything the allow-list does not accept.
    """
    kinds = settings_for(config)
    if not isinstance(stored, dict):
        _refuse("model", stored, "a JSON object")
    unknown, missing = sorted(set(stored) - set(kinds)), sorted(set(kinds) - set(stored))
    if unknown or missing:
        raise BitstreamError(
            f"header model settings have unknown fields {unknown[:5]} and miss {missing[:5]}; the file is corrupt "
            "or was written by another nerfcompress version"
        )
    values = {name: kind.check(stored[name], f"model.{name}") for name, kind in kinds.items()}
    _check_together(values)
    for name, value in values.items():
        setattr(config, name, value)


def _check_together(values: Mapping[str, Any]) -> None:
    """Constraints between settings, and the rendering and occupancy caps."""
    if values["near_plane"] >= values["far_plane"]:
        _refuse("model.far_plane", values["far_plane"], f"a number above near_plane={values['near_plane']:g}")
    if "num_proposal_iterations" in values:
        _check_proposals(values)
    if "grid_resolution" in values:
        cells = values["grid_levels"] * values["grid_resolution"] ** 3
        if cells > MAX_OCCUPANCY_CELLS:
            _refuse(
                "model.grid_resolution",
                values["grid_resolution"],
                f"at most {MAX_OCCUPANCY_CELLS} occupancy cells over {values['grid_levels']} levels (found {cells})",
            )


def _check_proposals(values: Mapping[str, Any]) -> None:
    """nerfacto's proposal settings agree with each other and a chunk's samples stay under the cap."""
    if len(values["num_proposal_samples_per_ray"]) != values["num_proposal_iterations"]:
        _refuse(
            "model.num_proposal_samples_per_ray",
            list(values["num_proposal_samples_per_ray"]),
            f"one count per proposal iteration ({values['num_proposal_iterations']})",
        )
    if values["use_same_proposal_network"] and len(values["proposal_net_args_list"]) != 1:
        _refuse("model.proposal_net_args_list", values["proposal_net_args_list"], "one entry (a shared network)")
    samples = values["num_nerf_samples_per_ray"] + sum(values["num_proposal_samples_per_ray"])
    if values["eval_num_rays_per_chunk"] * samples > MAX_RENDER_SAMPLES:
        _refuse(
            "model.eval_num_rays_per_chunk",
            values["eval_num_rays_per_chunk"],
            f"at most {MAX_RENDER_SAMPLES} samples per chunk ({samples} per ray)",
        )
