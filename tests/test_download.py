"""``hood download`` against a real HTTP server on 127.0.0.1: every archive format the registry uses, and
each way a download fails (dropped connection, Range ignored, 5xx, wrong bytes, hostile archive, crash,
disk full). The registry's URLs are redirected with HOOD_MIRROR; nothing touches the internet.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import tar_bytes, zip_bytes
from http_server import Faults, Server
from PIL import Image
from typer.testing import CliRunner

from hood.cli.app import app
from hood.data import download as dl
from hood.data import registry, sources
from hood.errors import DataError, HoodError

REAL_MANIFEST = registry.load_manifest()


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _mat_bytes(n: int) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    rng = np.random.default_rng(3)
    savemat(buf, {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": np.ones((n, 1), dtype=np.uint8)})
    return buf.getvalue()


def _npy_bytes(n: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(4).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    return buf.getvalue()


def _tinyimagenet_zip() -> bytes:
    wnids = ["n01443537", "n01629819"]
    m: dict[str, bytes] = {"tiny-imagenet-200/wnids.txt": "\n".join(wnids).encode()}
    ann = []
    for c, w in enumerate(wnids):
        for i in range(3):
            m[f"tiny-imagenet-200/train/{w}/images/{w}_{i}.JPEG"] = _jpeg(100 * c + i)
        m[f"tiny-imagenet-200/train/{w}/{w}_boxes.txt"] = b"boxes"
        for i in range(2):
            fn = f"val_{2 * c + i}.JPEG"
            m[f"tiny-imagenet-200/val/images/{fn}"] = _jpeg(500 + 2 * c + i)
            ann.append(f"{fn}\t{w}\t0\t0\t63\t63")
    m["tiny-imagenet-200/val/val_annotations.txt"] = "\n".join(ann).encode()
    m["tiny-imagenet-200/test/images/test_0.JPEG"] = _jpeg(900)
    return zip_bytes(m)


def _payloads() -> dict[str, bytes]:
    """One small stand-in per registered format, keyed by registry set name."""
    return {
        "cifar10": tar_bytes({f"cifar-10-batches-py/{n}": n.encode() for n in ("data_batch_1", "test_batch", "batches.meta")}, gz=True),
        "places365": tar_bytes({f"val_256/Places365_val_{i:08d}.jpg": _jpeg(i) for i in range(5)}, gz=False),
        "textures": tar_bytes({f"dtd/images/{c}/{c}_{i}.jpg": _jpeg(50 + i) for c in ("banded", "dotted") for i in range(2)}
                               | {"dtd/labels/labels_joint_anno.txt": b"x"}, gz=True),
        "tinyimagenet": _tinyimagenet_zip(),
        "svhn": _mat_bytes(7),
        "tinyimages300k": _npy_bytes(9),
    }


PAYLOADS = _payloads()


@pytest.fixture
def manifest(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The real manifest with the stand-ins' checksums and sizes (sha256 given for svhn only, as a test)."""
    fake = copy.deepcopy(REAL_MANIFEST)
    for name, data in PAYLOADS.items():
        spec = fake["sets"][name]["files"][0]
        spec.update(md5=hashlib.md5(data).hexdigest(), size=len(data), sha256=None)
    fake["sets"]["svhn"]["files"][0]["sha256"] = hashlib.sha256(PAYLOADS["svhn"]).hexdigest()
    monkeypatch.setattr(registry, "load_manifest", lambda: fake)
    monkeypatch.setattr(dl, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    return fake


def _file(name: str) -> str:
    return REAL_MANIFEST["sets"][name]["files"][0]["name"]


@pytest.fixture
def server(manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    srv = Server({_file(n): d for n, d in PAYLOADS.items()}).start()
    monkeypatch.setenv("HOOD_MIRROR", srv.base_url + "/")
    yield srv
    srv.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _leftovers(root: Path) -> list[str]:
    """Anything a failed install may not leave behind: temp folders, .part files."""
    return sorted(p.name for p in root.rglob("*") if ".hood-tmp-" in p.name or ".hood-old-" in p.name or p.suffix == ".part")


def _part(root: Path, name: str) -> Path:
    return dl.downloads_dir(root) / name / f"{_file(name)}.part"


# --- the happy path, every format -----------------------------------------------------------------


def test_every_format_installs_verified_and_the_loaders_read_it(server: Server, root: Path) -> None:
    for name in PAYLOADS:
        r = dl.install(name, root)
        assert r.state == "installed" and registry.is_installed(name, root)
        record = registry.read_marker(name, root)
        assert record["files"][0]["sha256"] == hashlib.sha256(PAYLOADS[name]).hexdigest()
        assert record["files"][0]["source"] == server.url(_file(name))
        assert record["content"]["files"] >= 1
    assert _leftovers(root) == [] and not dl.downloads_dir(root).exists()

    assert (root / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"data_batch_1"
    assert len(sources.load_image_set("places365", root, 32)) == 5
    assert len(sources.load_image_set("textures", root, 32)) == 4
    assert len(sources.load_image_set("svhn", root, 32)) == 7
    assert len(sources.load_image_set("tinyimages300k", root, 32)) == 9
    tin = sources.load_id_splits("tinyimagenet", root, 32)
    assert len(tin["train"]) == 6 and len(tin["test"]) == 4  # test = val/, re-foldered; the unlabelled test/ is gone
    assert tin["test"].classes == ["n01443537", "n01629819"] and tin["test"].labels.tolist() == [0, 0, 1, 1]
    assert sorted(p.name for p in (root / "tinyimagenet" / "test" / "n01629819").iterdir()) == ["val_2.JPEG", "val_3.JPEG"]

    before = len(server.requests)
    assert dl.install("svhn", root).state == "present"  # idempotent: no request at all
    assert len(server.requests) == before


def test_cli_download_list_verify_and_force(server: Server, root: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["download", "svhn", "places365", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "svhn: installed" in res.stdout and "places365: installed" in res.stdout
    res = runner.invoke(app, ["download", "--list", "--root", str(root), "--json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["svhn"]["state"] == "present" and rows["cifar10"]["state"] == "missing"
    assert rows["authors-classifiers"]["state"] == "manual"
    res = runner.invoke(app, ["download", "--verify", "--root", str(root), "--json"])
    assert res.exit_code == 0 and {r["state"] for r in json.loads(res.stdout)} == {"verified"}

    next((root / "places365").glob("*.jpg")).write_bytes(b"tampered")
    res = runner.invoke(app, ["download", "--verify", "--root", str(root)])
    assert res.exit_code == 2 and "places365" in res.stderr and "--force" in res.stderr
    assert "modified" in res.stdout
    res = runner.invoke(app, ["download", "places365", "--force", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert dl.verify_installed("places365", root).state == "verified" and _leftovers(root) == []


# --- network failures --------------------------------------------------------------------------------


def test_interrupted_download_resumes_with_range_on_the_next_run(server: Server, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "RETRY_DELAYS", ())
    server.faults = Faults(drop_after=1000, drops=1)
    with pytest.raises(dl.DownloadError) as err:
        dl.install("tinyimagenet", root)
    msg = str(err.value)
    assert "\n" not in msg and server.url(_file("tinyimagenet")) in msg and "--url" in msg and "closed after 1,000" in msg
    assert _part(root, "tinyimagenet").stat().st_size == 1000 and not registry.is_installed("tinyimagenet", root)
    rows = CliRunner().invoke(app, ["download", "--list", "--json", "--root", str(root)]).stdout
    assert {r["name"]: r for r in json.loads(rows)}["tinyimagenet"]["partial_bytes"] == 1000

    assert dl.install("tinyimagenet", root).state == "installed"  # the next run
    assert server.requests[-1][1:] == ("bytes=1000-", 206)


def test_dropped_connections_are_retried_and_resumed_within_one_run(server: Server, root: Path) -> None:
    server.faults = Faults(drop_after=300, drops=2)
    assert dl.install("svhn", root).state == "installed"
    assert [(rng, s) for _, rng, s in server.requests] == [(None, 200), ("bytes=300-", 206), ("bytes=600-", 206)]


def test_server_ignoring_range_restarts_cleanly(server: Server, root: Path) -> None:
    part = _part(root, "svhn")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOADS["svhn"][:500])
    server.faults = Faults(ignore_range=True)
    assert dl.install("svhn", root).state == "installed"
    assert server.requests == [(_file("svhn"), "bytes=500-", 200)]


def test_resumed_file_that_fails_its_checksum_is_fetched_again_from_zero(server: Server, root: Path) -> None:
    part = _part(root, "places365")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 700)  # a partial file from some other version of the archive
    assert dl.install("places365", root).state == "installed"
    assert server.statuses() == [206, 200]


def test_5xx_is_retried_with_backoff_then_succeeds(server: Server, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(dl.time, "sleep", slept.append)
    monkeypatch.setattr(dl, "RETRY_DELAYS", (1.0, 3.0, 9.0))
    server.faults = Faults(statuses=[503, 503])
    assert dl.install("tinyimages300k", root).state == "installed"
    assert server.statuses() == [503, 503, 200] and slept == [1.0, 3.0]


def test_persistent_5xx_ends_in_one_line_naming_url_and_url_option(server: Server, root: Path) -> None:
    server.faults = Faults(statuses=[503] * 10)
    res = CliRunner().invoke(app, ["download", "svhn", "--root", str(root)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()  # retry notes, then the one error line
    line = lines[-1]
    assert [x for x in lines if x.startswith("error:")] == [line] and server.url(_file("svhn")) in line and "HTTP 503" in line and "--url svhn=URL" in line
    assert server.statuses() == [503] * 4  # one try + len(RETRY_DELAYS) retries
    assert not (root / "svhn").exists() and _leftovers(root) == []


def test_unreachable_host_and_404_fall_through_to_the_next_mirror(manifest: dict[str, Any], root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOD_MIRROR", raising=False)
    srv = Server({"good/" + _file("svhn"): PAYLOADS["svhn"]}).start()
    try:
        spec = manifest["sets"]["svhn"]["files"][0]
        spec["url"] = "http://127.0.0.1:9/nothing-listens-here"  # the discard port: connection refused
        spec["mirrors"] = [srv.url("missing.mat"), srv.url("good/" + _file("svhn"))]
        r = dl.install("svhn", root)
        assert r.state == "installed" and r.source.endswith("good/" + _file("svhn"))
        assert srv.statuses() == [404, 200]
    finally:
        srv.stop()


def test_url_option_overrides_the_sources(server: Server, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOD_MIRROR", "http://127.0.0.1:9")  # would fail: --url must win
    server.files["elsewhere.npy"] = PAYLOADS["tinyimages300k"]
    res = CliRunner().invoke(app, ["download", "tinyimages300k", "svhn", "--root", str(root),
                                   "--url", f"tinyimages300k={server.url('elsewhere.npy')}", "--url", f"svhn={server.url(_file('svhn'))}"])
    assert res.exit_code == 0, res.output
    assert registry.read_marker("tinyimages300k", root)["files"][0]["source"].endswith("elsewhere.npy")
    res = CliRunner().invoke(app, ["download", "svhn", "places365", "--url", "http://x/y"])
    assert res.exit_code == 2 and "NAME=URL" in res.stderr


# --- wrong bytes ----------------------------------------------------------------------------------


def test_html_page_instead_of_the_archive_is_removed_and_nothing_extracted(server: Server, root: Path) -> None:
    server.faults = Faults(body=b"<!DOCTYPE html><html><body>Quota exceeded</body></html>")
    # the manifest's size would catch it before the body; drop it to exercise the checksum path
    registry.load_manifest()["sets"]["textures"]["files"][0]["size"] = None
    with pytest.raises(dl.ChecksumError) as err:
        dl.install("textures", root)
    msg = str(err.value)
    assert "md5 mismatch" in msg and "HTML page" in msg and "removed" in msg and "nothing was extracted" in msg
    assert not (root / "dtd").exists() and _leftovers(root) == [] and not dl.downloads_dir(root).exists()


def test_wrong_size_is_refused_before_the_body_is_read(server: Server, root: Path) -> None:
    server.faults = Faults(body=b"short")
    with pytest.raises(dl.ChecksumError, match="offers 5 bytes"):
        dl.install("cifar10", root)
    assert _leftovers(root) == [] and not registry.is_installed("cifar10", root)


def test_sha256_is_checked_when_the_manifest_has_one(server: Server, root: Path) -> None:
    registry.load_manifest()["sets"]["svhn"]["files"][0]["sha256"] = "0" * 64
    with pytest.raises(dl.ChecksumError, match="sha256 mismatch"):
        dl.install("svhn", root)
    assert not (root / "svhn").exists()


# --- local files, hostile archives, crashes, the disk ------------------------------------------------------


def test_from_file_installs_offline_with_the_same_verification(manifest: dict[str, Any], root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "tiny-imagenet-200.zip"
    archive.write_bytes(PAYLOADS["tinyimagenet"])
    res = CliRunner().invoke(app, ["download", "tinyimagenet", "--from", str(archive), "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert registry.is_installed("tinyimagenet", root) and archive.exists()  # the user's file is kept
    assert (root / "tinyimagenet" / "train" / "n01443537" / "n01443537_0.JPEG").is_file()

    wrong = tmp_path / "wrong.tar"
    wrong.write_bytes(PAYLOADS["places365"][:-10])
    with pytest.raises(dl.ChecksumError, match="nothing was installed"):
        dl.install("places365", root, from_file=wrong)
    assert not (root / "places365").exists() and wrong.exists()


@pytest.mark.parametrize("member", ["val_256/../../../escape.jpg", "/abs/escape.jpg"])
def test_hostile_archive_with_valid_checksum_is_refused_whole(manifest: dict[str, Any], root: Path, tmp_path: Path, member: str) -> None:
    data = tar_bytes({"val_256/a.jpg": _jpeg(1), member: _jpeg(2)}, gz=False)
    manifest["sets"]["places365"]["files"][0].update(md5=hashlib.md5(data).hexdigest(), size=len(data))
    archive = tmp_path / "val_256.tar"
    archive.write_bytes(data)
    with pytest.raises(DataError, match="refusing the archive"):
        dl.install("places365", root, from_file=archive)
    assert not (root / "places365").exists() and _leftovers(root) == []
    assert not list(tmp_path.rglob("escape.jpg"))


def test_archive_with_the_wrong_layout_is_not_installed(manifest: dict[str, Any], root: Path, tmp_path: Path) -> None:
    data = tar_bytes({"readme.txt": b"no images here"}, gz=False)
    manifest["sets"]["places365"]["files"][0].update(md5=hashlib.md5(data).hexdigest(), size=len(data))
    (tmp_path / "x.tar").write_bytes(data)
    with pytest.raises(DataError, match="unexpected layout"):
        dl.install("places365", root, from_file=tmp_path / "x.tar")
    assert not (root / "places365").exists() and _leftovers(root) == []


def test_crash_during_install_leaves_nothing_that_counts_as_present(server: Server, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refolder = dl.POSTPROCESS["tinyimagenet-val-to-test"]

    def crash(folder: Path) -> None:
        raise KeyboardInterrupt  # Ctrl-C after extraction, before the rename

    monkeypatch.setitem(dl.POSTPROCESS, "tinyimagenet-val-to-test", crash)
    with pytest.raises(KeyboardInterrupt):
        dl.install("tinyimagenet", root)
    assert not registry.is_installed("tinyimagenet", root) and not (root / "tinyimagenet").exists()
    assert [p.name for p in root.iterdir() if ".hood-tmp-" in p.name] == []
    monkeypatch.setitem(dl.POSTPROCESS, "tinyimagenet-val-to-test", refolder)
    before = len(server.requests)
    assert dl.install("tinyimagenet", root).state == "installed"
    assert len(server.requests) == before  # the verified download was kept: no second transfer


class _FullDisk(io.BytesIO):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def write(self, data: Any) -> int:
        raise OSError(self.code, "simulated")


@pytest.mark.parametrize(("code", "words", "exit_code"), [(errno.ENOSPC, "no space left", 1), (errno.EACCES, "no permission", 2)])
def test_disk_full_or_no_permission_while_downloading(server: Server, root: Path, monkeypatch: pytest.MonkeyPatch, code: int,
                                                      words: str, exit_code: int) -> None:
    """A full disk is the machine's error (exit 1), a missing permission the user's to fix (exit 2)."""
    monkeypatch.setattr(dl, "_open_part", lambda path, mode: (path.write_bytes(b"partial"), _FullDisk(code))[1])
    res = CliRunner().invoke(app, ["download", "svhn", "--root", str(root)])
    assert res.exit_code == exit_code
    assert res.stderr.count("\n") == 1 and words in res.stderr and "--root" in res.stderr
    assert not _part(root, "svhn").exists() and not (root / "svhn").exists()


def test_disk_full_while_extracting_cleans_the_temporary_folder(server: Server, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(archive: Path, fmt: str, dest: Path, max_bytes: int) -> int:
        (dest / "half.bin").write_bytes(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dl, "safe_extract", full)
    with pytest.raises(HoodError, match="no space left"):
        dl.install("places365", root)
    assert not (root / "places365").exists() and [p for p in root.iterdir() if ".hood-tmp-" in p.name] == []


def test_a_stale_folder_is_not_overwritten_without_force(server: Server, root: Path) -> None:
    (root / "svhn").mkdir(parents=True)
    (root / "svhn" / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="--force"):
        dl.install("svhn", root)
    assert (root / "svhn" / "mine.txt").exists()
    assert dl.install("svhn", root, force=True).state == "installed" and not (root / "svhn" / "mine.txt").exists()


def test_unknown_and_manual_names_explain_themselves(manifest: dict[str, Any], root: Path) -> None:
    res = CliRunner().invoke(app, ["download", "authors-classifiers", "--root", str(root)])
    assert res.exit_code == 2 and "cannot be downloaded automatically" in res.stderr and "--classifier" in res.stderr
    res = CliRunner().invoke(app, ["download", "cifar100x", "--root", str(root)])
    assert res.exit_code == 2 and "did you mean 'cifar100'" in res.stderr
    res = CliRunner().invoke(app, ["download", "--verify", "svhn", "nope", "--root", str(root)])
    assert res.exit_code == 2 and "unknown data set 'nope'" in res.stderr
    assert not root.exists()


def test_a_local_folder_works_as_mirror(manifest: dict[str, Any], root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / _file("svhn")).write_bytes(PAYLOADS["svhn"])
    monkeypatch.setenv("HOOD_MIRROR", mirror.as_uri())
    assert dl.install("svhn", root).source == f"{mirror.as_uri()}/{_file('svhn')}"
    assert len(sources.load_image_set("svhn", root, 32)) == 7


def test_one_failing_set_does_not_stop_the_others(server: Server, root: Path) -> None:
    server.files.pop(_file("svhn"))  # 404: no mirror has it
    res = CliRunner().invoke(app, ["download", "svhn", "tinyimages300k", "--root", str(root)])
    assert res.exit_code == 2 and "1 of 2 sets failed: svhn" in res.stderr and "HTTP 404" in res.stderr
    assert registry.is_installed("tinyimages300k", root) and not registry.is_installed("svhn", root)


def test_a_second_download_of_the_same_set_is_refused_while_the_first_runs(server: Server, root: Path) -> None:
    """The set's lock is held by another process (what a running `hood download svhn` holds): refused, naming it;
    other sets are not blocked; once the holder is gone (killed: the lock dies with it) the set installs."""
    folder = dl.downloads_dir(root) / "svhn"
    folder.mkdir(parents=True)
    code = ("import sys, time\nfrom hood.locks import acquire\nacquire(sys.argv[1], 'hood download svhn', '')\n"
            "print('held', flush=True)\ntime.sleep(300)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(HoodError, match=rf"in use by `hood download svhn` \(pid {holder.pid}\); wait for it"):
            dl.install("svhn", root)
        assert dl.install("tinyimages300k", root).state == "installed"  # other sets are not blocked
    finally:
        holder.kill()
        holder.wait()
    assert dl.install("svhn", root).state == "installed" and not dl.downloads_dir(root).exists()
