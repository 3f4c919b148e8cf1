"""Artifacts: a stage's folder plus ``record.json`` of exactly what made it (DVC-like); atomic writes, record last."""

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from anndl import __version__
from anndl.core.env import portable  # no machine path in a rendered notebook

RECORD = "record.json"
LOCK = ".lock"
STAGING = ".staging"
# each stage's code version: bump it when its output for the same request changes (records of another are remade)
CODE_VERSIONS = {"clean": 3, "tiles": 2, "test_tiles": 1, "stain": 1, "train": 5, "kfold": 4, "embed": 2, "head": 2,
                 "compare": 2}
REQUEST_KEYS = ("stage", "code", "data", "inputs", "settings")  # what decides reuse (package_version: information)


class ArtifactError(RuntimeError):
    """A one-line fault in an artifact (unreadable record, locked folder, failed write), naming the path."""


class Locked(ArtifactError):
    """Another process holds the folder's lock."""


def version() -> str:
    return __version__


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a new file beside it (mode as the umask gives), fsync, ``os.replace``."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:  # O_EXCL: no planted link
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ArtifactError(f"{path}: could not write ({e.strerror or e})") from e
        raise
    return path


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: Path | str, payload) -> Path:
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def write_csv(frame: pd.DataFrame, path: Path | str) -> Path:
    """A CSV with ``\\n`` line ends and no index (byte-identical for the same frame)."""
    return write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def _read(path: Path | str, read, faults: tuple, what: str):
    """``read(path)``; a missing file or one of ``faults`` is a one-line ``ArtifactError`` naming it."""
    try:
        return read(path)
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: missing") from e
    except faults as e:
        raise ArtifactError(f"{path}: {what} ({' '.join(str(e).split())[:160]})") from e


def read_json(path: Path | str):
    """JSON from ``path``; a missing, empty or broken file is an ``ArtifactError`` naming it."""
    return _read(Path(path), lambda p: json.loads(p.read_text()), (OSError, UnicodeDecodeError, json.JSONDecodeError),
                 "unreadable record")


def read_csv(path: Path | str) -> pd.DataFrame:
    faults = (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError)
    return _read(Path(path), lambda p: pd.read_csv(p, keep_default_na=False), faults, "unreadable table")


def read_arrays(path: Path | str) -> dict:
    """Arrays of an ``.npy``/``.npz`` file, never unpickled: an object array or any fault is an ``ArtifactError``."""
    def read(p):
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"arr_0": loaded}
        with loaded:
            return dict(loaded)

    return _read(Path(path), read, (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile),
                 "not an array file anndl reads")


def nonfinite_weights(path: Path | str) -> tuple[int, int]:
    """(non-finite values, all values) in a ``.keras`` file, read with h5py (no TensorFlow)."""
    import h5py
    counts = [(0, 0)]

    def visit(_, node):
        if isinstance(node, h5py.Dataset) and node.dtype.kind == "f" and node.size:
            counts.append((node.size - int(np.isfinite(node[()]).sum()), node.size))

    try:
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
            h5.visititems(visit)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"{path}: cannot read its weights ({e})") from e
    bad, total = np.sum(counts, axis=0)
    return int(bad), int(total)


def fingerprint(payload) -> str:
    """A short, stable hash of any JSON-ready value."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def file_digest(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stamp(path: Path | str) -> list[int] | None:
    """A file's size, inode and times (any write or replacement changes them); None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def remembered(name: str, stamps: dict[str, list], compute: Callable[[list[str]], list], keep: int = 20_000) -> dict:
    """``{key: value}`` for ``stamps`` ({key: file stamps}), cached till a stamp changes; ``compute`` gives the rest."""
    cache_file = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "anndl" / f"{name}.json"

    def read() -> dict:
        with contextlib.suppress(OSError, ValueError):
            return found if isinstance(found := json.loads(cache_file.read_text()), dict) else {}
        return {}

    cache = read()
    missing = [k for k, s in stamps.items() if None in s or not (isinstance(cache.get(k), dict)
                                                                and cache[k].get("stamp") == s)]
    values = {k: cache[k]["value"] for k in stamps if k not in missing}
    if missing:
        new = {k: {"stamp": stamps[k], "value": v} for k, v in zip(missing, compute(missing), strict=True)}
        values.update({k: entry["value"] for k, entry in new.items()})
        cache = read() | new  # what another process wrote while this one computed stays
        with contextlib.suppress(ArtifactError):  # a cache: a read-only home only costs the work next time
            write_json(cache_file, dict(list(cache.items())[-keep:]))
    return {k: values[k] for k in stamps}


