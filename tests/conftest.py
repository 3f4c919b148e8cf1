"""Shared fixtures: a tiny synthetic challenge folder made once per test session."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from anndl.data import synthetic

HE_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "he_samples"
TINY = dict(n_train=24, n_test=6, scale=0.25, seed=7)  # 2 stickers, 2 green


# the weights' digest cache (``artifacts.content_digest``) of this run, never the user's
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="anndl-test-cache-"))

# the tests that reuse each other's runs through ``shared_outputs`` (the notebooks reuse the comparisons' K-fold runs)
SHARED = ("tests/test_compare.py::", "tests/test_notebooks.py::",
          "tests/test_beyond.py::test_kfold_ensemble_tta_and_comparison_end_to_end",
          "tests/test_blend.py::test_blend_of_a_tile_network_and_a_probe_on_a_timm_encoder")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs on every core (pytest-xdist): each module's tests stay on one worker, so a module's
    fixtures are made once, and the ``SHARED`` tests share one worker and its ``shared_outputs``."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return "shared_outputs" if nodeid.startswith(SHARED) else nodeid.split("::", 1)[0]

    return ByModule(config, log)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A read-only tiny synthetic folder; copy it (``data_copy``) before changing anything."""
    return synthetic.generate(tmp_path_factory.mktemp("tiny") / "challenge", progress=False, **TINY)


@pytest.fixture(scope="session")
def shared_outputs(tmp_path_factory) -> Path:
    """One outputs folder for the tests that make the same requests as the notebooks (clean, tiles, the
    comparisons' K-fold runs): what one test trained, the next reuses through its record, as `make notebooks`
    does. Tests that change or break outputs use their own ``tmp_path``."""
    return tmp_path_factory.mktemp("shared") / "outputs"


@pytest.fixture
def data_copy(tiny_data, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "challenge"))
