"""Figures shared by the notebooks: one class palette, images downscaled (small notebooks), ``save_fig`` for all."""

import io
from pathlib import Path

import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from anndl.core import artifacts
from anndl.core.labels import LABELS
from anndl.data import read_image, read_mask
from anndl.evaluate.metrics import flag
from anndl.notebook.interpret import is_baseline_row

# Okabe-Ito, colour-blind safe: Luminal A blue, Luminal B orange, HER2(+) bluish green, Triple negative reddish purple
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]
DISPLAY_SIDE = 512   # longest side of an image drawn in a notebook (pixels of the source kept per axis)


def class_colours(classes=LABELS) -> dict[str, str]:
    """The colour of each class, in the label set's order (the same in every notebook and figure)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(classes)}


def _downscaled(array: np.ndarray, max_side: int = DISPLAY_SIDE) -> tuple[np.ndarray, int]:
    """``array`` with every ``step``-th pixel so its longer side is at most ``max_side``, and the step."""
    step = max(1, int(np.ceil(max(array.shape[:2]) / max_side)))
    return array[::step, ::step], step


def show() -> None:
    """Display and close every open figure: figures holding images as JPEG (small notebooks), charts as PNG."""
    from IPython.display import Image, display
    for fig in map(plt.figure, plt.get_fignums()):
        kind = "jpeg" if any(ax.images for ax in fig.axes) else "png"
        buffer = io.BytesIO()
        fig.savefig(buffer, format=kind, dpi=72, bbox_inches="tight",
                    **({"pil_kwargs": {"quality": 80}} if kind == "jpeg" else {}))
        display(Image(data=buffer.getvalue(), format=kind))
        plt.close(fig)


def save_fig(fig, name: str, figures_dir: Path | str) -> Path:
    """Save ``fig`` as ``figures_dir/name.png`` (atomically: ``artifacts.write_bytes``) and return the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return artifacts.write_bytes(Path(figures_dir) / f"{name}.png", buffer.getvalue())


def class_distribution(labels: pd.Series, ax=None, title: str = "Images per class", classes=LABELS):
    """Bar chart of label counts in the label set's order."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    counts = labels.value_counts().reindex(list(classes), fill_value=0)
    ax.bar_label(ax.bar(range(len(classes)), counts.values, color=list(class_colours(classes).values())))
    ax.set_xticks(range(len(classes)), classes)
    ax.set_title(title)
    return ax


def readable_example(rows: pd.DataFrame):
    """The row among the first ten (columns ``width``, ``height``) of aspect ratio closest to 1."""
    head = rows.head(10)
    return head.iloc[int(np.argmin(np.abs(np.log(head.width.to_numpy(float) / head.height.to_numpy(float)))))]


def image_with_outline(image_path, mask_path, ax, title: str = "", max_side: int = DISPLAY_SIDE,
                       max_aspect: float | None = None) -> str:
    """The report's Figure 1 panel: image and ROI outline (``max_aspect``: ROI-centred crop); returns what is shown."""
    image, mask = read_image(image_path), read_mask(mask_path)
    h, w = image.shape[:2]
    shown, axis = f"{w}×{h} px", int(w > h)  # the long side: 0 rows, 1 columns
    side = int(round(max_aspect * min(h, w))) if max_aspect else max(h, w)
    if side < max(h, w):  # the longest window of aspect at most ``max_aspect``, centred on the ROI if any
        centre = [(np.min(v) + np.max(v)) / 2 for v in (np.nonzero(mask) if mask.any() else ([0, h], [0, w]))]
        start = int(np.clip(round(centre[axis] - side / 2), 0, max(h, w) - side))
        window = (slice(None), slice(start, start + side)) if axis else (slice(start, start + side),)
        image, mask = image[window], mask[window]
        shown = f"ROI-centred {image.shape[1]}×{image.shape[0]} of {w}×{h} px"
    image, step = _downscaled(image, max_side)
    mask = mask[::step, ::step]
    ax.imshow(image)
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=["#ffd400"], linewidths=1.2)
    ax.set_title(f"{title}\n{shown}" if title else shown, fontsize=9)
    ax.set_axis_off()
    return shown


def identical_mask_pairs(groups):
    """One row per ``(members, mask_path)`` group (members: ``(image_path, title)``): the images, then the mask."""
    groups = list(groups)
    ncols = max(len(members) for members, _ in groups) + 1
    cells = []
    for members, mask_path in groups:  # the mask in the last column; None: an empty cell
        padding = [(None, "")] * (ncols - 1 - len(members))
        cells += [*members, *padding, (read_mask(mask_path), "the shared mask\n(white: ROI)")]
    return thumbnails(*zip(*cells), ncols=ncols, size=(2.4, 2.52))


