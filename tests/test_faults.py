"""Faults a hostile user meets (issue 23): non-finite training refused, a redo that never deletes the finished
result first, Ctrl-C that ends, a full disk that leaves nothing behind, paths shown by whole components, and
the smaller checks (file modes, a held lock, not-regular files, Unicode line separators in labels)."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anndl import cli
from anndl.core import artifacts, env
from anndl.core.config import REPO_ROOT
from anndl.data import DataError, read_challenge, read_classes


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------------------- finite or refused

@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    """A finished one-epoch smoke run (``WORK/runs/ok``) and its prepared data."""
    from anndl.engine import experiment

    work = tmp_path_factory.mktemp("faults")
    prep = experiment.prepare(tiny_data, work)
    experiment.train_run(prep, work / "runs" / "ok", epochs=1)
    return prep, work


def test_a_nan_run_exits_2_naming_run_phase_epoch_and_records_nothing(finished, tiny_data, capsys):
    _, work = finished
    run = work / "runs" / "nan"
    code = cli.main(["train", "--data", str(tiny_data), "--out", str(run), "--work", str(work),
                     "--learning-rate", "1e30", "--epochs", "1"])
    errors = _error_lines(capsys)
    assert code == 2 and len(errors) == 1, errors
    assert f"{run}: training diverged in phase 1, epoch 1 (loss nan" in errors[0]
    assert "try a lower --learning-rate (phase 1's is 1e+30)" in errors[0]
    assert not (run / artifacts.RECORD).exists() and not (run / "model.keras").exists()
    assert artifacts.read_json(run / "config.json")["phases"][0]["learning_rate"] == 1e30  # recorded


def test_a_killed_or_diverged_redo_keeps_the_finished_run(finished, tiny_data, monkeypatch, capsys):
    from anndl.engine import experiment

    prep, work = finished
    run = work / "runs" / "ok"
    before = artifacts.read_json(run / artifacts.RECORD)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "fit", killed)
    with pytest.raises(KeyboardInterrupt):  # another request: retrained beside the finished run, killed
        experiment.train_run(prep, run, epochs=2)
    monkeypatch.undo()
    assert "the finished run stays until the new one is complete" in capsys.readouterr().out
    assert artifacts.load(run, "train")["id"] == before["id"]  # intact, verified
    experiment.train_run(prep, run, epochs=1)  # and reusable
    assert "reusing" in capsys.readouterr().out
    code = cli.main(["train", "--data", str(tiny_data), "--out", str(run), "--work", str(work),
                     "--learning-rate", "1e30", "--epochs", "1"])
    assert code == 2 and "training diverged" in _error_lines(capsys)[0]
    assert artifacts.load(run, "train")["id"] == before["id"]


def _record_again(run: Path) -> None:
    """Record a finished run's changed files as its own, as an older anndl would have recorded them."""
    from anndl.engine import experiment

    record = artifacts.read_json(run / artifacts.RECORD)
    artifacts.complete(run, {k: record[k] for k in (*artifacts.REQUEST_KEYS, "package_version")},
                       experiment.RUN_FILES)


def test_predict_and_report_refuse_a_model_with_nonfinite_weights(finished, tiny_data, tmp_path, capsys):
    """A run finished before the finite check existed: its model holds NaN weights, its record verifies."""
    import keras
    import numpy as np

    from anndl.engine import experiment
    from anndl.notebook import report

    _, work = finished
    runs = tmp_path / "runs"
    bad = Path(shutil.copytree(work / "runs" / "ok", runs / "bad"))
    model = keras.models.load_model(bad / "model.keras", compile=False)
    weight = model.weights[0]
    weight.assign(np.full(weight.shape, np.nan, "float32"))
    model.save(bad / "model.keras")
    _record_again(bad)
    with pytest.raises(artifacts.ArtifactError, match=r"model.keras: [\d,]+ of [\d,]+ weights are not finite"):
        experiment.predict_run(bad, tiny_data, tmp_path / "submission.csv")
    assert not (tmp_path / "submission.csv").exists()
    shutil.copytree(work / "runs" / "ok", runs / "good")
    table = report.collect(runs)
    assert set(table.run) == {"good"}
    assert f"not ranked: {bad / 'model.keras'}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- replace, not delete

