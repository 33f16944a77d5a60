"""One-line errors (exit status 2, no traceback) and the fast commands of ns-compress."""

from __future__ import annotations

import pytest
import yaml

from nerfcompress.bitstream.container import write_container
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

    monkeypatch.setattr(export, "check_run", lambda path: None)
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
