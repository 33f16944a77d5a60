"""Post-hoc codings of an uncompressed run (on a small untrained plain-nerfacto, no training)."""

from __future__ import annotations

import copy

import pytest
import torch
from nerfstudio.configs.method_configs import all_methods

from nerfcompress.bitstream.container import read_container_index, write_container
from nerfcompress.errors import ExportError
from nerfcompress.plugin.export import POSTHOC_CHOICES, export_pipeline, posthoc_codec, posthoc_methods
from nerfcompress.plugin.import_model import decode_pipeline
from nerfcompress.tables import round_trip_uniform


@pytest.fixture(scope="module")
def plain(small_plain_run):
    """``(config, pipeline, step)`` of the run as ``ns-compress export`` loads it."""
    from nerfstudio.utils.eval_utils import eval_setup

    config, pipeline, _, step = eval_setup(small_plain_run, test_mode="inference")
    return config, pipeline, step


@pytest.fixture(scope="module")
def files(plain):
    """The run's file for every post-hoc choice."""
    return {posthoc: write_container(*export_pipeline(*plain, posthoc)) for posthoc in POSTHOC_CHOICES}


def _expected_rows(table, posthoc: str) -> torch.Tensor:
    """The rows a file written with ``posthoc`` stores of ``table``: the exporter's own rounding."""
    if posthoc == "fp32":
        return table.rows.detach().cpu()
    if posthoc in ("none", "fp16"):
        return table.rows.detach().cpu().half().float()
    return torch.from_numpy(round_trip_uniform(table.rows, table.level_rows, int(posthoc[len("uniform") :])))


@pytest.mark.parametrize("posthoc", ["none", "fp32", "uniform8", "uniform6", "uniform2"])
def test_import_rebuilds_a_plain_model_whose_rows_are_the_exporters_bit_for_bit(plain, files, posthoc, tmp_path):
    _, pipeline, step = plain
    header, _ = read_container_index(files[posthoc])
    kind = {"none": "plain", "fp32": "plain-fp32"}.get(posthoc, "plain-uniform")
    assert header["method"] == "plain-nerfacto" and [g["table"] for g in header["grids"]] == [kind] * 3
    config, decoded, decoded_step = decode_pipeline(files[posthoc], tmp_path)
    assert decoded_step == step and config.method_name == "plain-nerfacto"
    for ours, theirs in zip(pipeline.model.tables(), decoded.model.tables()):
        assert torch.equal(theirs.rows, _expected_rows(ours, posthoc))


def test_the_loaded_model_reports_the_exact_size_of_its_default_export(plain, files):
    _, pipeline, step = plain
    assert pipeline.model.step == step
    size = pipeline.model.estimated_size_bytes()
    assert size["total"] == len(files["none"])
    assert pipeline.model.file_context.method == "plain-nerfacto"


def test_uniform_files_are_smaller_than_fp16_smaller_than_fp32(files):
    assert files["none"] == files["fp16"]
    sizes = [len(files[posthoc]) for posthoc in ("fp32", "fp16", "uniform8", "uniform6", "uniform4", "uniform2")]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), sizes


def test_a_prefix_of_a_uniform_file_decodes_its_levels(plain, files, tmp_path):
    data = files["uniform6"]
    cut = next(e for e in read_container_index(data)[1] if e.name == "main.l2")
    config, decoded, _ = decode_pipeline(data[: cut.offset + cut.length // 2], tmp_path, prefix=True)
    assert config.pipeline.model.active_levels == 2
    ours, theirs = plain[1].model.tables()[0], decoded.model.tables()[0]
    rows = sum(ours.level_rows[:2])
    assert torch.equal(theirs.rows[:rows], _expected_rows(ours, "uniform6")[:rows])
    assert not theirs.rows[rows:].any()


@pytest.mark.parametrize("method", ["shacira-nerfacto", "vqad-nerfacto-big"])
def test_posthoc_is_refused_for_methods_with_their_own_coding(method):
    config = copy.deepcopy(all_methods[method])
    assert posthoc_codec(config, "none") is None
    with pytest.raises(ExportError, match=f"--posthoc fp32 applies to uncompressed runs only .*'{method}'"):
        posthoc_codec(config, "fp32")
    assert posthoc_methods() == ["plain-instant-ngp", "plain-nerfacto", "plain-nerfacto-big"]
    with pytest.raises(ValueError, match="posthoc must be one of none, fp16, fp32, uniform2"):
        posthoc_codec(config, "uniform9")
