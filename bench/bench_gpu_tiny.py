"""``bench/gpu.py --tiny`` on the CPU (under a minute), so the GPU benchmark cannot rot between GPU runs.

Runs it in a fresh process with Keras's JAX back end and TensorFlow made unimportable, as on the GPU
machine (which has no TensorFlow). The tiny numbers go to a temporary folder: they are not results.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_TENSORFLOW = """
import runpy, sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("bench/gpu.py must run without TensorFlow (the GPU machine has none)")
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = ["bench/gpu.py", "--tiny", *sys.argv[1:]]
runpy.run_path("bench/gpu.py", run_name="__main__")
"""


def main():
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        sys.exit("bench/bench_gpu_tiny.py: jax is not installed (pinned in requirements.txt; make venv)")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    sys.exit(subprocess.call([sys.executable, "-c", NO_TENSORFLOW, *sys.argv[1:]], cwd=ROOT, env=env))


if __name__ == "__main__":
    main()
