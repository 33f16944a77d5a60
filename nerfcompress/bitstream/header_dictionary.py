"""Example headers whose JSON text is the preset dictionary of every header's deflate stream.

A file's header is a short JSON text made mostly of the same keys and many of the same values in
every file (the coder's record, the model settings' names, nerfacto's defaults), which deflate
alone cannot exploit in 1-2 kB. Format 8 deflates it with a preset dictionary (zlib's ``zdict``,
as Brotli ships one): the concatenated text of the headers below, serialised by
:mod:`nerfcompress.bitstream.container`. They are typical files of each kind, not any
particular file: an image (VQAD, then SHACIRA), nerfacto at nerfstudio's default sizes on a
captured scene, and the CPU-sized configuration of ``configs/demo.yaml``, the most common last
(deflate codes near matches in fewer bits).

Frozen with format 8: a file written under these examples is read with exactly them, so
changing one byte of them is a new format version (a test pins the dictionary's SHA-256).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

_CODER = {"constriction": "0.5.0", "name": "constriction.stream.queue.RangeEncoder+Categorical(perfect=False)"}
_IMAGE_MODEL = {
    "bits": 4,
    "decoder": "per-level",
    "features_per_level": 1,
    "finest_stride": 1.0,
    "hidden": [16, 16],
    "latent_dim": 1,
    "log2_hashmap_size": 22,
    "num_levels": 7,
    "per_level_prior": True,
}
_PROPOSALS = [
    {"hidden_dim": 16, "log2_hashmap_size": 17, "max_res": 128, "num_levels": 5, "use_linear": False},
    {"hidden_dim": 16, "log2_hashmap_size": 17, "max_res": 256, "num_levels": 5, "use_linear": False},
]


def _grids(
    table: str, main_rows: List[int], proposal_rows: List[List[int]], coding: Optional[str] = None, **entry: Any
) -> List[Dict[str, Any]]:
    """Grid entries of the main grid and the proposal grids; ``coding`` (VQAD's) is every level's."""
    names = ["main", *(f"prop{i}" for i in range(len(proposal_rows)))]
    grids = [
        {**entry, "features": 2, "level_rows": rows, "name": name, "rows": sum(rows), "table": table}
        for name, rows in zip(names, [main_rows, *proposal_rows])
    ]
    if coding is not None:
        for grid in grids:
            grid["coding"] = [coding] * len(grid["level_rows"])
    return grids


def _nerfacto_model(**settings: Any) -> Dict[str, Any]:
    """nerfacto's method defaults (``ns-train nerfacto``), overridden by ``settings``."""
    model = {
        "active_levels": None,
        "appearance_embed_dim": 32,
        "average_init_density": 0.01,
        "background_color": "last_sample",
        "base_res": 16,
        "disable_scene_contraction": False,
        "eval_num_rays_per_chunk": 32768,
        "far_plane": 1000.0,
        "features_per_level": 2,
        "hidden_dim": 64,
        "hidden_dim_color": 64,
        "implementation": "torch",
        "log2_hashmap_size": 19,
        "max_res": 2048,
        "near_plane": 0.05,
        "num_levels": 16,
        "num_nerf_samples_per_ray": 48,
        "num_proposal_iterations": 2,
        "num_proposal_samples_per_ray": [256, 96],
        "predict_normals": False,
        "proposal_initial_sampler": "piecewise",
        "proposal_net_args_list": _PROPOSALS,
        "use_appearance_embedding": True,
        "use_average_appearance_embedding": True,
        "use_same_proposal_network": False,
    }
    model.update(settings)
    return model


_DEMO_SETTINGS = {
    "average_init_density": 1.0,
    "background_color": "white",
    "disable_scene_contraction": True,
    "eval_num_rays_per_chunk": 4096,
    "far_plane": 6.0,
    "hidden_dim": 32,
    "hidden_dim_color": 32,
    "log2_hashmap_size": 15,
    "max_res": 512,
    "near_plane": 2.0,
    "num_levels": 12,
    "num_nerf_samples_per_ray": 24,
    "num_proposal_samples_per_ray": [48, 24],
    "proposal_initial_sampler": "uniform",
    "proposal_log2_hashmap_size": 13,
}
_DEMO_MAIN_ROWS = [4096, 10648, 29792] + [32768] * 9
_DEMO_PROPOSAL_ROWS = [[4096] + [8192] * 4] * 2
_DEMO_SCENE = {
    "dataparser_scale": 1.0,
    "dataparser_transform": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
    "scene_box": [[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]],
}
_VERSIONS = {"nerfcompress": "0.1.0", "nerfstudio": "1.1.5"}

EXAMPLE_HEADERS: List[Dict[str, Any]] = [
    {
        "channels": 3,
        "coder": _CODER,
        "codings": [["packed", "packed", "packed", "packed", "range", "range", "range"]],
        "height": 512,
        "method": "vqad-image",
        "model": {**_IMAGE_MODEL, "method": "vqad"},
        "versions": {"nerfcompress": "0.1.0"},
        "width": 768,
    },
    {
        "channels": 3,
        "coder": _CODER,
        "height": 512,
        "method": "shacira-image",
        "model": {**_IMAGE_MODEL, "context_hidden": [16], "method": "shacira"},
        "versions": {"nerfcompress": "0.1.0"},
        "width": 768,
    },
    {
        "cameras": 250,
        "coder": _CODER,
        "dataparser": {"fields": {}, "name": "nerfstudio-data"},
        "grids": _grids(
            "shacira",
            [4096, 12168, 29792, 79512, 205384] + [524288] * 11,
            [[4096, 19688, 97336, 131072, 131072], [4096, 32768, 131072, 131072, 131072]],
            latent_dim=2,
        ),
        "method": "shacira-nerfacto",
        "model": _nerfacto_model(decoder="per-level", latent_dim=2),
        "scene": {
            "dataparser_scale": 0.25,
            "dataparser_transform": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
            "scene_box": [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]],
        },
        "step": 29999,
        "versions": _VERSIONS,
    },
    {
        "cameras": 100,
        "coder": _CODER,
        "dataparser": {"fields": {}, "name": "nerfcompress-data"},
        "grids": _grids(
            "vqad",
            _DEMO_MAIN_ROWS,
            _DEMO_PROPOSAL_ROWS,
            bits=4,
            coding="range",
        ),
        "method": "vqad-nerfacto",
        "model": _nerfacto_model(**_DEMO_SETTINGS, bits=4),
        "scene": _DEMO_SCENE,
        "step": 799,
        "versions": _VERSIONS,
    },
    {
        "cameras": 100,
        "coder": _CODER,
        "dataparser": {"fields": {}, "name": "nerfcompress-data"},
        "grids": _grids("shacira", _DEMO_MAIN_ROWS, _DEMO_PROPOSAL_ROWS, latent_dim=2),
        "method": "shacira-nerfacto",
        "model": _nerfacto_model(**_DEMO_SETTINGS, decoder="per-level", latent_dim=2),
        "scene": _DEMO_SCENE,
        "step": 799,
        "versions": _VERSIONS,
    },
]
"""The headers of the preset dictionary, in dictionary order."""
