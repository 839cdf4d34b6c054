"""Targets 3 and 4: ``hood evaluate`` throughput against the bare classifier, and its peak memory.

``speed``: the evaluate job (:func:`hood.jobs.evaluate.evaluate`, heatmap method, as ``hood evaluate``
runs it) on a synthetic ID archive and OOD archives generated into a temporary folder, against a plain
inference loop (``model.eval()``, ``torch.inference_mode()``, batches of 500, NCHW) over the same, already
decoded images. Images/s of both; evaluate must reach >= 0.8x, i.e. scoring, data and bookkeeping cost
<= 20%. Timed with a warm decode cache (the second evaluate of the same sets, as in daily use); the
first, cold run (which also decodes the PNGs) is printed too.

``memory``: peak RSS of ``hood evaluate`` with a CIFAR-10-sized ID test split (10,000 images) plus 1 or 6
OOD sets of 2,000, each in a fresh child process with a fresh (cold) decode cache; the child's
``ru_maxrss`` comes from ``os.wait4``. Peak <= 3 GB, and the 6-set peak must not exceed the 1-set peak
by more than 10%: OOD sets are streamed one at a time. The two sides alternate for ``--rounds`` rounds and
the lowest peak of each counts, like the fastest time of a speed ratio: the same command's peak varies by
up to 0.3 GB from one run to the next on this machine (measured 0.97-1.31 GB for either side), which a
single pair of runs mistakes for growth.

``fit-memory``: peak RSS of ``hood evaluate --methods heatmap+vim`` with a decoder that reads the
classifier's three stage maps (``fw_layers`` 4, as both CPU profiles), fitting afresh on an ID training
set of 12,000 against one of 36,000 images (the same 1,000 ID test and 200 OOD images). The fit runs the
classifier over every training image (ViM reads all their features) but the decoder over at most 10,000
of them, so only those rows' maps (~115 KB each for WRN) may be kept: the peak must not grow by more than
15% with three times the training set. Before ``map_rows`` the pass kept every row's maps and concatenated
them (twice their size at the peak): on the CIFAR-10 CPU profiles 49,000 rows, 12.9 GB for WRN-40-2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, make_decoder_run, make_flat_archive, make_id_archive, pin_threads, report  # noqa: E402

pin_threads(sys.argv)
import torch  # noqa: E402


def setup(root: Path, arch: str, n_train: int, n_test: int, n_ood_sets: int, ood_size: int,
          fw_layers: int = 1) -> tuple[Path, list[Path], Path]:
    id_path = make_id_archive(root / "id.tar", n_train, n_test, classes=10)
    oods = [make_flat_archive(root / f"ood{i}.tar", ood_size, seed=100 + i) for i in range(n_ood_sets)]
    run = make_decoder_run(root / "models", arch, 10, [f"c{i}" for i in range(10)], fw_layers)
    return id_path, oods, run


def job_config(id_path: Path, oods: list[Path], run: Path, arch: str, ood_count: int | None = None,
               methods: tuple[str, ...] = ("heatmap",)):  # noqa: ANN201
    from hood.config import resolve

    named = {
        "data.id": str(id_path), "data.ood": [str(p) for p in oods], "model.arch": arch,
        "model.classifier": str(run.parent / "classifier.pt"), "evaluate.methods": list(methods),
        "run.device": "cpu", "run.runs_dir": str(run.parent / "runs"), "data.ood_count": ood_count,
    }
    return resolve(None, named)


def bare_forward(model: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> None:
    """What a user would write: eval mode, inference mode, normalized NCHW batches, logits out."""
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            model(images[s : s + batch].float().div(127.5).sub(1.0))


def speed(a: argparse.Namespace) -> int:
    from hood.data.draw import draw
    from hood.data.sources import load_id_splits, load_image_set
    from hood.jobs.evaluate import evaluate
    from hood.models.checkpoint import load_classifier

    with tempfile.TemporaryDirectory(prefix="hood-bench-") as tmp:
        root = Path(tmp)
        os.environ["HOOD_CACHE"] = str(root / "cache")
        id_path, oods, run = setup(root, a.arch, a.n_train, a.n_test, a.ood_sets, a.ood_size)
        cfg = job_config(id_path, oods, run, a.arch)
        t = time.perf_counter()
        evaluate(cfg, str(run))  # cold: decodes the archives into the cache
        cold_s = time.perf_counter() - t
        # the same images for the bare loop (as evaluate reads them: ID test + len/5 of each OOD set, drawn)
        test = load_id_splits(str(id_path), root, 32)["test"].images
        per_set = max(1, len(test) // 5)
        images = torch.cat([test] + [draw(load_image_set(str(p), root, 32), per_set, cfg.data.ood_draw, cfg.data.ood_draw_seed)[0].images
                                     for p in oods])
        model = load_classifier(run.parent / "classifier.pt").model
        model_cl = load_classifier(run.parent / "classifier.pt").model.to(memory_format=torch.channels_last)
        eval_s, bare_s, bare_cl_s = float("inf"), float("inf"), float("inf")
        for _ in range(a.rounds):  # interleaved, fastest of each
            cfg = job_config(id_path, oods, run, a.arch)
            t = time.perf_counter()
            evaluate(cfg, str(run))
            eval_s = min(eval_s, time.perf_counter() - t)
            t = time.perf_counter()
            bare_forward(model, images)
            bare_s = min(bare_s, time.perf_counter() - t)
            t = time.perf_counter()
            bare_forward(model_cl, images.contiguous(memory_format=torch.channels_last))
            bare_cl_s = min(bare_cl_s, time.perf_counter() - t)
    n = len(images)
    print(f"machine: {machine()}")
    print(f"{a.arch}, {n} images ({a.n_test} ID test + {a.ood_sets} OOD sets x {per_set}), ID train {a.n_train}")
    print(f"hood evaluate (warm cache): {eval_s:.2f} s = {n / eval_s:.0f} images/s; cold (decoding PNGs): {cold_s:.2f} s = {n / cold_s:.0f} images/s")
    print(f"bare classifier forward: {bare_s:.2f} s = {n / bare_s:.0f} images/s (NCHW, the plain loop: the target's baseline)")
    print(f"bare forward with hood's channels-last: {bare_cl_s:.2f} s = {n / bare_cl_s:.0f} images/s "
          f"(evaluate reaches {bare_cl_s / eval_s:.2f}x of it: the cost of data, scoring and bookkeeping alone)")
    return report("evaluate throughput / bare forward", bare_s / eval_s, a.target_speed, f"{n / eval_s:.0f} vs {n / bare_s:.0f} images/s")


def child(a: argparse.Namespace) -> int:
    """One evaluate in this process (run by ``memory`` and ``fit-memory``); prints nothing but a JSON line."""
    import shutil

    from hood.jobs.evaluate import evaluate

    root = Path(a.root)
    oods = sorted(root.glob("ood*.tar"))[: a.ood_sets]
    run = root / "models" / "decoder-run"
    shutil.rmtree(run / "fits", ignore_errors=True)  # every child fits afresh: the fit is what fit-memory measures
    cfg = job_config(root / (a.id or "id.tar"), oods, run, a.arch, methods=tuple(a.methods.split(",")))
    t = time.perf_counter()
    res = evaluate(cfg, str(run)).results
    print(json.dumps({"seconds": time.perf_counter() - t, "n_id": res["n_id"], "sets": len(oods)}))
    return 0


def child_peak(a: argparse.Namespace, root: Path, cache: str, *args: str) -> tuple[float, dict] | None:
    """Run ``child`` with ``args`` in a fresh process and a fresh (cold) decode cache: (peak RSS in GB, its
    JSON line), or None after printing why it failed."""
    env = {**os.environ, "HOOD_CACHE": str(root / cache)}  # cold cache: the decode path is the peak
    cmd = [sys.executable, __file__, "child", "--root", str(root), "--arch", a.arch, *args]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"FAIL: the evaluate child ({' '.join(args)}) exited {os.waitstatus_to_exitcode(status)}")
        return None
    return usage.ru_maxrss / 1024**2, json.loads(out.strip().splitlines()[-1])  # kilobytes on Linux -> GB


def lowest_peaks(a: argparse.Namespace, root: Path, sides: dict[int, tuple[str, list[str]]]) -> dict[int, float] | None:
    """Each side's child (``sides``: key -> its label and ``child`` arguments), alternating for ``--rounds``
    rounds: the lowest peak per key, like the fastest time of a speed ratio; None when a child failed."""
    peaks: dict[int, float] = {}
    for r in range(a.rounds):
        for key, (label, args) in sides.items():
            got = child_peak(a, root, f"cache{key}-{r}", *args)
            if got is None:
                return None
            peak, info = got
            peaks[key] = min(peaks.get(key, peak), peak)
            print(f"round {r + 1}, {label}: peak RSS {peak:.2f} GB, evaluate {info['seconds']:.1f} s, n_id {info['n_id']}")
    return peaks


def memory(a: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="hood-bench-") as tmp:
        root = Path(tmp)
        setup(root, a.arch, a.n_train, a.n_test, 6, a.ood_size)
        peaks = lowest_peaks(a, root, {k: (f"{k} OOD set(s)", ["--ood-sets", str(k)]) for k in (1, 6)})
        if peaks is None:
            return 1
    print(f"machine: {machine()}; {a.arch}, ID test {a.n_test}, ID train {a.n_train}, OOD sets of {a.ood_size}; "
          f"lowest peak of {a.rounds} round(s) per side")
    growth = peaks[6] / peaks[1]
    code = report("evaluate peak RSS, 6 OOD sets / 1 set", growth, 1.10, f"{peaks[1]:.2f} GB -> {peaks[6]:.2f} GB", higher_is_better=False)
    print(f"RESULT evaluate peak RSS: {peaks[6]:.2f} GB (target <= 3 GB) {'PASS' if peaks[6] <= 3.0 else 'FAIL'}")
    return code or int(peaks[6] > 3.0)


def fit_memory(a: argparse.Namespace) -> int:
    small, large = a.n_train, 3 * a.n_train
    with tempfile.TemporaryDirectory(prefix="hood-bench-") as tmp:
        root = Path(tmp)
        setup(root, a.arch, small, a.n_test, 1, a.ood_size, fw_layers=4)
        make_id_archive(root / "id-large.tar", large, a.n_test, classes=10)  # the same seeds: the same ID test images
        sides = {n: (f"ID train {n} (fit included)", ["--ood-sets", "1", "--methods", "heatmap+vim", "--id", archive])
                 for n, archive in ((small, "id.tar"), (large, "id-large.tar"))}
        peaks = lowest_peaks(a, root, sides)
        if peaks is None:
            return 1
    print(f"machine: {machine()}; {a.arch}, decoder fw_layers 4, heatmap+vim fitted afresh, ID test {a.n_test}, one OOD "
          f"set of {a.ood_size}; lowest peak of {a.rounds} round(s) per side")
    return report(f"evaluate peak RSS, ID train {large} / {small}", peaks[large] / peaks[small], a.target_growth,
                  f"{peaks[small]:.2f} GB -> {peaks[large]:.2f} GB", higher_is_better=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["speed", "memory", "fit-memory", "child"])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--n-train", type=int, default=None, help="ID training images (speed, memory: 1000; fit-memory: 12000 against 3x as many)")
    ap.add_argument("--n-test", type=int, default=None, help="ID test images (speed: 1500, memory: 10000)")
    ap.add_argument("--ood-sets", type=int, default=2)
    ap.add_argument("--ood-size", type=int, default=None, help="images per OOD set (speed: n_test/5, memory: 2000)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--target-speed", type=float, default=0.8)
    ap.add_argument("--target-growth", type=float, default=1.15, help="fit-memory: the most the peak may grow with 3x the ID training set")
    ap.add_argument("--root", default=None)
    ap.add_argument("--id", default=None, help="child: the ID archive in --root (id.tar)")
    ap.add_argument("--methods", default="heatmap", help="child: the methods evaluated")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.mode in ("speed", "memory"):
        a.n_train = a.n_train or 1000
    if a.mode == "speed":
        a.n_test = a.n_test or 1500
        a.ood_size = a.ood_size or a.n_test // 5
        return speed(a)
    if a.mode == "memory":
        a.n_test = a.n_test or 10_000
        a.ood_size = a.ood_size or 2000
        return memory(a)
    if a.mode == "fit-memory":
        a.n_train, a.n_test, a.ood_size = a.n_train or 12_000, a.n_test or 1000, a.ood_size or 200
        return fit_memory(a)
    return child(a)


if __name__ == "__main__":
    sys.exit(main())
