"""Checkpoint I/O for classifiers and decoders: safe loading, the authors' layout, mismatch checks.

hood's classifier checkpoints are a superset of the authors' layout (``net_state_dict`` for the encoder,
``cls_state_dict`` for ``linear.*``) with the architecture, classes and version beside them, so either
side can read the other's files. Everything is loaded with ``weights_only=True``: a file that needs
arbitrary unpickling (and could run code) is refused.
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hood.errors import CheckpointError
from hood.fileio import atomic_save_with
from hood.fingerprint import fingerprint, module_fingerprint
from hood.models.base import Classifier
from hood.models.decoder import DecoderSpec, HeatmapDecoder
from hood.models.registry import ARCHITECTURES, build_classifier
from hood.version import __version__

_PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes, however nested."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p):], True
        out[key] = value
    return out


_GLOBAL_RE = re.compile(r"unsupported GLOBAL ([\w.]+)", re.IGNORECASE)


def _first_line(text: str) -> str:
    """The informative line of torch's long multi-paragraph error messages."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "Unsupported" in ln or "unsupported" in ln:
            return ln
    return lines[0] if lines else ""


def safe_load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without executing code; every failure becomes a one-line CheckpointError.

    ``weights_only=True`` restricts unpickling to tensors and plain containers, so a file crafted to run
    code on load is refused before anything in it is called. The message says whether the file asked
    for a Python global (code) or is simply not a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: the error says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = _GLOBAL_RE.search(text)
        if found:
            raise CheckpointError(
                f"refusing {path}: loading it would call {found.group(1)}, i.e. it needs arbitrary unpickling, "
                f"which can run code; only tensor checkpoints are loaded (weights_only)"
            ) from None
        raise CheckpointError(
            f"{path} is not a checkpoint hood can load safely ({_first_line(text)[:100] or 'unsupported pickle'}); "
            f"it is damaged, not a PyTorch file, or holds objects other than tensors"
        ) from None
    except MemoryError:
        raise CheckpointError(f"{path} is too large to load into memory") from None
    except Exception as err:  # torch raises many unrelated types for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a checkpoint (holds a {type(obj).__name__}, not a dict)")
    return obj


def infer_arch(net_state: dict[str, torch.Tensor]) -> str:
    """Tell the architecture from encoder keys, for the authors' files which do not record it."""
    if "conv1.bias" in net_state:
        return "wrn10_2" if "layer1.1.conv1.weight" not in net_state else "wrn40_2"
    if any(k.endswith("conv3.weight") for k in net_state):
        return "resnet50"
    return "resnet18"


@dataclass
class LoadedClassifier:
    model: Classifier
    arch: str
    num_classes: int
    classes: list[str] | None
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)


def read_classifier_checkpoint(path: str | Path) -> dict[str, Any]:
    """Safe-load and check the layout only (no model built): cheap enough to run before any data work."""
    ckpt = safe_load(path)
    kind = ckpt.get("format")
    if kind == "hood.decoder":
        raise CheckpointError(f"{path} is a decoder checkpoint, not a classifier; pass it where a decoder is expected")
    if kind == TRAIN_STATE_FORMAT:
        raise CheckpointError(f"{path} is a training state (for --resume), not a classifier; use classifier.pt of that run")
    if not isinstance(ckpt.get("net_state_dict"), dict) or not isinstance(ckpt.get("cls_state_dict"), dict):
        raise CheckpointError(
            f"{path} is not a classifier checkpoint (expected 'net_state_dict' and 'cls_state_dict', "
            f"found format {kind or 'unknown'!r} with keys {sorted(map(str, ckpt))[:5]})"
        )
    entries = [*ckpt["net_state_dict"].items(), *ckpt["cls_state_dict"].items()]
    bad = [k for k, v in entries if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a classifier checkpoint (entry {str(bad[0])[:40]!r} is not a named tensor)")
    return ckpt


def load_classifier(path: str | Path, arch: str | None = None, num_classes: int | None = None) -> LoadedClassifier:
    """Build the classifier a checkpoint describes, checking it against what the config expects."""
    ckpt = read_classifier_checkpoint(path)
    net = strip_prefixes(ckpt["net_state_dict"])
    cls = strip_prefixes(ckpt["cls_state_dict"])
    cls = {k if k.startswith("linear.") else f"linear.{k}": v for k, v in cls.items()}
    found_arch = str(ckpt.get("arch") or infer_arch(net))
    if found_arch not in ARCHITECTURES:
        raise CheckpointError(f"{path} holds unknown architecture {found_arch!r}")
    if arch is not None and arch != found_arch:
        raise CheckpointError(f"{path} holds a {found_arch} classifier, but the config asks for {arch}")
    if "linear.weight" not in cls or cls["linear.weight"].ndim != 2:
        raise CheckpointError(f"{path}: 'cls_state_dict' has no linear.weight matrix")
    found_classes = int(cls["linear.weight"].shape[0])
    if num_classes is not None and num_classes != found_classes:
        raise CheckpointError(
            f"{path} classifies {found_classes} classes, but the data set has {num_classes}"
        )
    model = build_classifier(found_arch, found_classes)
    state = {k: v.float() if v.is_floating_point() else v for k, v in {**net, **cls}.items()}
    # the authors' fp16 files store num_batches_tracked as float16: give it the buffer's dtype back
    own = model.state_dict()
    for k, v in state.items():
        if k in own and own[k].dtype != v.dtype:
            state[k] = v.to(own[k].dtype)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches: another width/depth, or another class count
        detail = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln), str(err).splitlines()[0])
        raise CheckpointError(f"{path} does not fit a {found_arch} classifier: {detail[:160]}") from None
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{path} does not fit a {found_arch} classifier: {detail}")
    model.eval()
    return LoadedClassifier(
        model=model,
        arch=found_arch,
        num_classes=found_classes,
        classes=ckpt.get("classes"),
        fingerprint=classifier_fingerprint(model),
        meta=ckpt.get("meta", {}),
    )


