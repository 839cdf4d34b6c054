"""The cost of NAC-UE, the one baseline that differentiates through the classifier at every image, against ViM's.

Both sides fit and score with the same WRN-40-2 (10 classes, 32x32, random weights: they do not change the time)
on the same synthetic images, in one process, interleaved, fastest round of each:

- ViM: features of ``--n-train`` ID training images, its fit (an eigendecomposition), then features and scores
  of ``--n`` test images: what ``hood evaluate --methods vim`` computes;
- NAC: its fit on a draw of 1,000 of the same training images (one forward and one backward pass each), then
  one forward and one backward pass per test image.

Targets: scoring costs NAC at most 4x ViM's per image (a backward pass is about twice a forward one), and its
whole fit and scoring stay below ViM's fit on a CIFAR-sized training set (``--n-train`` 50,000 by the
default scale factor, measured at 5,000 and scaled linearly, which a feature pass is). Memory: NAC streams its
images in batches of at most 250, so the peak RSS of scoring 4x more images grows by at most 10% (each side in
a fresh child process).

    python bench/nac_cost.py [--n 1000] [--n-train 5000] [--n-fit 1000] [--arch wrn40_2] [--rounds 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from common import best_of, machine, pin_threads, report

pin_threads(sys.argv)

import torch  # noqa: E402

from hood.detectors.nac import NAC  # noqa: E402
from hood.detectors.vim import ViM  # noqa: E402
from hood.engine.features import extract_features  # noqa: E402
from hood.models.registry import build_classifier  # noqa: E402

CIFAR_TRAIN = 50_000


def images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def peak_child(arch: str, n_fit: int, n: int) -> float:
    """Peak RSS (GB) of a fresh process that fits NAC and scores ``n`` images."""
    code = (f"import sys, resource; sys.path.insert(0, {os.path.dirname(__file__)!r}); from nac_cost import images, "
            f"model_and_nac; m, d = model_and_nac({arch!r}, {n_fit}); d.fit_on_images(images({n_fit}, 1), None); "
            f"d.score_images(images({n}, 2)); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def model_and_nac(arch: str, n_fit: int) -> tuple[torch.nn.Module, NAC]:
    torch.manual_seed(0)
    model = build_classifier(arch, 10).eval()
    return model, NAC(model, fit_images=n_fit, device="cpu")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="test images scored per round")
    ap.add_argument("--n-train", type=int, default=5000, help="ID training images ViM fits on (scaled to 50,000)")
    ap.add_argument("--n-fit", type=int, default=1000, help="images NAC fits on (its default draw)")
    ap.add_argument("--arch", default="wrn40_2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    model, nac = model_and_nac(a.arch, a.n_fit)
    vim = ViM(model, device="cpu")
    train, test = images(a.n_train, 1), images(a.n, 2)
    cpu = torch.device("cpu")

    def vim_fit() -> None:
        vim.fit_features(extract_features(model, train, cpu))

    def vim_score() -> None:
        vim.score_features(extract_features(model, test, cpu))

    best = best_of({"vim_fit": vim_fit, "vim_score": vim_score, "nac_fit": lambda: nac.fit_on_images(train, None),
                    "nac_score": lambda: nac.score_images(test)}, a.rounds)
    per_image = best["nac_score"] / best["vim_score"]
    vim_fit_cifar = best["vim_fit"] * CIFAR_TRAIN / a.n_train
    nac_total = best["nac_fit"] + best["nac_score"]
    small, large = peak_child(a.arch, a.n_fit, a.n), peak_child(a.arch, a.n_fit, 4 * a.n)
    print(machine())
    print(json.dumps({k: round(v, 2) for k, v in best.items()} | {"vim_fit_at_50k": round(vim_fit_cifar, 1),
                                                                   "peak_gb": [round(small, 2), round(large, 2)]}))
    fails = report("NAC scoring time per image / ViM's", per_image, 4.0,
                   f"{a.n} images: NAC {best['nac_score']:.1f} s, ViM {best['vim_score']:.1f} s", higher_is_better=False)
    fails |= report("NAC fit + scoring / ViM's fit at 50k training images", nac_total / vim_fit_cifar, 1.0,
                    f"NAC {nac_total:.1f} s, ViM fit {vim_fit_cifar:.1f} s (from {a.n_train} images)", higher_is_better=False)
    fails |= report("NAC peak RSS, 4x the images scored", large / small, 1.10,
                    f"{a.n}: {small:.2f} GB, {4 * a.n}: {large:.2f} GB", higher_is_better=False)
    return fails


if __name__ == "__main__":
    sys.exit(main())
