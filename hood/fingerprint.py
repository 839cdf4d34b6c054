"""Fingerprints: short hashes that tie what hood stores (a cached fit, a threshold, a decoder) to the exact
tensors it was made from, so nothing is reused beside a model it was not made with.

One helper for every kind: a classifier (hashed at float16, so the authors' half-precision files and the
same weights loaded as float32 agree), a decoder (hashed exactly), or any named tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def fingerprint(tensors: Iterable[tuple[str, torch.Tensor]], half: bool = False) -> str:
    """16 hex digits over the names, dtypes, shapes and values of ``tensors``; ``half`` hashes floating-point
    values at float16, so a change of storage precision alone keeps the fingerprint."""
    h = hashlib.sha256()
    for name, t in sorted(tensors, key=lambda item: item[0]):
        t = t.detach().to("cpu")
        if half and t.is_floating_point():
            t = t.to(torch.float16)
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def module_fingerprint(module: torch.nn.Module, half: bool = False) -> str:
    """The fingerprint of every parameter and buffer of ``module`` (non-persistent buffers too: a wrapper's
    input normalization changes what the model computes)."""
    return fingerprint([*module.named_parameters(), *module.named_buffers()], half)


def row_fingerprints(t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """One 64-bit hash per row of ``t`` (int64): a saved row is told from another image at the same index (a
    data set that changed, another image size) without storing the images. ``rows``: of those rows alone, in that
    order, read one at a time: ``t[rows]`` would copy them first, as much memory again as the images hashed."""
    t = t.detach().to("cpu")
    picked = range(len(t)) if rows is None else rows.tolist()
    digests = [int.from_bytes(hashlib.blake2b(t[i].contiguous().numpy().tobytes(), digest_size=8).digest(), "little",
                              signed=True) for i in picked]
    return torch.tensor(digests, dtype=torch.int64)
