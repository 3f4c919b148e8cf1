"""The Kaggle submission: ``sample_index,label``, one row per test image, exact label strings, written atomically.

A submission that predicts one class for most test images (``dominance``) says so: that is what a model that
learned little does (it falls back on the commonest class)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anndl.core import artifacts
from anndl.core.labels import LABELS


DOMINANCE = 0.8  # a submission with more than this share of one class is flagged


def dominance(labels, classes: tuple[str, ...] = LABELS, threshold: float = DOMINANCE) -> dict | None:
    """``{"class", "count", "share", "images"}`` of the commonest predicted class when it is more than
    ``threshold`` of ``labels`` (class names or indices into ``classes``), else None."""
    names = pd.Series([classes[int(v)] if not isinstance(v, str) else v for v in labels], dtype=object)
    if not len(names):
        return None
    counts = names.value_counts()
    top, count = counts.index[0], int(counts.iloc[0])
    share = count / len(names)
    if share <= threshold:
        return None
    return {"class": top, "count": count, "share": round(share, 4), "images": int(len(names))}


def dominance_line(found: dict) -> str:
    """The warning for a dominated submission (``dominance``'s dict)."""
    return (f"warning: {found['count']} of {found['images']} test images ({found['share']:.0%}) are predicted "
            f"{found['class']}: a model that learned little predicts one class")


def write_submission(sample_indices, predictions, path: Path | str, expected: set[str] | None = None,
                     classes: tuple[str, ...] = LABELS) -> Path:
    """Write ``sample_index,label`` with one row per test image, in sample order, exact label strings.

    ``expected``: the test images of the challenge folder; every one must appear exactly once. Prints one
    warning line when one class is more than ``DOMINANCE`` of the predictions (``dominance``).
    """
    frame = pd.DataFrame({"sample_index": list(sample_indices),
                          "label": [classes[int(i)] for i in predictions]})
    validate_submission(frame, expected, classes)
    path = artifacts.write_csv(frame.sort_values("sample_index"), path)
    if found := dominance(frame.label, classes):
        print(dominance_line(found))
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
