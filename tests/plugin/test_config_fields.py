from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.config_fields import apply_config_json, config_to_json


@dataclass
class _Inner:
    mode: str = "SO3xR3"
    scale: float = 1.0


@dataclass
class _Config:
    _target: type = object
    width: int = 64
    rate: float = 1e-3
    far: float = float("inf")
    flag: bool = True
    sizes: tuple = (256, 96)
    args: list = field(default_factory=lambda: [{"num_levels": 5}])
    data: Path = Path("scene")
    maybe: Optional[int] = None
    inner: _Inner = field(default_factory=_Inner)
    opaque: object = field(default_factory=object)


def test_plain_fields_round_trip_onto_a_fresh_config():
    config = _Config(width=32, rate=2, sizes=(8, 4), data=Path("x/y"), maybe=3, inner=_Inner("off", 0.5))
    stored = config_to_json(config)
    assert "_target" not in stored and "far" not in stored and "opaque" not in stored
    fresh = _Config()
    apply_config_json(fresh, stored)
    assert (fresh.width, fresh.rate, fresh.sizes, fresh.data, fresh.maybe) == (32, 2.0, (8, 4), Path("x/y"), 3)
    assert fresh.inner == _Inner("off", 0.5) and isinstance(fresh.rate, float)


@pytest.mark.parametrize(
    "stored, pattern",
    [
        ({"width": "64"}, "width"),
        ({"flag": 1}, "flag"),
        ({"width": True}, "width"),
        ({"inner": {"mode": 3}}, "inner.mode"),
        ({"hidden": 1}, "upgrade"),
        ([1, 2], "JSON object"),
        ({"opaque": {}}, "opaque"),
    ],
)
def test_values_that_do_not_fit_raise_bitstream_error(stored, pattern):
    with pytest.raises(BitstreamError, match=pattern):
        apply_config_json(_Config(), stored)
