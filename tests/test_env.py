"""Notebook environment helpers: quiet TensorFlow import, portable paths, the full-profile guard, the footer."""

import os
import subprocess
import sys
import time

import pytest

from anndl import data
from anndl.core import env
from anndl.core.config import REPO_ROOT


def test_tensorflow_imports_without_log_lines():
    code = "from anndl.core.env import quiet_tensorflow; tf = quiet_tensorflow(); print(int(tf.constant(1) + 1))"
    clean = {k: v for k, v in os.environ.items() if k not in env.QUIET_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean, timeout=120,
                          cwd=REPO_ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "2"
    assert done.stderr.strip() == "", done.stderr  # no absl/oneDNN/cuInit/cpu_feature_guard line


def test_portable_paths():
    assert env.portable(f"wrote {REPO_ROOT / 'outputs' / 'runs'}") == "wrote outputs/runs"
    assert env.portable("/kaggle/input/an2dl/train_data") == "kaggle:input/an2dl/train_data"


def test_full_profile_guard(tmp_path):
    (tmp_path / "planted_outliers.csv").write_text("sample_index,kind\n")
    with pytest.raises(RuntimeError, match="ALLOW_SYNTHETIC"):
        data.refuse_synthetic("full", tmp_path)
    data.refuse_synthetic("full", tmp_path, allow_synthetic=True)
    data.refuse_synthetic("smoke", tmp_path)


def test_footer_names_time_seed_commit_versions_and_files(tmp_path):
    started = time.time()
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "01_a.png").write_bytes(b"x")
    text = env.footer(started, 42, tmp_path)
    assert "wall time:" in text and "seed: 42" in text and "commit:" in text and "numpy" in text
    assert "files written (1):" in text and "01_a.png" in text


def test_plain_progress_prints_no_bar_for_short_loops_and_few_updates(monkeypatch):
    import io
    import time

    import tqdm.auto

    from anndl.core import env

    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.auto.tqdm)  # restored afterwards
    env.plain_progress(mininterval=0.5)
    quiet = io.StringIO()
    for _ in tqdm.auto.tqdm(range(5), file=quiet):
        pass
    assert quiet.getvalue() == ""  # shorter than the 3 s delay: no bar at all
    shown = io.StringIO()
    for _ in tqdm.auto.tqdm(range(40), file=shown, delay=0):  # a caller's own setting wins
        time.sleep(0.03)
    assert 2 <= shown.getvalue().count("\r") <= 6  # every 0.5 s over ~1.2 s, not every step
