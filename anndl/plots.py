"""Figures shared by the notebooks; every figure is saved under one folder with ``save_fig``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from anndl.data import read_image, read_mask
from anndl.labels import LABELS


def save_fig(fig, name: str, figures_dir: Path | str, dpi: int = 110) -> Path:
    """Save ``fig`` as ``figures_dir/name.png`` and return the path."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    path = figures_dir / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def class_distribution(labels: pd.Series, ax=None, title: str = "Images per class", classes=LABELS):
    """Bar chart of label counts in the label set's order."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    counts = labels.value_counts().reindex(list(classes), fill_value=0)
    palette = ["#c67fae", "#8e5ea2", "#3e95cd", "#e8a33d"]
    bars = ax.bar(range(len(classes)), counts.values, color=[palette[i % 4] for i in range(len(classes))])
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


def thumbnails(paths, titles, ncols: int = 6, size: float = 2.2, max_side: int = 384):
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


def tile_selection(image_path, mask_path, grid: pd.DataFrame, kept: pd.DataFrame, tile_size: int, axes=None):
    """The report's Figure 2: the tile grid over image and mask, kept tiles in green, dropped in red."""
    import matplotlib.patches as patches

    image, mask = read_image(image_path), read_mask(mask_path)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(image)
    axes[1].imshow(mask, cmap="gray", vmin=0, vmax=1)
    kept_xy = set(zip(kept.x, kept.y))
    for ax in axes:
        for row in grid.itertuples():
            keep = (row.x, row.y) in kept_xy
            ax.add_patch(patches.Rectangle((row.x, row.y), tile_size, tile_size, fill=keep, alpha=0.25 if keep else 1,
                                           facecolor="lime", edgecolor="lime" if keep else "red",
                                           linewidth=1.5 if keep else 0.8))
        ax.set_axis_off()
    axes[0].set_title(f"{len(kept)} of {len(grid)} grid tiles kept")
    axes[1].set_title("mask (white: ROI)")
    return axes


def confusion_matrix(cm: np.ndarray, ax=None, title: str = "Validation confusion matrix (images)", classes=LABELS):
    """Counts with row-normalised shading; rows: true class, columns: predicted."""
    ax = ax or plt.subplots(figsize=(4.8, 4.2))[1]
    shade = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if shade[i, j] > 0.5 else "black")
    short = [label.replace("Triple negative", "Triple neg.") for label in classes]
    ax.set_xticks(range(len(classes)), short, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return ax


def training_curves(log: pd.DataFrame, title: str = ""):
    """Loss and image-level validation macro F1 per epoch."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    epochs = log.epoch + 1
    a.plot(epochs, log.loss, label="train (tiles)")
    a.plot(epochs, log.val_loss, label="validation (tiles)")
    a.set_xlabel("epoch")
    a.set_title("loss")
    a.legend()
    for rule in ("hard", "soft"):
        b.plot(epochs, log[f"val_image_f1_{rule}"], marker="o", ms=3, label=f"{rule} voting")
    b.set_xlabel("epoch")
    b.set_title("validation macro F1 (images)")
    b.set_ylim(0, 1)
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def attention_overlay(image_path, tiles: pd.DataFrame, attention: np.ndarray, tile_size: int, ax=None,
                      title: str = ""):
    """Draw per-tile attention weights (attention-MIL) over the image, one translucent square per tile."""
    import matplotlib.patches as patches

    image = read_image(image_path)
    ax = ax or plt.subplots(figsize=(6, 6))[1]
    ax.imshow(image)
    top = attention.max() if len(attention) else 1.0
    cmap = plt.get_cmap("inferno")
    for (x, y), a in zip(tiles[["x", "y"]].to_numpy(), attention):
        ax.add_patch(patches.Rectangle((x, y), tile_size, tile_size, facecolor=cmap(a / top), alpha=0.55,
                                       edgecolor="white", linewidth=0.6))
        ax.text(x + tile_size / 2, y + tile_size / 2, f"{a:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
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
