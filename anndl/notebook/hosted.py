"""Hosted runtimes (Colab, Kaggle): the stack topped up to ``pyproject.toml``'s lower bounds (TF, JAX, CUDA pinned),
data found, outputs kept; tests fake their folders (``ANNDL_KAGGLE_INPUT``, ``_WORKING``, ``ANNDL_COLAB_ROOT``, …)."""

import contextlib
import hashlib
import importlib
import importlib.metadata as metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from anndl.core.config import DATA_ROOT, OUTPUTS, REPO_ROOT
from anndl.core.env import portable

NEVER_INSTALL = ("tensorflow", "tensorflow-cpu", "tf-nightly", "jax", "jaxlib", "torch")  # the runtime's own
NEVER_INSTALL_PREFIXES = ("nvidia-", "jax-cuda", "libtpu")
ALTERNATIVES = {  # a requirement met by any of these distributions (Colab ships the GUI OpenCV)
    "opencv-python-headless": ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                               "opencv-contrib-python-headless"),
}
STAGED_RECORD = ".anndl-staged.json"


class SetupError(RuntimeError):
    """A notebook cannot start; shown as one line in a notebook (IPython's ``_render_traceback_``)."""

    def _render_traceback_(self):
        return [f"SetupError: {self}"]


def runtime() -> str:
    """'colab', 'kaggle' or 'local'."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    return "kaggle" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ else "local"


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


def requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """``[project] dependencies``: the lowest versions the package is tested with (``make test-min``)."""
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]


def installed_version(name: str) -> str | None:
    """The installed version of ``name`` (or of an alternative that provides the same module), else None."""
    for candidate in ALTERNATIVES.get(name, (name,)):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(candidate)
    return None


def _untouchable(name: str) -> bool:
    return name in NEVER_INSTALL or name.startswith(NEVER_INSTALL_PREFIXES)


def install_plan(wanted: list[str], installed: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """(to install, problems): requirements ``installed`` misses; the runtime's own (TF, JAX, CUDA) only as problems."""
    install, problems = [], []
    for requirement in map(Requirement, wanted):
        have = installed.get(requirement.name)
        if have is not None and requirement.specifier.contains(have, prereleases=True):
            continue
        if _untouchable(requirement.name):
            problems.append(f"{requirement.name} {have or 'is missing'} (needs {requirement}): this runtime's own "
                            f"package is never replaced here; pick a runtime that has it")
        else:
            install.append(str(requirement))
    return install, problems


def runtime_constraints() -> list[str]:
    """``name==version`` for every installed package pip must not replace (TensorFlow, JAX, CUDA, torch)."""
    names = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}
    return sorted(f"{name}=={version}" for name, version in names.items() if name and _untouchable(name))


def ensure_requirements(wanted: list[str] | None = None) -> list[str]:
    """Install what is missing or too old, the runtime's TensorFlow, JAX and CUDA pinned; returns what was installed.
    ``SetupError`` when pip fails, or when it upgraded a package this session had imported (restart once)."""
    wanted = requirements() if wanted is None else wanted
    installed = {name: installed_version(name) for name in (Requirement(r).name for r in wanted)}
    install, problems = install_plan(wanted, installed)
    for problem in problems:
        print(f"WARNING: {problem}")
    if not install:
        return []
    imported = {d for module, of in metadata.packages_distributions().items() if module in sys.modules for d in of}
    loaded = [name for name in (Requirement(r).name for r in install)
              if installed[name] and imported & set(ALTERNATIVES.get(name, (name,)))]
    print(f"{runtime()}: installing {install} (TensorFlow, JAX and CUDA stay the runtime's own)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write("\n".join(runtime_constraints()) + "\n")
        constraints.flush()
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *install,
                               "-c", constraints.name], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SetupError(f"pip could not install {install} beside this runtime's own packages: {last}")
    importlib.invalidate_caches()  # packages installed a moment ago are found
    if loaded:
        raise SetupError(f"upgraded {loaded}, which this session had already imported: restart the runtime "
                         "(Runtime -> Restart session) and run all cells again, once")
    return install


