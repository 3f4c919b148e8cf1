"""Voting: tile probabilities to image predictions, the challenge metric, the Kaggle submission format.

Voting rules:

* ``hard``: each tile votes for its argmax class; the image takes the class with most votes. A tie
  goes to the tied class with the largest summed tile probability (then the lower class index).
* ``soft`` (mask-weighted): the image takes the argmax of sum over tiles of probability x tile weight,
  where a tile's weight is its share of the image's mask pixels.

The metric is macro F1 over images, reported with a bootstrap 95% interval over images: on a
~60-image validation split one flipped image moves it by about two points.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from anndl.labels import LABELS, NUM_CLASSES

VOTING_RULES = ("hard", "soft")


def vote(probabilities: np.ndarray, image_numbers: np.ndarray, weights: np.ndarray, n_images: int,
         rule: str = "hard") -> np.ndarray:
    """Class index per image (``n_images``) from tile probabilities (n_tiles, n_classes)."""
    probabilities = np.asarray(probabilities, np.float64)
    image_numbers = np.asarray(image_numbers)
    missing = np.setdiff1d(np.arange(n_images), image_numbers)
    if missing.size:
        raise ValueError(f"{missing.size} images have no tile prediction (e.g. image number {missing[0]})")
    n_classes = probabilities.shape[1]
    summed = np.zeros((n_images, n_classes))
    np.add.at(summed, image_numbers, probabilities)
    if rule == "soft":
        weighted = np.zeros((n_images, n_classes))
        np.add.at(weighted, image_numbers, probabilities * np.asarray(weights, np.float64)[:, None])
        return weighted.argmax(1)
    if rule != "hard":
        raise ValueError(f"voting rule must be one of {VOTING_RULES}, got {rule!r}")
    votes = np.zeros((n_images, n_classes))
    np.add.at(votes, (image_numbers, probabilities.argmax(1)), 1)
    tied = votes == votes.max(1, keepdims=True)
    return np.where(tied, summed, -np.inf).argmax(1)


def macro_f1(y_true, y_pred, n_classes: int = NUM_CLASSES) -> float:
    """Macro F1 over the ``n_classes`` classes (a class absent from both counts as F1 0, as on Kaggle)."""
    return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def bootstrap_ci(y_true, y_pred, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 n_classes: int = NUM_CLASSES) -> tuple[float, float]:
    """Percentile bootstrap interval of macro F1, resampling images."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    scores = [macro_f1(y_true[i], y_pred[i], n_classes)
              for i in rng.integers(0, len(y_true), (n_boot, len(y_true)))]
    low, high = np.percentile(scores, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def paired_difference(y_true, pred_a, pred_b, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                      n_classes: int = NUM_CLASSES) -> dict:
    """Macro F1 of ``pred_b`` minus that of ``pred_a`` on the same images, with a paired bootstrap interval
    (both scored on each resample). An interval that contains 0 shows no real difference."""
    y_true, pred_a, pred_b = map(np.asarray, (y_true, pred_a, pred_b))
    rng = np.random.default_rng(seed)
    diffs = [macro_f1(y_true[i], pred_b[i], n_classes) - macro_f1(y_true[i], pred_a[i], n_classes)
             for i in rng.integers(0, len(y_true), (n_boot, len(y_true)))]
    low, high = np.percentile(diffs, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    gain = macro_f1(y_true, pred_b, n_classes) - macro_f1(y_true, pred_a, n_classes)
    return {"gain": round(gain, 4), "gain_ci95": [round(float(low), 4), round(float(high), 4)],
            "real_difference": bool(low > 0 or high < 0)}


def per_class_table(y_true, y_pred, classes: tuple[str, ...] = LABELS) -> pd.DataFrame:
    """Precision, recall, F1 and support per class."""
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(classes))), zero_division=0)
    return pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s}, index=list(classes)).round(4)


def confusion(y_true, y_pred, n_classes: int = NUM_CLASSES) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def image_scores(y_true, y_pred, seed: int = 0, n_classes: int = NUM_CLASSES) -> dict:
    """Macro F1 over ``n_classes`` classes with its bootstrap interval, accuracy and the image count."""
    low, high = bootstrap_ci(y_true, y_pred, seed=seed, n_classes=n_classes)
    return {"macro_f1": round(macro_f1(y_true, y_pred, n_classes), 4), "macro_f1_ci95": [round(low, 4), round(high, 4)],
            "accuracy": round(float(np.mean(np.asarray(y_true) == np.asarray(y_pred))), 4),
            "images": int(len(y_true))}


def write_submission(sample_indices, predictions, path: Path | str, expected: set[str] | None = None,
                     classes: tuple[str, ...] = LABELS) -> Path:
    """Write ``sample_index,label`` with one row per test image, in sample order, exact label strings.

    ``expected``: the test images of the challenge folder; every one must appear exactly once.
    """
    frame = pd.DataFrame({"sample_index": list(sample_indices),
                          "label": [classes[int(i)] for i in predictions]})
    validate_submission(frame, expected, classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.sort_values("sample_index").to_csv(path, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    return path


def validate_submission(frame: pd.DataFrame, expected: set[str] | None = None,
                        classes: tuple[str, ...] = LABELS) -> None:
    """Raise ValueError unless every expected image appears once with a known label."""
    if list(frame.columns) != ["sample_index", "label"]:
        raise ValueError(f"submission columns are {list(frame.columns)}; expected ['sample_index', 'label']")
    duplicated = frame.sample_index[frame.sample_index.duplicated()]
    if len(duplicated):
        raise ValueError(f"submission has {len(duplicated)} duplicate rows, e.g. {duplicated.iloc[0]}")
    unknown = set(frame.label) - set(classes)
    if unknown:
        raise ValueError(f"submission has unknown labels {sorted(unknown)}")
    if expected is not None:
        missing, extra = expected - set(frame.sample_index), set(frame.sample_index) - expected
        if missing or extra:
            raise ValueError(f"submission misses {len(missing)} test images {sorted(missing)[:3]} "
                             f"and has {len(extra)} unknown ones {sorted(extra)[:3]}")


def dihedral(tiles, k: int):
    """The k-th of the eight dihedral transforms of a (batch, h, w, c) tensor: rotations by k*90 degrees,
    then a horizontal flip for k >= 4."""
    import tensorflow as tf

    out = tf.image.rot90(tiles, k % 4)
    return tf.image.flip_left_right(out) if k >= 4 else out


def predict_tiles(model, dataset, from_logits: bool = False, tta: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a model over an inference dataset of ``(tile, image_number, weight)`` batches.

    Returns tile probabilities (float32; softmax applied when the model outputs logits), image
    numbers and weights, in dataset order. ``tta``: average the probabilities over the eight
    dihedral transforms of each tile (flips and 90-degree rotations; tissue has no orientation).
    """
    probabilities, numbers, weights = [], [], []
    for tiles, image_numbers, tile_weights in dataset:
        views = [dihedral(tiles, k) for k in range(8)] if tta else [tiles]
        mean = 0
        for view in views:
            output = np.asarray(model(view, training=False), np.float32)  # no retracing on a short last batch
            if from_logits:
                output = np.exp(output - output.max(1, keepdims=True))
                output /= output.sum(1, keepdims=True)
            mean = mean + output / len(views)
        probabilities.append(mean)
        numbers.append(image_numbers.numpy())
        weights.append(tile_weights.numpy())
    if not probabilities:
        raise ValueError("the inference dataset is empty")
    return np.concatenate(probabilities), np.concatenate(numbers), np.concatenate(weights)
