"""The scratch ResNet's training step, anndl (Keras 3, the training engine's compile options) against the same network
in plain PyTorch (``bench/torch_scratch_resnet.py``; eager, ``torch.autocast`` for bfloat16), side by side in one run.

Same in-memory batch of 32 tiles of 224x224 for both, Lion at 1e-5, categorical cross-entropy, dropout on. Every
variant runs in its own long-lived worker process (a Keras dtype policy is global); after each worker's warm-up the
workers take turns, ``REPS`` rounds of ``STEPS`` steps each (the order rotates every round), so that load from other
jobs on the machine falls on all of them alike. Ratios are the median over rounds of anndl's tiles/s over torch's in
the same round.

torch is never a dependency of anndl: the torch side runs in this interpreter when it imports torch, else in the
interpreter named by ``ANNDL_TORCH_PYTHON`` (e.g. a throwaway venv with a CPU wheel of torch); with neither, the
side-by-side is skipped with a one-line note.

``python bench/bench_torch_parity.py [REPS STEPS]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCH, SIZE, WARMUP = 32, 224, 4
REPS, STEPS = 6, 5
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _batch():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, SIZE, SIZE, 3)).astype("float32")
    labels = rng.integers(0, 4, BATCH)
    return x, labels


def anndl_worker(policy: str):
    """Yields a function running n training steps of anndl's scratch ResNet (as ``anndl.engine.train.fit`` compiles it)."""
    import keras

    from anndl.core.config import ScratchResNetConfig, TrainConfig
    from anndl.core.distribute import precision_policy
    from anndl.engine import train
    from anndl.models.networks import scratch_resnet

    with precision_policy(policy):
        model = scratch_resnet(ScratchResNetConfig(), SIZE)
    train.compile_model(model, keras.optimizers.Lion(1e-5), train.make_loss(TrainConfig()))
    x, labels = _batch()
    x = keras.ops.convert_to_tensor(x)
    y = keras.ops.convert_to_tensor(keras.ops.one_hot(labels, 4))

    def run(n):
        for _ in range(n):
            loss = model.train_on_batch(x, y)
        return float(loss)

    return run


def torch_worker(precision: str):
    import torch

    sys.path.insert(0, str(HERE))
    from torch_scratch_resnet import Lion, ScratchResNet

    torch.manual_seed(0)
    model = ScratchResNet().train()
    optimizer = Lion(model.parameters(), lr=1e-5)
    x, labels = _batch()
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NCHW, torch's default layout
    y = torch.from_numpy(labels)
    autocast = precision == "mixed_bfloat16"

    def run(n):
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            optimizer.step()
        return float(loss)

    return run


def serve(kind: str, precision: str) -> None:
    """Worker loop: build, then for each line 'N' on stdin run N steps and print the seconds they took."""
    run = anndl_worker(precision) if kind == "anndl" else torch_worker(precision)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        start = time.perf_counter()
        loss = run(n)
        print(json.dumps({"seconds": time.perf_counter() - start, "loss": loss}), flush=True)


def cpu_pressure() -> str:
    """Linux's CPU pressure (share of time some runnable task waited for a CPU), 'n/a' where unavailable: the load
    other jobs put on a shared machine, which slows torch's OpenMP loops (static partitioning) more than TensorFlow's
    work-stealing thread pool."""
    try:
        fields = dict(f.split("=") for f in Path("/proc/pressure/cpu").read_text().split("\n")[0].split()[1:])
        return f"{float(fields['avg60']):.0f}% (last 60 s)"
    except (OSError, KeyError, ValueError):
        return "n/a"


def torch_python() -> str | None:
    """An interpreter that imports torch: this one, else ``ANNDL_TORCH_PYTHON``; None when neither does."""
    for python in (sys.executable, os.environ.get("ANNDL_TORCH_PYTHON")):
        if python and subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None


class Worker:
    def __init__(self, python: str, kind: str, precision: str):
        self.kind, self.precision = kind, precision
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([python, __file__, "--worker", kind, precision], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the {self.kind} {self.precision} worker exited ({self.proc.wait()})")

    def steps(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main(reps: int = REPS, steps: int = STEPS) -> None:
    python = torch_python()
    if python is None:
        print("torch side-by-side skipped: no interpreter imports torch (set ANNDL_TORCH_PYTHON to one that does)")
        return
    version = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                             text=True).stdout.strip()
    precisions = ("float32", "mixed_bfloat16")
    pressure_before = cpu_pressure()
    workers = []
    try:
        for precision in precisions:
            for kind, exe in (("anndl", sys.executable), ("torch", python)):
                worker = Worker(exe, kind, precision)  # built and warmed up one at a time
                worker.steps(WARMUP)
                workers.append(worker)
        rates = {(w.kind, w.precision): [] for w in workers}
        for r in range(reps):
            for w in workers[r % len(workers):] + workers[: r % len(workers)]:
                rates[(w.kind, w.precision)].append(steps * BATCH / w.steps(steps))
    finally:
        for w in workers:
            w.close()
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"scratch ResNet training step, batch {BATCH} of {SIZE}x{SIZE}, Lion; {reps} interleaved rounds of {steps} "
          f"steps after {WARMUP} warm-up; torch {version} eager (autocast for bf16); {os.cpu_count()} CPUs")
    print(f"CPU pressure from other jobs: {pressure_before} before, {cpu_pressure()} after")
    print(f"{'precision':>15} | {'anndl tiles/s':>13} | {'torch tiles/s':>13} | anndl / torch (median of rounds)")
    for p in precisions:
        ratios = [a / t for a, t in zip(rates[("anndl", p)], rates[("torch", p)])]
        print(f"{p:>15} | {median[('anndl', p)]:13.1f} | {median[('torch', p)]:13.1f} | {statistics.median(ratios):.2f}"
              f" (rounds {min(ratios):.2f}-{max(ratios):.2f})")
    for kind in ("anndl", "torch"):
        gains = [b / f for b, f in zip(rates[(kind, "mixed_bfloat16")], rates[(kind, "float32")])]
        print(f"{kind} mixed_bfloat16 / float32: {statistics.median(gains):.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        serve(sys.argv[2], sys.argv[3])
    else:
        main(*(int(a) for a in sys.argv[1:3]))
