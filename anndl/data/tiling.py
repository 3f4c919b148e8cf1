"""Split by image, then cut tiles where the ROI mask has enough foreground (report §2, Figure 2).

Tiles are kept as coordinates, not pixel copies (as in CLAM): ``tiles.csv`` holds one row per tile
with ``split, sample_index, label, x, y, mask_pixels, weight``, where ``weight`` is the tile's mask
pixels over the image's mask pixels (for mask-weighted voting). The split is made on images *before*
tiling, with identical-mask groups kept on one side, so no image leaks across it (Bussola et al.,
arXiv:1909.06539). No image is lost: an image without a qualifying tile keeps its best tile(s), and an
image smaller than a tile is zero-padded at the bottom/right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from anndl.core import artifacts
from anndl.data import read_mask

TILE_COLUMNS = ["split", "sample_index", "label", "x", "y", "mask_pixels", "weight"]


@dataclass(frozen=True)
class TilingConfig:
    """Tile grid and filter. ``stride`` defaults to ``tile_size`` (non-overlapping tiles);
    ``min_mask_pixels`` is a pixel count in [0, tile_size**2]."""

    tile_size: int = 224
    stride: int | None = None
    min_mask_pixels: int = 200
    fallback_tiles: int = 1  # tiles kept (best by mask pixels) for an image with no qualifying tile

    def __post_init__(self):
        if self.stride is None:
            object.__setattr__(self, "stride", self.tile_size)
        for name in ("tile_size", "stride", "fallback_tiles"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.min_mask_pixels, (int, np.integer)) or not (
                0 <= self.min_mask_pixels <= self.tile_size ** 2):
            raise ValueError(f"min_mask_pixels must be an integer in [0, tile_size**2 = {self.tile_size ** 2}], "
                             f"got {self.min_mask_pixels!r}")


def padded_shape(height: int, width: int, tile_size: int) -> tuple[int, int]:
    """Image shape after zero-padding to at least one tile in each direction."""
    return max(height, tile_size), max(width, tile_size)


def tile_grid(mask: np.ndarray, config: TilingConfig) -> pd.DataFrame:
    """All grid tiles of a mask (edges dropped) with their mask pixel counts, in raster order."""
    h, w = padded_shape(*mask.shape, config.tile_size)
    padded = np.zeros((h, w), np.uint8)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    integral = cv2.integral(padded)  # (h+1, w+1), int32
    t = config.tile_size
    ys = np.arange(0, h - t + 1, config.stride)
    xs = np.arange(0, w - t + 1, config.stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    counts = integral[yy + t, xx + t] - integral[yy, xx + t] - integral[yy + t, xx] + integral[yy, xx]
    return pd.DataFrame({"x": xx.ravel(), "y": yy.ravel(), "mask_pixels": counts.ravel().astype(np.int64)})


def select_tiles(mask: np.ndarray, config: TilingConfig) -> pd.DataFrame:
    """Tiles kept for one image: those over the threshold, else the best ``fallback_tiles``."""
    grid = tile_grid(mask, config)
    kept = grid[grid.mask_pixels >= config.min_mask_pixels]
    if kept.empty:
        kept = grid.sort_values("mask_pixels", ascending=False, kind="stable").head(config.fallback_tiles)
        kept = kept.sort_index()
    total = int(mask.sum())
    weight = kept.mask_pixels / total if total else pd.Series(1.0 / len(kept), index=kept.index)
    return kept.assign(weight=weight.round(8)).reset_index(drop=True)


def split_images(clean: pd.DataFrame, val_fraction: float = 0.1, seed: int = 42) -> pd.DataFrame:
    """Image-level stratified train/val split that keeps identical-mask groups on one side.

    ``clean`` needs ``sample_index``, ``label`` and ``group`` (-1: unique mask). Per class, shuffled
    units (a group or a lone image) go to validation until the class has ``val_fraction`` of its images
    there (at least one unit when the class has two or more). Returns those columns plus ``split``.
    """
    if not 0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    frame = clean[["sample_index", "label", "group"]].reset_index(drop=True)
    unit = np.where(frame.group >= 0, "group-" + frame.group.astype(str), "image-" + frame.sample_index)
    units = frame.assign(unit=unit).groupby("unit", sort=True).agg(label=("label", "first"),
                                                                  size=("sample_index", "size"))
    rng = np.random.default_rng(seed)
    val_units = []
    for _, members in units.groupby("label", sort=True):
        target = int(round(val_fraction * members["size"].sum()))
        if len(members) >= 2:
            target = max(target, 1)
        taken = 0
        for name in members.index[rng.permutation(len(members))]:
            if taken >= target:
                break
            val_units.append(name)
            taken += members.loc[name, "size"]
    return frame.assign(split=np.where(np.isin(unit, val_units), "val", "train"))


SELECT_FRACTION = 0.15  # of a fold's training images: what early stopping and every other choice watch


def nested_split(assignment: pd.DataFrame, fold: int, select_fraction: float = SELECT_FRACTION,
                 seed: int = 42) -> pd.DataFrame:
    """Fold ``fold`` of a K-fold ``assignment`` (``assign_folds``): its images ``held_out`` (only scored), and of
    the other folds' images ``select_fraction`` as ``select`` (stratified, mask groups together, seeded: what
    early stopping, the best epoch and phase, thresholds and blend weights watch), the rest ``train``.
    ``select_fraction`` 0: nothing is selected (``train`` and ``held_out`` only). Columns ``sample_index``,
    ``split``."""
    held = (assignment.fold == fold).to_numpy()
    split = np.where(held, "held_out", "train").astype(object)
    if select_fraction:
        inner = split_images(assignment[~held], select_fraction, seed + int(fold))
        split[np.flatnonzero(~held)[(inner.split == "val").to_numpy()]] = "select"
    return pd.DataFrame({"sample_index": assignment.sample_index.to_numpy(), "split": split})


def assign_folds(clean: pd.DataFrame, n_folds: int, seed: int = 42) -> pd.DataFrame:
    """Stratified, group-aware fold number (0..n_folds-1) for every image of ``clean``.

    Units (a mask group or a lone image) are shuffled, larger units first, and each goes to the fold
    that holds the fewest images of its members' classes so far: folds stay balanced per class even
    for a small class and for groups whose members carry different labels.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"folds must be an integer of at least 2, got {n_folds!r}")
    frame = clean[["sample_index", "label", "group"]].reset_index(drop=True)
    smallest = frame.label.value_counts()
    if len(smallest) and smallest.min() < n_folds:  # stratification's limit: every fold scores every class
        raise ValueError(f"{n_folds} folds: class {smallest.idxmin()!r} has {smallest.min()} kept training images; "
                         f"use at most {smallest.min()} folds")
    unit = np.where(frame.group >= 0, "group-" + frame.group.astype(str), "image-" + frame.sample_index)
    classes = sorted(frame.label.unique())
    counts = pd.crosstab(pd.Series(unit, name="unit"), frame.label).reindex(columns=classes, fill_value=0)
    rng = np.random.default_rng(seed)
    order = counts.index[rng.permutation(len(counts))]
    order = sorted(order, key=lambda u: -counts.loc[u].sum())  # stable: shuffled within each size
    load = np.zeros((n_folds, len(classes)))
    fold_of = {}
    for name in order:
        members = counts.loc[name].to_numpy()
        cost = load @ members + load.sum(1) * 1e-3 + rng.random(n_folds) * 1e-6
        k = int(np.argmin(cost))
        fold_of[name] = k
        load[k] += members
    return frame.assign(fold=[fold_of[u] for u in unit])


