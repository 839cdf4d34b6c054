"""Checkpoints: hood's classifier round-trip, the authors' layout (fp16, METHOD.md 'Checkpoint layout'),
architecture inference, decoder round-trip with its feature range, and the mismatch errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hood.errors import CheckpointError
from hood.models.checkpoint import (
    classifier_state,
    infer_arch,
    load_classifier,
    load_decoder,
    save_checkpoint,
    save_decoder,
)
from hood.models.decoder import HeatmapDecoder, decoder_spec_for
from hood.models.registry import build_classifier

# METHOD.md: the encoder keys of the authors' files
AUTHORS_KEYS = {
    "resnet18": re.compile(
        r"^(conv1\.weight|bn1\.\w+|layer[1-4]\.[01]\.(conv1|bn1|conv2|bn2|shortcut\.0|shortcut\.1)\.\w+)$"
    ),
    "wrn40_2": re.compile(r"^(conv1\.(weight|bias)|bn1\.\w+|layer[1-3]\.\d\.(bn1|conv1|bn2|conv2|shortcut\.0)\.\w+)$"),
}


def randomized(arch: str, num_classes: int, seed: int) -> torch.nn.Module:
    """A classifier with random weights AND random BatchNorm statistics, so every tensor matters."""
    torch.manual_seed(seed)
    model = build_classifier(arch, num_classes)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(1234)
    return model.eval()


def authors_file(model: torch.nn.Module, path: Path) -> Path:
    """The authors' layout exactly: {'net_state_dict', 'cls_state_dict'}, everything fp16, nothing else."""
    state = model.state_dict()
    net = {k: v.half() for k, v in state.items() if not k.startswith("linear.")}
    cls = {k: v.half() for k, v in state.items() if k.startswith("linear.")}
    torch.save({"net_state_dict": net, "cls_state_dict": cls}, path)
    return path


def logits(model: torch.nn.Module, seed: int = 3) -> torch.Tensor:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def test_hood_classifier_round_trip(tmp_path: Path) -> None:
    model = randomized("wrn10_2", 5, 0)
    path = tmp_path / "clf.pt"
    save_checkpoint(classifier_state(model, "wrn10_2", list("abcde"), {"epoch": 3}), path)
    loaded = load_classifier(path)
    assert (loaded.arch, loaded.num_classes, loaded.classes, loaded.meta) == ("wrn10_2", 5, list("abcde"), {"epoch": 3})
    assert torch.equal(logits(loaded.model), logits(model))
    assert not loaded.model.training
    # hood's file is a superset of the authors' layout
    raw = torch.load(path, weights_only=True)
    assert set(raw["cls_state_dict"]) == {"linear.weight", "linear.bias"}
    assert not any(k.startswith("linear.") for k in raw["net_state_dict"])


