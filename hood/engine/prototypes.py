"""Prototype search: for each outlier, the nearest ID training image predicted as the same class
(or its ``k`` nearest, whose mean image is the target with ``decoder.prototype_k`` k).

Every outlier is paired with *its own* prototype (the result is indexed by outlier), and the search is
batched matrix algebra per predicted class, chunked to bound memory, instead of one distance call per
outlier.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hood.engine.runtime import cpu_has_bf16


def _distance_blocks(q: torch.Tensor, k: torch.Tensor, chunk: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, d)`` per block of ``chunk`` rows of ``q``: ``d[i, j] = |q_i - k_j|^2 - |q_i|^2``.

    ``|q - k|^2 = |q|^2 - 2 q.k + |k|^2``; ``|q|^2`` is constant per row and is dropped, which leaves every
    row's ranking of ``k`` unchanged. Called in float64 on the CPU so near-ties resolve as an exact search would.
    """
    k_sq = (k * k).sum(1)
    for s in range(0, len(q), chunk):
        yield s, k_sq[None, :] - 2.0 * (q[s : s + chunk] @ k.T)


def _chunked_argmin(q: torch.Tensor, k: torch.Tensor, chunk: int) -> torch.Tensor:
    """Index into ``k`` of the nearest row (Euclidean) for every row of ``q``; the first on exact ties."""
    out = torch.empty(len(q), dtype=torch.long, device=q.device)
    for s, d in _distance_blocks(q, k, chunk):
        out[s : s + chunk] = d.argmin(dim=1)
    return out


# Screening (see _screened_argmin): a bf16 matrix product ranks all candidates, the best ``_SCREEN_K`` are
# re-ranked in float32, and rigorous error bounds certify the winner; rows they cannot certify (near-ties,
# near-duplicates, features with a large common offset; ~9% of rows for 512-d random features, whose
# neighbour distances concentrate) get the exact float64 search over the few rows the bounds cannot rule
# out, so the result is always the float64 search's. Why: bf16 products run 5-10x faster than float64 on
# CPUs with bf16 matrix units (AVX512-BF16, AMX); 10k x 50k x 512 drops from ~3-4 s to ~0.5 s on one core.
_SCREEN_K = 8
_SCREEN_ROWS = 1024  # queries per block: bounds the score block to 1024 x |class| and the gather to 1024 x 8 x D


def _unit_roundoff(dtype: torch.dtype) -> float:
    return {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11, torch.float32: 2.0**-24}[dtype]


def _screen_dtype() -> torch.dtype | None:
    """bf16 where the CPU multiplies it natively; else no screening (float32 would save too little)."""
    return torch.bfloat16 if cpu_has_bf16() else None