def tiles_per_image(counts: pd.DataFrame, axes=None):
    """Histograms of tiles per image (columns ``split``, ``tiles``), one panel per split so none hides another."""
    colours = {"train": "#0072B2", "val": "#D55E00", "test": "#7f7f7f"}  # and the splits' order
    splits = [s for s in colours if s in set(counts.split)] + sorted(set(counts.split) - set(colours))
    if axes is None:
        axes = plt.subplots(1, len(splits), figsize=(3.6 * len(splits), 3.2), sharex=True, squeeze=False)[1][0]
    for ax, split in zip(axes, splits):
        part = counts[counts.split == split].tiles
        ax.hist(part, bins=np.arange(0.5, counts.tiles.max() + 1.5), color=colours.get(split, "#333333"))
        ax.set_title(f"{split}: {len(part)} images, median {part.median():.0f} tiles", fontsize=9)
        ax.set_xlabel("tiles per image")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("images")
    return axes


def thumbnails(paths, titles, ncols: int = 6, size: tuple[float, float] = (2.2, 2.2)):
    """A grid of downsampled images (paths, or 2-D arrays drawn grey: masks; None: an empty cell) with titles."""
    nrows = max(1, int(np.ceil(len(paths) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size[0], nrows * size[1]), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, path, title in zip(axes.flat, paths, titles):
        image = read_image(path) if isinstance(path, (str, Path)) else path
        if image is not None:
            ax.imshow(_downscaled(image, 256)[0], **({} if image.ndim == 3 else dict(cmap="gray", vmin=0, vmax=1)))
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def tile_selection(image_path, mask_path, grid: pd.DataFrame, kept: pd.DataFrame, tile_size: int, axes=None):
    """The report's Figure 2: the tile grid as outlines over image and mask (kept solid green, rejected dashed red)."""
    axes = plt.subplots(1, 2, figsize=(10, 5))[1] if axes is None else axes
    image, step = _downscaled(read_image(image_path))
    extent = (0, image.shape[1] * step, image.shape[0] * step, 0)  # the source image's pixels
    axes[0].imshow(image, extent=extent)
    axes[1].imshow(read_mask(mask_path)[::step, ::step], cmap="gray", vmin=0, vmax=1, extent=extent)
    style = {True: dict(color="#00c800", lw=1.6, ls="-"), False: dict(color="#e02020", lw=0.8, ls="--")}  # kept?
    kept_xy = set(zip(kept.x, kept.y))
    for ax in axes:
        for row in grid.itertuples():
            ax.add_patch(patches.Rectangle((row.x, row.y), tile_size, tile_size, fill=False,
                                           **style[(row.x, row.y) in kept_xy]))
        ax.set_axis_off()
    axes[0].set_title(f"{len(kept)} of {len(grid)} grid tiles kept")
    axes[1].set_title("mask (white: ROI)")
    handles = [Line2D([], [], label=label, **style[keep]) for keep, label in
               [(True, "kept (mask pixels ≥ threshold)"), (False, "rejected")]]
    axes[1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return axes


def confusion_matrix(cm: np.ndarray, ax=None, title: str = "Validation confusion matrix (images)", classes=LABELS):
    """Image counts per cell (rows: true class), shaded by the share of the true class (recall on the diagonal)."""
    ax = ax or plt.subplots(figsize=(4.8, 4.2))[1]
    cm = np.asarray(cm)
    shade = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    shown = ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class (row-normalised)")
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, int(count), ha="center", va="center", color="white" if shade[i, j] > 0.5 else "black")
    short = [label.replace("Triple negative", "Triple neg.") for label in classes]
    ax.set_xticks(range(len(classes)), short, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), short)
    ax.set(xlabel="predicted (numbers: image counts)", ylabel="true")
    ax.set_title(title, fontsize=10)
    return ax


def training_curves(log: pd.DataFrame, title: str = "", best_epoch: int | None = None, chance: float = 0.25):
    """Loss and validation macro F1 per epoch (1-based), the selected epoch (default: best F1) and ``chance`` marked."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    epochs = np.arange(1, len(log) + 1)
    for ax, column, label in [(a, "loss", "train (tiles)"), (a, "val_loss", "validation (tiles)"),
                              (b, "val_image_f1_hard", "hard voting"), (b, "val_image_f1_soft", "soft voting")]:
        ax.plot(epochs, log[column], marker="o", ms=3, label=label)
    if best_epoch is None and "val_image_macro_f1" in log:
        best_epoch = int(np.argmax(log.val_image_macro_f1.to_numpy())) + 1
    if best_epoch:
        b.plot([best_epoch], [log.val_image_f1_hard.iloc[best_epoch - 1]], marker="*", ms=12, color="k", ls="none",
               label=f"selected (epoch {best_epoch})")
    b.axhline(chance, color="#8c510a", ls=":", lw=1.2, label=f"chance ({chance:.2f})")
    for ax, name in ((a, "loss"), (b, "validation macro F1 (images)")):
        ax.set(title=name, xlabel="epoch", xlim=(0.5, max(len(log), 2) + 0.5))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch:
            ax.axvline(best_epoch, color="k", ls=":", lw=1)
        ax.legend(fontsize=8)
    b.set_ylim(0, 1)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def readable_attention_examples(names, tile_counts, aspects, k: int = 3) -> list:
    """Up to ``k`` names: aspect ≤ 1.8 either way and ≥ 4 tiles, most tiles first, then the least elongated others."""
    frame = pd.DataFrame({"name": list(names), "tiles": list(tile_counts), "aspect": list(aspects)})
    frame["elongation"] = np.maximum(frame.aspect, 1 / frame.aspect)
    good = frame[(frame.elongation <= 1.8) & (frame.tiles >= 4)].sort_values("tiles", ascending=False)
    rest = frame.drop(good.index).sort_values(["elongation", "tiles"], ascending=[True, False])
    return list(pd.concat([good, rest]).name.head(k))


def attention_panels(items, tile_size: int, relative: bool = True, suptitle: str = ""):
    """Attention-MIL weights of ``(image_path, tiles, attention, title)`` items on ONE scale (``relative``: × tiles)."""
    items = list(items)
    scaled = [np.asarray(a, float) * (len(a) if relative else 1) for _, _, a, _ in items]
    norm = Normalize(0, max(max((float(v.max()) for v in scaled if len(v)), default=1.0), 1e-9))
    colours = plt.get_cmap("inferno")
    fig, axes = plt.subplots(1, len(items), figsize=(5 * len(items) + 0.8, 5.6), squeeze=False)
    for ax, (path, tiles, _, title), values in zip(axes[0], items, scaled):
        image, step = _downscaled(read_image(path))
        height, width = image.shape[0] * step, image.shape[1] * step
        ax.imshow(image, extent=(0, width, height, 0))
        box = ax.get_position()  # a label needs about 0.4 inch of tile on the drawn figure
        scale = min(box.width * fig.get_figwidth() / max(width, 1), box.height * fig.get_figheight() / max(height, 1))
        numbers = scale * tile_size >= 0.4 and len(values) <= 40
        for (x, y), a in zip(tiles[["x", "y"]].to_numpy(), values):
            ax.add_patch(patches.Rectangle((x, y), tile_size, tile_size, facecolor=colours(norm(a)), alpha=0.55,
                                           edgecolor="white", linewidth=0.6))
            if numbers:
                ax.text(x + tile_size / 2, y + tile_size / 2, f"{a:.2f}", ha="center", va="center", fontsize=8,
                        color="white", weight="bold", bbox=dict(boxstyle="round,pad=0.1", fc="black", alpha=0.5, lw=0))
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm, colours), cax=fig.add_axes([0.93, 0.15, 0.012, 0.7]))
    bar.set_label("attention × tiles in the image (1 = uniform)" if relative
                  else "attention weight (sums to 1 per image)", fontsize=9)
    return fig


def _best_tile(image: np.ndarray, mask: np.ndarray | None, tile_size: int) -> np.ndarray:
    """The ``tile_size`` crop with the most ROI pixels (the image's centre without a mask)."""
    h, w = image.shape[:2]
    t = min(tile_size, h, w)
    if mask is None or not mask.any():
        y, x = (h - t) // 2, (w - t) // 2
    else:
        integral = np.pad(np.cumsum(np.cumsum(mask.astype(np.int64), 0), 1), ((1, 0), (1, 0)))
        counts = (integral[t:, t:] - integral[:-t, t:] - integral[t:, :-t] + integral[:-t, :-t])[::t // 4, ::t // 4]
        y, x = (v * (t // 4) for v in np.unravel_index(int(np.argmax(counts)), counts.shape))
    return image[y:y + t, x:x + t]


def stain_examples(samples, reference, tile_size: int = 224, n_augment: int = 2):
    """One row per ``(name, image, mask)`` sample (arrays or paths): the tile with most ROI, its HED augmentations and
    its Macenko and Reinhard normalisations to ``reference`` (fitted on the whole image's ROI, as in the pipeline)."""
    from anndl.data import stain

    samples = list(samples)
    columns = (["tile"] + [f"HED light #{k + 1}" for k in range(n_augment)]
               + [f"HED strong #{k + 1}" for k in range(n_augment)] + ["Macenko", "Reinhard"])
    fig, axes = plt.subplots(len(samples), len(columns), figsize=(1.9 * len(columns), 2.0 * len(samples) + 0.4),
                             squeeze=False)
    for r, (name, image, mask) in enumerate(samples):
        image = read_image(image) if isinstance(image, (str, Path)) else np.asarray(image, np.uint8)
        mask = read_mask(mask) if isinstance(mask, (str, Path)) else mask
        tile = _best_tile(image, mask, tile_size)
        batch = np.repeat(tile[None].astype(np.float32), n_augment, 0)
        views = [tile, *(view for strength in ("light", "strong") for view in np.asarray(
            stain.HEDJitter(strength, seed=0)(batch, training=True)).round().astype(np.uint8))]
        views += [_best_tile(stain.StainNormalizer(reference, m)(image, mask), mask, tile_size)
                  for m in ("macenko", "reinhard")]
        for c, (ax, view) in enumerate(zip(axes[r], views)):
            ax.imshow(view)
            ax.set(xticks=[], yticks=[])
            ax.set_title(columns[c] if r == 0 else "", fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("One tile under HED stain augmentation and stain normalisation", fontsize=10)
    fig.tight_layout()
    return fig


def comparison_forest(results, chance: float = 0.25):
    """Per comparison: variants minus the reference (paired interval), baselines, chance; no verdict: hollow grey."""
    results = list(results)
    tables = [result.table.to_dict("records") for result in results]
    heights = [max(sum(not is_baseline_row(r) for r in records[1:]), 1) for records in tables]
    fig, axes = plt.subplots(len(results), 1, figsize=(8.5, 0.9 + 0.55 * sum(heights) + 0.5 * len(results)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False, sharex=True)
    for ax, result, records in zip(axes[:, 0], results, tables):
        done = [r for r in records if r["gain_ci95"] is not None and r["images"]]
        rows = [r for r in done if r is not records[0] and not is_baseline_row(r)]
        reference_learned = flag(records[0].get("learned"))
        y = np.arange(len(rows))[::-1]
        for yi, r in zip(y, rows):
            (low, high), learned = r["gain_ci95"], flag(r.get("learned"))
            no_verdict = learned is False or (learned and reference_learned is False)
            colour = "#999999" if no_verdict else "#1b7837" if low > 0 else "#b2182b" if high < 0 else "#4d4d4d"
            ax.errorbar(r["gain"], yi, xerr=[[r["gain"] - low], [high - r["gain"]]], fmt="o", color=colour,
                        capsize=4, mfc="white" if no_verdict else colour)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        for r, style in zip([r for r in done if is_baseline_row(r)], (":", "-.")):
            ax.axvline(r["gain"], color="#8c510a", lw=1.2, ls=style,
                       label=f"{r['variant'].replace(' (no CNN)', '')} ({r['oof_macro_f1']:.3f})")
        if records[0]["gain_ci95"] is not None and records[0]["images"]:  # chance, as a difference to the reference
            ax.axvline(chance - records[0]["oof_macro_f1"], color="#999999", lw=1.2, ls=(0, (1, 3)),
                       label=f"chance ({chance:.2f})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_yticks(y, [r["variant"] + (" (did not learn)" if flag(r.get("learned")) is False else "") for r in rows])
        ax.set_ylim(-0.6, max(len(rows) - 0.4, 0.6))
        note = {True: " (learned)", False: " (did not learn)"}.get(reference_learned, "")
        ax.set_title(f"{result.name}: against {result.table.variant.iloc[0]}{note}", fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("Δ macro F1 vs the reference (green: real gain, red: real loss, grey: interval holds 0;\n"
                           "hollow grey: did not learn, no verdict; brown lines: the baselines; grey dots: chance)")
    fig.suptitle("Each variant minus the reference, out of fold (paired 95% interval)", fontsize=11)
    fig.tight_layout()
    return fig