@pytest.mark.parametrize("arch", ["resnet18", "wrn40_2"])
def test_authors_fp16_layout_loads(arch: str, tmp_path: Path) -> None:
    source = randomized(arch, 10, 1)
    path = authors_file(source, tmp_path / f"cifar10_{arch}.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"net_state_dict", "cls_state_dict"}
    bad = [k for k in raw["net_state_dict"] if not AUTHORS_KEYS[arch].match(k)]
    assert not bad, f"not the authors' key layout: {bad[:5]}"
    assert raw["net_state_dict"]["bn1.num_batches_tracked"].dtype == torch.float16
    assert all(v.dtype == torch.float16 for v in raw["net_state_dict"].values())

    loaded = load_classifier(path)
    assert loaded.arch == arch and loaded.num_classes == 10  # inferred: the authors' files do not say
    assert loaded.classes is None
    state = loaded.model.state_dict()
    assert state["bn1.num_batches_tracked"].dtype == torch.long and int(state["bn1.num_batches_tracked"]) == 1234
    assert all(v.dtype == torch.float32 for k, v in state.items() if "num_batches" not in k)
    expect, got = logits(source), logits(loaded.model)
    assert torch.allclose(got, expect, rtol=1e-2, atol=1e-2 * float(expect.abs().max()))
    assert torch.equal(got.argmax(1), expect.argmax(1)) or torch.allclose(got, expect, atol=1e-3)
    # the same file with a config that names the architecture
    assert load_classifier(path, arch=arch, num_classes=10).arch == arch


def test_prefixed_state_dicts_load(tmp_path: Path) -> None:
    model = randomized("wrn10_2", 3, 2)
    state = model.state_dict()
    net = {f"module._orig_mod.{k}": v for k, v in state.items() if not k.startswith("linear.")}
    cls = {"weight": state["linear.weight"], "bias": state["linear.bias"]}  # also without 'linear.'
    torch.save({"net_state_dict": net, "cls_state_dict": cls}, tmp_path / "ddp.pt")
    assert torch.equal(logits(load_classifier(tmp_path / "ddp.pt").model), logits(model))


def test_arch_inference() -> None:
    for arch in ("resnet18", "wrn40_2", "resnet50", "wrn10_2"):
        state = build_classifier(arch, 10).state_dict()
        assert infer_arch({k: v for k, v in state.items() if not k.startswith("linear.")}) == arch


def test_classifier_mismatch_errors(tmp_path: Path) -> None:
    path = tmp_path / "clf.pt"
    save_checkpoint(classifier_state(randomized("wrn10_2", 3, 0), "wrn10_2", None, {}), path)
    with pytest.raises(CheckpointError, match="wrn10_2.*resnet18"):
        load_classifier(path, arch="resnet18")
    with pytest.raises(CheckpointError, match="3 classes.*10"):
        load_classifier(path, num_classes=10)
    # an encoder of another architecture under a recorded arch: a one-line error, not a traceback
    state = classifier_state(randomized("wrn10_2", 3, 0), "wrn40_2", None, {})
    save_checkpoint(state, tmp_path / "lying.pt")
    with pytest.raises(CheckpointError, match="does not fit a wrn40_2"):
        load_classifier(tmp_path / "lying.pt")


def test_unreadable_and_unsafe_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt is not a"):
        load_classifier(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a classifier checkpoint"):
        load_classifier(tmp_path / "other.pt")
    torch.save({"net_state_dict": {}, "cls_state_dict": {}, "x": Path("a")}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="pickled.pt"):  # needs arbitrary unpickling: refused
        load_classifier(tmp_path / "pickled.pt")
    for p in ("missing.pt", "junk.pt", "other.pt", "pickled.pt"):
        with pytest.raises(CheckpointError) as info:
            load_classifier(tmp_path / p)
        assert "\n" not in str(info.value)


def _decoder_for(clf, seed: int = 0) -> HeatmapDecoder:
    torch.manual_seed(seed)
    dec = HeatmapDecoder(decoder_spec_for(clf.arch, clf.model.feature_dim, clf.num_classes, 2))
    dec.set_feature_range(0.25, 3.5)
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return dec.eval()


def test_decoder_round_trip_and_fingerprint(tmp_path: Path) -> None:
    save_checkpoint(classifier_state(randomized("wrn10_2", 3, 0), "wrn10_2", None, {}), tmp_path / "a.pt")
    save_checkpoint(classifier_state(randomized("wrn10_2", 3, 9), "wrn10_2", None, {}), tmp_path / "b.pt")
    save_checkpoint(classifier_state(randomized("wrn10_2", 4, 0), "wrn10_2", None, {}), tmp_path / "c.pt")
    clf_a = load_classifier(tmp_path / "a.pt")
    dec = _decoder_for(clf_a)
    save_decoder(dec, clf_a, tmp_path / "decoder.pt", {"epochs": 2})
    loaded, ckpt = load_decoder(tmp_path / "decoder.pt", clf_a)
    assert loaded.spec == dec.spec and ckpt["meta"] == {"epochs": 2}
    assert float(loaded.feat_min) == 0.25 and float(loaded.feat_max) == 3.5
    out = clf_a.model.forward_all(torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        assert torch.equal(loaded(out.features, out.logits.argmax(1), out.maps), dec(out.features, out.logits.argmax(1), out.maps))
    # another classifier of the same architecture and classes: refused by fingerprint
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_decoder(tmp_path / "decoder.pt", load_classifier(tmp_path / "b.pt"))
    with pytest.raises(CheckpointError, match="4"):
        load_decoder(tmp_path / "decoder.pt", load_classifier(tmp_path / "c.pt"))
    # the fingerprint does not depend on precision: the authors' fp16 copy of classifier a is accepted
    fp16 = load_classifier(authors_file(clf_a.model, tmp_path / "a16.pt"))
    assert fp16.fingerprint == clf_a.fingerprint
    load_decoder(tmp_path / "decoder.pt", fp16)
    # a classifier file is not a decoder
    with pytest.raises(CheckpointError, match="not a.*decoder"):
        load_decoder(tmp_path / "a.pt")
