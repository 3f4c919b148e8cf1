"""Figures shared by the notebooks; every figure is saved under one folder with ``save_fig``.

One class order (the label set's) and one palette (``class_colours``) everywhere; images are downscaled for
display (``DISPLAY_SIDE``) so that a rendered notebook stays small.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from anndl.data import read_image, read_mask
from anndl.labels import LABELS

PALETTE = ["#c67fae", "#8e5ea2", "#3e95cd", "#e8a33d", "#5aa469", "#d9534f", "#7f7f7f", "#17becf"]
DISPLAY_SIDE = 512   # longest side of an image drawn in a notebook (pixels of the source kept per axis)


def class_colours(classes=LABELS) -> dict[str, str]:
    """The colour of each class, in the label set's order (the same in every notebook and figure)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(classes)}


def _downscaled(array: np.ndarray, max_side: int = DISPLAY_SIDE) -> tuple[np.ndarray, int]:
    """``array`` with every ``step``-th pixel so its longer side is at most ``max_side``; returns the step."""
    step = max(1, int(np.ceil(max(array.shape[:2]) / max_side)))
    return array[::step, ::step], step


def show(dpi: int = 72, quality: int = 80) -> None:
    """Display every open figure in a notebook and close it: figures holding images (tissue) as JPEG, which
    keeps a rendered notebook small, charts as PNG (sharp lines)."""
    import io

    from IPython.display import Image, display

    for number in plt.get_fignums():
        fig = plt.figure(number)
        photo = any(ax.images for ax in fig.axes)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="jpeg" if photo else "png", dpi=dpi, bbox_inches="tight",
                    **({"pil_kwargs": {"quality": quality}} if photo else {}))
        display(Image(data=buffer.getvalue(), format="jpeg" if photo else "png"))
        plt.close(fig)


def save_fig(fig, name: str, figures_dir: Path | str, dpi: int = 110) -> Path:
    """Save ``fig`` as ``figures_dir/name.png`` (atomically: ``anndl.artifacts.write_bytes``) and return the path."""
    import io

    from anndl import artifacts

    path = Path(figures_dir) / f"{name}.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return artifacts.write_bytes(path, buffer.getvalue())


def class_distribution(labels: pd.Series, ax=None, title: str = "Images per class", classes=LABELS):
    """Bar chart of label counts in the label set's order."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    counts = labels.value_counts().reindex(list(classes), fill_value=0)
    bars = ax.bar(range(len(classes)), counts.values, color=list(class_colours(classes).values()))
    ax.bar_label(bars)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_title(title)
    return ax


def image_with_mask(image_path, mask_path, ax_image, ax_mask, title: str = "", max_side: int = 768):
    """Show an image and its mask side by side (downsampled for display only)."""
    image, mask = read_image(image_path), read_mask(mask_path)
    step = max(1, int(np.ceil(max(image.shape[:2]) / max_side)))
    ax_image.imshow(image[::step, ::step])
    ax_mask.imshow(mask[::step, ::step], cmap="gray", vmin=0, vmax=1)
    ax_image.set_title(title, fontsize=9)
    for ax in (ax_image, ax_mask):
        ax.set_axis_off()


def image_with_outline(image_path, mask_path, ax, title: str = "", max_side: int = DISPLAY_SIDE,
                       colour: str = "#ffd400"):
    """The report's Figure 1 panel: an image with its ROI mask's outline drawn on it (downsampled for display)."""
    image, step = _downscaled(read_image(image_path), max_side)
    mask = read_mask(mask_path)[::step, ::step]
    ax.imshow(image)
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax


def thumbnails(paths, titles, ncols: int = 6, size: float = 2.2, max_side: int = 256):
    """A grid of downsampled images with titles; returns the figure."""
    nrows = max(1, int(np.ceil(len(paths) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, path, title in zip(axes.flat, paths, titles):
        image = read_image(path)
        step = max(1, int(np.ceil(max(image.shape[:2]) / max_side)))
        ax.imshow(image[::step, ::step])
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def tile_selection(image_path, mask_path, grid: pd.DataFrame, kept: pd.DataFrame, tile_size: int, axes=None,
                   max_side: int = DISPLAY_SIDE):
    """The report's Figure 2: the tile grid over image and mask as outlines (kept: solid green, rejected:
    dashed red), so the tissue stays visible, with a legend. Coordinates are in the source image's pixels."""
    import matplotlib.patches as patches
    from matplotlib.lines import Line2D

    image, step = _downscaled(read_image(image_path), max_side)
    mask = read_mask(mask_path)[::step, ::step]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 5))
    extent = (0, image.shape[1] * step, image.shape[0] * step, 0)
    axes[0].imshow(image, extent=extent)
    axes[1].imshow(mask, cmap="gray", vmin=0, vmax=1, extent=extent)
    kept_xy = set(zip(kept.x, kept.y))
    for ax in axes:
        for row in grid.itertuples():
            keep = (row.x, row.y) in kept_xy
            ax.add_patch(patches.Rectangle((row.x, row.y), tile_size, tile_size, fill=False,
                                           edgecolor="#00c800" if keep else "#e02020", linestyle="-" if keep else "--",
                                           linewidth=1.6 if keep else 0.8))
        ax.set_axis_off()
    axes[0].set_title(f"{len(kept)} of {len(grid)} grid tiles kept")
    axes[1].set_title("mask (white: ROI)")
    handles = [Line2D([], [], color="#00c800", lw=1.6, label="kept (mask pixels ≥ threshold)"),
               Line2D([], [], color="#e02020", lw=0.8, ls="--", label="rejected")]
    axes[1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return axes


def confusion_matrix(cm: np.ndarray, ax=None, title: str = "Validation confusion matrix (images)", classes=LABELS,
                     colorbar: bool = True):
    """Image counts in each cell; shading is row-normalised (the share of each true class's images, i.e.
    recall on the diagonal), with a colourbar; rows: true class, columns: predicted."""
    ax = ax or plt.subplots(figsize=(4.8, 4.2))[1]
    cm = np.asarray(cm)
    shade = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    shown = ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class (row-normalised)")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if shade[i, j] > 0.5 else "black")
    short = [label.replace("Triple negative", "Triple neg.") for label in classes]
    ax.set_xticks(range(len(classes)), short, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), short)
    ax.set_xlabel("predicted (numbers: image counts)")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return ax


