"""A short run of scripts/fuzz_import.py: crafted files through the whole import path, model construction included."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_import.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("fuzz_import", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_two_hundred_crafted_files_import_or_raise_bitstream_error_in_bounded_memory():
    summary = _load_script().FuzzImport(num_cases=200, seed=0, max_seconds=120).run()
    assert summary["num_cases"] == 200
    assert summary["outcomes"]["other_exception"] == 0, summary["bugs"]
    assert summary["outcomes"]["crashed"] == 0 and summary["outcomes"]["timeout"] == 0, summary["bugs"]
    assert summary["outcomes"]["bitstream_error"] > 100  # most mutations are caught
    assert summary["outcomes"]["decoded"] > 0  # and some are harmless (a field the import does not read)
    assert summary["max_rss_over_reference"] < 2.0, summary["largest_rss_case"]
    assert summary["ok"]
