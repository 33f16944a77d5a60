"""scripts/bench_step_time.py: the parser of the variants it times beside the methods."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_step_time.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_step_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_step_time"] = module  # dataclasses look their module up there
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_a_variant_is_a_label_a_method_and_its_extra_flags(bench):
    label, method, flags = bench.parse_variant(
        "joint=shacira-nerfacto,pipeline.model.coarse-to-fine-min-levels=1,--pipeline.model.rate-weight=0.003"
    )
    assert (label, method) == ("joint", "shacira-nerfacto")
    assert flags == {"--pipeline.model.coarse-to-fine-min-levels": "1", "--pipeline.model.rate-weight": "0.003"}
    assert bench.parse_variant("plain=plain-nerfacto") == ("plain", "plain-nerfacto", {})


@pytest.mark.parametrize("text", ["shacira-nerfacto", "=shacira-nerfacto", "x=", "x=shacira-nerfacto,rate-weight"])
def test_a_malformed_variant_says_what_form_it_takes(bench, text):
    with pytest.raises(ValueError, match="--variants"):
        bench.parse_variant(text)
