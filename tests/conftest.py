"""Shared fixtures: every test runs with its own cache, data root and runs folder, on tiny synthetic data.

Nothing here reads ../shared or the network; images are generated so each class has a distinct colour
pattern that a small network separates within a few epochs. Also home of :func:`tiny_run`, the trained and
evaluated decoder run that most command tests read (one per test session), with the fixtures around it.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hood.config import Config, resolve


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOD_CACHE", str(tmp_path / "_cache"))
    monkeypatch.setenv("HOOD_DATA", str(tmp_path / "_data"))
    monkeypatch.delenv("HOOD_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)


def class_image(cls: int, i: int, size: int = 32) -> np.ndarray:
    """A size x size x 3 uint8 image whose dominant colour and stripe direction encode ``cls``."""
    rng = np.random.default_rng(cls * 1000 + i)
    base = np.zeros((size, size, 3), dtype=np.float32)
    base[..., cls % 3] = 180
    stripes = (np.arange(size) // 4 % 2).astype(np.float32) * 60
    base += stripes[None, :, None] if cls % 2 else stripes[:, None, None]
    base += rng.normal(0, 12, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 32, ext: str = "png", offset: int = 0) -> Path:
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_image(c, i + offset, size)).save(d / f"{i:03d}.{ext}")
    return root


def write_flat_folder(root: Path, count: int = 10, size: int = 32, seed: int = 7) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"img{i:03d}.png")
    return root


@pytest.fixture
def id_folder(tmp_path: Path) -> Path:
    """An ID set with train/ and test/, 3 classes, 32x32 PNGs."""
    root = tmp_path / "tiny-id"
    write_image_folder(root / "train", per_class=12)
    write_image_folder(root / "test", per_class=4, offset=100)
    return root


@pytest.fixture
def id_archive(id_folder: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny-id.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(id_folder, arcname="tiny-id")
    return path


@pytest.fixture
def ood_folder(tmp_path: Path) -> Path:
    return write_flat_folder(tmp_path / "tiny-ood", count=12)


def save_random_classifier(path: Path, arch: str = "wrn10_2", num_classes: int = 3, seed: int = 0) -> Path:
    """A hood classifier checkpoint with random (seeded) weights: decoder tests need no pretraining."""
    from hood.models.checkpoint import classifier_state, save_checkpoint
    from hood.models.registry import build_classifier

    torch.manual_seed(seed)
    model = build_classifier(arch, num_classes).eval()
    save_checkpoint(classifier_state(model, arch, [f"class{c}" for c in range(num_classes)], {}), path)
    return path


@pytest.fixture
def tiny_classifier(tmp_path: Path) -> Path:
    """A random 3-class wrn10_2 classifier checkpoint, matching the id_folder fixture's classes."""
    return save_random_classifier(tmp_path / "clf.pt")


def tiny_config(root: Path, **extra: Any) -> Config:
    """The config of :func:`tiny_run` under ``root`` (its data, classifier and runs), with ``extra`` keys set."""
    named = {
        "data.id": str(root / "id"), "data.aux": str(root / "ood"), "data.ood": [str(root / "ood"), "uniform-noise"],
        "data.ood_count": 12, "model.arch": "wrn10_2", "decoder.epochs": 1, "decoder.batch_size": 8,
        "decoder.num_ood": 12, "run.device": "cpu", "run.runs_dir": str(root / "runs"), "evaluate.methods": ["all"],
        "evaluate.params.knn.k": 5, "run.num_threads": 1, "model.classifier": str(root / "classifier.pt"), **extra,
    }
    return resolve(None, named, None)


_RUNS: dict[str, dict[str, Any]] = {}


def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Once per session: tiny ID/OOD folders, an untrained wrn10_2 classifier file, a one-epoch train-decoder run
    evaluated with all methods. Its own cache and data root, so nothing leaks into the user's."""
    if "run" in _RUNS:
        return _RUNS["run"]
    from hood.jobs.evaluate import evaluate

    root = tmp_path_factory.mktemp("pipeline")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOOD_CACHE", str(root / "_cache"))
        mp.setenv("HOOD_DATA", str(root / "_data"))
        run = tiny_decoder_run(root)
        result = evaluate(tiny_config(root), str(run))
    torch.set_num_threads(threads)
    _RUNS["run"] = {"root": root, "run": run, "results": result.results}
    return _RUNS["run"]


def tiny_decoder_run(root: Path, per_class: int = 12, test_per_class: int = 4, ood_count: int = 12, **extra: Any) -> Path:
    """A one-epoch train-decoder run at ``root/runs/decoder`` on tiny data written under ``root`` (ID folder,
    outlier folder, a random classifier), with :func:`tiny_config` and ``extra`` keys; its path."""
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    write_image_folder(root / "id" / "train", per_class=per_class)
    write_image_folder(root / "id" / "test", per_class=test_per_class, offset=100)
    write_flat_folder(root / "ood", count=ood_count)
    save_random_classifier(root / "classifier.pt")
    cfg = tiny_config(root, **{"run.out": str(root / "runs" / "decoder"), **extra})
    return train_decoder(cfg, None, create_run(cfg, "train-decoder")).path


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny run of :func:`tiny_run`: read it, never write it (:func:`run_copy` is for that)."""
    return tiny_run(tmp_path_factory)


@pytest.fixture
def run_copy(pipeline: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the evaluated tiny run, for tests that damage or rewrite it."""
    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    return Path(shutil.copytree(pipeline["run"], tmp_path / "run"))


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    """Two random images of the run's size: a user's folder to score."""
    return write_flat_folder(tmp_path / "mine", count=2)


def invoke(*args: str) -> Any:
    """``hood ARGS`` through Typer's test runner."""
    from hood.cli.app import app

    return CliRunner().invoke(app, list(args))


def score(run: Path, *args: str) -> Any:
    """``hood score ARGS --run RUN`` on the CPU, one thread, quiet."""
    return invoke("score", *args, "--run", str(run), "--device", "cpu", "-q", "--set", "run.num_threads=1")


def one_line_error(result: Any, code: int, *needles: str) -> str:
    """Assert ``result`` failed with exit ``code`` and one stderr line holding every needle; that line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (ValueError, AttributeError, KeyError))
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def tar_bytes(members: dict[str, bytes], gz: bool = True) -> bytes:
    """A tar archive (gzipped unless ``gz`` is False) of ``members``, name to content: a pack as a publisher serves it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive of ``members``, name to content."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