def classifier_state(model: Classifier, arch: str, classes: list[str] | None, meta: dict[str, Any]) -> dict[str, Any]:
    """The authors' layout plus hood's metadata."""
    state = strip_prefixes(model.state_dict())
    cls = {k: v for k, v in state.items() if k.startswith("linear.")}
    return {
        "format": "hood.classifier",
        "hood_version": __version__,
        "arch": arch,
        "num_classes": model.num_classes,
        "classes": classes,
        "net_state_dict": {k: v for k, v in state.items() if not k.startswith("linear.")},
        "cls_state_dict": cls,
        "meta": meta,
    }


TRAIN_STATE_FORMAT = "hood.train_state"


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save through :func:`atomic_save_with`: the old file stays whole until the new one is."""
    atomic_save_with(path, lambda fh: torch.save(obj, fh))


def save_train_state(obj: dict[str, Any], path: str | Path) -> None:
    """A resumable training state, tagged so it is never mistaken for (or loaded as) a model checkpoint."""
    save_checkpoint({"format": TRAIN_STATE_FORMAT, "hood_version": __version__, **obj}, path)


def load_train_state(path: str | Path, command: str) -> dict[str, Any]:
    """Safe-load a training state and check it belongs to ``command``."""
    state = safe_load(path)
    if state.get("format") != TRAIN_STATE_FORMAT or state.get("command", command) != command:
        raise CheckpointError(f"{path} is not a {command} training state (format {state.get('format')!r})")
    if not isinstance(state.get("epoch"), int):
        raise CheckpointError(f"{path} is damaged: it records no completed epoch")
    return state


def save_decoder(
    decoder: HeatmapDecoder, classifier: LoadedClassifier, path: str | Path, meta: dict[str, Any]
) -> None:
    state = strip_prefixes(decoder.state_dict())
    save_checkpoint(
        {
            "format": "hood.decoder",
            "hood_version": __version__,
            "spec": decoder.spec.to_dict(),
            "state_dict": state,
            "checksum": fingerprint(state.items()),  # load_decoder tells a changed or damaged file by it
            "classifier": {
                "arch": classifier.arch,
                "num_classes": classifier.num_classes,
                "fingerprint": classifier.fingerprint,
            },
            "meta": meta,
        },
        path,
    )


def read_decoder_checkpoint(path: str | Path) -> dict[str, Any]:
    """Safe-load and check that a file is a hood decoder, before any data work."""
    ckpt = safe_load(path)
    if "net_state_dict" in ckpt and ckpt.get("format") != "hood.decoder":
        raise CheckpointError(f"{path} is a classifier checkpoint, not a decoder; pass it as --classifier")
    if ckpt.get("format") != "hood.decoder" or not isinstance(ckpt.get("spec"), dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a hood decoder checkpoint (format {ckpt.get('format')!r})")
    return ckpt


def load_decoder(path: str | Path, classifier: LoadedClassifier | None = None) -> tuple[HeatmapDecoder, dict[str, Any]]:
    """Rebuild a decoder; with ``classifier`` given, refuse one trained on a different classifier."""
    ckpt = read_decoder_checkpoint(path)
    try:
        spec = DecoderSpec.from_dict(ckpt["spec"])
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(f"decoder {path} has a damaged spec ({err})") from None
    info = ckpt.get("classifier") if isinstance(ckpt.get("classifier"), dict) else {}
    if classifier is not None:
        if info.get("arch") != classifier.arch or info.get("num_classes") != classifier.num_classes:
            raise CheckpointError(
                f"decoder {path} was trained on a {info.get('arch')} with {info.get('num_classes')} classes, "
                f"not on this {classifier.arch} with {classifier.num_classes}"
            )
        if info.get("fingerprint") != classifier.fingerprint:
            raise CheckpointError(
                f"decoder {path} was trained on a different {classifier.arch} classifier "
                f"(fingerprint {info.get('fingerprint')} != {classifier.fingerprint}); pass the matching --classifier"
            )
    try:
        decoder = HeatmapDecoder(spec)
        decoder.load_state_dict(strip_prefixes(ckpt["state_dict"]))
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"decoder {path} does not match its own spec: {str(err).splitlines()[0]}") from err
    check_decoder_weights(decoder, ckpt.get("checksum"), path)
    meta = ckpt.get("meta", {})
    rows = meta.get("id_rows") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not (rows is None or (isinstance(rows, torch.Tensor) and rows.ndim == 1
                                                           and not rows.is_floating_point())):
        raise CheckpointError(f"decoder {path} is damaged: its record of what it was trained on (meta) is not what hood "
                              f"writes; train it again (hood train-decoder, or HeatmapDetector.fit and save)")
    ckpt["meta"] = meta
    decoder.eval()
    return decoder, ckpt


def check_decoder_weights(decoder: HeatmapDecoder, checksum: Any, path: str | Path) -> None:
    """A decoder whose weights are not finite, or are not those it was saved with (a changed byte, an edit after
    saving), would score every image as NaN or as another decoder: refused by name. Files saved before the
    checksum existed are checked for finiteness only."""
    fix = "train it again (hood train-decoder, or HeatmapDetector.fit and save) or restore the file"
    state = decoder.state_dict()
    if any(v.is_floating_point() and not bool(torch.isfinite(v).all()) for v in state.values()):
        raise CheckpointError(f"decoder {path} is damaged: its weights hold NaN or infinite values; {fix}")
    if checksum is not None and checksum != fingerprint(state.items()):
        raise CheckpointError(f"decoder {path} is damaged: its weights are not those it was saved with; {fix}")


def classifier_fingerprint(model: Classifier) -> str:
    """The fingerprint of a classifier's whole state (hood's own or wrapped, its input normalization included),
    as its decoders, fits and thresholds record it: a fine-tuned backbone under an unchanged head is another
    classifier. Hashed at float16, so the authors' half-precision files and hood's float32 ones agree."""
    return module_fingerprint(model, half=True)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict (or one under ``state_dict`` / ``model``, as training scripts often save it)."""
    ckpt = safe_load(path)
    for key in ("state_dict", "model"):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    if not ckpt or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt.items()):
        raise CheckpointError(f"{path} is not a state dict (a file of named tensors, as torch.save(model.state_dict(), path) writes)")
    return strip_prefixes(ckpt)