def test_a_killed_redo_of_a_stage_keeps_the_old_result(tmp_path, capsys):
    folder = tmp_path / "stage"
    old = artifacts.request("demo", data="d [fingerprint aaa]", settings={"k": 1})

    def build(out):
        artifacts.write_text(out / "table.csv", "a\n1\n")
        return ["table.csv"]

    def killed(out):
        artifacts.write_text(out / "table.csv", "a\n")  # half made
        raise KeyboardInterrupt

    artifacts.ensure(folder, old, build)
    with pytest.raises(KeyboardInterrupt):
        artifacts.ensure(folder, dict(old, settings={"k": 2}), killed)
    assert artifacts.check(folder, old) is None and (folder / "table.csv").read_text() == "a\n1\n"
    artifacts.ensure(folder, old, build)
    assert "reusing" in capsys.readouterr().out
    new = artifacts.ensure(folder, dict(old, settings={"k": 2}), build)  # completed: swapped in, staging gone
    assert artifacts.load(folder)["id"] == new["id"] and not (folder / artifacts.STAGING).exists()


def test_a_package_release_alone_reuses_and_a_code_version_says_so_in_one_space(tmp_path):
    folder = tmp_path / "stage"
    req = artifacts.request("clean", data="d")
    artifacts.ensure(folder, req, lambda out: [])
    assert artifacts.check(folder, dict(req, package_version="0.2.1")) is None
    reason = artifacts.check(folder, dict(req, code=req["code"] + 1))
    assert reason == f"made by clean code version {req['code']}, not {req['code'] + 1} (package {artifacts.version()})"
    assert "  " not in artifacts.check(folder, dict(req, settings={"x": 1}))


# ----------------------------------------------------------------------------------------------- Ctrl-C

