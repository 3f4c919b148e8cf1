"""Remove corrupted training images: "sticker" (Shrek) images and green blob artifacts (the report's §2, measured).
1. **Identical-mask groups** (SHA-256 of mask pixels): each real sticker shares a genuine image's mask; kept together.
2. **Stickers**: group members far from the embeddings' robust centre, then a logistic regression for those unpaired.
3. **Green**: H&E never makes green-dominant pixels. A green image is a sticker when what it adds to its **twin** (the
   same tissue without the green region) has an inked border (``twin_ink``: stickers 0.68-0.96, blobs 0.00), else
   when its green region has a dark outline (``green_ink``: stickers 0.34-0.61, blobs <= 0.005) and flat colour
   inside (``green_flat``: 0.65-0.96, blobs <= 0.31), whatever its shade or opacity (``bench/outlier_kinds.py``).
Test images are never removed; images are decoded a few at a time, a 32 x 32 thumbnail of each kept to find twins."""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from anndl.core.labels import LABELS
from anndl.data import decode_budget, read_image, read_mask


@dataclass(frozen=True)
class OutlierConfig:
    """Thresholds of the cleaning step (all explicit; the defaults are what the measurements used)."""

    green_margin: int = 40            # a pixel is green when G - max(R, B) exceeds this (0-255 scale)
    green_min_fraction: float = 0.002 # flag an image when green pixels exceed this share of its area
    green_min_blob_pixels: int = 64   # ...and its largest green component is at least this large
    sticker_min_z: float = 10.0       # flag a member above this robust distance z (stickers 38-122, others <= 3.01)
    sticker_probability: float = 0.9  # classifier probability to flag a sticker without a mask twin
    embed_max_side: int = 512         # images are downsampled to this size for the offline embedder
    cartoon_min_ink: float = 0.15     # a green region is a sticker's when this share of the ring around it is ink
    cartoon_min_flat: float = 0.5     # ...and this share of it is flat colour
    twin_change: int = 12             # a pixel differs from its twin's when a channel differs by more than this
    twin_max_changed: float = 0.5     # a twin: at most this share of pixels differ (stickers 0.05-0.22, other 0.91)
    twin_min_ink: float = 0.3         # a pasted thing is a cartoon when this share of its border is inked


def mask_hash(mask: np.ndarray) -> str:
    """SHA-256 of a boolean mask's pixels and shape (independent of how the PNG was encoded)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    return hashlib.sha256(np.array(mask.shape, np.int64).tobytes() + np.packbits(mask).tobytes()).hexdigest()


def green_pixels(image: np.ndarray, margin: int) -> np.ndarray:
    """Boolean map of green-dominant pixels of an RGB uint8 image: G - max(R, B) > margin."""
    if margin < 0:
        rgb = image.astype(np.int16)
        return (rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2])) > margin
    # in uint8 (1 byte a pixel at a time, not 6): G > max(R, B) + margin, impossible where that passes 255
    top = np.maximum(image[..., 0], image[..., 2])
    room = top <= 255 - margin
    np.add(top, margin, out=top, where=room)
    return (image[..., 1] > top) & room


def cartoon_stats(image: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """How drawn a region looks: (ink, flat), the shares of near-black pixels around it and of flat fill inside."""
    region = region.astype(np.uint8)
    d = max(3, int(round(np.sqrt(region.sum()) / 12)))
    grown = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1)))
    ring = grown.astype(bool) & ~region.astype(bool)
    ink = float((image[ring].max(-1) < 70).mean()) if ring.any() else 0.0
    y, x = np.nonzero(grown)
    box = (slice(y.min(), y.max() + 1), slice(x.min(), x.max() + 1))  # only the region's box is filtered
    gray = cv2.cvtColor(np.ascontiguousarray(image[box]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.blur(gray, (5, 5))
    sd = np.sqrt(np.maximum(cv2.blur(gray * gray, (5, 5)) - mean * mean, 0))
    inner = cv2.erode(region[box], np.ones((5, 5), np.uint8)).astype(bool)
    flat = float((sd[inner] < 1.0).mean()) if inner.any() else 0.0
    return ink, flat


def green_blob_stats(image: np.ndarray, margin: int) -> dict:
    """Share of green pixels, the largest green component's size and how drawn it looks, and their mean RGB."""
    blob = green_pixels(image, margin)
    largest, mean_rgb, ink, flat = 0, [np.nan] * 3, 0.0, 0.0
    if blob.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(blob.astype(np.uint8), connectivity=8)
        biggest = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
        largest = int(stats[biggest, cv2.CC_STAT_AREA])
        mean_rgb = image[blob].mean(axis=0).round(1).tolist()
        if largest >= 16:
            ink, flat = cartoon_stats(image, labels == biggest)
    return {"green_fraction": float(blob.mean()), "green_blob_pixels": largest,
            "blob_r": mean_rgb[0], "blob_g": mean_rgb[1], "blob_b": mean_rgb[2], "green_ink": ink, "green_flat": flat}


