"""Remove corrupted training images: "sticker" (Shrek) images and green blob artifacts.

The report's method (§2), made a measured, reusable step:

1. **Identical-mask groups**: SHA-256 of each mask's *pixel content* (so the same mask saved
   differently still matches). In the real data every sticker image shares its mask with a genuine
   image; groups are reported and kept on one side of the later split.
2. **Stickers**: image embeddings; within each identical-mask group the members abnormally far from the
   global (robust) centre of the embeddings are the corrupted ones (in the real data: the farther
   member of each pair); a logistic regression trained on those labelled group members
   then flags stickers that have no mask twin. The embedder is a parameter: an ImageNet ResNet50
   (``keras.applications``, needs its weights) or an offline colour/texture embedder that needs no
   weights. Every output names the embedder that ran.
3. **Green artifacts**: H&E stains never produce green-dominant pixels, so the blob is isolated as the
   pixels where G exceeds both R and B by a margin; images whose blob covers more than a minimum
   fraction of the image are flagged.
4. **Sticker or green blob**, whatever the sticker's shade of green: a green region that is a cartoon (a
   dark outline around it, ``green_ink``: the share of near-black pixels in a ring around the region; flat
   colour inside it, ``green_flat``: the share of its pixels with almost no local variation) is a sticker;
   a smooth, shaded, outline-free green region is a blob. Measured (``bench/outlier_kinds.py``; synthetic
   tissue and real BACH tissue): stickers ink 0.34-0.61, flat 0.65-0.96 in every shade; blobs ink <= 0.005,
   flat <= 0.31, in or out of identical-mask groups.
   Test images are never removed.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from anndl.core import artifacts
from anndl.core.labels import LABELS
from anndl.data import read_image, read_mask


@dataclass(frozen=True)
class OutlierConfig:
    """Thresholds of the cleaning step (all explicit; the defaults are what the measurements used)."""

    green_margin: int = 40            # a pixel is green when G - max(R, B) exceeds this (0-255 scale)
    green_min_fraction: float = 0.002 # flag an image when green pixels exceed this share of its area
    green_min_blob_pixels: int = 64   # ...and its largest green component is at least this large
    sticker_min_z: float = 10.0       # a group member is flagged when its distance is abnormally high:
                                      # robust z-score over all images above this. Stickers measured
                                      # 38-122 (synthetic, planted on BACH); unplanted group members up to
                                      # 3.0 (BACH: 3.01 flagged a real image at the old threshold 3)
    sticker_probability: float = 0.9  # classifier probability to flag a sticker without a mask twin
    embed_max_side: int = 512         # images are downsampled to this size for the offline embedder
    cartoon_min_ink: float = 0.15     # a green region is a sticker's when this share of the ring around it
                                      # is near-black outline (stickers 0.34-0.61, blobs <= 0.005) ...
    cartoon_min_flat: float = 0.5     # ...and this share of it is flat colour (stickers 0.65-0.96, blobs <= 0.31)


class Embedder(Protocol):
    name: str

    def __call__(self, images: list[np.ndarray]) -> np.ndarray: ...


def mask_hash(mask: np.ndarray) -> str:
    """SHA-256 of a boolean mask's pixels and shape (independent of how the PNG was encoded)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    digest = hashlib.sha256(np.array(mask.shape, np.int64).tobytes())
    digest.update(np.packbits(mask).tobytes())
    return digest.hexdigest()


def green_pixels(image: np.ndarray, margin: int) -> np.ndarray:
    """Boolean map of green-dominant pixels of an RGB uint8 image."""
    rgb = image.astype(np.int16)
    return (rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2])) > margin


