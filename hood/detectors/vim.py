"""ViM, virtual-logit matching (Wang, Li, Feng, Zhang, "ViM: Out-Of-Distribution with Virtual-logit
Matching", CVPR 2022, https://arxiv.org/abs/2203.10807).

Features are shifted to the origin the last layer implies, ``u = -W^+ b`` (so ``W(z - u) = Wz + b``).
The principal subspace P is spanned by the D leading eigenvectors of ``(Z - u)^T (Z - u) / N`` on the
ID training set; what lies outside it is the residual. The residual norm becomes a virtual logit,
scaled to match the real logits on ID data:

    alpha = mean_train max_k f_k(z) / mean_train ||(z - u)^{P-perp}||
    s(x) = alpha ||(z - u)^{P-perp}|| - logsumexp_k f_k(z)

``dim`` (D) follows the authors' rule for the feature size N_f by default: 1000 if N_f >= 2048, 512 if
N_f >= 768, else N_f / 2 (64 for WRN-40-2, 256 for ResNet18).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.detectors.base import Detector
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


def default_dim(feature_dim: int) -> int:
    if feature_dim >= 2048:
        return 1000
    if feature_dim >= 768:
        return 512
    return feature_dim // 2


class ViM(Detector):
    """Virtual logit of the feature's residual outside a ``dim``-d principal subspace, minus the energy."""

    name = "vim"
    needs_fit = True
    needs_final_layer = True

    def __init__(self, model: nn.Module | None = None, *, dim: int | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        feature_dim = self.weight.shape[1]
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
            raise DetectorParameterError(self.name, "dim", f"must be an integer or None (the authors' rule), got {dim!r}")
        self.dim = default_dim(feature_dim) if dim is None else int(dim)
        if not 0 < self.dim < feature_dim:
            raise DetectorParameterError(self.name, "dim", f"must be in [1, {feature_dim - 1}] for {feature_dim}-d features, got {self.dim}")
        self.origin = -torch.linalg.pinv(self.weight) @ self.bias  # D
        self.residual_basis: torch.Tensor | None = None  # D x (D - dim)
        self.alpha: float | None = None

    def fit_features(self, feats: FeatureSet) -> None:
        x = feats.features.double() - self.origin
        eigvals, eigvecs = torch.linalg.eigh(x.T @ x / len(x))  # ascending
        order = eigvals.argsort(descending=True)
        self.residual_basis = eigvecs[:, order[self.dim :]].contiguous()
        residual = (x @ self.residual_basis).norm(dim=1)
        self.alpha = float(feats.logits.double().amax(dim=1).mean() / residual.mean())

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        if self.residual_basis is None or self.alpha is None:
            raise ValueError("vim is not fitted")
        virtual = self.alpha * ((feats.features.double() - self.origin) @ self.residual_basis).norm(dim=1)
        return (virtual - torch.logsumexp(feats.logits.double(), dim=1)).numpy()

    def state(self) -> dict[str, Any]:
        return {"residual_basis": self.residual_basis, "alpha": self.alpha}

    def load_state(self, state: dict[str, Any]) -> None:
        self.residual_basis, self.alpha = state["residual_basis"].double(), float(state["alpha"])
