"""Data-parallel training under ``torchrun``: process-group setup, rank helpers, and batch sharding.

``torchrun --nproc_per_node N -m hood pretrain ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in the environment. :func:`init_from_env`
turns that into a process group (NCCL when the command runs on CUDA, gloo on the CPU) and is a no-op
in a plain single-process run, so every helper here also works, trivially, without torchrun.

Sharding keeps single-process semantics: the training loops shuffle with a generator seeded by
``(seed, epoch)`` (identical on every rank), cut the permutation into *global* batches of
``batch_size``, and each rank takes every ``world_size``-th sample of each global batch
(:func:`shard`). That is what ``DistributedSampler`` with ``set_epoch`` does, except that the set of
samples in each optimizer step is the same as a one-process run's, so ``batch_size`` keeps meaning the
global batch and the learning rate needs no rescaling.

Only rank 0 writes files and reports progress; the other ranks' stdout is silenced (their stderr stays,
so an error on any rank is still seen).
"""

from __future__ import annotations

import atexit
import datetime
import os
import sys
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes files and shows progress."""
    return rank() == 0


def wants_cuda(device_spec: str) -> bool:
    return device_spec.startswith("cuda") or (device_spec == "auto" and torch.cuda.is_available())


def init_from_env(device_spec: str = "auto", timeout_s: float = 1800.0) -> bool:
    """Join the process group torchrun describes; idempotent, and a no-op outside torchrun.

    Returns whether this process is part of a multi-process group. The backend follows the device:
    NCCL for CUDA (GPU-to-GPU all-reduce), gloo for the CPU.
    """
    if is_distributed():
        return True
    if not launched_by_torchrun():
        return False
    cuda = wants_cuda(device_spec)
    if cuda:
        torch.cuda.set_device(local_rank())  # one GPU per process: NCCL needs it before the first collective
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    atexit.register(cleanup)  # the group lives as long as the process: several jobs may run in one
    if not is_main_process():
        # results are rendered on stdout by the CLI: once (rank 0) is enough; stderr stays for errors
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` has it, on every rank (picklable objects: paths, run info, errors)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over all ranks (in place and returned); used once per epoch for the metrics."""
    if is_distributed():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s BatchNorm running statistics.

    DDP syncs buffers at the start of each forward pass, so after an epoch's last step each rank holds
    its own statistics; evaluating (and deciding the plateau schedule) on identical models keeps the
    ranks' learning rates in lockstep.
    """
    if not is_distributed():
        return
    for buf in model.buffers():
        dist.broadcast(buf, src=src)


def shard(global_batch: torch.Tensor) -> torch.Tensor:
    """This rank's share of a global batch of indices: every ``world_size``-th, from ``rank``."""
    w = world_size()
    return global_batch if w == 1 else global_batch[rank() :: w]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to call in the training loop: DDP around ``model`` when distributed, else ``model``.

    The caller keeps the bare ``model`` for ``state_dict()``, so checkpoints carry no ``module.`` prefix
    and load in one process.
    """
    if not is_distributed():
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def main_only(reporter: Any) -> Any:
    """The reporter on rank 0; a silent one elsewhere, so progress bars and logs appear once."""
    if is_main_process():
        return reporter
    from hood.progress import NullReporter

    return NullReporter()


def cleanup() -> None:
    """Leave the process group at exit, on gloo only after every rank got here.

    Why the barrier: a rank that tears its gloo connections down while a peer still holds the group
    open can abort the peer ("terminate called without an active exception", seen under load in the
    two-process test). ``monitored_barrier`` gives up after a timeout instead of hanging when a peer
    died, so an exit after an error is not held up.
    """
    if not is_distributed():
        return
    if dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=30))
        except RuntimeError:
            pass  # a peer is gone or failed: leave anyway
    dist.destroy_process_group()
