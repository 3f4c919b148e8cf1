"""The Kaggle submission: ``sample_index,label``, one row per test image, exact label strings, written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anndl.core import artifacts
from anndl.core.labels import LABELS


def write_submission(sample_indices, predictions, path: Path | str, expected: set[str] | None = None,
                     classes: tuple[str, ...] = LABELS) -> Path:
    """Write ``sample_index,label`` with one row per test image, in sample order, exact label strings.

    ``expected``: the test images of the challenge folder; every one must appear exactly once.
    """
    frame = pd.DataFrame({"sample_index": list(sample_indices),
                          "label": [classes[int(i)] for i in predictions]})
    validate_submission(frame, expected, classes)
    return artifacts.write_csv(frame.sort_values("sample_index"), path)


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
