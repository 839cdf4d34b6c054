"""Pictures of heatmaps: for each image its input, its heatmap and the heatmap over the input.

Heatmaps use a perceptual colormap (inferno) of the magnitude ``max_c |h|`` on one scale per figure, [0, ``vmax``]
(by default 1, the decoder's tanh range), never one per image: per-image scaling makes a dark ID heatmap look as
bright as an OOD one. Every figure carries its colour bar with the scale written on it. Images are upscaled with
nearest neighbour so 32x32 inputs stay legible.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def _colormap(name: str = "inferno") -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def heat_magnitude(h: torch.Tensor) -> torch.Tensor:
    """``N x 3 x H x W`` heatmaps to ``N x H x W`` magnitudes in [0, 1]."""
    return h.abs().amax(dim=1).clamp(0, 1)


def colorize(mag: np.ndarray, cmap: np.ndarray, vmax: float = 1.0) -> np.ndarray:
    """Magnitudes on [0, ``vmax``] (above it: the top colour) to RGB."""
    return cmap[(np.clip(mag / vmax, 0, 1) * 255).round().astype(np.uint8)]


def overlay(image: np.ndarray, mag: np.ndarray, cmap: np.ndarray, vmax: float = 1.0) -> np.ndarray:
    """Blend the colored heatmap over a greyed input, opacity following the magnitude on the figure's scale."""
    grey = image.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.6
    alpha = np.clip(mag / vmax * 1.5, 0, 1)[..., None]
    return (grey * (1 - alpha) + colorize(mag, cmap, vmax) * alpha).astype(np.uint8)


def figure_scale(mags: list[np.ndarray], quantile: float = 0.999) -> float:
    """One colour scale for every heatmap of a figure: a high quantile of all their magnitudes (a few saturated
    pixels do not darken the rest), never below 0.05 (an all-dark figure stays dark), never above 1."""
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in mags])
    return float(np.clip(np.quantile(values, quantile) if values.size else 1.0, 0.05, 1.0))


COLOUR_BAR_WIDTH = 46  # pixels a colour bar with its labels adds at the right of a figure


def colour_bar(height: int, vmax: float, width: int = 12) -> Image.Image:
    """A vertical colour bar, top = ``vmax``, with its two ends labelled: the scale the figure's heatmaps use."""
    cmap = _colormap()
    ramp = np.linspace(1, 0, max(height - 24, 8))[:, None].repeat(width, axis=1)
    bar = Image.fromarray(colorize(ramp, cmap))
    out = Image.new("RGB", (COLOUR_BAR_WIDTH, height), (255, 255, 255))
    out.paste(bar, (0, 12))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    draw.text((width + 3, 8), f"{vmax:.2f}", fill=(0, 0, 0), font=font)
    draw.text((width + 3, 12 + bar.height - 8), "0", fill=(0, 0, 0), font=font)
    return out


GRID_SCALE, GRID_PAD = 4, 6  # heatmap_grid draws each image this many times its size, this many pixels apart


def heatmap_grid(
    images: torch.Tensor, heatmaps: torch.Tensor, scores: np.ndarray, title: str, scale: int = GRID_SCALE, vmax: float = 1.0
) -> Image.Image:
    """One column per image: input / heatmap / overlay, the score under it, the title on top, the colour bar of
    the scale [0, ``vmax``] at the right (pass the same ``vmax`` to grids that are compared)."""
    mags = heat_magnitude(heatmaps).numpy()
    return _tile_grid(images, mags, [f"{s:.4f}" for s in scores], title, ["input", "heatmap", "overlay"], None, scale, vmax)


