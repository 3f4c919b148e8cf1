"""Shared set-up for the benchmarks: the full-size synthetic default and its tiles."""

from pathlib import Path

from anndl import experiment
from anndl.config import DATA_ROOT, OUTPUTS, SYNTHETIC_DEFAULT
from anndl.data import resolve_data_dir


def prepared():
    """The data in data/ (generated on first use) with its clean manifest and tiles under outputs/."""
    data = resolve_data_dir(DATA_ROOT, SYNTHETIC_DEFAULT)
    return experiment.prepare(data, Path(OUTPUTS))
