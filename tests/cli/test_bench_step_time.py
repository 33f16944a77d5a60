"""scripts/bench_step_time.py: the parser of the variants it times beside the methods."""

from __future__ import annotations

import pytest
from script_modules import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_step_time")


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