@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_end_synth_with_one_line(tmp_path, how):
    """Ctrl-C ends ``synth`` (no hang) with exit 130 and one line; SIGTERM to the process alone (how Colab, Kaggle
    and schedulers end it) the same way with exit 143. How fast is measured, not asserted (timings never go into
    tests; typically ~0.35 s)."""
    proc = subprocess.Popen([sys.executable, "-m", "anndl", "synth", "--out", str(tmp_path / "s"), "--n-train", "400",
                             "--n-test", "20", "--scale", "0.3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=REPO_ROOT,
                            # SIGINT at its default, as under a terminal: a test run started in the background
                            # (nohup, `cmd &` without job control) inherits it ignored, and Python then installs
                            # no KeyboardInterrupt handler
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first, deadline = tmp_path / "s" / "train_data" / "img_0000.png", time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:  # until it renders
        time.sleep(0.2)
    assert first.exists(), "synth did not start rendering"
    time.sleep(1)
    sent = time.time()
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole process group
    else:
        os.kill(proc.pid, signal.SIGTERM)   # what a hosted runtime sends: the process alone
    try:
        _, err = proc.communicate(timeout=60)  # a hang, not a slow machine, fails here
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    code, said = (130, "interrupted") if how == "ctrl-c" else (143, "terminated (SIGTERM)")
    assert proc.returncode == code, f"exit {proc.returncode} {time.time() - sent:.1f} s after {how}"
    assert err.rstrip().splitlines()[-1] == (f"{said}: the folder is incomplete; the same command writes it "
                                             "again from the start")
    assert "Traceback" not in err


# -------------------------------------------------------------------------------------------- full disk

def test_a_full_disk_while_saving_weights_is_one_line_and_no_file(tmp_path, monkeypatch):
    import keras
    import numpy as np

    from anndl.engine import train

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "best.weights.h5"

    def full(self, filepath, *args, **kwargs):  # what h5py does on ENOSPC: part of a file, then an error
        Path(filepath).write_bytes(b"\x89HDF" * 100)
        raise OSError("Unable to synchronously write data (file write failed: errno = 28, error message = "
                      "'No space left on device')")

    monkeypatch.setattr(keras.Model, "save_weights", full)
    with pytest.raises(artifacts.ArtifactError) as caught:
        train.save_weights(model, path)
    assert str(caught.value).startswith(f"{path}: could not write (") and "No space left" in str(caught.value)
    assert "\n" not in str(caught.value) and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    model.weights[0].assign(np.full((3, 2), np.inf, "float32"))
    with pytest.raises(train.Diverged, match="6 of 8 weights are not finite"):
        train.save_weights(model, path)
    assert list(tmp_path.iterdir()) == []


def test_memory_scratch_is_swept_after_a_kill_and_a_planted_temporary_link_is_never_written(tmp_path, monkeypatch):
    import keras

    from anndl.engine import train

    shm = tmp_path / "shm"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a PID that has exited, as after a SIGKILL
    (shm / f"anndl-{dead}-x1").mkdir(parents=True)
    (shm / f"anndl-{dead}-x1" / "model.keras").write_bytes(b"\0" * 1000)
    (shm / f"anndl-{os.getpid()}-live").mkdir()  # this process's own: kept
    monkeypatch.setattr(train, "SHM", str(shm))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    (tmp_path / "run").mkdir()
    train.save_weights(model, tmp_path / "run" / "best.weights.h5")
    assert sorted(p.name for p in shm.iterdir()) == [f"anndl-{os.getpid()}-live"]
    monkeypatch.setattr(train, "_memory_folder", lambda needed: None)  # no memory folder: save in the run folder
    target = tmp_path / "precious"
    target.write_bytes(b"keep")
    (tmp_path / "run" / ".best.tmp.weights.h5").symlink_to(target)  # where a fixed temporary name would be
    train.save_weights(model, tmp_path / "run" / "best.weights.h5")
    assert target.read_bytes() == b"keep" and (tmp_path / "run" / "best.weights.h5").stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".best.tmp.weights.h5", "best.weights.h5"]


def test_a_full_disk_during_predict_is_one_line_exit_2_and_no_file(finished, tiny_data, tmp_path, monkeypatch,
                                                                   capsys):
    _, work = finished
    out = tmp_path / "submissions" / "submission.csv"
    out.parent.mkdir()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert cli.main(["predict", "--run", str(work / "runs" / "ok"), "--data", str(tiny_data), "--out", str(out)]) == 2
    assert _error_lines(capsys) == [f"error: {out}: could not write (No space left on device)"]
    assert list(out.parent.iterdir()) == []


# ------------------------------------------------------------------------------------------------ paths

def test_portable_keeps_a_sibling_whose_name_starts_with_the_repository_s(monkeypatch):
    monkeypatch.setattr(env, "_ROOTS", {})
    sibling = Path(f"{REPO_ROOT}_o") / "submission.csv"
    assert env.portable(sibling) == str(sibling)
    assert env.portable(f"wrote {sibling}") == f"wrote {sibling}"
    assert env.portable(f"wrote {REPO_ROOT / 'outputs' / 'x.csv'}: ok") == "wrote outputs/x.csv: ok"
    assert env.portable(REPO_ROOT) == "." and env.portable(REPO_ROOT / "runs") == "runs"
    env.name_root("/data/anndl", "DATA")
    assert env.portable("/data/anndl/x and /data/anndl_data/y, /data/anndl") == "DATA/x and /data/anndl_data/y, DATA"
    assert env.portable(Path("/data/anndl_data/y")) == "/data/anndl_data/y"


# ----------------------------------------------------------------------------------------------- smaller

def test_written_files_get_the_umask_s_mode(tmp_path):
    old = os.umask(0o022)
    try:
        assert (artifacts.write_text(tmp_path / "a.txt", "x").stat().st_mode & 0o777) == 0o644
        os.umask(0o027)
        assert (artifacts.write_text(tmp_path / "b.txt", "x").stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)


def test_a_step_being_written_is_reported_with_the_writer_s_pid(tmp_path):
    folder = tmp_path / "clean"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from anndl.core import artifacts\n"
        f"with artifacts.lock({str(folder)!r}):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(artifacts.Locked, match=f"being written by another process \\(PID {holder.pid}\\)"):
            artifacts.load(folder, "clean")
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(artifacts.ArtifactError, match="killed before it finished, or never made"):
        artifacts.load(folder, "clean")


def test_devices_fifos_and_links_to_them_are_not_regular_files(data_copy):
    image = data_copy / "test_data" / "img_0000.png"
    image.unlink()
    image.symlink_to("/dev/zero")
    with pytest.raises(DataError, match="img_0000.png: not a regular file: a device \\(through a link\\)"):
        read_challenge(data_copy)
    image.unlink()
    os.mkfifo(image)
    with pytest.raises(DataError, match="img_0000.png: not a regular file: a fifo"):
        read_challenge(data_copy)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029"])
def test_labels_with_unicode_line_separators_are_refused_with_the_line_number(tmp_path, separator):
    (tmp_path / "classes.txt").write_text(f"benign\nin{separator}situ\ninvasive\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"line 2: label .* line or paragraph separator \\(U\\+{ord(separator):04X}\\)"):
        read_classes(tmp_path)


@pytest.mark.parametrize("encoding, said", [("latin-1", "not UTF-8: byte 0xe9"), ("utf-16", "UTF-16: byte 0xff")])
def test_a_labels_or_classes_file_not_in_utf8_is_named(data_copy, encoding, said):
    labels = data_copy / "train_labels.csv"
    text = labels.read_text(encoding="utf-8")
    labels.write_text(text.replace("img_0000.png", "img_0000é.png") if encoding == "latin-1" else text,
                      encoding=encoding)
    with pytest.raises(DataError, match=f"{labels}: {said}.*save the file as UTF-8"):
        read_challenge(data_copy)
    (data_copy / "classes.txt").write_text("Luminal A\nHER2(+) é\n", encoding=encoding)
    with pytest.raises(DataError, match=f"classes.txt: {said}"):
        read_classes(data_copy)


def test_a_class_without_a_training_image_is_refused_by_train(data_copy, tmp_path, capsys):
    import pandas as pd

    labels = pd.read_csv(data_copy / "train_labels.csv")
    gone = labels.sample_index[labels.label == "Triple negative"]
    labels = labels[labels.label != "Triple negative"]
    labels.to_csv(data_copy / "train_labels.csv", index=False)
    for name in gone:
        (data_copy / "train_data" / name).unlink()
        (data_copy / "train_data" / name.replace("img_", "mask_")).unlink()
    assert cli.main(["train", "--data", str(data_copy), "--out", str(tmp_path / "run"), "--work", str(tmp_path)]) == 2
    (error,) = _error_lines(capsys)
    assert error.startswith(f"error: {data_copy / 'train_labels.csv'}: no kept training image of class 'Triple negative'")
    (data_copy / "classes.txt").write_text("Luminal A\nLuminal B\nHER2(+)\n")  # the folder's own label set
    from anndl.data import stages

    stages.prepare(data_copy, tmp_path / "three").require_every_class()  # no refusal: every class it names has images


# ------------------------------------------------------------------------------ settings at the door (issue 35)

@pytest.mark.parametrize("args, said", [
    (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["--epochs", "-1"], "argument --epochs: must be at least 1, got -1"),
    (["--folds", "0"], "argument --folds: must be at least 2, got 0"),
    (["--folds", "50"], "50 folds: class"),
])
def test_settings_that_would_be_ignored_or_clipped_are_refused_with_one_line(tiny_data, tmp_path, capsys, args, said):
    try:
        code = cli.main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--work", str(tmp_path),
                         *args])
    except SystemExit as e:  # argparse's refusal
        code = e.code
    err = [line for line in capsys.readouterr().err.splitlines() if "Traceback" in line or "error" in line]
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and said in err[0], err
    assert not (tmp_path / "run" / artifacts.RECORD).exists()


