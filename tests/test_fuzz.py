"""Seeded fuzzing of the image loaders and the config parser.

Hundreds of randomly corrupted image files, archives and YAML configs go through the same code the
commands use. Each must either load or fail with a HoodError (one documented line); an image decoder
failure must be an UnreadableImage (a counted skip). Anything else is a crash, and the test names the
seed and input so it can be replayed.
"""

from __future__ import annotations

import io
import random
import tarfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from hood.config import Config, resolve
from hood.data.images import UnreadableImage, decode_image
from hood.data.sources import load_id_splits, load_image_set
from hood.errors import HoodError

SEED = 20240601
N_IMAGES = 400
N_CONFIGS = 400
N_ARCHIVES = 40
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _seed_images(rng: np.random.Generator) -> list[bytes]:
    """Valid files in every format and mode the loaders meet, small so decoding is quick."""
    pix = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    rgb = Image.fromarray(pix)
    out = []
    for img, fmt, kw in [
        (rgb, "PNG", {}), (rgb, "JPEG", {"quality": 80}), (rgb.convert("P"), "GIF", {}), (rgb, "BMP", {}),
        (rgb, "TIFF", {}), (rgb, "WEBP", {}), (rgb.convert("RGBA"), "PNG", {}), (rgb.convert("CMYK"), "JPEG", {}),
        (Image.fromarray(pix[..., 0].astype(np.uint16) * 257), "PNG", {}), (rgb.convert("P"), "PNG", {"transparency": 3}),
        (rgb.convert("L"), "PNG", {}), (rgb.convert("1"), "BMP", {}), (rgb, "PPM", {}), (rgb.convert("LA"), "PNG", {}),
        (rgb, "JPEG", {"progressive": True}),
    ]:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four of: flip bits, overwrite a run, truncate, insert junk, duplicate a slice, zero a header."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b = bytearray(rng.randbytes(rng.randint(0, 16)))
            continue
        op = rng.randrange(7)
        i = rng.randrange(len(b))
        if op == 0:
            for _ in range(rng.randint(1, 8)):
                j = rng.randrange(len(b))
                b[j] ^= 1 << rng.randrange(8)
        elif op == 1:
            n = rng.randint(1, 32)
            b[i : i + n] = rng.randbytes(n)
        elif op == 2:
            del b[rng.randint(0, len(b)) :]
        elif op == 3:
            b[i:i] = rng.randbytes(rng.randint(1, 64))
        elif op == 4:
            j = rng.randint(i, min(len(b), i + 64))
            b[i:i] = b[i:j] * rng.randint(1, 4)
        elif op == 5:
            b[: rng.randint(1, 16)] = bytes(rng.randint(1, 16))
        else:
            b[i] = rng.choice([0x00, 0xFF, 0x7F, 0x80])
    return bytes(b)


def feed(kind: str, seed: int, count: int, make: Callable[[int], Path], load: Callable[[Path], object]) -> Counter[str]:
    """Load ``count`` generated inputs: each loads or is one HoodError line; anything else fails the test."""
    outcome: Counter[str] = Counter()
    for k in range(count):
        path = make(k)
        try:
            load(path)
            outcome["loaded"] += 1
        except HoodError as err:
            assert "\n" not in str(err), err
            outcome["refused"] += 1
        except Exception as err:  # pragma: no cover - this is the failure being hunted
            pytest.fail(f"{kind} {k} (seed {seed}): {type(err).__name__}: {err}")
    assert outcome["refused"] > 0, outcome
    print(f"\n{kind} fuzz: {count} inputs -> {dict(outcome)}")
    return outcome


def test_fuzz_image_decoder() -> None:
    rng, nrng = random.Random(SEED), np.random.default_rng(SEED)
    seeds = _seed_images(nrng)
    outcome: Counter[str] = Counter()
    start = time.monotonic()
    for k in range(N_IMAGES):
        data = mutate(seeds[k % len(seeds)], rng)
        try:
            arr = decode_image(data, 32)
        except UnreadableImage:
            outcome["skipped"] += 1
            continue
        except Exception as err:  # pragma: no cover - this is the failure being hunted
            pytest.fail(f"input {k} (seed {SEED}): {type(err).__name__}: {err}")
        assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8, k
        outcome["decoded"] += 1
    assert outcome["decoded"] > 0 and outcome["skipped"] > 0, outcome
    assert time.monotonic() - start < 20
    print(f"\nimage fuzz: {N_IMAGES} inputs -> {dict(outcome)}")