def content_digest(path: Path | str) -> str:
    """A file's sha256, remembered by path, size, inode and times: a 1 GB checkpoint is hashed once."""
    key = str(Path(path).resolve())
    return remembered("digests", {key: [stamp(key)]}, lambda _: [file_digest(key)], keep=2000)[key]


def file_entry(path: Path) -> dict:
    """Size, hash and (for CSVs) data row count of one file."""
    entry = {"bytes": path.stat().st_size, "sha256": file_digest(path)}
    if path.suffix == ".csv":
        with open(path, "rb") as f:
            entry["rows"] = max(sum(1 for _ in f) - 1, 0)
    return entry


_held: set[Path] = set()  # the folders this process holds the lock of (re-entrant within it)


@contextlib.contextmanager
def lock(folder: Path | str):
    """Hold ``folder/.lock`` for the block; another process holding it raises ``Locked`` at once."""
    import fcntl
    folder = Path(folder).resolve()
    if folder in _held:  # the outer block holds it
        yield
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a planted link is refused
    except OSError as e:
        raise ArtifactError(f"{folder / LOCK}: a link, not a lock file (anndl never writes through a link in an "
                            "outputs folder); delete it" if e.errno == errno.ELOOP else
                            f"{folder}: cannot create the folder's lock ({e.strerror or e})") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Locked(f"{folder} is being written by another process (PID {holder}); "
                     "wait for it to finish or stop it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held.add(folder)
    try:
        yield
    finally:
        _held.discard(folder)
        os.close(fd)  # closing releases the flock


def lock_holder(folder: Path | str) -> str | None:
    """The PID of another process holding ``folder``'s lock; None when nobody else does."""
    import fcntl
    folder = Path(folder).resolve()
    if folder in _held or not (folder / LOCK).is_file():
        return None
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 64).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)  # releases the shared lock taken to look
    return None


def request(stage: str, *, data: str | None = None, inputs: dict | None = None, settings: dict | None = None) -> dict:
    """What a stage is asked to produce: the data fingerprint, the upstream artifacts' ids, its settings."""
    return {"stage": stage, "code": CODE_VERSIONS.get(stage, 1), "package_version": version(), "data": data,
            "inputs": inputs or {}, "settings": json.loads(json.dumps(settings or {}, default=str))}


def data_fingerprint(note) -> str:
    """The fingerprint in a data note (``… [fingerprint a1b2]``), else the note: data known by content, not place."""
    found = re.search(r"\[fingerprint (\w+)\]", str(note))
    return found.group(1) if found else str(note)


def _differences(old, new, prefix: str = "") -> list[str]:
    """Where two JSON-like values differ, as ``path old, not new`` lines (``phases.0.epochs 3, not 2``)."""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        old, new = dict(enumerate(old)), dict(enumerate(new))
    if not (isinstance(old, dict) and isinstance(new, dict)):
        where = prefix.rstrip(".")
        return [] if old == new else [f"{where + ' ' if where else ''}{old!r}, not {new!r}"]
    out = []
    for key in sorted(set(old) | set(new), key=str):
        out += _differences(old.get(key, "<unset>"), new.get(key, "<unset>"), f"{prefix}{key}.")
    return out


