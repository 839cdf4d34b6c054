"""Prototype search: for each outlier, the nearest ID training image predicted as the same class.

METHOD.md defects 1 and 4: every outlier is paired with *its own* prototype (the result is indexed by
outlier), and the search is batched matrix algebra per predicted class, chunked to bound memory, instead
of one distance call per outlier.
"""

from __future__ import annotations

import torch


def _chunked_argmin(q: torch.Tensor, k: torch.Tensor, chunk: int) -> torch.Tensor:
    """Index into ``k`` of the nearest row (Euclidean) for every row of ``q``.

    ``|q - k|^2 = |q|^2 - 2 q.k + |k|^2``; ``|q|^2`` is constant per row and is dropped. Computed in
    float64 on the CPU so near-ties resolve as an exact search would.
    """
    k_sq = (k * k).sum(1)
    out = torch.empty(len(q), dtype=torch.long, device=q.device)
    for s in range(0, len(q), chunk):
        block = q[s : s + chunk]
        d = k_sq[None, :] - 2.0 * (block @ k.T)
        out[s : s + chunk] = d.argmin(dim=1)
    return out


@torch.no_grad()
def nearest_prototypes(
    ood_features: torch.Tensor,
    ood_preds: torch.Tensor,
    id_features: torch.Tensor,
    id_preds: torch.Tensor,
    device: torch.device | None = None,
    chunk: int = 2048,
) -> torch.Tensor:
    """For outlier ``i``, the index of the nearest ID sample with ``id_preds == ood_preds[i]``.

    A class that no ID training image is predicted as has no prototype of its own class; its outliers
    fall back to the nearest ID sample of any class (rare: only with a degenerate classifier).
    """
    device = device or ood_features.device
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    q_all = ood_features.to(device, dtype)
    k_all = id_features.to(device, dtype)
    ood_preds = ood_preds.to(device)
    id_preds = id_preds.to(device)
    result = torch.empty(len(q_all), dtype=torch.long, device=device)
    all_ids = torch.arange(len(k_all), device=device)
    for c in torch.unique(ood_preds).tolist():
        q_mask = ood_preds == c
        k_idx = all_ids[id_preds == c]
        if len(k_idx) == 0:
            k_idx = all_ids
        nearest = _chunked_argmin(q_all[q_mask], k_all[k_idx], chunk)
        result[q_mask] = k_idx[nearest]
    return result.cpu()