def find_challenge(root: Path | str, max_depth: int = 4) -> Path | None:
    """The first challenge folder (or a ``.zip`` of one) at most ``max_depth`` below ``root``, else None."""
    root = Path(root)
    for depth in range(max_depth + 1):
        for labels in sorted(root.glob("*/" * depth + "train_labels.csv")):
            if (labels.parent / "train_data").is_dir():
                return labels.parent
    archives = [a for depth in range(max_depth) for a in sorted(root.glob("*/" * depth + "*.zip"))]
    return next((a for a in archives if _zip_challenge_root(a) is not None), None)


def _zip_challenge_root(archive: Path) -> str | None:
    """The folder inside ``archive`` that holds ``train_labels.csv`` ('' at the top), or None."""
    try:
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.endswith("train_labels.csv") and "__MACOSX" not in n]
    except (zipfile.BadZipFile, OSError):
        return None
    return min((n[: -len("train_labels.csv")] for n in names), key=len, default=None)


def source_identity(source: Path) -> str:
    """A data source's fingerprint: a zip's member names, sizes and CRCs; a folder's relative names, sizes, mtimes."""
    if source.suffix == ".zip":
        with zipfile.ZipFile(source) as z:
            entries = [(i.filename, i.file_size, i.CRC) for i in z.infolist()]
    else:
        entries = [(p.relative_to(source), p.stat().st_size, p.stat().st_mtime_ns) for p in source.rglob("*")
                   if p.is_file()]
    text = "".join(f"{name}\0{size}\0{stamp}\n" for name, size, stamp in sorted(entries))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def stage_data(source: Path | str, local_root: Path | str) -> Path:
    """Copy or unzip a challenge folder from a slow mount (Drive) to local disk once; reused while it is unchanged."""
    source, local_root = Path(source), Path(local_root)
    if not source.exists():
        raise SetupError(f"{source}: no such data folder or zip")
    identity = source_identity(source)
    target = local_root / (source.stem if source.suffix == ".zip" else source.name)
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads((target / STAGED_RECORD).read_text())["identity"] == identity:
            print(f"reusing the local copy of {source.name} (its source is unchanged)")
            return _challenge_in(target)
    print(f"copying {source.name} to the local disk (once; reused while it is unchanged)")
    local_root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=local_root))
    try:
        if source.suffix != ".zip":
            shutil.copytree(source, partial, dirs_exist_ok=True)
        elif _zip_challenge_root(source) is None:
            raise SetupError(f"{source}: the zip holds no train_labels.csv")
        else:
            with zipfile.ZipFile(source) as z:
                z.extractall(partial)
        (partial / STAGED_RECORD).write_text(json.dumps({"source": source.name, "identity": identity}) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return _challenge_in(target)


def _challenge_in(folder: Path) -> Path:
    found = find_challenge(folder, max_depth=3)
    if found is None or found.suffix == ".zip":
        raise SetupError(f"{folder}: holds no challenge folder (train_data/ and train_labels.csv)")
    return found


@dataclass(frozen=True)
class Places:
    """Where a notebook reads its data and writes its outputs, and whether those outputs outlive the session."""

    runtime: str
    data: Path          # a challenge folder, or a folder whose synthetic/ default is made on first use
    output: Path
    persistent: str     # how long the outputs last, in words


def places(data_dir=None, output_dir=None, drive: str | None = None) -> Places:
    """This runtime's data and output folders. Kaggle: the attached data in place, outputs in the working root. Colab
    with ``drive``: outputs there, its data copied to local disk once. Else the arguments or ``data/``, ``outputs/``."""
    where, persistent = runtime(), "yes (a local folder)"
    data, output = (Path(p) if p else None for p in (data_dir, output_dir))
    local = (output or OUTPUTS) / "data"
    if where == "kaggle":
        working = Path(os.environ.get("ANNDL_KAGGLE_WORKING", "/kaggle/working"))
        data = data or find_challenge(os.environ.get("ANNDL_KAGGLE_INPUT", "/kaggle/input")) or DATA_ROOT
        output, local = output or working / "outputs", working / "data"
        persistent = "only in a saved version (Save Version) of this notebook; the session's files go with it"
    elif where == "colab":
        local = Path(os.environ.get("ANNDL_COLAB_ROOT", "/content")) / "anndl_data"
        persistent = "no: lost with the Colab session (set DRIVE to keep outputs on Google Drive)"
        if drive:
            folder = drive_root() / drive
            folder.mkdir(parents=True, exist_ok=True)
            data, output = data or find_challenge(folder) or DATA_ROOT, output or folder / "outputs"
            persistent = f"yes (Google Drive: {drive}/outputs)"
            if data != DATA_ROOT and data.resolve().is_relative_to(drive_root().resolve()):
                data = stage_data(data, local)
    if data is not None and data.suffix == ".zip":
        data = stage_data(data, local)
    return Places(where, data or DATA_ROOT, output or OUTPUTS, persistent)


def gpus() -> list[tuple[str, str]]:
    """``(name, memory)`` of each GPU: ``nvidia-smi`` where it exists, else TensorFlow's device details."""
    if smi := shutil.which("nvidia-smi"):
        done = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        if done.returncode == 0:
            return [tuple(p.strip() for p in line.split(",", 1)) for line in done.stdout.splitlines() if line.strip()]
    if tf := sys.modules.get("tensorflow"):
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


def read_hf_token() -> None:
    """``HF_TOKEN`` (gated encoders) from a Kaggle secret or Colab ``userdata`` when unset; never printed."""
    readers = {"kaggle_secrets": lambda m: m.UserSecretsClient().get_secret("HF_TOKEN"),
               "google.colab.userdata": lambda m: m.get("HF_TOKEN")}
    for module, read in readers.items():
        if not os.environ.get("HF_TOKEN"):
            try:
                os.environ["HF_TOKEN"] = read(importlib.import_module(module)) or ""
            except Exception:  # not this runtime, no such secret, or no access granted
                os.environ.pop("HF_TOKEN", None)


def doctor(where: Places, short: bool = False) -> list[str]:
    """Runtime facts, one a line: versions, GPUs and precision, data (fingerprint unless ``short``), outputs, disk."""
    from anndl.core.distribute import cpu_flags, precision_for

    versions = ", ".join(f"{name} {installed_version(name) or 'not installed'}"
                         for name in ("tensorflow", "keras", "keras-hub"))
    lines = [f"runtime: {where.runtime}", f"versions: python {platform.python_version()}, {versions}"]
    found = gpus()
    for i, (name, memory) in enumerate(found):
        policy, why = precision_for("gpu", name)
        lines.append(f"GPU {i}: {name}, {memory}: MIXED_PRECISION = {policy!r} ({why.split('(', 1)[-1].rstrip(')')})")
    if not found:
        policy, why = precision_for("cpu", cpu_flags=cpu_flags())
        lines.append(f"GPU: none; {os.cpu_count()} CPU cores: MIXED_PRECISION = {policy!r} ({why}); the smoke "
                     "and cpu profiles run here, the full profile wants a GPU")
    probe = next(p for p in [where.output, *where.output.parents] if p.exists())
    return lines + ["data: " + _describe(where.data, short),
                    f"outputs: {portable(where.output)} · kept after the session: {where.persistent}",
                    f"free disk: {shutil.disk_usage(probe).free / 2**30:.1f} GiB at {portable(probe)}",
                    f"pretrained weights downloadable: {can_download()}",
                    "Hugging Face token: " + ("set (HF_TOKEN)" if os.environ.get("HF_TOKEN") else
                                              "not set; gated encoders (UNI, Virchow2, …) need one (data/README.md)")]


def _describe(data: Path, short: bool) -> str:
    from anndl.data import find_data_dir, is_synthetic, read_challenge, read_classes
    from anndl.data.stages import fingerprint
    folder = find_data_dir(data) or find_data_dir(data / "synthetic")
    if folder is None:
        return f"{portable(data)} holds no challenge folder yet (the synthetic default is made on first use)"
    train, test = (len(list((folder / d).glob("img_*"))) for d in ("train_data", "test_data"))
    text = (f"{'synthetic stand-in' if is_synthetic(folder) else 'challenge folder'} at {portable(folder)}: "
            f"{train} train and {test} test images, classes {', '.join(read_classes(folder))}")
    return text if short else f"{text}, fingerprint {fingerprint(read_challenge(folder))}"


def repository() -> str:
    """The repository's address: ``[project.urls] Repository`` of ``pyproject.toml``."""
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Repository"]
