"""Embedding throughput of the timm layouts (UNI, UNI2-h, Virchow2, H-optimus-0, Prov-GigaPath) on this machine, on
the tiny checkpoints of tests/data/timm (width 32, 2 blocks: they time the token count and the layout, not the real
model), and the analytic FLOPs per 224-pixel tile of the real sizes (the cards' widths and depths), to estimate a
GPU's time: tiles/s ~ the GPU's sustained FLOP/s / FLOPs per tile.

    python bench/bench_timm.py [--tiles 64]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the real sizes: (patch, blocks, width, fc1 width, fc2 width, prefix tokens) from the cards (docs/dataset_facts.md)
REAL = {"uni": (16, 24, 1024, 4096, 4096, 1), "uni2_h": (14, 24, 1536, 8192, 4096, 9),
        "virchow2": (14, 32, 1280, 6832, 3416, 5), "h_optimus_0": (14, 40, 1536, 8192, 4096, 5),
        "prov_gigapath": (16, 40, 1536, 8192, 4096, 1), "phikon_v2": (16, 24, 1024, 4096, 4096, 1)}


def flops_per_tile(patch, blocks, width, fc1, fc2, prefix, size=224) -> float:
    """Matmul FLOPs of one forward pass (2 per multiply-add): patch embedding, attention, projections, MLP."""
    patches = (size // patch) ** 2
    tokens = patches + prefix
    block = 2 * tokens * (4 * width * width + width * fc1 + fc2 * width) + 4 * tokens * tokens * width
    return float(2 * patches * patch * patch * 3 * width + blocks * block)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=64)
    args = parser.parse_args(argv)
    from anndl.models import encoders

    tiles = np.random.default_rng(0).uniform(0, 255, (args.tiles, 224, 224, 3)).astype("float32")
    for folder in sorted((ROOT / "tests" / "data" / "timm").iterdir()):
        encoder = encoders.load(folder, 224)
        encoder.model.predict(tiles[:8], batch_size=8, verbose=0)  # trace
        start = time.perf_counter()
        encoder.model.predict(tiles, batch_size=32, verbose=0)
        seconds = time.perf_counter() - start
        print(json.dumps({"layout": folder.name, "tiny_tiles_per_s": round(args.tiles / seconds, 1),
                          "real_gflops_per_tile": round(flops_per_tile(*REAL[folder.name]) / 1e9, 1)}))


if __name__ == "__main__":
    main()