@dataclass
class ColourTextureEmbedder:
    """Offline embedder: colour and texture statistics telling flat, saturated, black-outlined overlays from H&E."""

    max_side: int = 512
    name = "colour-texture statistics (offline, no pretrained weights)"

    def embed_one(self, image: np.ndarray) -> np.ndarray:
        step = max(1, int(np.ceil(max(image.shape[:2]) / self.max_side)))
        small = np.ascontiguousarray(image[::step, ::step])
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        h, s, v = hsv[..., 0], hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        local_mean = cv2.blur(gray, (7, 7))
        local_sd = np.sqrt(np.maximum(cv2.blur(gray * gray, (7, 7)) - local_mean ** 2, 0))
        # Per-pixel maps of what H&E never shows: hues outside pink/purple, flat saturated fills, black ink.
        off_stain = (s > 0.25) & (h >= 12) & (h <= 100)  # OpenCV hue 0-180: orange..green..cyan
        maps = np.stack([off_stain, (local_sd < 2.0) & (s > 0.15), v < 0.15], -1).astype(np.float32)
        cells = cv2.resize(maps, (8, 8), interpolation=cv2.INTER_AREA).reshape(-1, 3)
        # Area share and densest 1/64th of the image: a small overlay on a large image still counts.
        return np.concatenate([np.sqrt(maps.mean((0, 1))), np.sqrt(cells.max(0)),
                               [s.mean(), v.mean(), np.log1p(local_sd.mean())]])

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.embed_one(im) for im in images]).astype(np.float32)


class KerasEmbedder:
    """Global-average-pooled features of any Keras image model (whole image resized to its input)."""

    def __init__(self, model, name: str, image_size: int = 224,
                 preprocess: Callable[[np.ndarray], np.ndarray] | None = None):
        self.model, self.name, self.image_size, self.preprocess = model, name, image_size, preprocess

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        batch = np.stack([cv2.resize(im, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
                          for im in images]).astype(np.float32)
        if self.preprocess is not None:
            batch = self.preprocess(batch)
        return np.asarray(self.model.predict(batch, verbose=0)).reshape(len(images), -1).astype(np.float32)


def resnet50_embedder(weights: str | Path = "imagenet") -> KerasEmbedder:
    """The report's ImageNet ResNet50 embedder; ``weights``: 'imagenet' (a download) or a local no-top weights file."""
    import keras
    if weights is None:
        raise ValueError("a ResNet50 with random weights is not an embedder; pass 'imagenet' or a weights file")
    if weights != "imagenet" and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: ResNet50 weights file not found")
    try:
        model = keras.applications.ResNet50(include_top=False, pooling="avg", weights=str(weights))
    except Exception as e:  # no internet: say what to do instead of failing deep in a download
        raise RuntimeError(f"could not load ResNet50 weights ({weights}): {e}. Without internet, download "
                           "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 elsewhere and pass its path, "
                           "or use the offline embedder") from e
    return KerasEmbedder(model, f"ResNet50 ImageNet ({Path(str(weights)).name})",
                         preprocess=keras.applications.resnet50.preprocess_input)


def make_embedder(spec: str, config: OutlierConfig = OutlierConfig()) -> ColourTextureEmbedder | KerasEmbedder:
    """'offline', 'resnet50' (a download), 'resnet50:PATH' (local weights) or a ``.keras`` model (output flattened)."""
    if spec == "offline":
        return ColourTextureEmbedder(config.embed_max_side)
    if spec == "resnet50" or spec.startswith("resnet50:"):
        return resnet50_embedder(spec.split(":", 1)[1] if ":" in spec else "imagenet")
    if spec.endswith(".keras"):
        import keras
        model = keras.models.load_model(spec, compile=False)
        return KerasEmbedder(model, f"Keras model {Path(spec).name}", image_size=int(model.input_shape[1]))
    raise ValueError(f"unknown embedder {spec!r}; use offline, resnet50, resnet50:WEIGHTS.h5 or MODEL.keras")


def pixel_batches(sizes: list[int], budget: int, batch_size: int) -> list[range]:
    """Consecutive batches of at most ``batch_size`` items and ``budget`` pixels (a larger item alone)."""
    starts, total = [0], 0
    for i, size in enumerate(sizes):
        if i > starts[-1] and (i - starts[-1] == batch_size or total + size > budget):
            starts.append(i)
            total = 0
        total += size
    return [range(a, b) for a, b in zip(starts, [*starts[1:], len(sizes)]) if a < b]


def scan_images(manifest: pd.DataFrame, embedder: Callable, config: OutlierConfig, batch_size: int = 16,
                workers: int = 2, pixel_budget: int | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """One pass: mask hash, green stats, embedding and 32 x 32 thumbnail of each image, decoded in bounded batches."""
    def inspect(row):
        image, mask = read_image(row.image_path), read_mask(row.mask_path)
        stats = {"mask_hash": mask_hash(mask), **green_blob_stats(image, config.green_margin)}
        return image, stats, cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA)
    rows, embeddings, thumbs = [], [], []
    records, sizes = list(manifest.itertuples()), (manifest.height * manifest.width).astype(int).tolist()
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(records), desc="scan", unit="img") as bar:
        for batch in pixel_batches(sizes, decode_budget(pixel_budget), batch_size):
            images, stats, small = zip(*pool.map(inspect, [records[i] for i in batch]))
            embeddings.append(embedder(list(images)))
            rows += stats
            thumbs += small
            del images  # let go before the next batch
            bar.update(len(batch))
    return pd.DataFrame(rows, index=manifest.index), np.concatenate(embeddings), np.stack(thumbs)


