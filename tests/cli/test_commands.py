"""One-line errors (exit status 2, no traceback) and the fast commands of ns-compress."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import yaml

from nerfcompress.bitstream.container import read_container_index, write_container
from nerfcompress.bitstream.levels import level_prefix_bytes
from nerfcompress.cli.evaluate import Evaluate
from nerfcompress.cli.export import Export
from nerfcompress.cli.import_file import Import
from nerfcompress.cli.info import Info
from nerfcompress.cli.main import COMMANDS


def _fails_with(command, capsys, pattern: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        command.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert pattern in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_all_subcommands_are_registered():
    assert {"export", "import", "info", "eval", "scene"} <= set(COMMANDS)


def test_info_prints_sections_and_bits_per_row(tmp_path, capsys):
    path = tmp_path / "x.ncmp"
    header = {"method": "shacira-nerfacto", "step": 3, "grids": [{"name": "main", "table": "shacira", "rows": 100}]}
    path.write_bytes(write_container(header, [("main.latents", b"\0" * 96)]))
    Info(file=path).main()
    out = capsys.readouterr().out
    assert "main.latents" in out and "shacira-nerfacto" in out and "bits per row" in out


def test_foreign_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    _fails_with(Info(file=path), capsys, "not a nerfcompress file")
    _fails_with(Import(file=path, output_dir=tmp_path / "out"), capsys, "not a nerfcompress file")
    _fails_with(Info(file=tmp_path / "missing.ncmp"), capsys, "does not exist")


def test_export_refuses_missing_config_unknown_methods_and_runs_without_checkpoint(tmp_path, capsys):
    _fails_with(Export(load_config=tmp_path / "none.yml"), capsys, "does not exist")
    from nerfstudio.configs.method_configs import all_methods

    nerfacto = all_methods["nerfacto"]
    path = tmp_path / "nerfacto.yml"
    path.write_text(yaml.dump(nerfacto))
    _fails_with(Export(load_config=path), capsys, "cannot be exported; methods that can: ")
    shacira = all_methods["shacira-nerfacto"]
    shacira.output_dir = tmp_path / "outputs"
    shacira.timestamp = "t"
    path = tmp_path / "shacira.yml"
    path.write_text(yaml.dump(shacira))
    _fails_with(Export(load_config=path), capsys, "no checkpoint")


def test_export_refuses_an_output_path_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    import nerfcompress.plugin.export as export

    monkeypatch.setattr(export, "check_run", lambda path, posthoc="none": None)
    _fails_with(Export(load_config=tmp_path / "c.yml", output=tmp_path), capsys, "is a directory")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _fails_with(Export(load_config=tmp_path / "c.yml", output=blocker / "x.ncmp"), capsys, "cannot create")


def test_scene_reports_bad_arguments_and_foreign_directories_in_one_line(tmp_path, capsys):
    from nerfcompress.cli.scene import MakeScene

    _fails_with(MakeScene(output_dir=tmp_path / "s", resolution=3), capsys, "resolution must be in [8, 4096]")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    _fails_with(MakeScene(output_dir=tmp_path / "photos", resolution=8), capsys, "photos")
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"x"


def _prefix_file(small_export, tmp_path, section: str, into: int = 3):
    """A prefix of the small export that ends ``into`` bytes into ``section``'s payload."""
    data = small_export.read_bytes()
    entry = next(e for e in read_container_index(data)[1] if e.name == section)
    path = tmp_path / f"to-{section}.ncmp"
    path.write_bytes(data[: entry.offset + into])
    return path


def test_info_lists_the_prefix_bytes_each_level_needs(small_export, capsys):
    data = small_export.read_bytes()
    header, index = read_container_index(data)
    Info(file=small_export).main()
    out = capsys.readouterr().out
    assert "levels of detail" in out and "levels per grid: main 4, prop0 5, prop1 5" in out
    needed = level_prefix_bytes(header["grids"], index)
    cameras = index[-1]
    assert cameras.name == "cameras" and len(needed) == 5 and needed[-1] == cameras.offset - 12 - 1 - len("cameras")
    assert all(f"{size:,}" in out for size in needed)


def test_import_decodes_a_prefix_only_when_asked(small_export, tmp_path, capsys):
    prefix = _prefix_file(small_export, tmp_path, "main.l2")
    _fails_with(
        Import(file=prefix, output_dir=tmp_path / "a"),
        capsys,
        "truncated; to decode the levels it holds, pass --prefix",
    )
    Import(file=prefix, output_dir=tmp_path / "b", prefix=True).main()
    assert "(2 of 5 levels)" in " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    config = yaml.load((tmp_path / "b" / "config.yml").read_text(), Loader=yaml.Loader)
    assert config.pipeline.model.active_levels == 2


def test_import_refuses_impossible_levels_and_short_prefixes_in_one_line(small_export, tmp_path, capsys):
    out = tmp_path / "out"
    _fails_with(Import(file=small_export, output_dir=out, max_levels=0), capsys, "--max-levels must be at least 1")
    _fails_with(
        Import(file=small_export, output_dir=out, max_levels=6),
        capsys,
        "--max-levels 6 is more than the file's grids have (main 4, prop0 5, prop1 5)",
    )
    short = _prefix_file(small_export, tmp_path, "networks")  # the last section before the levels
    _fails_with(Import(file=short, output_dir=out, prefix=True), capsys, "without reaching a level section")
    no_level = _prefix_file(small_export, tmp_path, "prop1.l0")
    _fails_with(Import(file=no_level, output_dir=out, prefix=True), capsys, "holds no complete level")
    _fails_with(Import(file=no_level, output_dir=out), capsys, "truncated")
    assert not out.exists()


