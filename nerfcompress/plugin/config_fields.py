"""Config dataclasses <-> plain JSON, for the file header (never YAML or pickle on decode).

:func:`config_to_json` keeps the fields whose values are plain JSON (numbers, strings, bools,
None, lists/tuples and str-keyed dicts of those, paths as strings) and recurses into nested
config dataclasses. :func:`apply_config_json` writes such a dict back onto a fresh config (the
registered method's), accepting a value only where its JSON type fits the field's current
value, so a file can change settings but never the type of an object.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Dict

from nerfcompress.errors import BitstreamError

_SKIPPED_FIELDS = {"_target"}
_NOT_PLAIN = object()  # marks a value that is not plain JSON


def _plain(value: Any) -> Any:
    """``value`` as plain JSON, or ``_NOT_PLAIN`` when it is not plain JSON."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOT_PLAIN
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: _plain(v) for k, v in value.items()}
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items.values()) else items
    return _NOT_PLAIN


def config_to_json(config: Any) -> Dict[str, Any]:
    """The plain-JSON fields of a config dataclass, nested configs as nested dicts.

    Args:
        config: a dataclass instance (e.g. a ``ModelConfig``).

    Returns:
        ``field name -> JSON value``; fields that are not plain JSON are left out.
    """
    out: Dict[str, Any] = {}
    for field in dataclasses.fields(config):
        if field.name in _SKIPPED_FIELDS:
            continue
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[field.name] = config_to_json(value)
            continue
        plain = _plain(value)
        if plain is not _NOT_PLAIN:
            out[field.name] = plain
    return out


def _fits(stored: Any, current: Any) -> bool:
    """Whether a JSON value may replace a field whose current value is ``current``."""
    if current is None or stored is None:
        return True
    if isinstance(current, bool) or isinstance(stored, bool):
        return isinstance(current, bool) and isinstance(stored, bool)
    if isinstance(current, float):
        return isinstance(stored, (int, float))
    if isinstance(current, (int, str)):
        return type(stored) is type(current)
    if isinstance(current, Path):
        return isinstance(stored, str)
    if isinstance(current, (list, tuple)):
        return isinstance(stored, list)
    if isinstance(current, dict):
        return isinstance(stored, dict)
    return False


def _restore(stored: Any, current: Any) -> Any:
    if isinstance(current, Path):
        return Path(stored)
    if isinstance(current, float) and stored is not None:
        return float(stored)
    if isinstance(current, tuple):
        return tuple(stored)
    return stored


def apply_config_json(config: Any, stored: Any, where: str = "config") -> None:
    """Writes values from :func:`config_to_json` onto ``config`` in place.

    Args:
        config: a fresh config dataclass (the registered method's defaults).
        stored: the dict read from a file (untrusted).
        where: the config's name, for error messages.

    Raises:
        BitstreamError: if ``stored`` is not a dict, names a field ``config`` does not have,
            or holds a value of the wrong type for a field.
    """
    if not isinstance(stored, dict):
        raise BitstreamError(f"{where} must be a JSON object in the header, found {type(stored).__name__}")
    names = {f.name for f in dataclasses.fields(config)} - _SKIPPED_FIELDS
    unknown = sorted(set(stored) - names)
    if unknown:
        raise BitstreamError(
            f"{where} has fields {unknown} that this nerfcompress/nerfstudio does not know; "
            "the file was written by a different version: upgrade"
        )
    for name, value in stored.items():
        current = getattr(config, name)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            apply_config_json(current, value, f"{where}.{name}")
        elif _fits(value, current):
            setattr(config, name, _restore(value, current))
        else:
            raise BitstreamError(
                f"{where}.{name} is {value!r:.80} in the header, expected a value like {current!r:.80}; "
                "the file is corrupt"
            )


def config_diff(config: Any, defaults: Any) -> Dict[str, Any]:
    """The fields of :func:`config_to_json` whose values differ from those of ``defaults`` (a
    config of the same class), nested configs as nested dicts of their own differences."""
    ours, theirs = config_to_json(config), config_to_json(defaults)

    def differences(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
        out = {}
        for key, value in a.items():
            if isinstance(value, dict) and isinstance(b.get(key), dict):
                nested = differences(value, b[key])
                if nested:
                    out[key] = nested
            elif key not in b or b[key] != value:
                out[key] = value
        return out

    return differences(ours, theirs)