def _tile_grid(images: torch.Tensor, mags: np.ndarray, labels: list[str], title: str, kinds: list[str], masks: np.ndarray | None,
               scale: int, vmax: float, smoothed: np.ndarray | None = None) -> Image.Image:
    """One column per image, one row per kind of tile (input, mask, heatmap, smoothed, overlay), a label under each
    column; the overlay shows ``smoothed`` where it is given, else the heatmap."""
    cmap = _colormap()
    n, _, h, w = images.shape
    tile_w, tile_h = w * scale, h * scale
    pad, text_h, title_h = GRID_PAD, 16, 22
    body_h = len(kinds) * (tile_h + pad)
    bar = colour_bar(body_h, vmax)
    width = n * (tile_w + pad) + pad + bar.width
    height = title_h + body_h + text_h + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((pad, 4), f"{title}; colour scale 0 to {vmax:.2f}, one for the figure", fill=(0, 0, 0), font=font)
    for i in range(n):
        img = images[i].permute(1, 2, 0).numpy()
        shown = mags[i] if smoothed is None else smoothed[i]
        tiles = {"input": img, "heatmap": colorize(mags[i], cmap, vmax), "overlay": overlay(img.astype(np.float32), shown, cmap, vmax)}
        if smoothed is not None:
            tiles["smoothed"] = colorize(smoothed[i], cmap, vmax)
        if masks is not None:
            tiles["mask"] = (masks[i].astype(np.uint8) * 255)[..., None].repeat(3, axis=2)
        x = pad + i * (tile_w + pad)
        for r, kind in enumerate(kinds):
            tile = Image.fromarray(tiles[kind]).resize((tile_w, tile_h), Image.NEAREST)
            canvas.paste(tile, (x, title_h + r * (tile_h + pad)))
        draw.text((x, title_h + body_h), labels[i], fill=(0, 0, 0), font=font)
    canvas.paste(bar, (width - bar.width, title_h))
    return canvas


LOCALIZATION_SETS_PER_ROW = 2  # sets side by side: a figure of four sets stays about as wide as it is tall