def training_curves(log: pd.DataFrame, title: str = "", best_epoch: int | None = None):
    """Loss and image-level validation macro F1 per epoch (integer ticks, 1-based over all phases), with the
    selected epoch (``best_epoch``, 1-based as in ``metrics.json``; default: the best validation F1) marked."""
    from matplotlib.ticker import MaxNLocator

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    epochs = np.arange(1, len(log) + 1)
    a.plot(epochs, log.loss, marker="o", ms=3, label="train (tiles)")
    a.plot(epochs, log.val_loss, marker="o", ms=3, label="validation (tiles)")
    a.set_title("loss")
    for rule in ("hard", "soft"):
        b.plot(epochs, log[f"val_image_f1_{rule}"], marker="o", ms=3, label=f"{rule} voting")
    if best_epoch is None and "val_image_macro_f1" in log:
        best_epoch = int(np.argmax(log.val_image_macro_f1.to_numpy())) + 1
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, max(len(log), 2) + 0.5)
        if best_epoch:
            ax.axvline(best_epoch, color="k", ls=":", lw=1)
    if best_epoch:
        b.plot([best_epoch], [log[f"val_image_f1_hard"].iloc[best_epoch - 1]], marker="*", ms=12, color="k",
               ls="none", label=f"selected (epoch {best_epoch})")
    b.set_title("validation macro F1 (images)")
    b.set_ylim(0, 1)
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def attention_overlay(image_path, tiles: pd.DataFrame, attention: np.ndarray, tile_size: int, ax=None,
                      title: str = ""):
    """Draw per-tile attention weights (attention-MIL) over the image, one translucent square per tile, with a
    colour bar of the weights (they sum to 1 over the image's tiles)."""
    import matplotlib.patches as patches
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    image, step = _downscaled(read_image(image_path))
    ax = ax or plt.subplots(figsize=(6, 6))[1]
    ax.imshow(image, extent=(0, image.shape[1] * step, image.shape[0] * step, 0))
    norm = Normalize(0, float(attention.max()) if len(attention) else 1.0)
    cmap = plt.get_cmap("inferno")
    for (x, y), a in zip(tiles[["x", "y"]].to_numpy(), attention):
        ax.add_patch(patches.Rectangle((x, y), tile_size, tile_size, facecolor=cmap(norm(a)), alpha=0.55,
                                       edgecolor="white", linewidth=0.6))
        ax.text(x + tile_size / 2, y + tile_size / 2, f"{a:.2f}", ha="center", va="center", fontsize=8, color="white",
                weight="bold", bbox=dict(boxstyle="round,pad=0.1", fc="black", alpha=0.5, lw=0))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    bar = ax.figure.colorbar(ScalarMappable(norm, cmap), ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("attention weight (sums to 1 per image)", fontsize=8)
    return ax


def _best_tile(image: np.ndarray, mask: np.ndarray | None, tile_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``tile_size`` crop with the most ROI pixels (the image's centre without a mask)."""
    h, w = image.shape[:2]
    t = min(tile_size, h, w)
    if mask is None or not mask.any():
        y, x = (h - t) // 2, (w - t) // 2
    else:
        integral = np.pad(np.cumsum(np.cumsum(mask.astype(np.int64), 0), 1), ((1, 0), (1, 0)))
        counts = integral[t:, t:] - integral[:-t, t:] - integral[t:, :-t] + integral[:-t, :-t]
        y, x = np.unravel_index(int(np.argmax(counts[:: t // 4, :: t // 4])), counts[:: t // 4, :: t // 4].shape)
        y, x = y * (t // 4), x * (t // 4)
    return image[y:y + t, x:x + t], None if mask is None else mask[y:y + t, x:x + t]


def stain_examples(samples, reference, tile_size: int = 224, n_augment: int = 2, seed: int = 0,
                   title: str = "One tile under HED stain augmentation and stain normalisation"):
    """One row per sample: the tile, ``n_augment`` draws of HED-light and of HED-strong augmentation
    (:class:`anndl.stain.HEDJitter`), and the tile normalised to ``reference`` by Macenko and Reinhard.

    ``samples``: ``(name, image, mask)`` triples (arrays or paths; ``mask`` may be None), the tile is the
    ``tile_size`` crop with most ROI; ``reference``: a :class:`anndl.stain.StainReference` (e.g.
    ``stain.reference_from_manifest(manifest)``). Normalisation estimates the stain on the whole image's ROI
    tissue, as the pipeline would."""
    from anndl import stain

    samples = list(samples)
    columns = (["tile"] + [f"HED light #{k + 1}" for k in range(n_augment)]
               + [f"HED strong #{k + 1}" for k in range(n_augment)] + ["Macenko", "Reinhard"])
    fig, axes = plt.subplots(len(samples), len(columns), figsize=(1.9 * len(columns), 2.0 * len(samples) + 0.4),
                             squeeze=False)
    for r, (name, image, mask) in enumerate(samples):
        image = read_image(image) if isinstance(image, (str, Path)) else np.asarray(image, np.uint8)
        mask = read_mask(mask) if isinstance(mask, (str, Path)) else mask
        normalised = [stain.StainNormalizer(reference, m)(image, mask) for m in ("macenko", "reinhard")]
        tile, _ = _best_tile(image, mask, tile_size)
        views = [tile]
        for strength in ("light", "strong"):
            layer = stain.HEDJitter(strength, seed=seed)
            batch = np.repeat(tile[None].astype(np.float32), n_augment, 0)
            views += list(np.asarray(layer(batch, training=True)).round().astype(np.uint8))
        views += [_best_tile(n, mask, tile_size)[0] for n in normalised]
        for c, (ax, view) in enumerate(zip(axes[r], views)):
            ax.imshow(view)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def comparison_forest(results, title: str = "Each variant minus the reference, out of fold (paired 95% interval)"):
    """One panel per comparison (``compare.run_comparison`` results): each variant's macro F1 difference from
    the comparison's reference with its paired bootstrap interval; a line at 0 (no difference)."""
    results = list(results)
    heights = [max(len(r.table) - 1, 1) for r in results]
    fig, axes = plt.subplots(len(results), 1, figsize=(8.5, 0.9 + 0.55 * sum(heights) + 0.5 * len(results)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, result in zip(axes[:, 0], results):
        rows = [r for r in result.table.to_dict("records")[1:] if r["gain_ci95"] is not None and r["images"]]
        y = np.arange(len(rows))[::-1]
        for yi, r in zip(y, rows):
            low, high = r["gain_ci95"]
            colour = "#1b7837" if low > 0 else "#b2182b" if high < 0 else "#4d4d4d"
            ax.errorbar(r["gain"], yi, xerr=[[r["gain"] - low], [high - r["gain"]]], fmt="o", color=colour,
                        capsize=4)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        ax.set_yticks(y, [r["variant"] for r in rows])
        ax.set_ylim(-0.6, max(len(rows) - 0.4, 0.6))
        ax.set_title(f"{result.name}: against {result.table.variant.iloc[0]}", fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("Δ macro F1 vs the reference (green: real gain, red: real loss, grey: interval holds 0)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