def record_fault(record) -> str | None:
    """What is wrong with the shape of a record read from disk (None when it has the shape ``complete`` writes)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    files = record.get("files")
    if not isinstance(files, dict):
        return "no 'files' table"
    for name, entry in files.items():
        if (not isinstance(entry, dict) or type(entry.get("bytes")) is not int
                or not isinstance(entry.get("sha256"), str) or Path(name).is_absolute() or ".." in Path(name).parts):
            return f"files entry {name!r} is malformed"
    for key, kind in (("stage", str), ("inputs", dict), ("settings", dict)):
        if key in record and not isinstance(record[key], kind):
            return f"{key!r} is not a {kind.__name__}"
    return None


def check(folder: Path | str, req: dict) -> str | None:
    """None when ``folder`` holds a finished artifact of exactly ``req`` whose files verify; else why not."""
    folder = Path(folder)
    path = folder / RECORD
    if not path.is_file():
        started = folder.is_dir() and any(p.name != LOCK for p in folder.iterdir())
        return "not finished (no record)" if started else "not made yet"
    try:
        record = read_json(path)
    except ArtifactError as e:
        return str(e)
    if fault := record_fault(record):
        return f"{path}: not an artifact record ({fault})"
    if data_fingerprint(record.get("data")) != data_fingerprint(req["data"]):
        return f"made from data {record.get('data')}, not {req['data']}"
    if record.get("stage") != req["stage"]:
        return f"made by stage {record.get('stage')!r}, not {req['stage']!r}"
    if record.get("code") != req["code"]:
        return (f"made by {req['stage']} code version {record.get('code', '<unrecorded>')}, not {req['code']} "
                f"(package {record.get('package_version', record.get('version', '?'))})")
    for key in ("inputs", "settings"):
        if record.get(key) != req[key]:
            return f"made with {key} " + "; ".join(_differences(record.get(key), req[key])[:3])
    for name, entry in record["files"].items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != entry["bytes"] or file_entry(file) != entry:
            return f"{name} changed since it was recorded (cut short or edited)"
    return None


def complete(folder: Path | str, req: dict, files: Iterable[str], extra: dict | None = None) -> dict:
    """Record ``files`` (relative to ``folder``) as the artifact of ``req``, its ``id`` a hash of both."""
    folder = Path(folder)
    record = dict(req, files={name: file_entry(folder / name) for name in sorted(files)}, **(extra or {}))
    record["id"] = fingerprint({k: record.get(k) for k in REQUEST_KEYS} |
                               {"files": {n: e["sha256"] for n, e in record["files"].items()}})
    write_json(folder / RECORD, record)
    return record


def invalidate(folder: Path | str) -> None:
    """Make ``folder`` count as not done (before rebuilding it in place)."""
    (Path(folder) / RECORD).unlink(missing_ok=True)


def load(folder: Path | str, stage: str | None = None) -> dict:
    """The record of a finished artifact, its files verified; ``ArtifactError`` naming the folder otherwise."""
    folder = Path(folder)
    path = folder / RECORD
    if not path.is_file():
        if (holder := lock_holder(folder)) is not None:
            raise Locked(f"{folder}: not finished yet: it is being written by another process (PID {holder}); "
                         "wait for it to finish")
        raise ArtifactError(f"{folder}: not a finished {stage or 'artifact'} (no {RECORD}; "
                            "killed before it finished, or never made)")
    record = read_json(path)
    if fault := record_fault(record):
        raise ArtifactError(f"{path}: not an artifact record ({fault}); make it again")
    if stage and record.get("stage") != stage:
        raise ArtifactError(f"{folder}: a {record.get('stage')} artifact, not a {stage}")
    if reason := check(folder, {k: record.get(k) for k in REQUEST_KEYS}):
        raise ArtifactError(f"{folder}: {reason}")
    return record


def swap_in(staging: Path | str, folder: Path | str, record: dict, extra: Iterable[str] = ()) -> dict:
    """Move ``staging``'s files, the ``extra`` names that exist, then its record into ``folder``; remove ``staging``."""
    staging, folder = Path(staging), Path(folder)
    invalidate(folder)
    for name in [*record["files"], *extra]:
        source, target = staging / name, folder / name
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(source, target)
    os.replace(staging / RECORD, folder / RECORD)
    shutil.rmtree(staging, ignore_errors=True)
    return record


def ensure(folder: Path | str, req: dict, build: Callable[[Path], Iterable[str]], *, redo: bool = False,
           label: str | None = None, verb: str = "making", reused: str = "reusing {}") -> dict:
    """Reuse ``folder`` if ``check`` passes, else ``build(staging)`` (kept after a kill) returns the names to record."""
    folder = Path(folder)
    label = label or str(folder)
    with lock(folder):
        reason = "--redo asked for" if redo else check(folder, req)
        if reason is None:
            print(portable(reused.format(label)))
            return read_json(folder / RECORD)
        if reason != "not made yet":
            print(portable(f"{label}: {reason}: {verb} it again"))
        staging = folder / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        return swap_in(staging, folder, complete(staging, req, list(build(staging))))
