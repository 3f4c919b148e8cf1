"""The Kaggle submission: ``sample_index,label`` per test image, exact labels; ``dominance`` flags one-class ones."""

from pathlib import Path

import pandas as pd

from anndl.core import artifacts
from anndl.core.labels import LABELS

DOMINANCE = 0.8  # a submission with more than this share of one class is flagged


def dominance(labels, classes: tuple[str, ...] = LABELS, threshold: float = DOMINANCE) -> dict | None:
    """``{"class", "count", "share", "images"}`` of a class over ``threshold`` of ``labels``, else None."""
    names = [classes[int(v)] if not isinstance(v, str) else v for v in labels]
    counts = pd.Series(names, dtype=object).value_counts()
    if not names or counts.iloc[0] / len(names) <= threshold:
        return None
    count = int(counts.iloc[0])
    return {"class": counts.index[0], "count": count, "share": round(count / len(names), 4), "images": len(names)}


def write_submission(sample_indices, predictions, path: Path | str, expected: set[str] | None = None,
                     classes: tuple[str, ...] = LABELS) -> Path:
    """Write ``sample_index,label``, each of ``expected`` once, sorted; warn if a class is over ``DOMINANCE``."""
    frame = pd.DataFrame({"sample_index": list(sample_indices), "label": [classes[int(i)] for i in predictions]})
    validate_submission(frame, expected, classes)
    path = artifacts.write_csv(frame.sort_values("sample_index"), path)
    if found := dominance(frame.label, classes):
        print(f"warning: {found['count']} of {found['images']} test images ({found['share']:.0%}) are predicted "
              f"{found['class']}: a model that learned little predicts one class")
    return path


def validate_submission(frame: pd.DataFrame, expected: set[str] | None = None,
                        classes: tuple[str, ...] = LABELS) -> None:
    """Raise ValueError unless every expected image appears once with a known label."""
    if list(frame.columns) != ["sample_index", "label"]:
        raise ValueError(f"submission columns are {list(frame.columns)}; expected ['sample_index', 'label']")
    duplicated = frame.sample_index[frame.sample_index.duplicated()]
    if len(duplicated):
        raise ValueError(f"submission has {len(duplicated)} duplicate rows, e.g. {duplicated.iloc[0]}")
    if (unknown := set(frame.label) - set(classes)):
        raise ValueError(f"submission has unknown labels {sorted(unknown)}")
    if expected is not None:
        missing, extra = expected - set(frame.sample_index), set(frame.sample_index) - expected
        if missing or extra:
            raise ValueError(f"submission misses {len(missing)} test images {sorted(missing)[:3]} "
                             f"and has {len(extra)} unknown ones {sorted(extra)[:3]}")
