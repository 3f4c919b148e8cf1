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


def class_distribution(labels: pd.Series, ax=None, title: str = "Images per class"):
    """Bar chart of label counts in the fixed label order."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    counts = labels.value_counts().reindex(list(LABELS), fill_value=0)
    bars = ax.bar(range(len(LABELS)), counts.values, color=["#c67fae", "#8e5ea2", "#3e95cd", "#e8a33d"])
    ax.bar_label(bars)
    ax.set_xticks(range(len(LABELS)), LABELS)
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
