"""Run every CPU speed and memory benchmark (targets 1-4, 4b, 6 the Python API and 7 NAC-UE), each in its own process, and summarize.

``make bench`` calls this. Each benchmark prints its figure as a side-by-side ratio measured in one
process and exits non-zero when its target is missed; this runner prints their RESULT lines together
with the date, commit and machine (the header of a docs/speed.md entry) and exits non-zero if any
failed. Sizes are reduced where a ratio does not depend on them (the decoder epoch, the evaluate-speed
sets) so the whole run takes a few minutes on a 2-core machine. All data are synthetic, generated into
temporary folders: nothing is read from disk or the network.

    python bench/run_cpu.py               # library thread defaults
    python bench/run_cpu.py --threads 1   # both sides of every ratio on one thread (shared machines)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import git_commit, machine  # noqa: E402

BENCHES = [
    ("1 prototype search (10k x 50k x 512)", ["prototype_search.py"]),
    ("2 decoder epoch, cached features vs classifier per batch (WRN-40-2)", ["decoder_epoch.py", "--n", "1000"]),
    ("3 evaluate images/s vs bare forward (ResNet18)", ["evaluate_cost.py", "speed", "--n-test", "500", "--arch", "resnet18"]),
    # the memory figure is about streaming the data; WRN-10-2 keeps the two 22,000-image passes short
    ("4 evaluate peak memory, 10k ID test + 1 vs 6 OOD sets of 2k", ["evaluate_cost.py", "memory", "--arch", "wrn10_2"]),
    # the fits' pass over the ID training set with a skip-input decoder (both CPU profiles): maps of the fit rows only
    ("4b evaluate peak memory fitting heatmap+vim, ID train 36k vs 12k, fw_layers 4", ["evaluate_cost.py", "fit-memory", "--arch", "wrn10_2"]),
    ("6 Python API predict vs bare classifier + decoder forward (torchvision ResNet18)", ["bench_api.py"]),
    ("7 NAC-UE fit and scoring vs ViM's (WRN-40-2)", ["nac_cost.py"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="pass --threads N to every benchmark")
    ap.add_argument("--only", type=int, nargs="*", help="run only these benchmarks, by position (1-7; 5 is 4b, 6 the API, 7 NAC-UE)")
    a = ap.parse_args()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"## {stamp}, commit {git_commit()}\nmachine: {machine()}\n", flush=True)
    failed, results = [], []
    for i, (title, args) in enumerate(BENCHES, start=1):
        if a.only and i not in a.only:
            continue
        cmd = [sys.executable, str(HERE / args[0]), *args[1:]] + (["--threads", str(a.threads)] if a.threads else [])
        print(f"### {title}\n$ {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd[1:])}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(proc.stdout.rstrip())
        if proc.returncode != 0:
            failed.append(title)
            if proc.stderr.strip():
                print(proc.stderr.strip()[-2000:])
        results += [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
        print(f"({time.perf_counter() - t:.0f} s)\n", flush=True)
    print("### summary")
    print("\n".join(results))
    print(f"{len(failed)} benchmark(s) missed their target: {', '.join(failed)}" if failed else "all CPU targets met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