def load_external_classifier(
    path: str | Path, arch: str, image_size: int, num_classes: int | None = None,
    mean: tuple[float, ...] | list[float] | None = None, std: tuple[float, ...] | list[float] | None = None,
    classes_from: str = "--num-classes",
) -> LoadedClassifier:
    """A ``torchvision:NAME`` or ``module:FILE:FUNC`` classifier with the weights of a state dict.

    The class count is read off the state dict's final layer; ``num_classes``, when given, must agree.
    ``classes_from`` says where ``num_classes`` came from, for the refusal (a flag the user gave, or the data set).
    """
    from hood.models.adapter import IMAGENET_MEAN, IMAGENET_STD, WrappedClassifier, external_model, find_final_linear

    state = read_state_dict(path)
    try:
        probe = external_model(arch, num_classes or 1000)
        name, _ = find_final_linear(probe)
        found = state.get(f"{name}.weight")
        if found is None or found.ndim != 2:
            raise CheckpointError(f"{path} has no weight matrix '{name}.weight' for the final layer of {arch}; is it a state dict of that model?")
        k = int(found.shape[0])
        if num_classes is not None and num_classes != k:
            raise CheckpointError(f"{path} classifies {k} classes, but {classes_from} has {num_classes}; "
                                  f"pass the weights of a {num_classes}-class {arch}")
        model = probe if k == (num_classes or 1000) else external_model(arch, k)
        wrapped = WrappedClassifier(model, image_size, mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{arch}: {err}") from None
    try:
        model.load_state_dict({k2: v.float() if v.is_floating_point() else v for k2, v in state.items()})
    except RuntimeError as err:
        detail = next((ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()), str(err).splitlines()[0])
        raise CheckpointError(f"{path} does not fit {arch}: {detail[:160]}") from None
    wrapped.eval()
    return LoadedClassifier(model=wrapped, arch=arch, num_classes=k, classes=None,
                            fingerprint=classifier_fingerprint(wrapped))
