"""Notebook environment: TensorFlow imported quietly, paths shown without machine folders, plain progress bars,
the full profile's guard, and the footer that says what produced a rendering (wall time, hardware, seed, commit,
package versions, files written). Colab, Kaggle and the notebooks' start: ``anndl.notebook.hosted``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anndl.core.config import REPO_ROOT



# Set before TensorFlow is imported: C++ logging (INFO/WARNING/ERROR such as the cuInit failure on a machine
# without a GPU) and glog/absl verbosity. The lines TensorFlow prints while its shared libraries load
# ("All log messages before absl::InitializeLog()", port.cc's oneDNN note, cudart_stub, cpu_feature_guard)
# ignore every variable (checked with TensorFlow 2.21 on this machine), so ``quiet_tensorflow`` imports
# TensorFlow with the process's stderr sent to a file and passes on only what is not such a line.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "ABSL_MIN_LOG_LEVEL": "3",
             "GRPC_VERBOSITY": "ERROR"}
_NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d|WARNING: All log messages before absl|To enable the following "
                    r"instructions|.*rebuild TensorFlow with the appropriate compiler flags)")


# Ctrl-C / SIGTERM raised inside a ``__del__`` (TensorFlow's garbage collectors run them mid-training) is printed
# and ignored by Python; the command line's handlers note it here too, and training raises it at the next batch.
PENDING_SIGNALS: list[type[BaseException]] = []


def raise_pending_signal() -> None:
    """Raise the interrupt a signal handler noted (once): a Ctrl-C or SIGTERM that a ``__del__`` swallowed."""
    if PENDING_SIGNALS:
        raise PENDING_SIGNALS.pop()()


def quiet_environment() -> None:
    """Set TensorFlow's and absl's log-level variables (call before TensorFlow is imported; harmless after)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def quiet_tensorflow():
    """Import TensorFlow (once) without its start-up log lines; silence its Python-side warnings (retracing,
    deprecations). Returns the module. Anything else written to stderr during the import is passed on."""
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

    tf.get_logger().setLevel("ERROR")  # "5 out of the last 5 calls ... triggered tf.function retracing"
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    return tf


_ROOTS: dict[str, str] = {}


def name_root(path: Path | str, name: str) -> None:
    """Show ``path`` (e.g. a data or output folder outside the repository) as ``name`` in ``portable``."""
    _ROOTS[str(Path(path).resolve())] = name


def portable(text) -> str:
    """``text`` with this machine's repository folder removed from every path in it (``/home/me/anndl/outputs``
    -> ``outputs``), folders named with ``name_root`` shown by name, and a Kaggle mount shortened, so that
    rendered outputs carry no machine path. Folders match by whole path components (``Path.is_relative_to``
    for a path, component boundaries in text): ``/x/anndl_data`` is not below ``/x/anndl`` and is kept as given."""
    folders = sorted([(str(REPO_ROOT), "."), *_ROOTS.items()], key=lambda kv: -len(kv[0]))
    if isinstance(text, Path) and text.is_absolute():
        for folder, name in folders:
            if text.is_relative_to(folder):
                rest = text.relative_to(folder)
                shown = str(rest) if name == "." else str(Path(name) / rest)
                return "." if shown in ("", ".") else shown.removesuffix("/.")
        return re.sub(r"^/kaggle/(input|working)/", r"kaggle:\1/", str(text))
    text = str(text)
    for folder, name in folders:
        # the folder itself or a path below it, never a longer name that starts with it (``anndl`` vs ``anndl_o``)
        pattern = r"(?<![\w.\-/])" + re.escape(folder) + r"(?:(?P<below>/)|(?![\w.\-]))"
        text = re.sub(pattern, lambda m: ("" if name == "." else name + "/") if m["below"] else name, text)
    return re.sub(r"/kaggle/(input|working)/", r"kaggle:\1/", text)


def plain_progress(mininterval: float = 30.0) -> None:
    """Text progress bars that update at most every ``mininterval`` seconds: a rendered notebook then keeps a
    few lines ending at 100% instead of a frozen ``0%`` widget (call before the package's modules are imported)."""
    os.environ.setdefault("TQDM_MININTERVAL", str(mininterval))
    os.environ.setdefault("TQDM_DELAY", "3")  # loops shorter than this print no bar at all
    try:
        import tqdm.auto
        import tqdm.std

        tqdm.auto.tqdm = tqdm.std.tqdm
    except ImportError:
        pass


def data_label(note: str) -> str:
    """A data note without machine path or hash: its kind and the folder's name (``synthetic stand-in
    (anndl synth) in synthetic/``)."""
    note = re.sub(r"\s*\[fingerprint [0-9a-f]+\]", "", str(note))
    kind, sep, where = note.partition(" at ")
    return f"{kind} in {Path(where.strip()).name}/" if sep else kind


# ------------------------------------------------------------------------------------------- footer

def hardware() -> str:
    """CPU cores and model, GPUs (names) as one line; no TensorFlow import when it is not loaded yet."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{os.cpu_count()} CPU cores ({cpu})"]
    if "tensorflow" in sys.modules:
        gpus = sys.modules["tensorflow"].config.list_physical_devices("GPU")
        parts.append(f"{len(gpus)} GPU" + ("s" if len(gpus) != 1 else ""))
    return ", ".join(parts)


def commit() -> str:
    """The repository's commit (short), with ``+changes`` when the work tree differs; ``unknown`` outside git.
    ``ANNDL_COMMIT`` (set by ``make notebooks`` once, before the first notebook rewrites itself) wins, so that
    every notebook of one rendering run names the same commit."""
    if os.environ.get("ANNDL_COMMIT"):
        return os.environ["ANNDL_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode:
            return "unknown (not a git clone)"
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + (" +changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


FOOTER_PACKAGES = ("anndl", "tensorflow", "keras", "keras-hub", "numpy", "pandas", "scikit-learn", "matplotlib")


def files_written(folder: Path | str, since: float) -> list[str]:
    """Files below ``folder`` modified at or after ``since`` (a ``time.time()``), as portable paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(portable(p) for p in folder.rglob("*")
                  if p.is_file() and p.stat().st_mtime >= since and not p.name.startswith(".")
                  and not {"resume", "tensorboard"} & set(p.parts))


def footer(started: float, seed: int, output_dir: Path | str, max_files: int = 25) -> str:
    """The closing lines of a notebook: wall time since ``started`` (``time.time()`` in the setup cell),
    hardware, seed, commit, package versions and the files written below ``output_dir`` since then."""
    versions = []
    for name in FOOTER_PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    files = files_written(output_dir, started - 1)
    shown = files[:max_files] + ([f"… and {len(files) - max_files} more"] if len(files) > max_files else [])
    lines = [f"wall time: {time.time() - started:.0f} s · hardware: {hardware()} · seed: {seed}",
             f"commit: {commit()} · python {platform.python_version()} · " + ", ".join(versions),
             f"files written ({len(files)}):" + ("".join(f"\n  {f}" for f in shown) if files else " none")]
    return "\n".join(lines)
