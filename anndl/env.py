"""Notebook set-up: detect Colab / Kaggle, install only what is missing there, report versions.

Hosted runtimes already ship TensorFlow; it is never reinstalled (a reinstall breaks their CUDA).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from anndl.config import REPO_ROOT

NEVER_REINSTALL = {"tensorflow", "jupyter", "ipykernel", "nbconvert"}
MIN_KERAS = (3, 15)  # keras.optimizers.MultiOptimizer


def hosted_runtime() -> str | None:
    """'colab', 'kaggle' or None."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    return None


def missing_requirements(requirements: Path = REPO_ROOT / "requirements.txt") -> list[str]:
    """Pinned requirements whose distribution is not installed at all (any version counts)."""
    missing = []
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name = line.split("==")[0].split(">=")[0].strip()
        if name.lower() in NEVER_REINSTALL:
            continue
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(line)
    return missing


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split(".")
    return int(parts[0]), int(parts[1])


def notebook_setup() -> dict:
    """Install what a hosted runtime lacks, print versions, warn when no GPU is visible."""
    runtime = hosted_runtime()
    if runtime:
        missing = missing_requirements()
        if missing:
            print(f"{runtime}: installing {missing}")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO_ROOT)],
                       check=True)
    import keras
    import tensorflow as tf

    info = {"runtime": runtime or "local", "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU"))}
    print(" | ".join(f"{k} {v}" for k, v in info.items()))
    if _major_minor(keras.__version__) < MIN_KERAS:
        print(f"WARNING: keras {keras.__version__} is older than 3.15; MultiOptimizer needs 3.15 "
              f"(pip install -U 'keras>=3.15')")
    if not info["gpus"]:
        print("WARNING: no GPU found; the smoke profile runs on a CPU, the full profile wants a GPU.")
    return info
