"""The paper's three commands, word for word, end to end: ``hood download`` of every set they need from a
local mirror (``HOOD_MIRROR``, a real HTTP server on 127.0.0.1) serving tiny stand-ins in the real formats,
whose checksums a registry file of the user's own (``HOOD_REGISTRY``) gives; then ``hood pretrain --dataset
cifar10``, ``hood train-decoder --num-ood 5000`` and ``hood evaluate --ood svhn,lsun``, shrunk only by
``--epochs``. Also: a lab's own set registered by name, and one-line errors for a malformed registry file.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import class_image, tar_bytes
from http_server import Server
from test_download import _jpeg, _mat_bytes, _npy_bytes
from test_pipeline_cli import assert_one_line_error
from typer.testing import CliRunner

from hood.cli.app import app
from hood.data import registry, sources

runner = CliRunner()


def _cifar10_python(per_batch: int = 10, test: int = 10) -> bytes:
    """cifar-10-python.tar.gz's layout: five pickled training batches, a test batch and the class names (50
    training images: as many as KNN's default k reads)."""

    def batch(offset: int, n: int) -> bytes:
        labels = [i % 10 for i in range(n)]
        data = np.stack([class_image(c % 3, offset + i).transpose(2, 0, 1).reshape(-1) for i, c in enumerate(labels)])
        return pickle.dumps({"batch_label": "stand-in", "labels": labels, "data": data, "filenames": [f"{offset + i}.png" for i in range(n)]}, protocol=2)

    members = {f"cifar-10-batches-py/data_batch_{b}": batch(100 * b, per_batch) for b in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = batch(1000, test)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}, protocol=2)
    return tar_bytes(members, gz=True)


STAND_INS = {  # set -> bytes, served under the registry's file name of that set
    "cifar10": _cifar10_python(),
    "svhn": _mat_bytes(12),
    "lsun-c": tar_bytes({f"LSUN/test/{i:05d}.jpg": _jpeg(i) for i in range(12)}, gz=True),  # as ODIN's LSUN.tar.gz
    "tinyimages300k": _npy_bytes(16),  # train-decoder's default auxiliary set (data.aux)
}


def _file_name(name: str) -> str:
    return registry.entry(name)["files"][0]["name"]


