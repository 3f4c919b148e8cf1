"""Split by image, then cut tiles where the ROI mask has enough foreground (report §2, Figure 2).
Tiles are coordinates (as CLAM), ``weight`` their mask-pixel share (soft voting); the split precedes tiling, mask groups
on one side (no leak: Bussola et al., arXiv:1909.06539); every image keeps a tile (its best, zero-padded if small)."""

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
    """Tile grid and filter; ``stride`` defaults to ``tile_size`` (non-overlapping tiles)."""

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
        pixels = self.min_mask_pixels
        if not isinstance(pixels, (int, np.integer)) or not 0 <= pixels <= self.tile_size ** 2:
            raise ValueError(f"min_mask_pixels must be an integer in [0, tile_size**2 = {self.tile_size ** 2}], "
                             f"got {pixels!r}")


def tile_grid(mask: np.ndarray, config: TilingConfig) -> pd.DataFrame:
    """All grid tiles of a mask (zero-padded to at least one tile, edges dropped) and their mask pixels."""
    t = config.tile_size
    padded = np.pad(np.asarray(mask, np.uint8), [(0, max(0, t - n)) for n in mask.shape])
    integral = cv2.integral(padded)  # (h+1, w+1), int32
    yy, xx = np.meshgrid(*(np.arange(0, n - t + 1, config.stride) for n in padded.shape), indexing="ij")
    counts = integral[yy + t, xx + t] - integral[yy, xx + t] - integral[yy + t, xx] + integral[yy, xx]
    return pd.DataFrame({"x": xx.ravel(), "y": yy.ravel(), "mask_pixels": counts.ravel().astype(np.int64)})


def select_tiles(mask: np.ndarray, config: TilingConfig) -> pd.DataFrame:
    """Tiles kept for one image: those over the threshold, else the best ``fallback_tiles``."""
    grid = tile_grid(mask, config)
    kept = grid[grid.mask_pixels >= config.min_mask_pixels]
    if kept.empty:
        kept = grid.sort_values("mask_pixels", ascending=False, kind="stable").head(config.fallback_tiles).sort_index()
    total = int(mask.sum())
    weight = kept.mask_pixels / total if total else pd.Series(1.0 / len(kept), index=kept.index)
    return kept.assign(weight=weight.round(8)).reset_index(drop=True)


def split_images(clean: pd.DataFrame, val_fraction: float = 0.1, seed: int = 42) -> pd.DataFrame:
    """Stratified image split, mask groups on one side: per class, shuffled units to val till ``val_fraction`` (≥ 1)."""
    if not 0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    frame = clean[["sample_index", "label", "group"]].reset_index(drop=True)
    unit = np.where(frame.group >= 0, "group-" + frame.group.astype(str), "image-" + frame.sample_index)
    units = frame.assign(unit=unit).groupby("unit", sort=True).agg(label=("label", "first"),
                                                                  size=("sample_index", "size"))
    rng = np.random.default_rng(seed)
    val_units = []
    for _, members in units.groupby("label", sort=True):
        target = max(int(round(val_fraction * members["size"].sum())), int(len(members) >= 2))  # a unit at least
        shuffled = members["size"].iloc[rng.permutation(len(members))]
        val_units += list(shuffled.index[shuffled.cumsum() - shuffled < target])  # images before it < target
    return frame.assign(split=np.where(np.isin(unit, val_units), "val", "train"))


SELECT_FRACTION = 0.15  # of a fold's training images: what early stopping and every other choice watch


def nested_split(assignment: pd.DataFrame, fold: int, select_fraction: float = SELECT_FRACTION,
                 seed: int = 42) -> pd.DataFrame:
    """Fold ``fold``'s images ``held_out``, ``select_fraction`` of the rest ``select`` (seeded), others ``train``."""
    held = (assignment.fold == fold).to_numpy()
    split = np.where(held, "held_out", "train").astype(object)
    if select_fraction:
        inner = split_images(assignment[~held], select_fraction, seed + int(fold))
        split[np.flatnonzero(~held)[(inner.split == "val").to_numpy()]] = "select"
    return pd.DataFrame({"sample_index": assignment.sample_index.to_numpy(), "split": split})


def assign_folds(clean: pd.DataFrame, n_folds: int, seed: int = 42) -> pd.DataFrame:
    """Stratified, group-aware fold per image: units shuffled, larger first, each to the fold fewest in its classes."""
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
    order = sorted(counts.index[rng.permutation(len(counts))], key=lambda u: -counts.loc[u].sum())  # stable sort
    load, fold_of = np.zeros((n_folds, len(classes))), {}
    for name in order:
        members = counts.loc[name].to_numpy()
        k = fold_of[name] = int(np.argmin(load @ members + load.sum(1) * 1e-3 + rng.random(n_folds) * 1e-6))
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
    """Tiles of the kept train images (``split`` train/val), train then val (test images: :func:`tile_test_images`)."""
    images = manifest[manifest.split == "train"].drop(columns="split").merge(split[["sample_index", "split"]],
                                                                            on="sample_index")
    if set(images.sample_index) != set(clean.sample_index[clean.status == "kept"]):
        raise ValueError("split.csv does not cover exactly the kept images of the clean manifest; "
                         "delete it to make a new split")
    images = images.sort_values(["split", "sample_index"], kind="stable")  # train, then val
    tiles = tile_images(images, config, progress)
    missing = set(zip(images.split, images.sample_index)) - set(zip(tiles.split, tiles.sample_index))
    assert not missing, f"images without tiles: {sorted(missing)[:5]}"  # no image is silently lost
    return tiles


def tile_test_images(manifest: pd.DataFrame, config: TilingConfig) -> pd.DataFrame:
    """Tiles of every test image of ``manifest`` (by ``sample_index``, unlabelled): what prediction reads."""
    return tile_images(manifest[manifest.split == "test"].sort_values("sample_index", kind="stable").assign(label=""),
                       config)


def write_tiles(tiles: pd.DataFrame, out_dir: Path | str, config: TilingConfig, data_note: str) -> None:
    """Write ``tiles.csv`` (byte-identical for the same inputs) and ``tiles.json`` (config, counts)."""
    out_dir = Path(out_dir)
    artifacts.write_csv(tiles, out_dir / "tiles.csv")
    counts = {s: {"images": int(g.sample_index.nunique()), "tiles": int(len(g))} for s, g in tiles.groupby("split")}
    artifacts.write_json(out_dir / "tiles.json", {"data": data_note, "config": asdict(config), "counts": counts})