def test_eval_checks_its_level_options_before_any_work(small_export, tiny_scene, capsys):
    size = small_export.stat().st_size
    _fails_with(
        Evaluate(file=small_export, data=tiny_scene, prefix_bytes=size + 1),
        capsys,
        f"--prefix-bytes must be in 1..{size:,}",
    )
    _fails_with(Evaluate(file=small_export, data=tiny_scene, max_levels=9), capsys, "--max-levels 9 is more")
    _fails_with(Evaluate(file=small_export, data=tiny_scene, prefix_bytes=100), capsys, "a prefix must hold")


def test_eval_of_a_prefix_reports_its_levels_and_bytes(small_export, tiny_scene, tmp_path, capsys):
    data = small_export.read_bytes()
    header, index = read_container_index(data)
    needed = level_prefix_bytes(header["grids"], index)
    output = tmp_path / "metrics.json"
    Evaluate(file=small_export, data=tiny_scene, prefix_bytes=needed[2] + 10, output_path=output).main()
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics["decoded_levels"] == 3 and metrics["file_size_bytes"] == needed[2] + 10
    assert "psnr" in metrics


def test_export_help_offers_the_posthoc_baselines(capsys, monkeypatch):
    import tyro

    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the option table
    with pytest.raises(SystemExit):
        tyro.cli(Export, args=["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--posthoc {none,fp32,fp16,uniform8,uniform7,uniform6,uniform5,uniform4,uniform3,uniform2}" in out
    assert "plain-nerfacto, plain-nerfacto-big, plain-instant-ngp" in out and "true uncompressed size" in out


@pytest.mark.parametrize("method", ["shacira-nerfacto", "vqad-nerfacto"])
def test_export_posthoc_of_a_compressed_method_is_one_line(method, tmp_path, capsys):
    from nerfstudio.configs.method_configs import all_methods

    config = all_methods[method]
    config.output_dir = tmp_path / "outputs"
    config.timestamp = "t"
    path = tmp_path / "run.yml"
    path.write_text(yaml.dump(config))
    _fails_with(
        Export(load_config=path, output=tmp_path / "x.ncmp", posthoc="uniform8"),
        capsys,
        "--posthoc uniform8 applies to uncompressed runs only (methods plain-instant-ngp, plain-nerfacto, "
        f"plain-nerfacto-big); "
        f"method '{method}' has its own coding",
    )
    assert not (tmp_path / "x.ncmp").exists()


@pytest.fixture(scope="module")
def posthoc_files(small_plain_run, tmp_path_factory):
    """``ns-compress export --posthoc P`` of the small plain run: ``P -> (path, printed output)``."""
    out_dir, files = tmp_path_factory.mktemp("posthoc"), {}
    for posthoc in ("fp32", "fp16", "uniform8", "uniform6"):
        path = out_dir / f"{posthoc}.ncmp"
        capture = io.StringIO()
        with contextlib.redirect_stdout(capture), pytest.MonkeyPatch.context() as patch:
            patch.setenv("COLUMNS", "200")  # rich: the table title on one line
            Export(load_config=small_plain_run, output=path, posthoc=posthoc).main()
        files[posthoc] = (path, " ".join(capture.getvalue().split()))
    return files


def test_export_posthoc_prints_the_real_file_bytes_and_uniform_is_smallest(posthoc_files):
    sizes = {posthoc: path.stat().st_size for posthoc, (path, _) in posthoc_files.items()}
    assert sizes["uniform6"] < sizes["uniform8"] < sizes["fp16"] < sizes["fp32"], sizes
    for posthoc, (path, out) in posthoc_files.items():
        size = path.stat().st_size
        assert f"total file │ {size:,} │ 100.0%" in out and f"{path}: {size:,} bytes" in out
        assert f"(exact bytes, framing included; grids post hoc as {posthoc})" in out


def test_info_import_and_eval_read_a_uniform_file(posthoc_files, tiny_scene, tmp_path, capsys):
    path, _ = posthoc_files["uniform8"]
    Info(file=path).main()
    out = capsys.readouterr().out
    assert "grid main (plain-uniform, 8 bits)" in out and "levels per grid: main 4, prop0 5, prop1 5" in out
    Import(file=path, output_dir=tmp_path / "decoded", max_levels=2).main()
    assert "(2 of 5 levels)" in " ".join(capsys.readouterr().out.split())
    config = yaml.load((tmp_path / "decoded" / "config.yml").read_text(), Loader=yaml.Loader)
    assert config.method_name == "plain-nerfacto" and config.pipeline.model.active_levels == 2
    output = tmp_path / "metrics.json"
    Evaluate(file=path, data=tiny_scene, max_levels=3, output_path=output).main()
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics["decoded_levels"] == 3 and metrics["file_size_bytes"] == path.stat().st_size


def test_eval_renders_the_val_split_to_choose_settings_and_the_test_split_to_report(small_export, tiny_scene, tmp_path):
    results = {}
    for split in ("val", "test"):
        output = tmp_path / f"{split}.json"
        Evaluate(file=small_export, data=tiny_scene, split=split, output_path=output).main()
        results[split] = json.loads(output.read_text())
    assert results["val"]["split"] == "val" and results["test"]["split"] == "test"
    # the tiny scene has one val view and two test views: different views, different scores
    assert results["val"]["metrics"]["psnr"] != results["test"]["metrics"]["psnr"]