def _file_entry(name: str, data: bytes, fmt: str) -> dict[str, Any]:
    return {"name": name, "url": f"https://example.org/{name}", "md5": hashlib.md5(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "format": fmt}


@pytest.fixture
def my_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A mirror serving the stand-ins, and my_sets.json giving their checksums (replacing the built-in ones)."""
    assert all(registry.entry(n) for n in STAND_INS)  # the real names, before the registry file is in effect
    files = {n: _file_entry(_file_name(n), d, registry.entry(n)["files"][0]["format"]) for n, d in STAND_INS.items()}
    (tmp_path / "my_sets.json").write_text(json.dumps({"sets": {n: {"files": [f]} for n, f in files.items()}}, indent=2))
    monkeypatch.setenv("HOOD_REGISTRY", "my_sets.json")  # relative: the test's working directory
    srv = Server({f["name"]: STAND_INS[n] for n, f in files.items()}).start()
    monkeypatch.setenv("HOOD_MIRROR", srv.base_url)
    yield srv
    srv.stop()


def test_the_papers_three_commands_as_written(my_sets: Server, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["evaluate", "--ood", "svhn,lsun"])
    assert_one_line_error(missing, "run `hood download cifar10 svhn lsun-c`")  # every missing set, one line

    r = runner.invoke(app, ["download", "cifar10", "svhn", "lsun", "tinyimages300k"])
    assert r.exit_code == 0, r.output
    assert "lsun-c: installed" in r.output  # the alias installs LSUN-Crop under its own name
    assert sorted(p for p, _, _ in my_sets.requests) == sorted(_file_name(n) for n in STAND_INS)
    for name, data in STAND_INS.items():
        assert registry.read_marker(name, registry.default_data_root())["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()

    r = runner.invoke(app, ["pretrain", "--dataset", "cifar10", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train-decoder", "--num-ood", "5000", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "fewer than decoder.num_ood = 5000: training on all 16" in " ".join(r.output.split())
    r = runner.invoke(app, ["evaluate", "--ood", "svhn,lsun", "--json"])
    assert r.exit_code == 0, r.output

    results = json.loads(r.stdout)
    assert results["id_dataset"] == "cifar10" and results["classifier_arch"] == "resnet18" and results["n_id"] == 10
    for method in ("heatmap", "msp", "energy", "knn"):
        per_set = results["results"][method]
        assert set(per_set) == {"svhn", "lsun-c", "mean"}  # lsun is reported under the set's name
        assert per_set["svhn"]["n"] == per_set["lsun-c"]["n"] == 2  # len(ID test) / 5, the protocol
        assert all(math.isfinite(v) for s in ("svhn", "lsun-c") for v in per_set[s].values())


def test_a_labs_own_set_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tar_bytes({f"scans/{c}/{i}.jpg": _jpeg(10 * i + len(c)) for c in ("a", "b") for i in range(3)}, gz=True)
    (tmp_path / "lab.json").write_text(json.dumps({"sets": {"lab-scans": {
        "role": "ood", "title": "Our scanner's rejects", "layout": "images", "dir": "lab-scans", "aliases": ["scans"],
        "files": [_file_entry("scans.tar.gz", archive, "tar.gz")]}}}))
    monkeypatch.setenv("HOOD_REGISTRY", str(tmp_path / "lab.json"))
    srv = Server({"scans.tar.gz": archive}).start()
    try:
        r = runner.invoke(app, ["download", "scans", "--url", srv.url("scans.tar.gz")])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    assert len(sources.load_image_set("scans", registry.default_data_root(), 32)) == 6
    rows = json.loads(runner.invoke(app, ["download", "--list", "--json"]).stdout)
    assert {"name": "lab-scans", "aliases": ["scans"], "state": "present"}.items() <= next(x for x in rows if x["name"] == "lab-scans").items()
    assert "svhn" in {x["name"] for x in rows}  # the built-in sets stay


GOOD_FILE = {"name": "x.npy", "url": "https://example.org/x.npy", "md5": "0" * 32, "format": "npy"}


def _one(name: str, **entry: Any) -> str:
    """A registry file holding one entry: a new npy set unless ``entry`` says otherwise."""
    return json.dumps({"sets": {name: {"role": "ood", "layout": "npy", "dir": "m", "files": [GOOD_FILE], **entry}}})


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
        ('["svhn"]', 'expected a JSON object {"sets": {"NAME": {...}}}'),
        ('{"sets": {}, "set": 1}', "unknown top-level key 'set'"),
        ('{"sets": {"My.Set": {}}}', "set name 'My.Set' must be lower-case"),
        ('{"sets": {"mine": {"role": "ood", "layout": "images", "files": []}}}', "set 'mine': 'dir' is missing"),
        (_one("mine", layout="folder"), "layout must be one of cifar-python, images"),
        ('{"sets": {"svhn": {"file": []}}}', "set 'svhn': unknown key 'file' (did you mean 'files'?)"),
        (_one("mine", dir="../m"), "dir must be a folder name relative"),
        (_one("mine", files=[{"name": "x.npy", "url": "u", "format": "npy"}]), "files[0]: give md5 or sha256"),
        (_one("mine", files=[{**GOOD_FILE, "md5": "ABC"}]), "files[0]: md5 must be 32 lower-case hex digits"),
        (_one("mine", aliases=["lsun"]), "'lsun' names both 'lsun-c' and 'mine'"),
        (_one("mine", dir="svhn"), "sets 'svhn' and 'mine' both use dir 'svhn'"),
        (_one("blobs"), "'blobs' is the name of a built-in set"),
    ],
)
def test_a_malformed_registry_file_is_one_line_in_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, needle: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    monkeypatch.setenv("HOOD_REGISTRY", "bad.json")
    for args in (["download", "--list"], ["evaluate", "--ood", "svhn"], ["pretrain", "--dataset", "cifar10"]):
        assert_one_line_error(runner.invoke(app, args), "HOOD_REGISTRY=bad.json", needle)


def test_a_registry_file_that_is_not_there_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOD_REGISTRY", "nowhere.json")
    assert_one_line_error(runner.invoke(app, ["download", "svhn"]), "HOOD_REGISTRY=nowhere.json: No such file or directory")


def test_docs_data_lists_every_registered_set_and_alias() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text().splitlines()
            if line.startswith("| `")}
    for name in registry.registry_names() + registry.manual_names():
        assert name in rows, f"docs/data.md lists no '{name}'"
        for alias in registry.aliases(name):
            assert f"`{alias}`" in rows[name], f"docs/data.md does not give '{name}' its alias '{alias}'"
