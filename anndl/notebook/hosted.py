"""Hosted runtimes (Colab, Kaggle) and the notebooks' start: the runtime's own stack topped up to the package's
lower bounds, the challenge data found where the runtime keeps it, outputs where they outlive the session.

A notebook opened from its badge runs on the runtime's TensorFlow, JAX and CUDA: those are never installed or
upgraded here (pip gets them as constraints, pinned at their installed versions). What is missing or below the
lower bound that ``pyproject.toml`` states is installed; when a package that was already imported had to be
upgraded, the notebook stops once and asks for a restart. The runtime's folders are environment variables, so
tests simulate Colab and Kaggle without ``/content`` or ``/kaggle``:

- ``ANNDL_KAGGLE_INPUT`` (``/kaggle/input``), ``ANNDL_KAGGLE_WORKING`` (``/kaggle/working``);
- ``ANNDL_COLAB_ROOT`` (``/content``), ``ANNDL_DRIVE_ROOT`` (``/content/drive/MyDrive``, mounted on first use).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from anndl.core.config import DATA_ROOT, OUTPUTS, REPO_ROOT

NEVER_INSTALL = ("tensorflow", "tensorflow-cpu", "tf-nightly", "jax", "jaxlib", "torch")  # the runtime's own
NEVER_INSTALL_PREFIXES = ("nvidia-", "jax-cuda", "libtpu")
ALTERNATIVES = {  # a requirement met by any of these distributions (Colab ships the GUI OpenCV)
    "opencv-python-headless": ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                               "opencv-contrib-python-headless"),
}
DEFAULT_REPOSITORY = "https://github.com/OWNER/anndl"  # a placeholder until `make publish`
STAGED_RECORD = ".anndl-staged.json"


class SetupError(RuntimeError):
    """A notebook cannot start; shown as one line in a notebook (IPython's ``_render_traceback_``)."""

    def _render_traceback_(self):
        return [f"SetupError: {self}"]


# ------------------------------------------------------------------------------------------ the runtime

def runtime() -> str:
    """'colab', 'kaggle' or 'local'."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    return "local"


def kaggle_input() -> Path:
    return Path(os.environ.get("ANNDL_KAGGLE_INPUT", "/kaggle/input"))


def kaggle_working() -> Path:
    return Path(os.environ.get("ANNDL_KAGGLE_WORKING", "/kaggle/working"))


def colab_root() -> Path:
    return Path(os.environ.get("ANNDL_COLAB_ROOT", "/content"))


def drive_root() -> Path:
    """Google Drive's ``MyDrive`` folder, mounted first when this is a real Colab session."""
    root = Path(os.environ.get("ANNDL_DRIVE_ROOT", "/content/drive/MyDrive"))
    if not root.is_dir() and "ANNDL_DRIVE_ROOT" not in os.environ:
        try:
            from google.colab import drive  # type: ignore[import-not-found]
        except ImportError as e:
            raise SetupError(f"DRIVE is set but Google Drive is not mounted at {root} (and this is not Colab)") from e
        drive.mount(str(root.parent))
    if not root.is_dir():
        raise SetupError(f"DRIVE is set but {root} is not a folder (mount Google Drive first)")
    return root


# ------------------------------------------------------------------------------- the runtime's stack

def lower_bounds(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, str]:
    """``{distribution: lowest version}`` from ``[project] dependencies`` (the versions ``make test-min`` tests)."""
    bounds = {}
    for line in tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]:
        name, _, version = line.partition(">=")
        bounds[name.strip().lower()] = version.split(",")[0].strip()
    return bounds


