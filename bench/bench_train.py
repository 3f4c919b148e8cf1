"""Training throughput of the scratch ResNet (the report's configuration) on this machine:
float32 against mixed_bfloat16, measured in one run on the same in-memory batches.

Each precision runs in its own process (the dtype policy is global). Prints tiles/s and the ratio.
"""

import json
import subprocess
import sys
import time

STEPS, BATCH, WARMUP = 12, 32, 3


def measure(policy: str) -> float:
    import keras
    import numpy as np

    from anndl.core.config import ScratchResNetConfig
    from anndl.models.networks import scratch_resnet

    keras.config.set_dtype_policy(policy)
    model = scratch_resnet(ScratchResNetConfig(), 224)
    model.compile(keras.optimizers.Lion(1e-5), "categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, 224, 224, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, BATCH)]
    for _ in range(WARMUP):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(STEPS):
        model.train_on_batch(x, y)
    return STEPS * BATCH / (time.perf_counter() - start)


def main():
    if len(sys.argv) > 1:
        print(json.dumps({"tiles_per_s": measure(sys.argv[1])}))
        return
    rates = {}
    for policy in ("float32", "mixed_bfloat16"):
        out = subprocess.run([sys.executable, __file__, policy], capture_output=True, text=True, check=True)
        rates[policy] = json.loads(out.stdout.strip().splitlines()[-1])["tiles_per_s"]
        print(f"scratch ResNet training, {policy:>15}: {rates[policy]:7.1f} tiles/s (batch {BATCH}, 224x224)")
    print(f"ratio mixed_bfloat16 / float32: {rates['mixed_bfloat16'] / rates['float32']:.2f}")


if __name__ == "__main__":
    main()
