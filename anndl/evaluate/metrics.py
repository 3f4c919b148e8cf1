"""The challenge metric: macro F1 over images, with bootstrap intervals (plain and paired) and per-class tables.

On a ~60-image validation split one flipped image moves macro F1 by about two points, so every score
carries a bootstrap 95% interval over images, and two models are compared on the same images with a
paired bootstrap (both scored on each resample).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from anndl.core.labels import LABELS, NUM_CLASSES


def macro_f1(y_true, y_pred, n_classes: int = NUM_CLASSES) -> float:
    """Macro F1 over the ``n_classes`` classes (a class absent from both counts as F1 0, as on Kaggle)."""
    return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def _resampled_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, rows: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro F1 of each resample (``rows``: (n_boot, n) image indices), vectorised over resamples; the same
    definition as ``macro_f1`` (a class absent from truth and prediction counts as F1 0)."""
    n_boot = len(rows)
    cells = (np.arange(n_boot)[:, None] * n_classes + y_true[rows]) * n_classes + y_pred[rows]
    counts = np.bincount(cells.ravel(), minlength=n_boot * n_classes * n_classes).reshape(n_boot, n_classes, n_classes)
    tp = np.diagonal(counts, axis1=1, axis2=2)
    denominator = counts.sum(2) + counts.sum(1)  # 2 TP + FP + FN
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    return f1.mean(1)


def bootstrap_ci(y_true, y_pred, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 n_classes: int = NUM_CLASSES) -> tuple[float, float]:
    """Percentile bootstrap interval of macro F1, resampling images."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    rows = np.random.default_rng(seed).integers(0, len(y_true), (n_boot, len(y_true)))
    scores = _resampled_macro_f1(y_true, y_pred, rows, n_classes)
    low, high = np.percentile(scores, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def paired_difference(y_true, pred_a, pred_b, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                      n_classes: int = NUM_CLASSES) -> dict:
    """Macro F1 of ``pred_b`` minus that of ``pred_a`` on the same images, with a paired bootstrap interval
    (both scored on each resample). An interval that contains 0 shows no real difference."""
    y_true, pred_a, pred_b = (np.asarray(v, int) for v in (y_true, pred_a, pred_b))
    rows = np.random.default_rng(seed).integers(0, len(y_true), (n_boot, len(y_true)))
    diffs = (_resampled_macro_f1(y_true, pred_b, rows, n_classes) -
             _resampled_macro_f1(y_true, pred_a, rows, n_classes))
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


def compared(y_true, predicted: dict, seed: int = 0, n_classes: int = NUM_CLASSES,
             reference_verdict: str = "—") -> list[dict]:
    """One row per entry of ``predicted`` ({name: class index per image}, the first the reference): macro F1
    with its bootstrap interval, the gain over the reference with its paired 95% interval and a verdict ("real
    difference" only when that interval excludes 0). Every comparison table is built from these rows."""
    reference = next(iter(predicted.values()))
    rows = []
    for i, (name, y_pred) in enumerate(predicted.items()):
        scores = image_scores(y_true, y_pred, seed, n_classes)
        gain = paired_difference(y_true, reference, y_pred, seed=seed, n_classes=n_classes)
        rows.append({"variant": name, "oof_macro_f1": scores["macro_f1"], "ci95_low": scores["macro_f1_ci95"][0],
                     "ci95_high": scores["macro_f1_ci95"][1], "images": scores["images"], "gain": gain["gain"],
                     "gain_ci95": gain["gain_ci95"], "verdict": reference_verdict if i == 0 else
                     ("real difference" if gain["real_difference"] else "no real difference (interval holds 0)")})
    return rows
