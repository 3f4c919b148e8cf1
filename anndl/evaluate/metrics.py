"""The challenge metric (image macro F1) with bootstrap intervals (plain, paired; one flipped image of ~60 moves it 2
points), per-class tables and a learning gate: *learned* = a real paired gain over majority, above a shuffled null."""

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from anndl.core.labels import LABELS, NUM_CLASSES


def macro_f1(y_true, y_pred, n_classes: int = NUM_CLASSES) -> float:
    """Macro F1 over the ``n_classes`` classes (a class absent from both counts as F1 0, as on Kaggle)."""
    return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def _batched_macro_f1(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``macro_f1`` of each row of ``truth`` against the same row of ``pred`` (both (n_rows, n)), vectorised."""
    n_rows = len(truth)
    cells = (np.arange(n_rows)[:, None] * n_classes + truth) * n_classes + pred
    counts = np.bincount(cells.ravel(), minlength=n_rows * n_classes * n_classes).reshape(n_rows, n_classes, n_classes)
    tp = np.diagonal(counts, axis1=1, axis2=2)
    denominator = counts.sum(2) + counts.sum(1)  # 2 TP + FP + FN
    return np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0).mean(1)


def bootstrap_ci(y_true, y_pred, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 n_classes: int = NUM_CLASSES, baseline=None) -> tuple[float, float]:
    """Percentile bootstrap interval of macro F1 over resampled images (``baseline``: of the paired difference)."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    rows = np.random.default_rng(seed).integers(0, len(y_true), (n_boot, len(y_true)))
    scores = _batched_macro_f1(y_true[rows], y_pred[rows], n_classes)
    if baseline is not None:
        scores = scores - _batched_macro_f1(y_true[rows], np.asarray(baseline, int)[rows], n_classes)
    low, high = np.percentile(scores, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def paired_difference(y_true, pred_a, pred_b, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                      n_classes: int = NUM_CLASSES) -> dict:
    """Macro F1 of ``pred_b`` minus ``pred_a``'s, paired bootstrap interval (one holding 0: no real difference)."""
    low, high = bootstrap_ci(y_true, pred_b, n_boot, seed, level, n_classes, baseline=pred_a)
    gain = macro_f1(y_true, pred_b, n_classes) - macro_f1(y_true, pred_a, n_classes)
    return {"gain": round(gain, 4), "gain_ci95": [round(low, 4), round(high, 4)],
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


NO_VERDICT = "did not learn — no verdict"
REFERENCE_NO_VERDICT = "reference did not learn — no verdict"


def permutation_null(y_true, y_pred, n_perm: int = 1000, seed: int = 0, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """Macro F1 of ``y_pred`` on ``n_perm`` seeded shuffles of ``y_true``: chance, at ``y_pred``'s class frequencies."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    truth = np.random.default_rng(seed).permuted(np.tile(y_true, (n_perm, 1)), axis=1)
    return _batched_macro_f1(truth, np.tile(y_pred, (n_perm, 1)), n_classes)


def _beats(y_true, baseline, y_pred, seed: int, n_classes: int) -> dict:
    over = paired_difference(y_true, baseline, y_pred, seed=seed, n_classes=n_classes)
    return over | {"beats": bool(over["real_difference"] and over["gain_ci95"][1] > 0)}


def learning_gate(y_true, y_pred, majority, n_classes: int = NUM_CLASSES, seed: int = 0, n_perm: int = 1000,
                  colour=None) -> dict:
    """``learned``: a real paired gain over ``majority`` (interval above 0) and macro F1 above ``null_p95`` (95th
    percentile of ``permutation_null``); ``beats_colour`` (a real gain over ``colour``, or None) is not part of it."""
    score = macro_f1(y_true, y_pred, n_classes)
    over = _beats(y_true, majority, y_pred, seed, n_classes)
    null_p95 = float(np.percentile(permutation_null(y_true, y_pred, n_perm, seed, n_classes), 95))
    col = (_beats(y_true, colour, y_pred, seed, n_classes) if colour is not None
           else dict.fromkeys(("gain", "gain_ci95", "beats")))
    return {"learned": bool(over["beats"] and score > null_p95), "macro_f1": round(score, 4),
            "over_majority": over["gain"], "over_majority_ci95": over["gain_ci95"], "beats_majority": over["beats"],
            "null_p95": round(null_p95, 4), "beats_null": bool(score > null_p95),
            "over_colour": col["gain"], "over_colour_ci95": col["gain_ci95"], "beats_colour": col["beats"]}


def compared(y_true, predicted: dict, seed: int = 0, n_classes: int = NUM_CLASSES, reference_verdict: str = "—", *,
             majority=None, colour=None, baselines=()) -> list[dict]:
    """A row per ``predicted`` entry (first the reference): macro F1, interval, paired gain, verdict; with ``majority``,
    ``learning_gate``'s fields and a paired verdict only when both learned (first row: ``reference_verdict``)."""
    reference_name, reference = next(iter(predicted.items()))
    baselines = set(baselines)
    gates = {name: (learning_gate(y_true, y_pred, majority, n_classes, seed, colour=colour)
                    if majority is not None and name not in baselines else None)
             for name, y_pred in predicted.items()}
    reference_learned = True if reference_name in baselines else (gates[reference_name] or {}).get("learned")
    rows = []
    for i, (name, y_pred) in enumerate(predicted.items()):
        scores = image_scores(y_true, y_pred, seed, n_classes)
        gain = paired_difference(y_true, reference, y_pred, seed=seed, n_classes=n_classes)
        gate = gates[name] or {}
        learned = gate.get("learned")
        paired = "real difference" if gain["real_difference"] else "no real difference (interval holds 0)"
        if name in baselines and majority is not None:
            verdict = "baseline"
        elif i == 0:
            verdict = reference_verdict if learned is None else (
                "reference: learned" if learned else f"reference: {NO_VERDICT}")
        elif learned is None or (learned and reference_learned):
            verdict = paired
        else:
            verdict = REFERENCE_NO_VERDICT if learned else NO_VERDICT
        rows.append({"variant": name, "oof_macro_f1": scores["macro_f1"], "ci95_low": scores["macro_f1_ci95"][0],
                     "ci95_high": scores["macro_f1_ci95"][1], "images": scores["images"], "gain": gain["gain"],
                     "gain_ci95": gain["gain_ci95"], "verdict": verdict, "learned": learned,
                     "null_p95": gate.get("null_p95"), "beats_colour": gate.get("beats_colour")})
    return rows


def flag(value) -> bool | None:
    """A table's ``learned`` / ``beats_colour`` cell, also as read back from CSV: True, False or None."""
    return {"True": True, "False": False}.get(str(value))