def test_an_unexpected_fault_is_one_line_naming_the_command_and_debug_shows_the_traceback(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.setattr(cli.synthetic, "generate", lambda **kwargs: {}["missing"])
    assert cli.main(["synth", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: anndl synth failed: KeyError:") and len(err.strip().splitlines()) == 1
    with pytest.raises(KeyError):
        cli.main(["synth", "--out", str(tmp_path), "--debug"])


def test_a_scratch_resnet_run_is_an_encoder(finished, tiny_data):
    """In a fresh process (where nothing imported the model registry, which registers the ResNet's layers)."""
    _, work = finished
    calls = [["train", "--model", "linear_probe", "--encoder", str(source), "--data", str(tiny_data), "--work",
              str(work), "--embeddings", str(work / "emb" / source.name), "--out", str(work / "probe" / source.name)]
             for source in (work / "runs" / "ok", work / "runs" / "ok" / "model.keras")]
    done = subprocess.run([sys.executable, "-c", f"import sys; from anndl import cli; "
                           f"sys.exit(max(cli.main(a) for a in {calls!r}))"], capture_output=True, text=True,
                          cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert artifacts.load(work / "emb" / "ok", "embed") and artifacts.load(work / "emb" / "model.keras", "embed")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the ignored exception, as intended
def test_a_ctrl_c_swallowed_by_a_destructor_is_raised_at_the_next_batch():
    """Python prints and ignores an exception raised in ``__del__`` (TensorFlow's garbage collectors run them
    mid-training): the command line's handler notes the signal, and training raises it at the next batch."""
    from anndl.core.env import PENDING_SIGNALS
    from anndl.engine.train import StopOnNonFinite

    class Collected:
        def __del__(self):
            cli._on_signal(signal.SIGTERM, None)  # lands here: printed, ignored

    Collected()
    assert PENDING_SIGNALS == [cli.Terminated]
    with pytest.raises(cli.Terminated):
        StopOnNonFinite("run", 1).on_batch_end(0, {"loss": 0.5})
    assert PENDING_SIGNALS == []
    StopOnNonFinite("run", 1).on_batch_end(1, {"loss": 0.5})  # raised once