@dataclass
class _ClassKeys:
    """What the screen needs of one class's ID features, computed once per class."""

    k32: torch.Tensor  # float32 features
    centre: torch.Tensor  # their mean (1 x D): a common shift, any rounding of it is harmless
    k_low: torch.Tensor  # centred, in the screening dtype
    half_kc_sq: torch.Tensor  # |k - centre|^2 / 2
    k_sq: torch.Tensor  # |k|^2
    k_norm: torch.Tensor  # |k|
    kc_sq_max: float  # max |k - centre|^2
    c: float  # screened-product error per unit of |qc||kc| (see _screened_argmin)
    c32: float  # float32 re-rank error per unit of |k|(|k| + 2|q|)

    def floor_and_bound(self, qc_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per query, terms of a rigorous lower bound on the squared distance to any row ``j`` from its
        screened score: ``|q - k_j|^2 >= floor - 2 (s~_j + bound)``."""
        floor = qc_norm.square() * (1 - 4 * 2.0**-24) - 2.0**-20 * (1 + self.kc_sq_max)
        return floor, self.c * qc_norm * self.kc_sq_max**0.5

    @classmethod
    def of(cls, k: torch.Tensor, dtype: torch.dtype) -> _ClassKeys:
        dim = k.shape[1]
        u = _unit_roundoff(dtype)
        k32 = k.float()
        centre = k32.mean(0, keepdim=True)
        kc = k32 - centre
        kc_sq = torch.linalg.vector_norm(kc, dim=1).square()  # (einsum is ~10x slower on CPU)
        k_sq = torch.linalg.vector_norm(k32, dim=1).square()
        return cls(k32=k32, centre=centre, k_low=kc.to(dtype), half_kc_sq=0.5 * kc_sq, k_sq=k_sq, k_norm=k_sq.sqrt(),
                   kc_sq_max=float(kc_sq.max()), c=1.25 * (3 * u + 4 * u * u + dim * 2.0**-24),
                   c32=1.25 * (4 + dim) * 2.0**-24)


def _certify(keys: _ClassKeys, block: torch.Tensor, qc_norm: torch.Tensor, score: torch.Tensor,
             m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-rank the best ``m`` screened candidates of each row in float32; return the winner, whether the
    bounds prove it is the float64 search's answer (see :func:`_screened_argmin`), and an upper bound
    on its squared distance."""
    top, cand = score.topk(m, dim=1, largest=True, sorted=True)
    # |k|^2 - 2 q.k for the candidates, in float32 on the original (uncentred) inputs
    approx = keys.k_sq[cand] - 2.0 * torch.bmm(keys.k32[cand], block[:, :, None])[:, :, 0]
    k_norm = keys.k_norm[cand]
    err32 = keys.c32 * (k_norm * (k_norm + 2.0 * block.norm(dim=1, keepdim=True)))  # per candidate
    best, arg = approx.min(dim=1)
    pick = cand.gather(1, arg[:, None])[:, 0]
    best_err = err32.gather(1, arg[:, None])[:, 0]
    # the winner must be clear of every other candidate (no float64 near-tie among them) ...
    others = (approx - err32) - (best + best_err)[:, None]
    others.scatter_(1, arg[:, None], float("inf"))
    clear = others.min(dim=1).values > 0
    # ... and of every row outside the candidates: |q - k|^2 >= |qc|^2 - 2 (m-th score + bound)
    floor, bound = keys.floor_and_bound(qc_norm)
    best_d2 = best + best_err + (block * block).sum(1) * (1 + 4 * 2.0**-24)
    outside_d2 = floor - 2.0 * (top[:, -1] + bound)
    return pick, clear & ((outside_d2 > best_d2) | (m == score.shape[1])), best_d2


def _screened_argmin(q: torch.Tensor, k: torch.Tensor, chunk: int, dtype: torch.dtype) -> torch.Tensor:
    """:func:`_chunked_argmin` of ``q``, ``k`` upcast to float64, computed by screening, same result.

    1. Screen: a ``dtype`` (bf16) product of features centred on the ID mean ranks every ID row; the
       best ``_SCREEN_K`` are candidates. Centring leaves distances unchanged and shrinks the error bound,
       which scales with ``|q||k|`` (features after a ReLU share a large common component).
    2. Re-rank the candidates in float32 (exact products of the float32 inputs, up to float32 rounding).
    3. Certify each row with rigorous bounds: the float32 winner must beat every other candidate, and
       the screened bound of every row outside the candidates, by more than the rounding errors; then it
       is the float64 search's answer. Rows that fail (near-ties, duplicates, large common offsets) get
       the exact float64 search over every row whose screened lower bound does not exceed the winner's
       upper bound. Bound of ``s~ = fl(q~ . k~)`` against ``q . k``: rounding both inputs
       (``2u``), the output (``u``), float32 accumulation over D terms, each at most ``|q||k|``
       (Cauchy-Schwarz): ``c = 3u + 4u^2 + D 2^-24`` per unit of ``|q||k|``, with 25% to spare.
    """
    keys = _ClassKeys.of(k, dtype)
    n_k = len(k)
    out = torch.empty(len(q), dtype=torch.long)
    step = max(1, min(chunk, _SCREEN_ROWS))
    for s in range(0, len(q), step):
        block = q[s : s + step].float()
        qc = block - keys.centre
        qc_norm = qc.norm(dim=1)
        # score = qc.kc - |kc|^2/2 = (|qc|^2 - |q - k|^2)/2: the largest score is the nearest row.
        # Upcast, then subtract in place: a mixed bf16 - float32 broadcast is ~20x slower on CPUs.
        score = (qc.to(dtype) @ keys.k_low.T).float().sub_(keys.half_kc_sq)
        pick, certified, best_d2 = _certify(keys, block, qc_norm, score, min(_SCREEN_K, n_k))
        if not bool(certified.all()):
            # exact search over the rows whose screened lower bound on the distance does not exceed some
            # uncertified winner's upper bound: every row that can be one of their nearest, usually few
            todo = torch.nonzero(~certified).flatten()
            floor, bound = keys.floor_and_bound(qc_norm[todo])
            least = (floor - best_d2[todo]) / 2 - bound
            rows = torch.nonzero((score[todo] >= least[:, None]).any(0)).flatten()
            if len(rows) == 0:  # impossible while the bounds hold; the whole class, to be safe
                rows = torch.arange(n_k)
            pick[todo] = rows[_chunked_argmin(block[todo].double(), k[rows].double(), chunk)]
        out[s : s + step] = pick
    return out


def _chunked_topk(q: torch.Tensor, k: torch.Tensor, n: int, chunk: int) -> torch.Tensor:
    """Indices into ``k`` of the ``n`` nearest rows (Euclidean) for every row of ``q``, nearest first.

    Fewer than ``n`` rows in ``k``: the ranking repeats from the nearest, so every row has ``n`` entries
    (an average over them then weights the nearest more, which is what a short class should do).
    """
    m = min(n, len(k))
    out = torch.empty(len(q), m, dtype=torch.long, device=q.device)
    for s, d in _distance_blocks(q, k, chunk):
        out[s : s + chunk] = d.topk(m, dim=1, largest=False, sorted=True).indices
    return out if m == n else out[:, torch.arange(n, device=q.device) % m]


@torch.no_grad()
def nearest_prototypes(
    ood_features: torch.Tensor,
    ood_preds: torch.Tensor,
    id_features: torch.Tensor,
    id_preds: torch.Tensor,
    device: torch.device | None = None,
    chunk: int = 2048,
    k: int = 1,
) -> torch.Tensor:
    """For outlier ``i``, the index of the nearest ID sample with ``id_preds == ood_preds[i]``; with
    ``k > 1`` the ``k`` nearest, nearest first, as an ``n x k`` array (``decoder.prototype_k``).

    A class that no ID training image is predicted as has no prototype of its own class; its outliers
    fall back to the nearest ID sample of any class (rare: only with a degenerate classifier).
    On the CPU the search is exact in float64; with bf16 matrix units it is screened (same result).
    The ``k > 1`` search is a plain exact top-k (float64 on the CPU): it runs once per training run, and
    the screen's certificate covers only the nearest row.
    """
    device = device or ood_features.device
    screen = _screen_dtype() if device.type == "cpu" and k == 1 else None
    # screening upcasts per class and per candidate: the inputs stay in their own (smaller) dtype
    dtype = torch.float32 if device.type != "cpu" else (ood_features.dtype if screen is not None and ood_features.dtype in (torch.float32, torch.float64) else torch.float64)
    q_all = ood_features.to(device, dtype)
    k_all = id_features.to(device, dtype)
    ood_preds = ood_preds.to(device)
    id_preds = id_preds.to(device)
    result = torch.empty((len(q_all),) if k == 1 else (len(q_all), k), dtype=torch.long, device=device)
    all_ids = torch.arange(len(k_all), device=device)
    for c in torch.unique(ood_preds).tolist():
        q_mask = ood_preds == c
        k_idx = all_ids[id_preds == c]
        if len(k_idx) == 0:
            k_idx = all_ids
        q, keys = q_all[q_mask], k_all[k_idx]
        if k > 1:
            nearest = _chunked_topk(q, keys, k, chunk)
        elif screen is not None:
            nearest = _screened_argmin(q, keys, chunk, screen)
        else:
            nearest = _chunked_argmin(q, keys, chunk)
        result[q_mask] = k_idx[nearest]
    return result.cpu()
