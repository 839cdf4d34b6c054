"""Mean and spread over seeds of ``results.json`` files: FPR95 / AUROC (%) per OOD set and method.

    python bench/quality_table.py runs/quality/*-seed*/results.json
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(paths: list[str]) -> None:
    runs = [json.loads(open(p).read()) for p in paths]
    if not runs:
        sys.exit("no results.json given")
    methods = list(runs[0]["results"])
    sets = list(runs[0]["results"][methods[0]])
    print(f"{len(runs)} seed(s); ID {runs[0]['id_dataset']} n={runs[0]['n_id']}; FPR95 / AUROC in %, mean ± std over seeds;"
          f" {runs[0].get('caption', '')}")
    print(f"{'method':12s}" + "".join(f"{s:>24s}" for s in sets))
    for m in methods:
        cells = []
        for s in sets:
            f = np.array([r["results"][m][s]["fpr95"] for r in runs]) * 100
            a = np.array([r["results"][m][s]["auroc"] for r in runs]) * 100
            cells.append(f"{f.mean():5.1f}±{f.std():3.1f} / {a.mean():5.1f}±{a.std():3.1f}")
        print(f"{m:12s}" + "".join(f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main(sys.argv[1:])
