"""ns-compress image encode/decode/eval: a tiny picture end to end, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nerfcompress.cli.image import ImageDecode, ImageEncode, ImageEval, vqad_stride_for
from nerfcompress.cli.main import COMMANDS

TINY = dict(steps=30, num_levels=3, hidden=(8,))


def _photo(tmp_path, shape=(20, 28, 3), name="p.png"):
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    planes = [127 + 100 * np.sin(x / 4.0 + c) * np.cos(y / 5.0) for c in range(shape[2] if len(shape) == 3 else 1)]
    array = np.stack(planes, -1).astype(np.uint8).reshape(shape)
    Image.fromarray(array).save(tmp_path / name)
    return tmp_path / name


def _fails_with(command, capsys, pattern):
    with pytest.raises(SystemExit) as exit_info:
        command.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert pattern in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_image_is_a_registered_subcommand():
    assert "image" in COMMANDS


@pytest.mark.parametrize("shape", [(20, 28, 3), (20, 28), (20, 28, 4)], ids=["rgb", "gray", "rgba"])
def test_encode_decode_eval_round_trip(tmp_path, capsys, shape):
    photo = _photo(tmp_path, shape)
    ImageEncode(photo=photo, output=tmp_path / "p.ncmp", **TINY).main()
    assert "bpp" in capsys.readouterr().out
    ImageDecode(file=tmp_path / "p.ncmp", output=tmp_path / "out.png").main()
    decoded = np.asarray(Image.open(tmp_path / "out.png"))
    assert decoded.shape == np.asarray(Image.open(photo)).shape
    ImageEval(file=tmp_path / "p.ncmp", reference=photo, output_path=tmp_path / "m.json").main()
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["bpp"] == pytest.approx(8 * (tmp_path / "p.ncmp").stat().st_size / (20 * 28))
    assert metrics["psnr"] > 15


def test_vqad_encodes_at_a_target_rate(tmp_path):
    photo = _photo(tmp_path)
    ImageEncode(photo=photo, output=tmp_path / "v.ncmp", method="vqad", target_bpp=2.0, **TINY).main()
    ImageDecode(file=tmp_path / "v.ncmp", output=tmp_path / "v.npy").main()
    assert np.load(tmp_path / "v.npy").shape == (20, 28, 3)
    assert vqad_stride_for(0.5, 4) > vqad_stride_for(2.0, 4)


def test_bad_inputs_give_one_line(tmp_path, capsys):
    photo = _photo(tmp_path)
    out = tmp_path / "x.ncmp"
    _fails_with(ImageEncode(photo=photo, output=out, lmbda=1e-3, target_bpp=0.5), capsys, "not both")
    _fails_with(ImageEncode(photo=photo, output=out, method="vqad", lmbda=1e-3), capsys, "VQAD has no rate weight")
    (tmp_path / "junk.png").write_text("hello")
    _fails_with(ImageEncode(photo=tmp_path / "junk.png", output=out), capsys, "not a picture")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "deep.png")
    _fails_with(ImageEncode(photo=tmp_path / "deep.png", output=out), capsys, "16-bit")
    _fails_with(ImageEncode(photo=photo, output=out, num_levels=40), capsys, "do not fit")
    (tmp_path / "bad.ncmp").write_bytes(b"NCMP garbage")
    _fails_with(ImageDecode(file=tmp_path / "bad.ncmp", output=tmp_path / "o.png"), capsys, "error")
    _fails_with(ImageDecode(file=tmp_path / "bad.ncmp", output=tmp_path / "o.jpg"), capsys, ".png or .npy")


def test_eval_rejects_a_reference_of_another_size(tmp_path, capsys):
    photo = _photo(tmp_path)
    ImageEncode(photo=photo, output=tmp_path / "p.ncmp", **TINY).main()
    other = _photo(tmp_path, (21, 28, 3), "other.png")
    _fails_with(ImageEval(file=tmp_path / "p.ncmp", reference=other), capsys, "reference is")


def test_info_says_how_an_image_file_codes_its_levels(tmp_path, capsys):
    from nerfcompress.bitstream.container import read_container, write_container
    from nerfcompress.cli.info import Info

    photo = _photo(tmp_path)
    ImageEncode(photo=photo, output=tmp_path / "p.ncmp", context=False, **TINY).main()
    capsys.readouterr()
    Info(file=tmp_path / "p.ncmp").main()
    out = capsys.readouterr().out
    assert "picture 28 x 20 x 3" in out and "MLP 8" in out and "no context model" in out
    header, sections = read_container((tmp_path / "p.ncmp").read_bytes())
    header["model"]["context_hidden"] = [16]  # info reads the header only
    (tmp_path / "c.ncmp").write_bytes(write_container(header, list(sections.items())))
    Info(file=tmp_path / "c.ncmp").main()
    assert "context model 16 (dense levels" in capsys.readouterr().out
