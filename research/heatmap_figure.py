"""The heatmap figure of docs/quality.md: the first N columns of two ``hood visualize`` grids
(the ID test set's and an OOD set's), side by side.

    hood visualize -c cifar10_wrn40_2 --run RUN --ood tin32-test.tar.gz -n 8 --out-dir figs
    python research/heatmap_figure.py figs/heatmaps_id.png figs/heatmaps_tin32-test.png docs/visualize.png --columns 6
"""

from __future__ import annotations

import argparse
import sys

from PIL import Image

from hood.viz import COLOUR_BAR_WIDTH, GRID_SCALE
from hood.viz import GRID_PAD as PAD

TILE = 32 * GRID_SCALE  # a column of hood visualize's grid of 32x32 images


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("left")
    parser.add_argument("right")
    parser.add_argument("out")
    parser.add_argument("--columns", type=int, default=6, help="columns taken from each grid")
    args = parser.parse_args(argv)
    grids = [Image.open(p).convert("RGB") for p in (args.left, args.right)]
    width = PAD + args.columns * (TILE + PAD)
    if any(g.width < width for g in grids):
        sys.exit(f"the grids hold fewer than {args.columns} columns; draw more with hood visualize -n")
    parts = [g.crop((0, 0, width, g.height)) for g in grids]
    # both grids are drawn on visualize's one scale: the right one's colour bar stands for the two
    bar = grids[1].crop((grids[1].width - COLOUR_BAR_WIDTH, 0, grids[1].width, grids[1].height))
    out = Image.new("RGB", (2 * width + 4 * PAD + bar.width, max(p.height for p in parts)), (255, 255, 255))
    out.paste(parts[0], (0, 0))
    out.paste(parts[1], (width + 4 * PAD, 0))
    out.paste(bar, (2 * width + 4 * PAD, 0))
    out.save(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
