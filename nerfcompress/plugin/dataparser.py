"""``nerfcompress-data``: a dataparser that detects Blender or nerfstudio format.

``ns-train shacira-nerfacto --data path/to/scene`` should work for both formats that our
scenes come in. The parser looks at ``data`` and delegates to nerfstudio's own parser:

* a directory with ``transforms_train.json`` -> Blender (``BlenderDataParserConfig``);
* a directory with ``transforms.json``, or a ``.json`` file -> nerfstudio
  (``NerfstudioDataParserConfig``).

Blender wins when a directory holds both. The delegate's outputs (cameras, scene box,
``dataparser_scale``, ``dataparser_transform``) are returned unchanged. A wrong or missing
path fails when the datamanager is set up, before training starts, with a message naming
the path and the files expected there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Type

from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

DatasetFormat = Literal["blender", "nerfstudio"]

_EXPECTED = "transforms.json (nerfstudio format) or transforms_train.json (Blender format)"
_BLENDER_SPLIT_FILES = ("transforms_train.json", "transforms_val.json", "transforms_test.json")
_MAX_LISTED_ENTRIES = 10


class DatasetFormatError(ValueError):
    """The dataset path exists but holds no dataset format that nerfcompress can read."""


def _describe_contents(directory: Path) -> str:
    """Lists up to ``_MAX_LISTED_ENTRIES`` entries of a directory for an error message."""
    names: List[str] = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    if not names:
        return "it is empty"
    listed = ", ".join(names[:_MAX_LISTED_ENTRIES])
    more = len(names) - _MAX_LISTED_ENTRIES
    return f"it contains {listed}" + (f" and {more} more" if more > 0 else "")


def detect_format(data: Path) -> DatasetFormat:
    """Detects the dataset format at ``data``.

    Args:
        data: A scene directory, or a nerfstudio-format ``.json`` file.

    Returns:
        ``"blender"`` for a directory with ``transforms_train.json``; ``"nerfstudio"`` for a
        directory with ``transforms.json`` or a ``.json`` file that is not a Blender split.

    Raises:
        FileNotFoundError: ``data`` does not exist.
        DatasetFormatError: ``data`` exists but holds neither format.
    """
    if not data.exists():
        raise FileNotFoundError(f"dataset path {data} does not exist; pass --data <scene dir> containing {_EXPECTED}")
    if data.is_file():
        if data.name in _BLENDER_SPLIT_FILES:
            raise DatasetFormatError(
                f"dataset path {data} is a Blender split file; pass --data {data.parent} (its directory)"
            )
        if data.suffix == ".json":
            return "nerfstudio"
        raise DatasetFormatError(
            f"dataset path {data} is a file, not a scene directory or .json file; "
            f"pass --data <scene dir> containing {_EXPECTED}"
        )
    if (data / "transforms_train.json").is_file():
        return "blender"
    if (data / "transforms.json").is_file():
        return "nerfstudio"
    raise DatasetFormatError(
        f"dataset path {data} holds no known dataset format: expected {_EXPECTED}, but {_describe_contents(data)}"
    )


@dataclass
class AutoDataParserConfig(DataParserConfig):
    """Dataparser that detects Blender or nerfstudio format and delegates to nerfstudio's parser."""

    _target: Type = field(default_factory=lambda: AutoDataParser)
    """Target class to instantiate."""
    data: Path = Path()
    """Scene directory (transforms_train.json: Blender; transforms.json: nerfstudio) or a .json file."""
    blender: BlenderDataParserConfig = field(default_factory=BlenderDataParserConfig)
    """Settings used for Blender-format scenes; its own `data` is replaced by the `data` above."""
    nerfstudio: NerfstudioDataParserConfig = field(default_factory=NerfstudioDataParserConfig)
    """Settings used for nerfstudio-format scenes; its own `data` is replaced by the `data` above."""


class AutoDataParser(DataParser):
    """Detects the format of ``config.data`` and delegates parsing to nerfstudio's parser.

    The format is detected at construction, so a bad path fails during datamanager setup.
    One delegate serves every split, as nerfstudio's parsers expect (the nerfstudio parser
    picks its image downscale factor once and reuses it).

    Args:
        config: The auto dataparser config.

    Raises:
        FileNotFoundError: ``config.data`` does not exist.
        DatasetFormatError: ``config.data`` holds neither format.
    """

    config: AutoDataParserConfig
    downscale_factor: Optional[int] = None
    """Set to 1 by nerfstudio's datamanagers in inference mode so that no image is opened;
    forwarded to the nerfstudio delegate."""

    def __init__(self, config: AutoDataParserConfig) -> None:
        super().__init__(config=config)
        self.format: DatasetFormat = detect_format(config.data)
        delegate_config = config.blender if self.format == "blender" else config.nerfstudio
        self.delegate: DataParser = dataclasses.replace(delegate_config, data=config.data).setup()
        self.includes_time = self.delegate.includes_time

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        """Returns the delegate's outputs for ``split`` unchanged.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            kwargs: Passed on to the delegate.

        Returns:
            The delegate parser's outputs.

        Raises:
            FileNotFoundError: A Blender scene lacks ``transforms_<split>.json``.
        """
        if self.format == "blender":
            split_file = self.config.data / f"transforms_{split}.json"
            if not split_file.is_file():
                raise FileNotFoundError(
                    f"Blender dataset {self.config.data} has no {split_file.name} (needed for the "
                    f"{split!r} split); expected {', '.join(_BLENDER_SPLIT_FILES)}, "
                    f"but {_describe_contents(self.config.data)}"
                )
        elif self.downscale_factor is not None:
            self.delegate.downscale_factor = self.downscale_factor  # type: ignore[attr-defined]
        return self.delegate.get_dataparser_outputs(split, **kwargs)


nerfcompress_data = DataParserSpecification(
    config=AutoDataParserConfig(),
    description="Blender (transforms_train.json) or nerfstudio (transforms.json) scene, detected.",
)
