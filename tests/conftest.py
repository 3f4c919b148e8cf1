"""Shared fixtures: a tiny synthetic challenge folder made once per test session."""

import shutil
from pathlib import Path

import pytest

from anndl.data import synthetic

HE_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "he_samples"
TINY = dict(n_train=24, n_test=6, scale=0.25, seed=7, n_stickers=2, n_green=2)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A read-only tiny synthetic folder; copy it (``data_copy``) before changing anything."""
    return synthetic.generate(tmp_path_factory.mktemp("tiny") / "challenge", progress=False, workers=1, **TINY)


@pytest.fixture(scope="session")
def shared_outputs(tmp_path_factory) -> Path:
    """One outputs folder for the tests that make the same requests as the notebooks (clean, tiles, the
    comparisons' K-fold runs): what one test trained, the next reuses through its record, as `make notebooks`
    does. Tests that change or break outputs use their own ``tmp_path``."""
    return tmp_path_factory.mktemp("shared") / "outputs"


@pytest.fixture
def data_copy(tiny_data, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "challenge"))
