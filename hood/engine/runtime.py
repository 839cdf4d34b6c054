"""Device choice, seeding and thread settings, shared by every command."""

from __future__ import annotations

import functools
import os
import random
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from hood.errors import DeviceError


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a one-line error.

    Under torchrun (``WORLD_SIZE`` > 1) ``auto`` and ``cuda`` mean this process's own GPU,
    ``cuda:$LOCAL_RANK``, so N processes on one machine use N different cards.
    """
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        spec = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec} was asked for, but CUDA is not available here; use --device cpu or auto")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    try:
        return torch.device(spec)
    except RuntimeError:  # torch's list of every device type it knows, for a typo such as "gpu"
        raise DeviceError(f"device {spec!r} is not one hood runs on; use cpu, cuda, cuda:N or auto") from None


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels


def configure_threads(num_threads: int | None) -> None:
    """Set the CPU thread count when asked; under torchrun split the cores among the local processes.

    N processes each using every core oversubscribe the CPU (each would spin N times too many
    OpenMP threads), which is slower than one process alone.
    """
    if num_threads:
        torch.set_num_threads(num_threads)
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


# Channels-last (NHWC) for every convolution, on both device kinds. Why: on CUDA it feeds tensor cores
# without transposes; on the CPU oneDNN's NHWC kernels measured 30-45% faster than NCHW for ResNet18 and
# WRN-40-2 inference at 32x32 and ~20% faster for the decoder's transposed convolutions (2-core AVX-512).
MEMORY_FORMAT = torch.channels_last


def classifier_train_format(device: torch.device) -> torch.memory_format:
    """Layout for *training* the classifier: NHWC on CUDA (tensor cores), NCHW on the CPU, where oneDNN's
    NHWC backward measured ~1.5x slower than NCHW (WRN, batch 64, 2-core AVX-512) although NHWC
    inference is faster there."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU, where bf16 is slower.

    No weight-cast cache: each weight is used once per forward, and a CUDA graph capture
    (engine/cuda_graph.py) must not keep casts made during the capture."""
    if inference_precision(device) == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()


def inference_precision(device: torch.device) -> str:
    """The precision :func:`autocast` runs the classifier in on ``device``: features computed at another one are
    not the features this device computes, so a saved pass is reused only at the same precision."""
    return "bfloat16" if device.type == "cuda" else "float32"


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): only then is bf16 faster there."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def training_autocast(device: torch.device) -> Any:
    """bf16 autocast for decoder training: on CUDA, and on CPUs with native bf16, where it halves the
    decoder step (0.47 -> 0.24 s per batch of 200, WRN-40-2 setting, one AVX512-BF16 core). The loss is
    computed in float32 either way; inference on the CPU stays float32 (features feed an exact search)."""
    if device.type == "cuda":
        return autocast(device)
    if device.type == "cpu" and cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock reading covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """Wall seconds of a job's consecutive phases (``mark(name)`` ends one), the device's queue included.

    Why: a command's total says little about what to speed up; the per-phase split (data, features,
    prototype search, training) is what the GPU benchmark reports.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 3)
        self._last = now


def fused_optimizer(params: Any) -> bool:
    """Whether to ask for the optimizer's fused kernel: on CUDA one kernel updates every parameter
    instead of a few per tensor, which matters when small steps are launch-bound (decoder training)."""
    return any(p.is_cuda for p in params)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict`` that keeps this process's kernel choice (``fused``/``foreach``/``capturable``).

    Why: the saved param groups carry the flags of the machine that wrote them, and a GPU run's
    ``fused=True`` must not follow its checkpoint onto a CPU resume (or the reverse).
    """
    keep = [{k: g[k] for k in ("fused", "foreach", "capturable") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, keep, strict=True):
        group.update(flags)


def seeded_indices(n: int, count: int | None, seed: int) -> torch.Tensor:
    """The sorted rows of a seeded draw of ``count`` out of ``n`` (all rows when count is None or >= n).

    One rule for every seeded subset (train-decoder's ID images, the combinations' fit rows), so a run's
    rows can be drawn again from its seed alone.
    """
    if count is None or count >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:count].sort().values