def mask_groups(hashes: pd.Series) -> pd.Series:
    """Group number of each image whose mask is shared (-1 for a unique mask), in order of first appearance."""
    codes, _ = pd.factorize(hashes.where(hashes.duplicated(keep=False)))  # NaN (a unique mask): -1
    return pd.Series(codes, index=hashes.index, name=hashes.name)


def detect_stickers(embeddings: np.ndarray, groups: np.ndarray, config: OutlierConfig,
                    exclude: np.ndarray | None = None) -> pd.DataFrame:
    """Flag stickers: group members far from the embeddings' centre, then (no mask twin) a classifier trained on the
    members (NaN if none trains). Median/MAD, not the report's mean: outliers (~9% of real train) set no scale."""
    center = np.median(embeddings, 0)
    scale = np.maximum(1.4826 * np.median(np.abs(embeddings - center), 0), 0.1 * embeddings.std(0)) + 1e-6
    z = (embeddings - center) / scale
    distance = np.linalg.norm(z, axis=1)
    median, lower_quartile = np.percentile(distance, [50, 25])  # spread from the lower half: outliers stretch the top
    distance_z = (distance - median) / ((median - lower_quartile) / 0.6745 + 1e-6)
    abnormal = distance_z >= config.sticker_min_z
    # A member already flagged green (``exclude``) is far for its blob, not a sticker: it neither counts nor trains.
    exclude = np.zeros(len(z), bool) if exclude is None else exclude
    labelled = groups >= 0
    sticker = labelled & abnormal & ~exclude  # in the real data, one member per pair
    probability = np.full(len(z), np.nan)
    if sticker.sum() >= 2 and (labelled & ~sticker & ~exclude).sum() >= 2:
        train = labelled & ~exclude
        classifier = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(z[train], sticker[train])
        probability = classifier.predict_proba(z)[:, 1]
        sticker |= ~labelled & ~exclude & (probability >= config.sticker_probability)
    return pd.DataFrame({"sticker": sticker, "distance": distance, "distance_z": distance_z,
                         "sticker_probability": probability})


def changed_pixels(image: np.ndarray, twin: np.ndarray, level: int) -> np.ndarray:
    """Where two same-size RGB images differ: some channel by more than ``level``."""
    return cv2.absdiff(image, twin).max(-1) > level


def twin_ink(image: np.ndarray, twin: np.ndarray, changed: np.ndarray) -> float:
    """How drawn what ``image`` adds to ``twin`` is: the share of the changed region's outer band darkened towards
    black, as an outline pasted at opacity >= 0.45 makes it (a pasted green blob never does: its green stays bright)."""
    region = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    r = max(2, int(round(np.sqrt(region.sum()) / 40)))
    band = region.astype(bool) & ~cv2.erode(region, cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))).astype(bool)
    if not band.any():
        return 0.0
    return float((image[band].astype(np.float32) <= 0.6 * twin[band].astype(np.float32) + 16).all(-1).mean())


