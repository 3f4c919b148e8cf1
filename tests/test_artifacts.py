"""Artifacts: reuse only on a matching record whose files verify; atomic writes; one writer per folder."""

import errno
import json
import os
import shutil
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


# ---------------------------------------------------------------------- a shared outputs folder (issue 35)

def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / artifacts.LOCK).symlink_to(target)
    with pytest.raises(artifacts.ArtifactError, match=r"\.lock: a link, not a lock file"):
        artifacts.ensure(folder, artifacts.request("demo", data="d"), _build(folder))
    assert target.read_text() == "keep me\n" and artifacts.lock_holder(folder) is None


def test_atomic_writes_replace_a_planted_link_and_never_write_through_it(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "metrics.json").symlink_to(target)
    artifacts.write_json(tmp_path / "metrics.json", {"a": 1})
    assert target.read_text() == "keep me\n" and not (tmp_path / "metrics.json").is_symlink()


@pytest.mark.parametrize("record", [
    {"files": {"log.csv": 5}}, {"files": {"log.csv": {"bytes": "5", "sha256": "x"}}}, {"files": []}, [1, 2],
    {"files": {"../../etc/passwd": {"bytes": 1, "sha256": "x"}}},
    {"stage": "demo", "settings": "k=1", "files": {}}])
def test_a_record_of_the_wrong_shape_is_one_line_and_a_rebuild(tmp_path, capsys, record):
    folder = tmp_path / "stage"
    req = artifacts.request("demo", data="d")
    artifacts.ensure(folder, req, _build(folder))
    (folder / artifacts.RECORD).write_text(json.dumps(record))
    assert "not an artifact record" in artifacts.check(folder, req)
    with pytest.raises(artifacts.ArtifactError, match="not an artifact record"):
        artifacts.load(folder)
    artifacts.ensure(folder, req, _build(folder))
    assert "not an artifact record" in capsys.readouterr().out and artifacts.load(folder)["id"]


def test_arrays_are_read_without_unpickling_and_a_fault_names_the_file(tmp_path):
    import numpy as np

    np.savez(tmp_path / "ok.npz", a=np.arange(3))
    assert list(artifacts.read_arrays(tmp_path / "ok.npz")["a"]) == [0, 1, 2]
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(artifacts.ArtifactError, match="objects.npz: not an array file"):
        artifacts.read_arrays(tmp_path / "objects.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 junk")
    with pytest.raises(artifacts.ArtifactError, match="junk.npz"):
        artifacts.read_arrays(tmp_path / "junk.npz")


def test_remembered_keeps_what_another_process_wrote_while_it_computed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def compute(keys):  # meanwhile another process remembers "b"
        assert artifacts.remembered("t", {"b": [2]}, lambda _: ["B"]) == {"b": "B"}
        return [k.upper() for k in keys]

    assert artifacts.remembered("t", {"a": [1]}, compute) == {"a": "A"}
    assert artifacts.remembered("t", {"a": [1], "b": [2]}, lambda keys: pytest.fail(f"{keys} computed again")) == \
        {"a": "A", "b": "B"}
    assert artifacts.remembered("t", {"a": [3]}, lambda keys: ["new"]) == {"a": "new"}  # a changed stamp: computed


def test_weights_are_known_by_their_bytes_hashed_once(tmp_path, monkeypatch):
    from anndl.data.stages import weights_identity

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # its own cache: no other test process writes it meanwhile
    folder = tmp_path / "a" / "preset"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "config.json").write_text("{}")
    file = tmp_path / "a" / "w.weights.h5"
    file.write_bytes(b"\x01" * 8192)
    first = {"folder": weights_identity(str(folder)), "file": weights_identity(str(file))}
    moved = tmp_path / "b"
    shutil.copytree(tmp_path / "a", moved)
    assert weights_identity(str(moved / "preset")) == first["folder"]       # a moved copy: the same weights
    assert weights_identity(str(moved / "w.weights.h5")) == first["file"]
    data = bytearray((moved / "preset" / "model.safetensors").read_bytes())
    data[4096:8192] = bytes(4096)                                         # 4 KB changed at the same size
    (moved / "preset" / "model.safetensors").write_bytes(bytes(data))
    assert weights_identity(str(moved / "preset")) != first["folder"]
    hashed = []
    monkeypatch.setattr(artifacts, "file_digest", lambda p: hashed.append(p) or "x")
    assert weights_identity(str(file)) == first["file"] and hashed == []  # remembered: not read again