def cartoon_stats(image: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """How much a region looks drawn rather than smeared: (ink, flat). ``ink``: share of near-black pixels
    (every channel below 70) in a ring around it (a cartoon's outline); ``flat``: share of its inner pixels
    whose 5x5 grey-level standard deviation is below 1 (flat fill; shading, tissue seen through and noise
    vary)."""
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
    """Share of green pixels, size of the largest green component, the blob's mean RGB and how drawn the
    largest component looks (``green_ink``, ``green_flat``: ``cartoon_stats``)."""
    blob = green_pixels(image, margin)
    fraction = float(blob.mean())
    largest, mean_rgb, ink, flat = 0, [np.nan] * 3, 0.0, 0.0
    if blob.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(blob.astype(np.uint8), connectivity=8)
        biggest = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
        largest = int(stats[biggest, cv2.CC_STAT_AREA])
        mean_rgb = image[blob].mean(axis=0).round(1).tolist()
        if largest >= 16:
            ink, flat = cartoon_stats(image, labels == biggest)
    return {"green_fraction": fraction, "green_blob_pixels": largest,
            "blob_r": mean_rgb[0], "blob_g": mean_rgb[1], "blob_b": mean_rgb[2], "green_ink": ink, "green_flat": flat}


class ColourTextureEmbedder:
    """Offline embedder (no weights): colour and texture statistics that tell overlays from tissue.

    H&E tissue is textured pink/purple; cartoon overlays are flat, saturated, off-stain colours
    outlined in black. Each such pixel map contributes its area share and its densest 8x8 grid cell,
    plus global saturation, brightness and texture.
    """

    name = "colour-texture statistics (offline, no pretrained weights)"

    def __init__(self, max_side: int = 512):
        self.max_side = max_side

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
        flat = (local_sd < 2.0) & (s > 0.15)
        ink = v < 0.15
        maps = np.stack([off_stain, flat, ink], -1).astype(np.float32)
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
        features = np.asarray(self.model.predict(batch, verbose=0))
        return features.reshape(len(images), -1).astype(np.float32)


def resnet50_embedder(weights: str | Path = "imagenet") -> KerasEmbedder:
    """ImageNet ResNet50 embedder (the report's). ``weights``: 'imagenet' (downloads; needs internet)
    or a local ``.h5`` / ``.weights.h5`` file of ResNet50 without top. Random weights are refused."""
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


def keras_file_embedder(path: str | Path, image_size: int | None = None) -> KerasEmbedder:
    """Embedder from a saved ``.keras`` model whose output is a feature vector (or map, flattened)."""
    import keras

    model = keras.models.load_model(path, compile=False)
    size = image_size or int(model.input_shape[1])
    return KerasEmbedder(model, f"Keras model {Path(path).name}", image_size=size)


def make_embedder(spec: str, config: OutlierConfig = OutlierConfig()) -> Embedder:
    """'offline', 'resnet50' (ImageNet download), 'resnet50:PATH' (local weights) or a ``.keras`` path."""
    if spec == "offline":
        return ColourTextureEmbedder(config.embed_max_side)
    if spec == "resnet50":
        return resnet50_embedder("imagenet")
    if spec.startswith("resnet50:"):
        return resnet50_embedder(spec.split(":", 1)[1])
    if spec.endswith(".keras"):
        return keras_file_embedder(spec)
    raise ValueError(f"unknown embedder {spec!r}; use offline, resnet50, resnet50:WEIGHTS.h5 or MODEL.keras")


def scan_images(manifest: pd.DataFrame, embedder: Embedder, config: OutlierConfig,
                batch_size: int = 16, workers: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """One pass over the images (one at a time in memory per worker): mask hash, green stats, embedding."""

    def inspect(row):
        image, mask = read_image(row.image_path), read_mask(row.mask_path)
        return image, {"mask_hash": mask_hash(mask), **green_blob_stats(image, config.green_margin)}

    rows, embeddings = [], []
    records = list(manifest.itertuples())
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(records), desc="scan", unit="img") as bar:
        for start in range(0, len(records), batch_size):
            results = list(pool.map(inspect, records[start:start + batch_size]))
            embeddings.append(embedder([image for image, _ in results]))
            rows.extend(stats for _, stats in results)
            bar.update(len(results))
    return pd.DataFrame(rows, index=manifest.index), np.concatenate(embeddings)


def mask_groups(hashes: pd.Series) -> pd.Series:
    """Group number for each image whose mask is shared with another (-1 for a unique mask);
    numbered in order of first appearance, so the same input gives the same numbers."""
    sizes = hashes.map(hashes.value_counts())
    shared = hashes[sizes > 1]
    numbers = {h: i for i, h in enumerate(dict.fromkeys(shared))}
    return hashes.map(numbers).fillna(-1).astype(int)


def detect_stickers(embeddings: np.ndarray, groups: np.ndarray, config: OutlierConfig,
                    exclude: np.ndarray | None = None) -> pd.DataFrame:
    """Flag sticker images: group members abnormally far from the embeddings' centre, then a
    classifier trained on group members for images without a mask twin.

    The report measured distance from the global mean embedding. Here each feature is centred on its
    median and scaled by its MAD (floored at a tenth of its standard deviation, for sparse features),
    so that the outliers themselves (about 9% of the real train set) do not set the scale and hide.
    "Abnormally high" is a z-score of that distance, with the median as centre and a spread
    taken from the lower quartile (outliers only lengthen the upper tail). Returns columns
    ``sticker`` (bool), ``distance``, ``distance_z`` and ``sticker_probability`` (classifier output;
    NaN where none could be trained).
    """
    center = np.median(embeddings, 0)
    scale = np.maximum(1.4826 * np.median(np.abs(embeddings - center), 0), 0.1 * embeddings.std(0)) + 1e-6
    z = (embeddings - center) / scale
    distance = np.linalg.norm(z, axis=1)
    # Outliers only lengthen the upper tail: take the spread from the lower half of the distances.
    median, lower_quartile = np.percentile(distance, [50, 25])
    distance_z = (distance - median) / ((median - lower_quartile) / 0.6745 + 1e-6)
    abnormal = distance_z >= config.sticker_min_z
    exclude = np.zeros(len(z), bool) if exclude is None else exclude  # e.g. images already flagged green
    labelled = groups >= 0
    # Within identical-mask groups: the abnormally far members (in the real data, one per pair). A member
    # already flagged green is far because of its blob, not a sticker: it neither counts nor trains.
    sticker = labelled & abnormal & ~exclude
    probability = np.full(len(z), np.nan)
    if sticker.sum() >= 2 and (labelled & ~sticker & ~exclude).sum() >= 2:
        classifier = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        train = labelled & ~exclude
        classifier.fit(z[train], sticker[train])
        probability = classifier.predict_proba(z)[:, 1]
        sticker |= ~labelled & ~exclude & (probability >= config.sticker_probability)
    return pd.DataFrame({"sticker": sticker, "distance": distance, "distance_z": distance_z,
                         "sticker_probability": probability})


def detect_green(stats: pd.DataFrame, config: OutlierConfig) -> np.ndarray:
    """Images with a sizeable green-dominant region (a blob, or a sticker drawn in green): enough green
    pixels, in one sizeable component."""
    return ((stats.green_fraction >= config.green_min_fraction)
            & (stats.green_blob_pixels >= config.green_min_blob_pixels)).to_numpy()


def green_is_cartoon(stats: pd.DataFrame, config: OutlierConfig) -> np.ndarray:
    """Which images' largest green region is drawn (outlined, flat: a sticker) rather than a smooth blob."""
    return ((stats.green_ink >= config.cartoon_min_ink) & (stats.green_flat >= config.cartoon_min_flat)).to_numpy()


def clean(manifest: pd.DataFrame, embedder: Embedder, config: OutlierConfig = OutlierConfig()) -> pd.DataFrame:
    """Label every train image ``kept``, ``sticker`` or ``green``. Test images are not touched."""
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    stats, embeddings = scan_images(train, embedder, config)
    groups = mask_groups(stats.mask_hash).to_numpy()
    coloured = detect_green(stats, config)
    drawn = coloured & green_is_cartoon(stats, config)  # a sticker in a shade of green
    green = coloured & ~drawn
    # green-dominant images neither count nor train as group members far for their colour
    stickers = detect_stickers(embeddings, groups, config, exclude=coloured)
    # A smooth green blob is "green" even when it shares its mask with another image; a drawn one, a sticker.
    status = np.where(green, "green", np.where(drawn | stickers.sticker, "sticker", "kept"))
    score = np.where(status == "green", stats.green_fraction, stickers.distance)
    out = pd.DataFrame({
        "sample_index": train.sample_index, "label": train.label, "status": status, "group": groups,
        "score": np.round(score, 6), "distance": stickers.distance.round(6),
        "distance_z": stickers.distance_z.round(4),
        "sticker_probability": stickers.sticker_probability.round(6),
        "green_fraction": stats.green_fraction.round(6), "green_blob_pixels": stats.green_blob_pixels,
        "green_ink": stats.green_ink.round(4), "green_flat": stats.green_flat.round(4),
        "mask_hash": stats.mask_hash, "embedder": embedder.name,
    })
    return out


def summary(cleaned: pd.DataFrame) -> dict:
    """Counts per status and per class before / after cleaning."""
    kept = cleaned[cleaned.status == "kept"]
    present = set(cleaned.label)  # the four subtypes in their order, or another folder's label set
    classes = list(LABELS) if present <= set(LABELS) else sorted(present)
    return {
        "embedder": cleaned.embedder.iloc[0] if len(cleaned) else None,
        "status_counts": cleaned.status.value_counts().to_dict(),
        "class_counts_before": cleaned.label.value_counts().reindex(classes, fill_value=0).to_dict(),
        "class_counts_after": kept.label.value_counts().reindex(classes, fill_value=0).to_dict(),
        "identical_mask_groups": int(cleaned.group.max() + 1) if len(cleaned) else 0,
    }


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


def write_outputs(cleaned: pd.DataFrame, out_dir: Path | str, config: OutlierConfig, data_note: str) -> Path:
    """Write ``clean_manifest.csv`` and ``clean_summary.json`` (config, embedder, data) to ``out_dir``."""
    out_dir = Path(out_dir)
    path = artifacts.write_csv(cleaned, out_dir / "clean_manifest.csv")
    artifacts.write_json(out_dir / "clean_summary.json", {"data": data_note, "config": asdict(config), **summary(cleaned)})
    return path
