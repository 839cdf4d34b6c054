"""Shared helpers for the benchmarks: timing, the result line, the machine, synthetic data.

Every benchmark measures both sides in one process, interleaved and repeated, and reports a ratio: the
machines these run on are shared and noisy, so absolute seconds mean little while a same-process ratio
holds. Nothing here reads fixtures from disk or the network; data are generated into a temporary folder.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def pin_threads(argv: list[str]) -> int | None:
    """``--threads N`` (before torch/numpy are imported): every BLAS and OpenMP pool gets N threads.

    On a shared machine a busy neighbour core stalls every parallel region of a 2-thread pool (each
    waits for the descheduled thread); pinning both sides of a comparison to the same count keeps the
    ratio fair and far less noisy. Returns N, or None when not given.
    """
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[var] = n
            return int(n)
    return None


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Minimum wall time of each function over ``repeats`` interleaved rounds (min: least disturbed run)."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            best[k] = min(best[k], timed(fn))
    return best


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} with {torch.get_num_threads()} threads, {gpu}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_path() -> str:
    """Which of hood's CPU paths runs here: ``bf16`` where the CPU multiplies bf16 natively (AVX512-BF16 or AMX:
    the prototype screen and the decoder steps use it), else ``float32`` (an AVX2 CPU: exact float search, float32
    decoder steps)."""
    from hood.engine.runtime import cpu_has_bf16

    return "bf16" if cpu_has_bf16() else "float32"


def path_target(targets: dict[str, float], given: float | None) -> tuple[float, str]:
    """The target of the path that runs (``--target`` overrides it) and the line that says which path ran."""
    path = cpu_path()
    target = targets[path] if given is None else given
    others = ", ".join(f"{p} >= {t:g}x" for p, t in targets.items() if p != path)
    return target, f"path: {path} (target >= {target:g}x; {others} on the other path)"


def report(name: str, ratio: float, target: float, detail: str, higher_is_better: bool = True) -> int:
    """Print the figure as ``name: ratio (target)`` and return the exit code (1 = target missed)."""
    ok = ratio >= target if higher_is_better else ratio <= target
    sign = ">=" if higher_is_better else "<="
    print(f"RESULT {name}: {ratio:.2f}x (target {sign} {target:g}x) {'PASS' if ok else 'FAIL'}  [{detail}]")
    sys.stdout.flush()
    return 0 if ok else 1


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``n x size x size x 3`` uint8 noise with a smooth component (so PNG/JPEG sizes are realistic)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, 1, 3), dtype=np.int16)
    noise = rng.integers(-40, 41, (n, size, size, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_archive(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> Path:
    """A ``.tar`` of ``<split>/<class>/<i>.png`` (labels given) or ``<i>.png`` (flat) images."""
    import io

    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for split, (images, labels) in splits.items():
            for i, img in enumerate(images):
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG", compress_level=1)  # fast to write; decoding is what is timed
                data = buf.getvalue()
                parts = [p for p in (split, None if labels is None else f"c{int(labels[i])}") if p]
                info = tarfile.TarInfo("/".join([*parts, f"{i:05d}.png"]))
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def make_id_archive(path: Path, n_train: int, n_test: int, classes: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    # every class in both splits (the test split's classes must be among the training classes)
    return write_archive(path, {
        "train": (random_images(n_train, seed=seed), rng.permutation(np.arange(n_train) % classes)),
        "test": (random_images(n_test, seed=seed + 1), rng.permutation(np.arange(n_test) % classes)),
    })


def make_flat_archive(path: Path, n: int, seed: int) -> Path:
    return write_archive(path, {"": (random_images(n, seed=seed), None)})


def make_decoder_run(folder: Path, arch: str, num_classes: int, classes: list[str], fw_layers: int = 1) -> Path:
    """A complete train-decoder run with random-init classifier and decoder, for timing evaluate;
    ``fw_layers`` > 1: a decoder that reads the classifier's stage maps (what sets evaluate's memory)."""
    import torch

    from hood.models.checkpoint import classifier_state, load_classifier, save_checkpoint, save_decoder
    from hood.models.decoder import HeatmapDecoder, decoder_spec_for
    from hood.models.registry import build_classifier

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_classifier(arch, num_classes)
    clf_path = folder / "classifier.pt"
    save_checkpoint(classifier_state(model, arch, classes, {}), clf_path)
    clf = load_classifier(clf_path)
    decoder = HeatmapDecoder(decoder_spec_for(arch, model.feature_dim, num_classes, fw_layers=fw_layers))
    run = folder / "decoder-run"
    run.mkdir(exist_ok=True)
    save_decoder(decoder, clf, run / "decoder.pt", {})
    import json

    from hood.runs import RUN_FORMAT

    (run / "run.json").write_text(json.dumps({
        "format": RUN_FORMAT, "command": "train-decoder", "status": "complete", "config_name": "bench", "classifier": str(clf_path),
    }))
    return run
