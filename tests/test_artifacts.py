"""Artifacts: reuse only on a matching record whose files verify; atomic writes; one writer per folder."""

import errno
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from anndl.core import artifacts


def _build(folder, text="a,b\n1,2\n"):
    def build(out):
        artifacts.write_text(out / "table.csv", text)
        return ["table.csv"]
    return build


def test_reuse_needs_the_same_request_and_intact_files(tmp_path, capsys):
    folder = tmp_path / "stage"
    req = artifacts.request("demo", data="data [fingerprint aaa]", settings={"k": 1})
    first = artifacts.ensure(folder, req, _build(folder))
    assert first["files"]["table.csv"]["rows"] == 1 and first["id"]
    again = artifacts.ensure(folder, req, _build(folder, "never written\n"))
    assert "reusing" in capsys.readouterr().out and again["id"] == first["id"]
    other_data = dict(req, data="data [fingerprint bbb]")
    assert artifacts.check(folder, other_data) == "made from data data [fingerprint aaa], not data [fingerprint bbb]"
    other_settings = artifacts.request("demo", data=req["data"], settings={"k": 2})
    assert artifacts.check(folder, other_settings) == "made with settings k 1, not 2"
    assert artifacts.check(folder, dict(req, code=2)) == f"made by demo code version 1, not 2 (package {artifacts.version()})"
    assert artifacts.check(folder, dict(req, package_version="9.9.9")) is None  # information only
    moved = dict(req, data="data moved elsewhere [fingerprint aaa]")  # same content, other folder
    assert artifacts.check(folder, moved) is None
    (folder / "table.csv").write_text("a,b\n")  # cut short, as a kill or a full disk leaves it
    assert artifacts.check(folder, req) == "table.csv changed since it was recorded (cut short or edited)"
    artifacts.ensure(folder, req, _build(folder))
    assert "table.csv changed since it was recorded" in capsys.readouterr().out
    assert (folder / "table.csv").read_text() == "a,b\n1,2\n"


def test_a_broken_record_is_never_reused_and_load_names_the_folder(tmp_path):
    folder = tmp_path / "stage"
    req = artifacts.request("demo", data="d")
    artifacts.ensure(folder, req, _build(folder))
    (folder / artifacts.RECORD).write_text("")  # a full disk while writing it
    assert "unreadable record" in artifacts.check(folder, req)
    with pytest.raises(artifacts.ArtifactError, match=f"{folder}.*unreadable record"):
        artifacts.load(folder)
    (folder / artifacts.RECORD).unlink()
    with pytest.raises(artifacts.ArtifactError, match="not a finished"):
        artifacts.load(folder)
    assert artifacts.check(folder, req) == "not finished (no record)"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    artifacts.write_json(path, {"old": 1})

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", lambda fd: disk_full(fd, None))
    with pytest.raises(artifacts.ArtifactError, match=f"{path}: could not write \\(No space left on device\\)"):
        artifacts.write_json(path, {"new": 2})
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    monkeypatch.undo()
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(artifacts.ArtifactError, match="folder.csv: could not write"):
        artifacts.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "folder.csv")


def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path):
    folder = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from anndl.core import artifacts\n"
        f"with artifacts.lock({str(folder)!r}):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(artifacts.Locked, match=f"{folder} is being written by another process \\(PID {holder.pid}\\)"):
            with artifacts.lock(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with artifacts.lock(folder):  # the killed holder's lock is gone with it
        with artifacts.lock(folder):  # and the lock is re-entrant within one process
            pass


def test_reuse_messages_carry_no_machine_path(capsys):
    """What ``ensure`` prints reaches rendered notebooks: the repository's own folder is never named."""
    from anndl.core.config import OUTPUTS, REPO_ROOT

    folder = OUTPUTS / "test_artifacts_messages"
    try:
        for data in ("a", "b"):  # the second request differs: the reason names both data notes
            note = f"synthetic stand-in at {REPO_ROOT / 'data' / data}"
            artifacts.ensure(folder, artifacts.request("t", data=note), lambda out: [], label=str(folder / "x.csv"))
        artifacts.ensure(folder, artifacts.request("t", data=note), lambda out: [], label=str(folder / "x.csv"))
        out = capsys.readouterr().out
        assert "outputs/test_artifacts_messages/x.csv: made from data synthetic stand-in at data/a" in out
        assert "reusing outputs/test_artifacts_messages/x.csv" in out and str(REPO_ROOT) not in out
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
