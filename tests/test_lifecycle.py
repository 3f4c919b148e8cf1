"""What `anndl run` leaves on disk is what it claims to be: after other data, other settings, a kill (real
signals, in subprocesses), a cut file, a second writer, the same command ends in a correct rebuild, an
exact resume, or a one-line refusal naming the path; never in stale, partial or mixed outputs."""

import json
import os
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from anndl import cli
from anndl.core import artifacts
from anndl.data import synthetic

pytestmark = pytest.mark.slow
COMPARED = ("runs/scratch_resnet/metrics.json", "runs/scratch_resnet/log.csv", "submission.csv")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")


def _command(data, out, *extra):
    return ["run", "--data", str(data), "--out", str(out), "--epochs", "3", *extra]


def _start(args) -> subprocess.Popen:
    # SIGINT back to its default in the child: a test run started in the background (CI) inherits it ignored,
    # and Python then installs no KeyboardInterrupt handler
    return subprocess.Popen([sys.executable, "-m", "anndl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(process: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    """Return as soon as ``path`` exists; fail if ``process`` ends first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"finished before {path} appeared: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


def _kill_when(process: subprocess.Popen, path: Path, sig=signal.SIGKILL, timeout: float = 120) -> str:
    """Send ``sig`` to ``process`` as soon as ``path`` exists; its standard error."""
    _wait_for(process, path, timeout)
    process.send_signal(sig)
    return process.communicate(timeout=60)[1]


def _same_outputs(a: Path, b: Path) -> None:
    for name in COMPARED:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """An uninterrupted `run` (seed 42, 3 epochs): what every interrupted run must end up as, byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert cli.main(_command(tiny_data, out)) == 0
    return out


def test_run_writes_a_run_and_a_submission_and_reuses_every_step(tiny_data, reference, tmp_path, capsys):
    from anndl.data import read_challenge

    run = reference / "runs" / "scratch_resnet"
    for name in ("model.keras", "config.json", "log.csv", "metrics.json", "best.weights.h5", "val_predictions.csv"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["profile"] == "smoke" and "synthetic" in metrics["data"]
    assert metrics["weights"].startswith("random initialisation")
    assert set(metrics["validation"]) == {"hard", "soft"}
    log = pd.read_csv(run / "log.csv")
    assert len(log) == 3 and "val_image_macro_f1" in log.columns
    assert metrics["best_epoch"] == int(log.val_image_macro_f1.idxmax()) + 1
    submission = pd.read_csv(reference / "submission.csv")
    manifest = read_challenge(tiny_data)
    assert sorted(submission.sample_index) == sorted(manifest.sample_index[manifest.split == "test"])
    assert json.loads((reference / "submission.json").read_text())["profiles"] == ["smoke"]
    capsys.readouterr()
    assert cli.main(_command(tiny_data, reference)) == 0  # the same command again: every step reused
    assert capsys.readouterr().out.count("reusing") == 4  # clean, tiles, test tiles, the run
    soft = tmp_path / "soft.csv"
    assert cli.main(["predict", "--run", str(run), "--data", str(tiny_data), "--out", str(soft), "--voting", "soft"]) == 0
    assert sorted(pd.read_csv(soft).sample_index) == sorted(submission.sample_index)


def test_a_second_writer_is_refused_and_a_kill_mid_training_resumes_to_identical_outputs(tiny_data, reference,
                                                                                          tmp_path, capsys):
    out = tmp_path / "out"
    run = out / "runs" / "scratch_resnet"
    first = _start(_command(tiny_data, out))
    try:
        _wait_for(first, run / "resume" / "state.json")  # mid-training, after epoch 1
        first.send_signal(signal.SIGSTOP)  # frozen while it holds the run folder: the overlap is certain
        second = subprocess.run([sys.executable, "-m", "anndl", *_command(tiny_data, out)], capture_output=True,
                                text=True, env=ENV, timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)  # then the first is killed, mid-training
        first.communicate(timeout=60)
    assert second.returncode == 2  # the second writer stops at once, touching nothing
    assert f"is being written by another process (PID {first.pid})" in second.stderr.strip().splitlines()[-1]
    assert not (run / "record.json").exists()
    assert cli.main(["predict", "--run", str(run), "--data", str(tiny_data), "--out", str(tmp_path / "s.csv")]) == 2
    assert "not a finished artifact" in capsys.readouterr().err
    assert cli.main(_command(tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert "resuming from epoch 2" in printed and "reusing runs" not in printed
    _same_outputs(reference, out)
    assert pd.read_csv(run / "log.csv").epoch.tolist() == [0, 1, 2]  # every epoch exactly once
    # --redo killed mid-training: it trained beside the finished run (in .staging), which stays intact and is
    # what the plain command then reuses
    _kill_when(_start(_command(tiny_data, out, "--redo")), run / artifacts.STAGING / "resume" / "state.json")
    assert (run / "record.json").is_file()
    assert cli.main(_command(tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert f"reusing {run}" in printed and "resuming" not in printed
    _same_outputs(reference, out)


def test_kill_between_stages_then_the_same_command(tiny_data, reference, tmp_path, capsys):
    out = tmp_path / "out"
    _kill_when(_start(_command(tiny_data, out)), out / "tiles" / "record.json")
    assert cli.main(_command(tiny_data, out)) == 0
    assert "reusing" in capsys.readouterr().out  # the finished stages
    _same_outputs(reference, out)


def test_other_data_other_settings_cut_and_empty_files_are_rebuilt(tiny_data, reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / "tiles" / "tiles.csv").write_text((out / "tiles" / "tiles.csv").read_text()[:200])  # cut short
    (out / "runs" / "scratch_resnet" / "metrics.json").write_text("")  # a full disk while writing it
    assert cli.main(_command(tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert "tiles.csv changed since it was recorded" in printed
    assert "metrics.json changed since it was recorded" in printed and "training it again" in printed
    _same_outputs(reference, out)
    assert cli.main(_command(tiny_data, out, "--epochs", "2")) == 0  # a changed setting is never ignored
    printed = capsys.readouterr().out
    assert "made with settings phases.0.epochs 3, not 2: training it again" in printed
    assert json.loads((out / "runs/scratch_resnet/metrics.json").read_text())["epochs_run"] == 2
    other = synthetic.generate(tmp_path / "other", n_train=16, n_test=3, scale=0.25, seed=99, progress=False)
    assert cli.main(_command(other, out)) == 0  # the main user path: synthetic first, then other data
    printed = capsys.readouterr().out
    assert "runs/scratch_resnet: made from data" in printed and "reusing" not in printed
    assert sorted(pd.read_csv(out / "submission.csv").sample_index) == [f"img_{i:04d}.png" for i in range(3)]
    assert str(other.resolve()) in json.loads((out / "runs/scratch_resnet/metrics.json").read_text())["data"]


def test_kfold_interrupted_after_a_fold_is_refused_then_completed(tiny_data, tmp_path, capsys):
    run = tmp_path / "work" / "kfold"
    args = ["train", "--data", str(tiny_data), "--out", str(run), "--folds", "2", "--epochs", "3"]
    process = _start(args)
    _wait_for(process, run / "fold_0" / "record.json")
    for _ in range(3):  # Ctrl-C, again if the first one landed where TensorFlow swallowed it
        process.send_signal(signal.SIGINT)
        try:
            stderr = process.communicate(timeout=20)[1]
            break
        except subprocess.TimeoutExpired:
            continue
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted: finished steps are kept")
    predict = ["predict", "--run", str(run), "--data", str(tiny_data), "--out", str(tmp_path / "s.csv")]
    assert cli.main(predict) == 2
    assert f"{run}: not a finished artifact" in capsys.readouterr().err
    assert cli.main(args) == 0
    assert f"reusing {run / 'fold_0'}" in capsys.readouterr().out.replace(str(Path.cwd()) + "/", "")
    assert cli.main(predict) == 0
    assert "2 model(s))" in capsys.readouterr().out


def test_synth_never_deletes_a_folder_it_did_not_write(tmp_path, capsys):
    precious = tmp_path / "work"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    args = ["synth", "--out", str(precious), "--n-train", "8", "--n-test", "1", "--scale", "0.05"]
    assert cli.main(args) == 2
    assert f"{precious}: folder is not empty and was not written by `anndl synth`" in capsys.readouterr().err
    assert cli.main([*args, "--force"]) == 0 and (precious / "notes.txt").read_text() == "keep me"
    assert cli.main(args) == 0  # its own folder: regenerated in place, still keeping the other file
    assert (precious / "notes.txt").is_file() and (precious / "train_labels.csv").is_file()


def test_a_moved_and_renamed_data_folder_reuses_every_step_and_a_changed_byte_does_not(tiny_data, reference, tmp_path,
                                                                                    capsys):
    """Data is identified by its content: the same folder under another name and place (Drive vs the local disk,
    a renamed download) reuses the cleaning, tiles, a train run and a K-fold run; one changed pixel does not."""
    import cv2

    from anndl.engine import experiment

    first = Path(shutil.copytree(tiny_data, tmp_path / "downloads" / "challenge"))
    work = Path(shutil.copytree(reference, tmp_path / "work"))  # made from the session's folder, elsewhere
    prep = experiment.prepare(first, work)
    experiment.train_folds(prep, work / "runs" / "kfold", folds=2, epochs=1)
    moved = tmp_path / "elsewhere" / "an2dl_renamed"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    capsys.readouterr()
    prep = experiment.prepare(moved, work)
    experiment.train_run(prep, work / "runs" / "scratch_resnet", epochs=3)  # as `run --epochs 3` made it
    experiment.train_folds(prep, work / "runs" / "kfold", folds=2, epochs=1, max_epochs=None)  # None: as omitted
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 5 and "Epoch" not in printed, printed
    image = moved / "train_data" / "img_0003.png"
    pixels = cv2.imread(str(image))
    pixels[0, 0] = 255 - pixels[0, 0]
    cv2.imwrite(str(image), pixels)
    prep = experiment.prepare(moved, work)
    experiment.train_run(prep, work / "runs" / "scratch_resnet", epochs=1)
    printed = capsys.readouterr().out
    for step in ("cleaning it again", "tiling it again", "training it again"):  # each says the data changed
        assert step in printed, printed
    assert printed.count("made from data") == 3, printed