def localization_figure(sets: dict[str, dict[str, np.ndarray]], vmax: float | None = None, scale: int = GRID_SCALE) -> Image.Image:
    """Per set, its composites in columns: the composite, the pasted region (white), the heatmap as drawn, the
    smoothed map localization reads (``smoothed``) and its overlay, all on one colour scale (``vmax``; default
    :func:`figure_scale` of every map shown); :data:`LOCALIZATION_SETS_PER_ROW` sets to a row."""
    vmax = figure_scale([a for s in sets.values() for a in (s["heatmaps"], s["smoothed"])]) if vmax is None else vmax
    kinds = ["input", "mask", "heatmap", "smoothed", "overlay"]
    grids = [_tile_grid(torch.from_numpy(s["images"]), s["heatmaps"], [f"{m.mean():.0%} pasted" for m in s["masks"]],
                        f"ID image + region of {name}: composite / mask / heatmap / smoothed / overlay",
                        kinds, s["masks"], scale, vmax, s["smoothed"]) for name, s in sets.items()]
    rows = [grids[i : i + LOCALIZATION_SETS_PER_ROW] for i in range(0, len(grids), LOCALIZATION_SETS_PER_ROW)]
    out = Image.new("RGB", (max(sum(g.width for g in r) for r in rows), sum(max(g.height for g in r) for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        x = 0
        for g in r:
            out.paste(g, (x, y))
            x += g.width
        y += max(g.height for g in r)
    return out


# --- score figures (matplotlib, drawn on an Agg canvas: no display, no global pyplot state) ---------------


def _figure(n_panels: int, panel_w: float = 4.0, panel_h: float = 3.2):  # noqa: ANN202 - a matplotlib Figure
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    rows = (n_panels + cols - 1) // cols
    fig = Figure(figsize=(panel_w * cols, panel_h * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _png(fig) -> bytes:  # noqa: ANN001 - a matplotlib Figure
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def tpr95_threshold(id_scores: np.ndarray, ood_scores: np.ndarray, convention: str) -> float:
    """The score cut of the FPR95 reading: keeps 95% of ID (``id``) or catches 95% of OOD (``ood``)."""
    if convention == "ood":
        return float(np.quantile(ood_scores, 0.05, method="lower"))
    return float(np.quantile(id_scores, 0.95, method="higher"))


def score_histograms(id_scores: np.ndarray, ood: dict[str, np.ndarray], method: str, convention: str = "id") -> bytes:
    """One panel per OOD set: ID and OOD score histograms on shared bins, the 95%-TPR cut dashed."""
    fig, axes = _figure(len(ood))
    for ax, (name, s) in zip(axes, ood.items(), strict=False):
        both = np.r_[id_scores, s]
        lo, hi = np.quantile(both, [0.001, 0.999]) if len(both) > 20 else (both.min(), both.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 50)
        ax.hist(np.clip(id_scores, lo, hi), bins=bins, alpha=0.6, density=True, label="ID test", color="#1f77b4")
        ax.hist(np.clip(s, lo, hi), bins=bins, alpha=0.6, density=True, label=name, color="#d62728")
        t = tpr95_threshold(id_scores, s, convention)
        ax.axvline(t, color="k", ls="--", lw=1, label=f"95% TPR cut ({convention})")
        ax.set_title(f"{method}: ID vs {name}", fontsize=10)
        ax.set_xlabel("OOD score (larger = more OOD)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    return _png(fig)


def roc_curves(id_scores: dict[str, np.ndarray], ood: dict[str, dict[str, np.ndarray]], convention: str = "id") -> bytes:
    """One panel per OOD set, one curve per method (``ood[set][method]``), AUROC in the legend.

    Axes follow the FPR convention: with ``id`` the positive class is ID (y: ID kept, x: OOD accepted),
    so the 95% line crosses each curve at its FPR95; with ``ood`` the positive class is OOD.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axes = _figure(len(ood))
    for ax, (name, per_method) in zip(axes, ood.items(), strict=False):
        for method, s in per_method.items():
            ids = id_scores[method]
            y = np.r_[np.ones(len(ids)), np.zeros(len(s))]
            sc = np.r_[ids, s]
            if convention == "ood":
                y = 1 - y  # OOD positive, larger score = more OOD
            else:
                sc = -sc  # ID positive: lower OOD score = more ID
            fpr, tpr, _ = roc_curve(y, sc)
            auc = roc_auc_score(y, sc)
            ax.plot(fpr, tpr, lw=1.8 if method == "heatmap" else 1.0, label=f"{method} ({auc * 100:.1f})")
        ax.axhline(0.95, color="k", ls=":", lw=0.8)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
        pos, neg = ("ID", "OOD") if convention == "id" else ("OOD", "ID")
        ax.set_title(f"ROC: ID vs {name}", fontsize=10)
        ax.set_xlabel(f"FPR ({neg} called {pos})")
        ax.set_ylabel(f"TPR ({pos} called {pos})")
        ax.legend(fontsize=7, title="method (AUROC %)", title_fontsize=7, loc="lower right")
    return _png(fig)


def overlay_image(image: torch.Tensor, heatmap: torch.Tensor, scale: int = 4) -> Image.Image:
    """One image's heatmap over it (``3 x H x W`` uint8 and heatmap), nearest-neighbour upscaled."""
    mag = heat_magnitude(heatmap[None])[0].numpy()
    arr = overlay(image.permute(1, 2, 0).numpy().astype(np.float32), mag, _colormap())
    h, w = arr.shape[:2]
    return Image.fromarray(arr).resize((w * scale, h * scale), Image.NEAREST)


def with_colour_bar(image: Image.Image, vmax: float = 1.0) -> Image.Image:
    """``image`` with the colour bar of its heatmap's scale at the right: a picture that says what bright means."""
    bar = colour_bar(image.height, vmax)
    out = Image.new("RGB", (image.width + bar.width, image.height), (255, 255, 255))
    out.paste(image.convert("RGB"), (0, 0))
    out.paste(bar, (image.width, 0))
    return out
