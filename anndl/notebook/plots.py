"""Figures shared by the notebooks; every figure is saved under one folder with ``save_fig``.

One class order (the label set's) and one palette (``class_colours``) everywhere; images are downscaled for
display (``DISPLAY_SIDE``) so that a rendered notebook stays small.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from anndl.core.labels import LABELS
from anndl.data import read_image, read_mask

# the Okabe-Ito colour-blind-safe palette: Luminal A blue, Luminal B orange, HER2(+) bluish green, Triple negative
# reddish purple (four clearly different hues, also under red-green colour blindness), then the rest of the set
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]
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
    """Save ``fig`` as ``figures_dir/name.png`` (atomically: ``anndl.core.artifacts.write_bytes``) and return the path."""
    import io

    from anndl.core import artifacts

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


def readable_example(rows: pd.DataFrame, first: int = 10):
    """The row among the first ``first`` of ``rows`` (columns ``width``, ``height``) whose aspect ratio is closest
    to 1, so that a figure's example is not a 4:1 strip."""
    head = rows.head(first)
    skew = np.abs(np.log(head.width.to_numpy(float) / head.height.to_numpy(float)))
    return head.iloc[int(np.argmin(skew))]


def _crop_box(shape, mask: np.ndarray | None, max_aspect: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the largest window of aspect at most ``max_aspect`` centred on the ROI (the image's
    centre without ROI), inside the image."""
    h, w = shape[:2]
    if max(h, w) <= max_aspect * min(h, w):
        return 0, h, 0, w
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    else:
        cy, cx = h / 2, w / 2
    if w > h:
        cw = int(round(max_aspect * h))
        x0 = int(np.clip(round(cx - cw / 2), 0, w - cw))
        return 0, h, x0, x0 + cw
    ch = int(round(max_aspect * w))
    y0 = int(np.clip(round(cy - ch / 2), 0, h - ch))
    return y0, y0 + ch, 0, w


def image_with_outline(image_path, mask_path, ax, title: str = "", max_side: int = DISPLAY_SIDE,
                       colour: str = "#ffd400", max_aspect: float | None = None) -> str:
    """The report's Figure 1 panel: an image with its ROI mask's outline drawn on it (downsampled for display).

    ``max_aspect``: crop a long strip to the window of at most this aspect ratio centred on its ROI. Returns what
    is shown, e.g. ``"1024×1079 px"`` or ``"ROI-centred 1638×1024 of 3516×1024 px"``, which also ends the title."""
    image, mask = read_image(image_path), read_mask(mask_path)
    h, w = image.shape[:2]
    shown = f"{w}×{h} px"
    if max_aspect:
        y0, y1, x0, x1 = _crop_box(image.shape, mask, max_aspect)
        if (y1 - y0, x1 - x0) != (h, w):
            image, mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
            shown = f"ROI-centred {x1 - x0}×{y1 - y0} of {w}×{h} px"
    image, step = _downscaled(image, max_side)
    mask = mask[::step, ::step]
    ax.imshow(image)
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
    ax.set_title(f"{title}\n{shown}" if title else shown, fontsize=9)
    ax.set_axis_off()
    return shown


def identical_mask_pairs(groups, max_side: int = 256, size: float = 2.4):
    """One row per identical-mask group: each member's image (titled), then the mask they share.

    ``groups``: a list of ``(members, mask_path)``, ``members`` a list of ``(image_path, title)``. Returns the
    figure."""
    groups = list(groups)
    ncols = max(len(members) for members, _ in groups) + 1
    fig, axes = plt.subplots(len(groups), ncols, figsize=(ncols * size, len(groups) * size * 1.05), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for row, (members, mask_path) in zip(axes, groups):
        for ax, (path, title) in zip(row, members):
            ax.imshow(_downscaled(read_image(path), max_side)[0])
            ax.set_title(title, fontsize=8)
        ax = row[ncols - 1]
        ax.imshow(_downscaled(read_mask(mask_path), max_side)[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title("the shared mask\n(white: ROI)", fontsize=8)
    fig.tight_layout()
    return fig


def tiles_per_image(counts: pd.DataFrame, axes=None, order=("train", "val", "test")):
    """Histograms of tiles per image, one panel per split (so that no split hides another), integer bins.
    ``counts``: columns ``split``, ``tiles`` (one row per image). Returns the axes."""
    from matplotlib.ticker import MaxNLocator

    splits = [s for s in order if s in set(counts.split)] + sorted(set(counts.split) - set(order))
    if axes is None:
        _, axes = plt.subplots(1, len(splits), figsize=(3.6 * len(splits), 3.2), sharex=True, squeeze=False)
        axes = axes[0]
    bins = np.arange(0.5, counts.tiles.max() + 1.5)
    colours = {"train": "#0072B2", "val": "#D55E00", "test": "#7f7f7f"}
    for ax, split in zip(axes, splits):
        part = counts[counts.split == split].tiles
        ax.hist(part, bins=bins, color=colours.get(split, "#333333"))
        ax.set_title(f"{split}: {len(part)} images, median {part.median():.0f} tiles", fontsize=9)
        ax.set_xlabel("tiles per image")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("images")
    return axes


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
                      title: str = "", norm=None, colorbar: bool = True, numbers: bool | None = None,
                      relative: bool = False, cmap: str = "inferno"):
    """Draw per-tile attention weights (attention-MIL) over the image, one translucent square per tile, with a
    colour bar of the weights (they sum to 1 over the image's tiles).

    ``relative``: colour by weight × number of tiles (1 = the uniform weight), comparable across images with
    different tile counts; ``norm``: a shared ``matplotlib.colors.Normalize`` (see ``attention_panels``);
    ``colorbar=False`` leaves the colour bar to the caller; ``numbers``: print each tile's value (default: only
    while the tiles are drawn large enough to hold a legible label). Returns the mappable."""
    import matplotlib.patches as patches
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    image, step = _downscaled(read_image(image_path))
    ax = ax or plt.subplots(figsize=(6, 6))[1]
    ax.imshow(image, extent=(0, image.shape[1] * step, image.shape[0] * step, 0))
    values = np.asarray(attention, float) * (len(attention) if relative else 1)
    norm = norm or Normalize(0, float(values.max()) if len(values) else 1.0)
    colours = plt.get_cmap(cmap)
    if numbers is None:  # a label needs about 0.4 inch of tile on the drawn figure
        box = ax.get_position()
        scale = min(box.width * ax.figure.get_figwidth() / max(image.shape[1] * step, 1),
                    box.height * ax.figure.get_figheight() / max(image.shape[0] * step, 1))
        numbers = scale * tile_size >= 0.4 and len(values) <= 40
    for (x, y), a in zip(tiles[["x", "y"]].to_numpy(), values):
        ax.add_patch(patches.Rectangle((x, y), tile_size, tile_size, facecolor=colours(norm(a)), alpha=0.55,
                                       edgecolor="white", linewidth=0.6))
        if numbers:
            ax.text(x + tile_size / 2, y + tile_size / 2, f"{a:.2f}", ha="center", va="center", fontsize=8,
                    color="white", weight="bold", bbox=dict(boxstyle="round,pad=0.1", fc="black", alpha=0.5, lw=0))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    mappable = ScalarMappable(norm, colours)
    if colorbar:
        bar = ax.figure.colorbar(mappable, ax=ax, fraction=0.04, pad=0.02)
        bar.set_label("attention × tiles (1 = uniform)" if relative else "attention weight (sums to 1 per image)",
                      fontsize=8)
    return mappable


def readable_attention_examples(names, tile_counts, aspects, k: int = 3, min_tiles: int = 4,
                                max_aspect: float = 1.8) -> list:
    """Up to ``k`` of ``names`` for an attention figure: images of aspect ratio at most ``max_aspect`` (either
    way) with at least ``min_tiles`` tiles, the most tiles first; filled up with the least elongated others when
    too few qualify."""
    frame = pd.DataFrame({"name": list(names), "tiles": list(tile_counts), "aspect": list(aspects)})
    frame["elongation"] = np.maximum(frame.aspect, 1 / frame.aspect)
    good = frame[(frame.elongation <= max_aspect) & (frame.tiles >= min_tiles)].sort_values("tiles", ascending=False)
    rest = frame.drop(good.index).sort_values(["elongation", "tiles"], ascending=[True, False])
    return list(pd.concat([good, rest]).name.head(k))


def attention_panels(items, tile_size: int, panel: float = 5.0, relative: bool = True, suptitle: str = ""):
    """Attention overlays side by side with ONE colour scale and one colour bar. ``items``: ``(image_path, tiles,
    attention, title)`` tuples. By default colours show weight × tiles (1 = uniform), comparable across images
    of different tile counts. Returns the figure."""
    from matplotlib.colors import Normalize

    items = list(items)
    top = max(float((np.asarray(a, float) * (len(a) if relative else 1)).max()) for _, _, a, _ in items if len(a))
    norm = Normalize(0, max(top, 1e-9))
    fig, axes = plt.subplots(1, len(items), figsize=(panel * len(items) + 0.8, panel + 0.6), squeeze=False)
    mappable = None
    for ax, (path, tiles, attention, title) in zip(axes[0], items):
        mappable = attention_overlay(path, tiles, attention, tile_size, ax=ax, title=title, norm=norm,
                                     colorbar=False, relative=relative)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    cax = fig.add_axes([0.93, 0.15, 0.012, 0.7])
    bar = fig.colorbar(mappable, cax=cax)
    bar.set_label("attention × tiles in the image (1 = uniform)" if relative
                  else "attention weight (sums to 1 per image)", fontsize=9)
    return fig


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
    (:class:`anndl.data.stain.HEDJitter`), and the tile normalised to ``reference`` by Macenko and Reinhard.

    ``samples``: ``(name, image, mask)`` triples (arrays or paths; ``mask`` may be None), the tile is the
    ``tile_size`` crop with most ROI; ``reference``: a :class:`anndl.data.stain.StainReference` (e.g.
    ``stain.reference_from_manifest(manifest)``). Normalisation estimates the stain on the whole image's ROI
    tissue, as the pipeline would."""
    from anndl.data import stain

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
    the comparison's reference with its paired bootstrap interval; a line at 0 (no difference), and where the
    table has them, a line per baseline (majority class, colour histogram) at its score minus the reference's.
    A variant that did not learn (or whose reference did not) is drawn hollow and grey: no verdict."""
    from anndl.evaluate.metrics import flag
    from anndl.notebook.interpret import is_baseline_row

    results = list(results)
    variants = [[r for r in result.table.to_dict("records")[1:] if not is_baseline_row(r)] for result in results]
    heights = [max(len(rows), 1) for rows in variants]
    fig, axes = plt.subplots(len(results), 1, figsize=(8.5, 0.9 + 0.55 * sum(heights) + 0.5 * len(results)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False, sharex=True)
    for ax, result, candidates in zip(axes[:, 0], results, variants):
        records = result.table.to_dict("records")
        reference_learned = flag(records[0].get("learned"))
        rows = [r for r in candidates if r["gain_ci95"] is not None and r["images"]]
        y = np.arange(len(rows))[::-1]
        for yi, r in zip(y, rows):
            low, high = r["gain_ci95"]
            learned = flag(r.get("learned"))
            no_verdict = learned is False or (learned and reference_learned is False)
            colour = ("#999999" if no_verdict else "#1b7837" if low > 0 else "#b2182b" if high < 0 else "#4d4d4d")
            ax.errorbar(r["gain"], yi, xerr=[[r["gain"] - low], [high - r["gain"]]], fmt="o", color=colour,
                        capsize=4, mfc="white" if no_verdict else colour)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        for r, style in zip([r for r in records if is_baseline_row(r) and r["gain_ci95"] is not None and r["images"]],
                            (":", "-.")):
            ax.axvline(r["gain"], color="#8c510a", lw=1.2, ls=style,
                       label=f"{r['variant'].replace(' (no CNN)', '')} ({r['oof_macro_f1']:.3f})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_yticks(y, [r["variant"] + ("" if flag(r.get("learned")) is not False else " (did not learn)")
                          for r in rows])
        ax.set_ylim(-0.6, max(len(rows) - 0.4, 0.6))
        learned_note = {True: " (learned)", False: " (did not learn)"}.get(reference_learned, "")
        ax.set_title(f"{result.name}: against {result.table.variant.iloc[0]}{learned_note}", fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("Δ macro F1 vs the reference (green: real gain, red: real loss, grey: interval holds 0;\n"
                           "hollow grey: did not learn, no verdict; brown lines: the baselines)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
