"""Throughput of the ``embed`` stage for a ViT-B/16-sized encoder (random weights of the real size: these
numbers time the computation, the features mean nothing), in float32 and mixed_bfloat16, with peak RSS;
then the heads' training time on the cache.

    python bench/bench_embed.py [--images 16] [--work /tmp/anndl_bench_embed]

Each precision runs in its own process (peak RSS is per process). The cache size for the synthetic default
is computed from the tile count in the README (3,367 train+val + 2,743 test tiles) and the bytes per tile
measured here.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_TILES = 3367 + 2743  # synthetic default, README "Measured"


def prepare(work: Path, images: int):
    from anndl.data import synthetic
    from anndl.engine import experiment

    data = work / "data"
    if not (data / "train_labels.csv").is_file():
        synthetic.generate(data, n_train=images, n_test=max(images // 4, 2), scale=1.0, seed=0, progress=False)
    return experiment.prepare(data, work)


def child(work: Path, precision: str | None) -> None:
    from anndl.engine import embed

    prep = prepare(work, 0)
    start = time.perf_counter()
    emb = embed.embed(prep, str(work / "vit_b16_random"), work / f"emb_{precision or 'float32'}",
                      mixed_precision=precision, batch_size=32, redo=True, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"precision": precision or "float32", "tiles": len(emb.embeddings), "seconds": round(seconds, 1),
                      "tiles_per_s": round(len(emb.embeddings) / seconds, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "bytes_per_tile": (emb.folder / embed.FILE).stat().st_size / len(emb.embeddings)}))


def heads_timing(work: Path) -> dict:
    from anndl.engine import embed, heads

    prep = prepare(work, 0)
    emb = embed.load(work / "emb_float32")
    out = {}
    for head in heads.HEADS:
        start = time.perf_counter()
        heads.train_head(prep, emb, work / f"run_{head}", head, folds=3, redo=True)
        out[f"{head}_3_folds_s"] = round(time.perf_counter() - start, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/anndl_bench_embed"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.work, None if args.child == "float32" else args.child)
        return
    from bench.common import write_random_checkpoint

    args.work.mkdir(parents=True, exist_ok=True)
    prep = prepare(args.work, args.images)
    if not (args.work / "vit_b16_random" / "model.safetensors").is_file():
        write_random_checkpoint(args.work / "vit_b16_random", "vit")  # ViT-B/16 sizes, bare layout
    print(f"{len(prep.tiles)} tiles of {prep.tiling.tile_size} px from {args.images} train images")
    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        result = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--child", precision],
                                capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    rows[0]["cache_mib_synthetic_default"] = round(rows[0]["bytes_per_tile"] * DEFAULT_TILES / 2 ** 20, 1)
    print({"bf16_speedup": round(rows[1]["tiles_per_s"] / rows[0]["tiles_per_s"], 2),
           "cache_mib_synthetic_default": rows[0]["cache_mib_synthetic_default"]})
    print(heads_timing(args.work))


if __name__ == "__main__":
    main()
