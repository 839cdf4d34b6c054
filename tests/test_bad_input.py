"""Every bad input is one line on stderr (exit 2) or a reported skip, never a traceback."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image_folder
from PIL import Image
from typer.testing import CliRunner

from hood.cli.app import app
from hood.data.images import decode_image
from hood.data.sources import load_id_splits, load_image_set
from hood.errors import ConfigError, DataError
from hood.jobs.lookup import skip_note
from hood.models.checkpoint import classifier_state, save_checkpoint
from hood.models.registry import build_classifier

runner = CliRunner()


def fails(args: list[str], *expected: str) -> str:
    r = runner.invoke(app, args)
    out = r.output.strip()
    assert r.exit_code == 2, f"exit {r.exit_code}: {out}\n{r.exception!r}"
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    assert out.startswith("error:"), out
    for e in expected:
        assert e in out, f"{e!r} not in {out!r}"
    return out


@pytest.fixture
def classifier(tmp_path: Path) -> Path:
    path = tmp_path / "clf.pt"
    save_checkpoint(classifier_state(build_classifier("wrn10_2", 3), "wrn10_2", ["class0", "class1", "class2"], {}), path)
    return path


# ---- config --------------------------------------------------------------------------------------------


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    fails(["pretrain", "--set", "decoder.nmu_ood=5"], "unknown key 'decoder.nmu_ood'", "did you mean 'num_ood'")
    fails(["pretrain", "--set", "pretrian.lr=0.1"], "unknown section 'pretrian'", "did you mean 'pretrain'")
    fails(["pretrain", "--set", "decoder.epochs=abc"], "decoder.epochs", "must be an integer")
    fails(["pretrain", "--set", "pretrain.lr=nan"], "pretrain.lr", "finite")
    fails(["pretrain", "--set", "model.arch=null"], "model.arch", "needs a value")
    fails(["pretrain", "--epochs", "-3"], "pretrain.epochs", "at least 1", "-3")
    fails(["train-decoder", "--fw-layers", "5"], "decoder.fw_layers", "1, 2, 3 or 4", "got 5")
    fails(["pretrain", "--set", "run.seed=-1"], "run.seed")
    fails(["pretrain", "--config", "nope.yaml"], "nope.yaml does not exist")
    fails(["pretrain", "--config", str(tmp_path)], "is a directory")
    fails(["pretrain", "--set", "novalue"], "section.key=value")
    fails(["pretrain", "--set", "data.ood=[svhn,"], "data.ood", "must be a list")  # found by tests/test_fuzz.py


def test_yaml_problems_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata:\n  id: [cifar10\n  aux: tinyimages300k\n")
    fails(["pretrain", "--config", str(bad)], "bad.yaml is not valid YAML at line", )
    tab = tmp_path / "tab.yaml"
    tab.write_text("data:\n\tid: cifar10\n")
    assert "line 2" in fails(["pretrain", "--config", str(tab)], "tab.yaml")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("decoder:\n  epochz: 3\n")
    fails(["pretrain", "--config", str(unknown)], "unknown.yaml", "unknown key 'decoder.epochz'", "epochs")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("decoder:\n  betas: 0.5\n")
    fails(["pretrain", "--config", str(wrong)], "decoder.betas", "must be a list")
    top = tmp_path / "top.yaml"
    top.write_text("- a\n- b\n")
    fails(["pretrain", "--config", str(top)], "top level must be a mapping")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x00garbage")
    fails(["pretrain", "--config", str(binary)], "bin.yaml")
    date = tmp_path / "date.yaml"
    date.write_text("name: 2020-13-45\n")
    fails(["pretrain", "--config", str(date)], "date.yaml")


def test_num_ood_larger_than_the_pool_trains_on_the_whole_pool_and_says_so(tmp_path: Path, id_folder: Path, ood_folder: Path, classifier: Path) -> None:
    from hood.models.checkpoint import safe_load

    r = runner.invoke(app, ["train-decoder", "--classifier", str(classifier), "-d", str(id_folder), "--aux", str(ood_folder),
                            "--num-ood", "500", "--epochs", "1", "--batch-size", "8", "--set", "model.arch=wrn10_2", "--out", "r"])
    assert r.exit_code == 0, r.output
    assert "holds 12 images, fewer than decoder.num_ood = 500: training on all 12" in " ".join(r.output.split())
    assert safe_load(tmp_path / "r" / "decoder.pt")["meta"]["num_ood"] == 12


# ---- data ----------------------------------------------------------------------------------------------


def test_missing_data_set_names_hood_download() -> None:
    fails(["pretrain", "-d", "cifar10", "-q"], "'cifar10' is not installed", "hood download cifar10")
    fails(["train-decoder", "--classifier", "x.pt", "--aux", "tinyimages300k"], "x.pt does not exist")


def test_unknown_set_names_suggest_the_closest() -> None:
    fails(["evaluate", "--ood", "svhn,lsun-cc"], "'lsun-cc'", "did you mean 'lsun-c'")
    fails(["pretrain", "-d", "cifar1O"], "did you mean 'cifar10'")
    fails(["train-decoder", "--aux", "tinyimages30k"], "did you mean 'tinyimages300k'")


def test_empty_and_non_image_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    fails(["pretrain", "-d", str(tmp_path / "empty"), "-q"], "holds no images")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not an image")
    (notes / "data.csv").write_text("1,2,3")
    fails(["pretrain", "-d", str(notes), "-q"], "holds no images")
    fails(["pretrain", "-d", str(tmp_path / "absent"), "-q"], "does not exist")
    flat = tmp_path / "flat"
    write_image_folder(flat, classes=1, per_class=2)
    fails(["pretrain", "-d", str(flat / "class0"), "-q"], "needs train/ and test/")


def _broken_files(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(good, format="PNG")
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(good.getvalue()[:60])
    (folder / "text.jpg").write_text("I am not a JPEG")
    (folder / "garbage.bmp").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "notes.txt").write_text("ignored: not an image name")
    return ["garbage.bmp", "text.jpg", "truncated.png", "zero.png"]


def test_unreadable_images_are_skipped_counted_and_named(tmp_path: Path, ood_folder: Path) -> None:
    bad = _broken_files(ood_folder)
    s = load_image_set(str(ood_folder), Path("."), 32)
    assert len(s) == 12 and sorted(s.skipped) == bad
    note = skip_note(s)
    assert note and "skipped 4 unreadable file(s)" in note and "garbage.bmp" in note and "--strict" in note
    with pytest.raises(DataError, match=r"garbage\.bmp is not a readable image .*drop --strict"):
        load_image_set(str(ood_folder), Path("."), 32, strict=True)


def test_strict_flag_on_the_cli(tmp_path: Path, id_folder: Path) -> None:
    _broken_files(id_folder / "train" / "class0")
    fails(["pretrain", "-d", str(id_folder), "-a", "wrn10_2", "--strict", "--out", "s", "-q"], "is not a readable image", "--strict")
    r = runner.invoke(app, ["pretrain", "-d", str(id_folder), "-a", "wrn10_2", "--epochs", "1", "--batch-size", "16",
                            "--set", "pretrain.val_fraction=0.1", "--out", "ok"])
    assert r.exit_code == 0, r.output
    assert "skipped 4 unreadable file(s)" in r.output


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_odd_modes_and_sizes_decode_to_rgb() -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    cases = {
        "cmyk": _encode(rgb.convert("CMYK"), "JPEG"),
        "16bit": _encode(Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50), "PNG"),
        "palette": _encode(rgb.convert("P"), "PNG"),
        "palette_alpha": _encode(rgb.convert("P"), "PNG", transparency=0),
        "rgba": _encode(rgb.convert("RGBA"), "PNG"),
        "la": _encode(rgb.convert("LA"), "PNG"),
        "gray": _encode(rgb.convert("L"), "PNG"),
        "bilevel": _encode(rgb.convert("1"), "PNG"),
        "float": _encode(Image.fromarray(np.random.default_rng(1).random((20, 20)).astype(np.float32)), "TIFF"),
        "lab": _encode(rgb.convert("LAB"), "TIFF"),
        "ycbcr": _encode(rgb.convert("YCbCr"), "TIFF"),
        "gif": _encode(rgb.convert("P"), "GIF"),
        "tiny": _encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"),
        "thin": _encode(Image.new("RGB", (300, 3), (0, 255, 0)), "PNG"),
        "tall": _encode(Image.new("RGB", (7, 700)), "BMP"),  # 100:1, the longest strip read (above it: refused)
        "webp": _encode(rgb, "WEBP"),
    }
    for name, data in cases.items():
        out = decode_image(data, 32)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8, name


def test_an_archive_that_is_not_one(tmp_path: Path, id_folder: Path) -> None:
    (tmp_path / "fake.tar.gz").write_bytes(b"definitely not gzip")
    (tmp_path / "fake.zip").write_text("not a zip")
    with tarfile.open(tmp_path / "whole.tar.gz", "w:gz") as tf:
        tf.add(id_folder, arcname="tiny")
    (tmp_path / "cut.tar.gz").write_bytes((tmp_path / "whole.tar.gz").read_bytes()[:3000])
    for name in ("fake.tar.gz", "fake.zip", "cut.tar.gz"):
        with pytest.raises(DataError) as err:
            load_id_splits(str(tmp_path / name), Path("."), 32)
        msg = str(err.value)
        assert name in msg and "not a readable archive" in msg and "\n" not in msg
    fails(["pretrain", "-d", str(tmp_path / "fake.zip"), "-q"], "fake.zip is not a readable archive")
    (tmp_path / "plain.dat").write_text("x")
    fails(["pretrain", "-d", str(tmp_path / "plain.dat"), "-q"], "neither a folder nor an archive")


# ---- CLI -----------------------------------------------------------------------------------------------


def test_cuda_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fails(["pretrain", "-d", "demo-digits", "--device", "cuda", "-q"], "--device cuda", "CUDA is not available")
    fails(["pretrain", "--device", "tpu"], "run.device")


def test_contradicting_options(tmp_path: Path) -> None:
    fails(["pretrain", "--resume", "somewhere", "--out", "elsewhere"], "drop --out")
    fails(["train-decoder", "--resume", "somewhere", "--out", "elsewhere"], "drop --out")


def test_hood_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOD_DEBUG", "1")
    r = runner.invoke(app, ["pretrain", "--epochs", "-3"])
    assert isinstance(r.exception, ConfigError)


def test_os_and_memory_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import hood.jobs.pretrain as job

    def broken(*a, **k):
        raise OSError(errno.EIO, "Input/output error", "/data/cifar10/data_batch_1")

    monkeypatch.setattr(job, "load_id_splits", broken)
    r = runner.invoke(app, ["pretrain", "-d", "demo-digits", "--out", "io", "-q"])
    assert r.exit_code == 1 and "Input/output error (/data/cifar10/data_batch_1)" in r.output and "Traceback" not in r.output

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(job, "load_id_splits", oom)
    r = runner.invoke(app, ["pretrain", "-d", "demo-digits", "--out", "oom", "-q"])
    assert r.exit_code == 1 and "out of memory" in r.output and len(r.output.strip().splitlines()) == 1
