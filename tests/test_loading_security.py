"""Loading never runs code from a file, and every wrong file is one line naming the mismatch."""

from __future__ import annotations

import os
import pickle
import re
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hood.cli.app import app
from hood.errors import CheckpointError
from hood.models.checkpoint import (
    classifier_state,
    load_classifier,
    load_decoder,
    read_classifier_checkpoint,
    safe_load,
    save_checkpoint,
    save_decoder,
    save_train_state,
)
from hood.models.decoder import HeatmapDecoder, decoder_spec_for
from hood.models.registry import build_classifier

HOOD = Path(__file__).resolve().parents[1] / "hood"


class RunsCode:
    """Unpickling this calls os.system: the marker file appears if the loader ever executes it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture
def evil_files(tmp_path: Path, marker: Path) -> list[Path]:
    zipped = tmp_path / "evil.pt"
    torch.save({"net_state_dict": RunsCode(marker), "cls_state_dict": {}}, zipped)
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps({"net_state_dict": RunsCode(marker)}, protocol=2))
    new_protocol = tmp_path / "evil.pkl"
    new_protocol.write_bytes(pickle.dumps(RunsCode(marker), protocol=4))
    assert not marker.exists()
    return [zipped, legacy, new_protocol]


def one_line(msg: str) -> None:
    assert msg.strip() and "\n" not in msg.strip(), msg


def test_code_in_a_checkpoint_never_runs(evil_files: list[Path], marker: Path) -> None:
    for f in evil_files:
        with pytest.raises(CheckpointError) as err:
            safe_load(f)
        one_line(str(err.value))
        assert str(f) in str(err.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"refusing .*evil\.pt: loading it would call (posix|os)\.system"):
        safe_load(evil_files[0])


@pytest.mark.parametrize("command", [
    ["evaluate"],
    ["train-decoder"],
    ["visualize"],
])
def test_commands_check_the_classifier_first(command: list[str], evil_files: list[Path], marker: Path, tmp_path: Path) -> None:
    """No data set is installed here: the file must be what fails, at once, and nothing is written."""
    evil = evil_files[0]
    args = [*command, "--config", "cifar10_wrn40_2"]
    args += ["--set", f"model.classifier={evil}"] if command == ["visualize"] else ["--classifier", str(evil)]
    start = time.monotonic()
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "evil.pt" in r.output and "refusing" in r.output and "Traceback" not in r.output
    one_line(r.output)
    assert time.monotonic() - start < 10
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


def _classifier(tmp_path: Path, arch: str = "wrn10_2", classes: int = 3, seed: int = 0, name: str = "clf.pt") -> Path:
    torch.manual_seed(seed)
    model = build_classifier(arch, classes)
    path = tmp_path / name
    save_checkpoint(classifier_state(model, arch, [str(i) for i in range(classes)], {}), path)
    return path


def test_not_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    cases = {
        "text.pt": b"hello, I am text\n",
        "random.pt": os.urandom(512),
        "empty.pt": b"",
        "truncated.pt": b"",
    }
    torch.save({"a": torch.zeros(100)}, tmp_path / "whole.pt")
    cases["truncated.pt"] = (tmp_path / "whole.pt").read_bytes()[:200]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other_dict.pt")
    (tmp_path / "folder.pt").mkdir()
    for name in [*cases, "tensor.pt", "other_dict.pt", "folder.pt", "missing.pt"]:
        with pytest.raises(CheckpointError) as err:
            read_classifier_checkpoint(tmp_path / name)
        one_line(str(err.value))
        assert name in str(err.value)


def test_wrong_kind_wrong_arch_wrong_classes(tmp_path: Path) -> None:
    clf = _classifier(tmp_path)
    with pytest.raises(CheckpointError, match="holds a wrn10_2 classifier, but the config asks for resnet18"):
        load_classifier(clf, arch="resnet18")
    with pytest.raises(CheckpointError, match="classifies 3 classes, but the data set has 10"):
        load_classifier(clf, num_classes=10)
    loaded = load_classifier(clf)
    dec = HeatmapDecoder(decoder_spec_for("wrn10_2", loaded.model.feature_dim, 3))
    save_decoder(dec, loaded, tmp_path / "decoder.pt", {})
    with pytest.raises(CheckpointError, match="is a decoder checkpoint, not a classifier"):
        read_classifier_checkpoint(tmp_path / "decoder.pt")
    with pytest.raises(CheckpointError, match="is a classifier checkpoint, not a decoder"):
        load_decoder(clf)
    save_train_state({"command": "pretrain", "epoch": 1}, tmp_path / "train_state.pt")
    with pytest.raises(CheckpointError, match="training state"):
        read_classifier_checkpoint(tmp_path / "train_state.pt")
    # a file claiming one architecture but holding another's weights
    state = safe_load(clf)
    state["arch"] = "wrn40_2"
    save_checkpoint(state, tmp_path / "liar.pt")
    with pytest.raises(CheckpointError, match="does not fit a wrn40_2 classifier") as err:
        load_classifier(tmp_path / "liar.pt")
    one_line(str(err.value))
    # same architecture, other class count in the weights than in the head
    state = safe_load(clf)
    state["net_state_dict"]["conv1.weight"] = torch.zeros(5, 3, 3, 3)
    save_checkpoint(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="size mismatch") as err:
        load_classifier(tmp_path / "shape.pt")
    one_line(str(err.value))


def test_decoder_for_another_classifier_is_refused(tmp_path: Path) -> None:
    a = load_classifier(_classifier(tmp_path, seed=0, name="a.pt"))
    b = load_classifier(_classifier(tmp_path, seed=1, name="b.pt"))
    other = load_classifier(_classifier(tmp_path, classes=5, name="c.pt"))
    dec = HeatmapDecoder(decoder_spec_for("wrn10_2", a.model.feature_dim, 3))
    save_decoder(dec, a, tmp_path / "decoder.pt", {})
    load_decoder(tmp_path / "decoder.pt", a)
    with pytest.raises(CheckpointError, match="different wrn10_2 classifier") as err:
        load_decoder(tmp_path / "decoder.pt", b)
    one_line(str(err.value))
    with pytest.raises(CheckpointError, match="trained on a wrn10_2 with 3 classes, not on this wrn10_2 with 5"):
        load_decoder(tmp_path / "decoder.pt", other)


def test_checkpoints_carry_what_identifies_them(tmp_path: Path) -> None:
    clf = safe_load(_classifier(tmp_path))
    assert {"arch", "num_classes", "hood_version", "classes", "net_state_dict", "cls_state_dict"} <= clf.keys()
    loaded = load_classifier(tmp_path / "clf.pt")
    save_decoder(HeatmapDecoder(decoder_spec_for("wrn10_2", loaded.model.feature_dim, 3, fw_layers=2)), loaded, tmp_path / "d.pt", {})
    dec = safe_load(tmp_path / "d.pt")
    assert dec["spec"]["fw_layers"] == 2 and dec["hood_version"] and dec["classifier"]["fingerprint"] == loaded.fingerprint


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_ddp_and_compile_prefixes_load(tmp_path: Path, prefix: str) -> None:
    state = safe_load(_classifier(tmp_path))
    state["net_state_dict"] = {prefix + k: v for k, v in state["net_state_dict"].items()}
    state["cls_state_dict"] = {prefix + k: v for k, v in state["cls_state_dict"].items()}
    save_checkpoint(state, tmp_path / "prefixed.pt")
    a, b = load_classifier(tmp_path / "clf.pt"), load_classifier(tmp_path / "prefixed.pt")
    assert a.fingerprint == b.fingerprint
    for (k, v), (k2, v2) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_every_torch_load_is_weights_only() -> None:
    for f in HOOD.rglob("*.py"):
        text = f.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            assert "weights_only=True" in call, f"{f}: {call}"
        assert "pickle.load(" not in text and "pickle.loads(" not in text, f
        assert "allow_pickle=True" not in text, f