def tile_images(images: pd.DataFrame, config: TilingConfig, progress: bool = True) -> pd.DataFrame:
    """Tile rows for every image in ``images`` (columns ``split, sample_index, label, mask_path``)."""
    parts = []
    for row in tqdm(list(images.itertuples()), desc="tile", unit="img", disable=not progress):
        kept = select_tiles(read_mask(row.mask_path), config)
        parts.append(kept.assign(split=row.split, sample_index=row.sample_index, label=row.label))
    return pd.concat(parts, ignore_index=True)[TILE_COLUMNS]


def build_tiles(manifest: pd.DataFrame, clean: pd.DataFrame, split: pd.DataFrame,
                config: TilingConfig, progress: bool = True) -> pd.DataFrame:
    """Tiles of the kept train images (``split`` train/val); the test images' are cut by ``tile_images`` alone."""
    kept = clean[clean.status == "kept"]
    train = manifest[manifest.split == "train"].merge(split[["sample_index", "split"]].rename(
        columns={"split": "subset"}), on="sample_index")
    if set(train.sample_index) != set(kept.sample_index):
        raise ValueError("split.csv does not cover exactly the kept images of the clean manifest; "
                         "delete it to make a new split")
    images = train.assign(split=train.subset)
    order = images.split.map({"train": 0, "val": 1})
    images = images.assign(_o=order).sort_values(["_o", "sample_index"], kind="stable")
    tiles = tile_images(images, config, progress)
    missing = set(zip(images.split, images.sample_index)) - set(zip(tiles.split, tiles.sample_index))
    assert not missing, f"images without tiles: {sorted(missing)[:5]}"
    return tiles


def write_tiles(tiles: pd.DataFrame, out_dir: Path | str, config: TilingConfig, data_note: str) -> Path:
    """Write ``tiles.csv`` (byte-identical for the same inputs) and ``tiles.json`` (config, counts)."""
    out_dir = Path(out_dir)
    path = artifacts.write_csv(tiles, out_dir / "tiles.csv")
    counts = {s: {"images": int(g.sample_index.nunique()), "tiles": int(len(g))} for s, g in tiles.groupby("split")}
    artifacts.write_json(out_dir / "tiles.json", {"data": data_note, "config": asdict(config), "counts": counts})
    return path
