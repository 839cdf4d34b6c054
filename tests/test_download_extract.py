"""Safe extraction and the manifest's integrity: hostile archives are refused whole, before any write."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from hood.data import download as dl
from hood.data import registry
from hood.data.extract import UnsafeArchiveError, safe_extract, strip_single_top
from hood.errors import DataError


def _tar(path: Path, members: list[tuple[str, bytes | None, str | None, bytes]]) -> Path:
    """members: (name, data, link target, type) with type tarfile.REGTYPE/SYMTYPE/LNKTYPE/DIRTYPE."""
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, data, target, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if target is not None:
                info.linkname = target
            info.size = len(data or b"")
            tf.addfile(info, io.BytesIO(data) if data else None)
    return path


GOOD = ("set/ok.txt", b"fine", None, tarfile.REGTYPE)


@pytest.mark.parametrize(
    "bad",
    [
        ("set/../../evil.txt", b"x", None, tarfile.REGTYPE),
        ("/tmp/hood-evil-absolute.txt", b"x", None, tarfile.REGTYPE),
        ("set/link", None, "/etc/passwd", tarfile.SYMTYPE),
        ("set/link", None, "../../outside", tarfile.SYMTYPE),
        ("set/hard", None, "../outside", tarfile.LNKTYPE),
        ("set/fifo", None, None, tarfile.FIFOTYPE),
    ],
    ids=["dotdot", "absolute", "symlink-abs", "symlink-up", "hardlink-up", "fifo"],
)
def test_hostile_tar_is_refused_before_anything_is_written(tmp_path: Path, bad: tuple) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [GOOD, bad])  # a good member first: nothing may be half-extracted
    dest = tmp_path / "out" / "dest"
    with pytest.raises(UnsafeArchiveError, match="refusing the archive"):
        safe_extract(archive, "tar.gz", dest, max_bytes=1 << 20)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/hood-evil-absolute.txt").exists()


def test_hostile_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("set/ok.txt", b"fine")
        zf.writestr("../evil.txt", b"x")
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'"):
        safe_extract(archive, "zip", dest, max_bytes=1 << 20)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_decompression_bomb_is_refused(tmp_path: Path, fmt: str) -> None:
    zeros = bytes(2 << 20)  # 2 MB of zeros compress to a few KB
    archive = tmp_path / f"bomb.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("a.bin", zeros)
    else:
        _tar(archive, [("a.bin", zeros, None, tarfile.REGTYPE)])
    assert archive.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="more than"):
        safe_extract(archive, fmt, tmp_path / "dest", max_bytes=1 << 20)
    assert list((tmp_path / "dest").iterdir()) == []


def test_in_tree_links_and_top_folder(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar", [GOOD, ("set/alias", None, "ok.txt", tarfile.SYMTYPE)])
    dest = tmp_path / "dest"
    assert safe_extract(archive, "tar", dest, max_bytes=1 << 20) == 4
    strip_single_top(dest)
    assert (dest / "ok.txt").read_bytes() == b"fine" and (dest / "alias").read_bytes() == b"fine"


def test_unreadable_archive_is_a_data_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"<html>not an archive</html>")
    with pytest.raises(DataError, match="not a readable"):
        safe_extract(junk, "tar.gz", tmp_path / "dest", max_bytes=1 << 20)


def test_manifest_entries_are_complete() -> None:
    names = registry.registry_names()
    required = {"cifar10", "cifar100", "svhn", "textures", "places365", "lsun-c", "lsun-r", "isun", "tinyimagenet",
                "tinyimages300k", "inaturalist", "sun", "places"}
    assert required <= set(names)
    file_names = []
    for name in names:
        e = registry.entry(name)
        assert e["role"] in registry.ROLES and e["layout"] in registry.LAYOUTS
        assert e["transform"] and e["license"] and e["citation"] and e["dir"]
        assert e.get("postprocess") is None or e["postprocess"] in dl.POSTPROCESS
        for spec in dl.file_specs(name):
            assert spec.first_fetch or re.fullmatch(r"[0-9a-f]{32}", spec.md5), name  # first-fetch: none published
            assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
            assert spec.format in ("tar", "tar.gz", "zip", "mat", "npy") and spec.url.startswith("http")
            file_names.append(spec.name)
    assert len(file_names) == len(set(file_names)), "HOOD_MIRROR serves every file by its name: names must be unique"
    assert registry.entry("cifar10")["files"][0]["md5"] == "c58f30108f718f92721af3b95e74349a"
    manual = registry.manual_entry("authors-classifiers")
    assert manual is not None and "browser" in manual["note"] and manual["url"].startswith("https://")