def compare_with_twins(train: pd.DataFrame, groups: np.ndarray, thumbs: np.ndarray, which: np.ndarray,
                       config: OutlierConfig) -> pd.DataFrame:
    """Per image in ``which``: ``twin`` (group member, same tissue minus the green; "" if none), its ``twin_ink``."""
    twin_names, inks = [""] * len(train), [np.nan] * len(train)
    for i in np.flatnonzero(which):
        members = [j for j in np.flatnonzero(groups == groups[i]) if j != i]
        near = {j: changed_pixels(thumbs[i], thumbs[j], config.twin_change).mean() for j in members}
        # thumbnails first (cheap): pasted copies differ in <= 0.25 of them, other tissue in 0.72-0.95 (BACH)
        members = [j for j in sorted(members, key=lambda j: (near[j], j)) if near[j] <= 0.8]
        if not members:
            continue
        image = read_image(train.image_path[i])
        green = green_pixels(image, config.green_margin)
        for j in members:
            twin = read_image(train.image_path[j])
            if twin.shape != image.shape:
                continue
            changed = changed_pixels(image, twin, config.twin_change)
            if changed.mean() <= config.twin_max_changed and green.any() and changed[green].mean() >= 0.5:
                twin_names[i], inks[i] = train.sample_index[j], twin_ink(image, twin, changed)
                break
    return pd.DataFrame({"twin": twin_names, "twin_ink": inks}, index=train.index)


def clean(manifest: pd.DataFrame, embedder: Callable, config: OutlierConfig = OutlierConfig()) -> pd.DataFrame:
    """Label every train image ``kept``, ``sticker`` or ``green``. Test images are not touched."""
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    stats, embeddings, thumbs = scan_images(train, embedder, config)
    groups = mask_groups(stats.mask_hash).to_numpy()
    coloured = ((stats.green_fraction >= config.green_min_fraction)
                & (stats.green_blob_pixels >= config.green_min_blob_pixels)).to_numpy()
    twins = compare_with_twins(train, groups, thumbs, coloured & (groups >= 0), config)
    cartoon = ((stats.green_ink >= config.cartoon_min_ink) & (stats.green_flat >= config.cartoon_min_flat)).to_numpy()
    drawn = coloured & np.where(twins.twin != "", twins.twin_ink.to_numpy() >= config.twin_min_ink, cartoon)
    stickers = detect_stickers(embeddings, groups, config, exclude=coloured)
    status = np.where(coloured & ~drawn, "green", np.where(drawn | stickers.sticker, "sticker", "kept"))
    score = np.where(status == "green", stats.green_fraction, stickers.distance)
    return pd.DataFrame({
        "sample_index": train.sample_index, "label": train.label, "status": status, "group": groups,
        "score": np.round(score, 6), "distance": stickers.distance.round(6),
        "distance_z": stickers.distance_z.round(4), "sticker_probability": stickers.sticker_probability.round(6),
        "green_fraction": stats.green_fraction.round(6), "green_blob_pixels": stats.green_blob_pixels,
        "green_ink": stats.green_ink.round(4), "green_flat": stats.green_flat.round(4), "twin": twins.twin,
        "twin_ink": twins.twin_ink.round(4), "mask_hash": stats.mask_hash, "embedder": embedder.name})


def summary(cleaned: pd.DataFrame) -> dict:
    """Counts per status and per class before / after cleaning."""
    kept = cleaned[cleaned.status == "kept"]
    present = set(cleaned.label)  # the four subtypes in their order, or another folder's label set
    classes = list(LABELS) if present <= set(LABELS) else sorted(present)
    return {"embedder": cleaned.embedder.iloc[0] if len(cleaned) else None,
            "status_counts": cleaned.status.value_counts().to_dict(),
            "class_counts_before": cleaned.label.value_counts().reindex(classes, fill_value=0).to_dict(),
            "class_counts_after": kept.label.value_counts().reindex(classes, fill_value=0).to_dict(),
            "identical_mask_groups": int(cleaned.group.max() + 1) if len(cleaned) else 0}


def score_against_planted(cleaned: pd.DataFrame, planted: pd.DataFrame) -> pd.DataFrame:
    """Precision and recall of removal per kind against ``planted_outliers.csv``."""
    rows = []
    for kind in ("sticker", "green"):
        truth = set(planted.sample_index[planted.kind == kind])
        flagged = set(cleaned.sample_index[cleaned.status == kind])
        tp = len(truth & flagged)
        rows.append({"kind": kind, "planted": len(truth), "flagged": len(flagged), "true_positives": tp,
                     "precision": tp / len(flagged) if flagged else float(not truth),
                     "recall": tp / len(truth) if truth else 1.0})
    return pd.DataFrame(rows)
