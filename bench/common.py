"""Shared set-up for the benchmarks: the full-size synthetic default and its tiles."""

from pathlib import Path

from anndl.core.config import DATA_ROOT, OUTPUTS, SYNTHETIC_DEFAULT
from anndl.data import resolve_data_dir
from anndl.engine import experiment


def prepared():
    """The data in data/ (generated on first use) with its clean manifest and tiles under outputs/."""
    data = resolve_data_dir(DATA_ROOT, SYNTHETIC_DEFAULT)
    return experiment.prepare(data, Path(OUTPUTS))