def _version_tuple(version: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def installed_version(name: str) -> str | None:
    """The installed version of ``name`` (or of an alternative that provides the same module), else None."""
    for candidate in ALTERNATIVES.get(name, (name,)):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def _untouchable(name: str) -> bool:
    return name in NEVER_INSTALL or name.startswith(NEVER_INSTALL_PREFIXES)


def install_plan(bounds: dict[str, str], installed: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """``(pip requirements to install, problems that must not be fixed here)``: what is missing or below its
    lower bound, as ``name>=bound``; the runtime's own packages (TensorFlow, JAX, CUDA) only as problems."""
    install, problems = [], []
    for name, bound in bounds.items():
        have = installed.get(name)
        if have is not None and _version_tuple(have) >= _version_tuple(bound):
            continue
        if _untouchable(name):
            problems.append(f"{name} {have or 'is missing'}{' is below ' + bound if have else ''}: this runtime's "
                            f"own package is never replaced here; pick a runtime with {name}>={bound}")
        else:
            install.append(f"{name}>={bound}")
    return install, problems


def runtime_constraints() -> list[str]:
    """``name==version`` for every installed package pip must not replace (TensorFlow, JAX, CUDA, torch)."""
    pins = []
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and _untouchable(name):
            pins.append(f"{name}=={dist.version}")
    return sorted(set(pins))


def ensure_requirements(bounds: dict[str, str] | None = None, pip: list[str] | None = None) -> list[str]:
    """Install what is missing or too old (never the runtime's TensorFlow, JAX or CUDA: they are pip
    constraints at their installed versions). Returns what was installed. Raises ``SetupError`` when a package
    that was already imported had to be upgraded (restart once), or when pip fails."""
    bounds = lower_bounds() if bounds is None else bounds
    install, problems = install_plan(bounds, {name: installed_version(name) for name in bounds})
    for problem in problems:
        print(f"WARNING: {problem}")
    if not install:
        return []
    loaded = [r.split(">=")[0] for r in install if _module_loaded(r.split(">=")[0]) and installed_version(r.split(">=")[0])]
    print(f"{runtime()}: installing {install} (TensorFlow, JAX and CUDA stay the runtime's own)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(runtime_constraints()) + "\n")
    try:
        done = subprocess.run([*(pip or [sys.executable, "-m", "pip"]), "install", "-q", "--disable-pip-version-check",
                               *install, "-c", constraints.name], capture_output=True, text=True)
    finally:
        os.unlink(constraints.name)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SetupError(f"pip could not install {install} beside this runtime's own packages: {last}")
    metadata_cache_clear()
    if loaded:
        raise SetupError(f"upgraded {loaded}, which this session had already imported: restart the runtime "
                         "(Runtime -> Restart session) and run all cells again, once")
    return install


_MODULES = {"opencv-python-headless": "cv2", "scikit-learn": "sklearn", "keras-hub": "keras_hub"}


def _module_loaded(name: str) -> bool:
    return _MODULES.get(name, name.replace("-", "_")) in sys.modules


def metadata_cache_clear() -> None:
    """Forget cached import paths so that packages installed a moment ago are found."""
    import importlib

    importlib.invalidate_caches()


# ----------------------------------------------------------------------------------- finding the data

def find_challenge(root: Path | str, max_depth: int = 4) -> Path | None:
    """The first challenge folder (``train_labels.csv`` beside ``train_data/``), or a ``.zip`` holding one, at most
    ``max_depth`` folders below ``root`` (a Kaggle dataset may hold the zip's top folder); None when there is none."""
    root = Path(root)
    if not root.is_dir():
        return None
    for depth in range(max_depth + 1):
        pattern = "/".join(["*"] * depth + ["train_labels.csv"])
        for labels in sorted(root.glob(pattern)):
            if (labels.parent / "train_data").is_dir():
                return labels.parent
    for depth in range(max_depth):
        for archive in sorted(root.glob("/".join(["*"] * depth + ["*.zip"]))):
            if _zip_challenge_root(archive) is not None:
                return archive
    return None


def _zip_challenge_root(archive: Path) -> str | None:
    """The folder inside ``archive`` that holds ``train_labels.csv`` ('' at the top), or None."""
    try:
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.endswith("train_labels.csv") and "__MACOSX" not in n]
    except (zipfile.BadZipFile, OSError):
        return None
    return min((n[: -len("train_labels.csv")] for n in names), key=len, default=None)


def source_identity(source: Path) -> str:
    """A fingerprint of a data source before copying it: for a zip, every member's name, size and CRC (its
    content, read from the zip's directory); for a folder, every file's relative name, size and mtime."""
    digest = hashlib.blake2b(digest_size=8)
    if source.suffix == ".zip":
        with zipfile.ZipFile(source) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                digest.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
    else:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def stage_data(source: Path | str, local_root: Path | str) -> Path:
    """Copy a challenge folder (or unpack a ``.zip`` of one) from a slow mount such as Google Drive to the local
    disk, once: reused while the source's identity (``source_identity``) matches its record. The copy is made
    under a temporary name and renamed when complete, its record written last."""
    source, local_root = Path(source), Path(local_root)
    if not source.exists():
        raise SetupError(f"{source}: no such data folder or zip")
    identity = source_identity(source)
    target = local_root / (source.stem if source.suffix == ".zip" else source.name)
    record = target / STAGED_RECORD
    if record.is_file():
        try:
            if json.loads(record.read_text())["identity"] == identity:
                print(f"reusing the local copy of {source.name} (its source is unchanged)")
                return _challenge_in(target)
        except (ValueError, KeyError):
            pass
    print(f"copying {source.name} to the local disk (once; reused while it is unchanged)")
    local_root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=local_root))
    try:
        if source.suffix == ".zip":
            inner = _zip_challenge_root(source)
            if inner is None:
                raise SetupError(f"{source}: the zip holds no train_labels.csv")
            with zipfile.ZipFile(source) as z:
                z.extractall(partial)
        else:
            shutil.copytree(source, partial, dirs_exist_ok=True)
        (partial / STAGED_RECORD).write_text(json.dumps({"source": source.name, "identity": identity}) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return _challenge_in(target)


def _challenge_in(folder: Path) -> Path:
    found = find_challenge(folder, max_depth=3)
    if found is None or found.suffix == ".zip":
        raise SetupError(f"{folder}: holds no challenge folder (train_data/ and train_labels.csv)")
    return found


# ------------------------------------------------------------------------------------- where things go

@dataclass(frozen=True)
class Places:
    """Where a notebook reads its data and writes its outputs, and whether those outputs outlive the session."""

    runtime: str
    data: Path          # a challenge folder, or a folder whose synthetic/ default is made on first use
    output: Path
    persistent: str     # how long the outputs last, in words


def places(data_dir=None, output_dir=None, drive: str | None = None) -> Places:
    """Resolve the data and output folders for this runtime from a notebook's parameters.

    Kaggle: the attached challenge folder found under the input root (read in place, read-only), outputs in the
    working root. Colab: with ``drive`` a folder of Google Drive, outputs there (they survive a lost session) and
    the data a folder or ``.zip`` found there, copied once to the local disk. Locally: the parameters, else the
    repository's ``data/`` and ``outputs/``. A ``data_dir`` that is a ``.zip`` is unpacked once beside it."""
    where = runtime()
    data = Path(data_dir) if data_dir else None
    output = Path(output_dir) if output_dir else None
    persistent = "yes (a local folder)"
    if where == "kaggle":
        data = data or find_challenge(kaggle_input()) or DATA_ROOT
        output = output or kaggle_working() / "outputs"
        persistent = "only in a saved version (Save Version) of this notebook; the session's files go with it"
        local = kaggle_working() / "data"
    elif where == "colab":
        local = colab_root() / "anndl_data"
        if drive:
            folder = drive_root() / drive
            folder.mkdir(parents=True, exist_ok=True)
            data = data or find_challenge(folder) or DATA_ROOT
            output = output or folder / "outputs"
            persistent = f"yes (Google Drive: {drive}/outputs)"
            if data != DATA_ROOT and _below(data, drive_root()):
                data = stage_data(data, local)
        else:
            persistent = "no: lost with the Colab session (set DRIVE to keep outputs on Google Drive)"
    else:
        local = (output or OUTPUTS) / "data"
    if data is not None and data.suffix == ".zip":
        data = stage_data(data, local)
    return Places(where, data or DATA_ROOT, output or OUTPUTS, persistent)


def _below(path: Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(root).resolve())


# --------------------------------------------------------------------------------------------- doctor

def gpus() -> list[tuple[str, str]]:
    """``(name, memory)`` of each GPU: ``nvidia-smi`` where it exists, else TensorFlow's device details."""
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        if done.returncode == 0:
            return [tuple(part.strip() for part in line.split(",", 1)) for line in done.stdout.splitlines()
                    if line.strip()]
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        return [(tf.config.experimental.get_device_details(d).get("device_name", d.name), "memory unknown")
                for d in tf.config.list_physical_devices("GPU")]
    return []


def can_download(hosts=("huggingface.co", "storage.googleapis.com"), timeout: float = 3.0) -> str:
    """Whether pretrained weights can be downloaded: 'yes', or 'no (...)' naming the host that failed."""
    for host in hosts:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
        except OSError as e:
            return f"no ({host}: {e.strerror or type(e).__name__}); pass local weights (--weights, data/README.md)"
    return "yes"


def doctor(where: Places, short: bool = False) -> list[str]:
    """What this runtime is and can do, one fact a line: runtime, versions, GPUs and their precision, the data
    (with its fingerprint unless ``short``), where outputs go and whether they last, free disk, downloads."""
    from anndl.core.env import portable

    versions = [f"python {platform.python_version()}"]
    for name in ("tensorflow", "keras", "keras-hub"):
        versions.append(f"{name} {installed_version(name) or 'not installed'}")
    from anndl.core.distribute import cpu_flags, precision_for

    lines = [f"runtime: {where.runtime}", "versions: " + ", ".join(versions)]
    found = gpus()
    for i, (name, memory) in enumerate(found):
        policy, why = precision_for("gpu", name)
        lines.append(f"GPU {i}: {name}, {memory}: MIXED_PRECISION = {policy!r} ({why.split('(', 1)[-1].rstrip(')')})")
    if not found:
        policy, why = precision_for("cpu", cpu_flags=cpu_flags())
        lines.append(f"GPU: none; {os.cpu_count()} CPU cores: MIXED_PRECISION = {policy!r} ({why}); the smoke "
                     "profile runs here, the full profile wants a GPU")
    lines.append("data: " + _describe(where.data, short))
    lines.append(f"outputs: {portable(where.output)} · kept after the session: {where.persistent}")
    probe = where.output if where.output.exists() else next(p for p in where.output.parents if p.exists())
    lines.append(f"free disk: {shutil.disk_usage(probe).free / 2**30:.1f} GiB at {portable(probe)}")
    lines.append(f"pretrained weights downloadable: {can_download()}")
    return lines


def _describe(data: Path, short: bool) -> str:
    from anndl.core.env import portable
    from anndl.data import find_data_dir, read_challenge, read_classes

    folder = find_data_dir(data) or find_data_dir(data / "synthetic")
    if folder is None:
        return f"{portable(data)} holds no challenge folder yet (the synthetic default is made on first use)"
    from anndl.data import is_synthetic

    kind = "synthetic stand-in" if is_synthetic(folder) else "challenge folder"
    counts = {split: len(list((folder / d).glob("img_*"))) for split, d in (("train", "train_data"),
                                                                             ("test", "test_data"))}
    text = (f"{kind} at {portable(folder)}: {counts['train']} train and {counts['test']} test images, "
            f"classes {', '.join(read_classes(folder))}")
    if not short:
        from anndl.data.stages import fingerprint

        text += f", fingerprint {fingerprint(read_challenge(folder))}"
    return text


# ------------------------------------------------------------------------------------- publishing

def repository(pyproject: Path = REPO_ROOT / "pyproject.toml") -> str:
    """The repository's address: ``[project.urls] Repository`` of ``pyproject.toml``."""
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["urls"]["Repository"]


PUBLISHED_FILES = ("pyproject.toml", "README.md", "notebooks/*.ipynb")


def publish(url: str, root: Path = REPO_ROOT) -> list[Path]:
    """Write the repository's address ``url`` (``https://github.com/<owner>/<name>``) into ``pyproject.toml``,
    the README's and every notebook's badges and every notebook's setup cell. Returns the files changed."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(\.git)?/?", url)
    if not match:
        raise ValueError(f"REPOSITORY must look like https://github.com/<owner>/<name>, got {url!r}")
    new = f"{match[1]}/{match[2]}"
    old = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", repository(root / "pyproject.toml"))[1]
    changed = []
    for pattern in PUBLISHED_FILES:
        for path in sorted(root.glob(pattern)):
            text = path.read_text(encoding="utf-8")
            updated = text.replace(f"github.com/{old}", f"github.com/{new}").replace(f"github/{old}", f"github/{new}")
            if path.suffix == ".ipynb":
                notebook = json.loads(updated)
                for cell in notebook["cells"]:
                    if "".join(cell["source"]).startswith(BOOTSTRAP.splitlines()[0]):
                        cell["source"] = bootstrap_cell(f"https://github.com/{new}").splitlines(keepends=True)
                updated = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
            if updated != text:
                tmp = path.with_name(f".{path.name}.publish")
                tmp.write_text(updated, encoding="utf-8")
                os.replace(tmp, path)
                changed.append(path)
    return changed


# ------------------------------------------------------------------------------------ a notebook's start

@dataclass(frozen=True)
class Context:
    """What a notebook's setup resolved: the parameters that decide its outputs, and where things are."""

    profile: str
    seed: int
    data: Path        # the challenge folder used (the synthetic default when none was found)
    output: Path
    figures: Path
    places: Places
    doctor: tuple[str, ...]


def start(params: dict) -> Context:
    """A notebook's setup, from its parameters cell (``globals()``): progress bars as text, the runtime's stack
    topped up, TensorFlow imported quietly, the data and outputs resolved for this runtime, the full profile
    refused on synthetic data (unless ``ALLOW_SYNTHETIC``), paths shown without machine folders, and the short
    ``doctor`` printed."""
    from anndl.core import env
    from anndl.core.config import SYNTHETIC_DEFAULT, check_profile
    from anndl.data import refuse_synthetic, resolve_data_dir

    env.plain_progress()
    if runtime() != "local":
        ensure_requirements()
    env.quiet_tensorflow()
    profile = check_profile(params.get("PROFILE", "smoke"))
    where = places(params.get("DATA_DIR"), params.get("OUTPUT_DIR"), params.get("DRIVE"))
    where.output.mkdir(parents=True, exist_ok=True)
    data = resolve_data_dir(where.data, SYNTHETIC_DEFAULT)
    refuse_synthetic(profile, data, params.get("ALLOW_SYNTHETIC", False))
    env.name_root(data, "data"), env.name_root(where.output, "outputs")
    lines = doctor(Places(where.runtime, data, where.output, where.persistent), short=True)
    print("\n".join(lines))
    return Context(profile, int(params.get("SEED", 42)), data, where.output, where.output / "figures", where,
                   tuple(lines))


# ------------------------------------------------------------------------------- the notebooks' cells

# Every notebook's setup cell, word for word (tests/test_hosted.py checks it): it must work before the package is
# importable, so it only finds the repository, or clones it (Colab, Kaggle), or copies one attached as a Kaggle
# dataset, and hands over to ``start``. Errors are one line (``SetupError``), never a traceback.
BOOTSTRAP = '''\
# Setup: find this repository, or fetch it when the notebook was opened on its own (Colab, Kaggle); then
# anndl.notebook.hosted.start installs what the runtime lacks (never TensorFlow, JAX or CUDA) and prints `anndl doctor`.
import os, pathlib, shutil, subprocess, sys, time
STARTED = time.time()
REPOSITORY = os.environ.get("ANNDL_REPOSITORY") or "{repository}"  # `make publish` writes the address
class SetupError(RuntimeError):
    def _render_traceback_(self): return [f"SetupError: {{self}}"]  # one line, no traceback
is_repo = lambda p: (p / "anndl" / "__init__.py").is_file()
ROOT = next((p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents] if is_repo(p)), None)
if ROOT is None:  # opened from a badge: fetch the repository beside the session's files
    kaggle = "KAGGLE_KERNEL_RUN_TYPE" in os.environ
    if not (kaggle or "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules):
        raise SetupError("run this notebook from a clone of the anndl repository (README: Colab and Kaggle)")
    base = os.environ.get("ANNDL_KAGGLE_WORKING", "/kaggle/working") if kaggle else os.environ.get("ANNDL_COLAB_ROOT", "/content")
    ROOT, inputs = pathlib.Path(base) / "anndl", pathlib.Path(os.environ.get("ANNDL_KAGGLE_INPUT", "/kaggle/input"))
    attached = [p.parent.parent for d in range(4) for p in sorted(inputs.glob("*/" * d + "anndl/__init__.py"))] if kaggle else []
    if not is_repo(ROOT) and attached:  # the repository attached as a Kaggle dataset (works with Internet off)
        shutil.copytree(attached[0], ROOT)
    elif not is_repo(ROOT):
        if not REPOSITORY:
            raise SetupError("this copy has no repository address yet: set os.environ['ANNDL_REPOSITORY'] to a git URL "
                             "of anndl in a cell above, or run `make publish REPOSITORY=...` in your fork (README)")
        done = subprocess.run(["git", "clone", "-q", "--depth", "1", "--", REPOSITORY, str(ROOT)], capture_output=True, text=True)
        if done.returncode:
            raise SetupError(f"git clone {{REPOSITORY}} failed: {{(done.stderr.strip().splitlines() or ['?'])[-1]}}"
                             + (" (Kaggle: turn Settings > Internet on, or attach the repository as a dataset)" if kaggle else ""))
    os.chdir(ROOT / "notebooks")
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
import anndl.notebook.hosted
CTX = anndl.notebook.hosted.start(globals())'''


def bootstrap_cell(url: str | None = None) -> str:
    """The setup cell's source with the repository's address (``repository()`` unless given; empty while that
    is the unpublished placeholder, so that the cell says what to set)."""
    url = url or repository()
    return BOOTSTRAP.format(repository="" if url == DEFAULT_REPOSITORY else url)
