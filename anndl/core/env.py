"""Notebook environment: quiet TensorFlow import, paths without machine folders, plain progress bars, the footer."""

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anndl.core.config import REPO_ROOT

# set before TF is imported (C++/glog/absl logs); load-time lines ignore them (TF 2.21): quiet_tensorflow filters stderr
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "ABSL_MIN_LOG_LEVEL": "3",
             "GRPC_VERBOSITY": "ERROR"}
_NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d|WARNING: All log messages before absl|To enable the following "
                    r"instructions|.*rebuild TensorFlow with the appropriate compiler flags)")
# a Ctrl-C/SIGTERM that a ``__del__`` swallowed (TF runs them mid-training), noted for training to raise next batch
PENDING_SIGNALS: list[type[BaseException]] = []
_ROOTS: dict[str, str] = {}


class Terminated(KeyboardInterrupt):
    """SIGTERM (how Colab, Kaggle and schedulers end a process), raised as Ctrl-C is: the same cleanup runs."""


def on_signal(signum, frame):
    """Raise Ctrl-C or SIGTERM, noted in ``PENDING_SIGNALS`` for training to raise if a ``__del__`` swallowed it."""
    kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    PENDING_SIGNALS[:] = [kind]
    raise kind()


def raise_pending_signal() -> None:
    """Raise (once) the Ctrl-C or SIGTERM a signal handler noted: one that a ``__del__`` swallowed."""
    if PENDING_SIGNALS:
        raise PENDING_SIGNALS.pop()()


def quiet_environment() -> None:
    """Set TensorFlow's and absl's log-level variables (before TensorFlow is imported)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def quiet_tensorflow():
    """TensorFlow, imported without its start-up log lines (other stderr is passed on), its warnings silenced."""
    quiet_environment()
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile(mode="w+b") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                kept = [line for line in sink.read().decode("utf-8", "replace").splitlines()
                        if line.strip() and not _NOISE.match(line)]
        if kept:
            print("\n".join(kept), file=sys.stderr)
    import tensorflow as tf
    from absl import logging as absl_logging
    tf.get_logger().setLevel("ERROR")  # "5 out of the last 5 calls ... triggered tf.function retracing"
    absl_logging.set_verbosity(absl_logging.ERROR)
    return tf


def name_root(path: Path | str, name: str) -> None:
    """Show ``path`` (a folder outside the repository) as ``name`` in ``portable``."""
    _ROOTS[str(Path(path).resolve())] = name


def portable(text) -> str:
    """``text`` without machine paths: repository folder removed, ``name_root`` folders by name, Kaggle mounts short."""
    text = str(text)
    for folder, name in sorted([(str(REPO_ROOT), "."), *_ROOTS.items()], key=lambda kv: -len(kv[0])):
        # the folder itself or a path below it, never a longer name that starts with it (``anndl`` vs ``anndl_o``)
        pattern = r"(?<![\w.\-/])" + re.escape(folder) + r"(?:(?P<below>/)|(?![\w.\-]))"
        text = re.sub(pattern, lambda m: ("" if name == "." else name + "/") if m["below"] else name, text)
    return re.sub(r"/kaggle/(input|working)/", r"kaggle:\1/", text)


def plain_progress(mininterval: float = 30.0) -> None:
    """Text progress bars, updated at most every ``mininterval`` s and none for loops under 3 s (a rendered notebook
    keeps no frozen widget). tqdm reads its ``TQDM_*`` variables once, at import: hence defaults on the class."""
    import functools

    import tqdm.auto
    import tqdm.std
    init = functools.partialmethod(tqdm.std.tqdm.__init__, mininterval=mininterval, delay=3)
    tqdm.auto.tqdm = type("tqdm", (tqdm.std.tqdm,), {"__init__": init})


def data_label(note: str) -> str:
    """A data note without machine path or hash (``synthetic stand-in (anndl synth) in synthetic/``)."""
    note = re.sub(r"\s*\[fingerprint [0-9a-f]+\]", "", str(note))
    kind, sep, where = note.partition(" at ")
    return f"{kind} in {Path(where.strip()).name}/" if sep else kind


def hardware() -> str:
    """CPU cores and model, GPUs as one line (no TensorFlow import)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    parts = [f"{os.cpu_count()} CPU cores ({cpu})"]
    if "tensorflow" in sys.modules:
        gpus = sys.modules["tensorflow"].config.list_physical_devices("GPU")
        parts.append(f"{len(gpus)} GPU" + ("s" if len(gpus) != 1 else ""))
    return ", ".join(parts)


def commit() -> str:
    """The short commit (``+changes`` when the work tree differs); ``ANNDL_COMMIT`` (``make notebooks``) wins."""
    if os.environ.get("ANNDL_COMMIT"):
        return os.environ["ANNDL_COMMIT"]
    try:  # --exclude: the commit, never a tag's name
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--exclude=*", "--dirty= +changes"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return "unknown (not a git clone)" if done.returncode else done.stdout.strip()


def footer(started: float, seed: int, output_dir: Path | str, max_files: int = 25) -> str:
    """A notebook's closing lines: wall time, hardware, seed, commit, versions, the files written since ``started``."""
    import importlib.metadata as metadata  # here: ``python -m anndl`` imports this module first, while starting
    versions = []
    for name in ("anndl", "tensorflow", "keras", "keras-hub", "numpy", "pandas", "scikit-learn", "matplotlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    folder = Path(output_dir)
    files = sorted(portable(p) for p in folder.rglob("*")  # not hidden files, resume states or TensorBoard logs
                   if p.is_file() and p.stat().st_mtime >= started - 1 and not p.name.startswith(".")
                   and not {"resume", "tensorboard"} & set(p.parts)) if folder.is_dir() else []
    shown = files[:max_files] + ([f"… and {len(files) - max_files} more"] if len(files) > max_files else [])
    return "\n".join([f"wall time: {time.time() - started:.0f} s · hardware: {hardware()} · seed: {seed}",
                      f"commit: {commit()} · python {platform.python_version()} · " + ", ".join(versions),
                      f"files written ({len(files)}):" + ("".join(f"\n  {f}" for f in shown) if files else " none")])