def test_fuzz_folders_and_archives(tmp_path: Path) -> None:
    """Corrupted files in a folder are counted skips; corrupted archives load or are one DataError."""
    rng, nrng = random.Random(SEED + 1), np.random.default_rng(SEED + 1)
    seeds = _seed_images(nrng)
    folder = tmp_path / "set"
    for split in ("train", "test"):
        for c in range(2):
            d = folder / split / f"c{c}"
            d.mkdir(parents=True)
            for i in range(6):
                good = rng.random() < 0.5
                data = seeds[i % len(seeds)] if good else mutate(seeds[i % len(seeds)], rng)
                (d / f"{i}.png").write_bytes(data)
    try:
        splits = load_id_splits(str(folder), tmp_path, 32)
        assert len(splits["train"]) + len(splits["train"].skipped) == 12
    except HoodError as err:
        assert "\n" not in str(err)

    with tarfile.open(tmp_path / "whole.tar.gz", "w:gz") as tf:
        tf.add(folder, arcname="set")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path).as_posix())
    originals = {".tar.gz": (tmp_path / "whole.tar.gz").read_bytes(), ".zip": zbuf.getvalue()}

    def archive(k: int) -> Path:
        suffix = ".tar.gz" if k % 2 else ".zip"
        path = tmp_path / f"fuzz{k}{suffix}"
        path.write_bytes(mutate(originals[suffix], rng))
        return path

    feed("archive", SEED + 1, N_ARCHIVES, archive, lambda p: load_image_set(str(p), tmp_path, 32))


_VALUES = [None, True, False, 0, -1, 1, 7, 10**12, -(10**12), 0.5, -0.5, 1e308, float("nan"), float("inf"), "", "x",
           "cifar10", "svhn", "lsun-cc", "../x", "cuda:99", "auto", "onecycle", [], [1, 2], ["svhn"], [[1]], {}, {"a": 1},
           "2020-13-45", "0x10", "1e400", "~", "null", "[1,", "é", "\x00"]


def _random_config(rng: random.Random) -> str:
    base = yaml.safe_load((CONFIGS / rng.choice(sorted(p.name for p in CONFIGS.glob("*.yaml")))).read_text())
    defaults = Config().to_dict()
    for _ in range(rng.randint(1, 4)):
        section = rng.choice([*defaults, "bogus", "name"])
        if section == "name":
            base["name"] = rng.choice(_VALUES)
            continue
        keys = list(defaults.get(section, {})) + ["bogus_key"]
        base.setdefault(section, {})
        if isinstance(base[section], dict):
            base[section][rng.choice(keys)] = rng.choice(_VALUES)
        if rng.random() < 0.1:
            base[section] = rng.choice(_VALUES)
    text = yaml.safe_dump(base, sort_keys=False, allow_unicode=True)
    if rng.random() < 0.5:  # then damage the text itself
        text = mutate(text.encode(), rng).decode("utf-8", errors=rng.choice(["ignore", "replace", "surrogateescape"]))
    return text


def test_fuzz_config_parser(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    outcome: Counter[str] = Counter()
    start = time.monotonic()
    for k in range(N_CONFIGS):
        path = tmp_path / f"c{k}.yaml"
        text = _random_config(rng)
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        try:
            resolve(path, sets=[f"run.seed={rng.randint(0, 5)}"] if k % 3 == 0 else None)
            outcome["valid"] += 1
        except HoodError as err:
            msg = str(err)
            assert msg and "\n" not in msg and len(msg) < 400, f"config {k}: {msg!r}"
            outcome["refused"] += 1
        except Exception as err:  # pragma: no cover
            pytest.fail(f"config {k} (seed {SEED + 2}): {type(err).__name__}: {err}\n{text}")
    assert outcome["valid"] > 0 and outcome["refused"] > 0, outcome
    assert time.monotonic() - start < 20
    print(f"\nconfig fuzz: {N_CONFIGS} inputs -> {dict(outcome)}")


N_CHECKPOINTS = 150


def test_fuzz_checkpoint_loader(tmp_path: Path) -> None:
    """Corrupted classifier checkpoints load (damaged weights are still weights) or are one CheckpointError."""
    import torch

    from hood.models.checkpoint import classifier_state, load_classifier, save_checkpoint
    from hood.models.registry import build_classifier

    torch.manual_seed(0)
    save_checkpoint(classifier_state(build_classifier("wrn10_2", 3), "wrn10_2", ["a", "b", "c"], {}), tmp_path / "c.pt")
    original = (tmp_path / "c.pt").read_bytes()
    rng = random.Random(SEED + 3)

    def checkpoint(k: int) -> Path:
        path = tmp_path / "m.pt"
        path.write_bytes(mutate(original, rng))
        return path

    feed("checkpoint", SEED + 3, N_CHECKPOINTS, checkpoint, load_classifier)
