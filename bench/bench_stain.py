"""Per-tile cost of HED stain augmentation against the plain tile pipeline, measured in one run (< 1 min, 2 cores).

On a small full-size synthetic set (default 16 train images at scale 1, tiles as the tile stage keeps them):

* plain: ``anndl.data.pipeline.tile_dataset`` (decode each PNG once, cut its tiles, batch), no cache;
* + HED: the same batches through :class:`anndl.data.stain.HEDJitter` ('strong') in the ``tf.data`` map (on a
  GPU it would run inside the model instead, where its cost is a few element-wise ops per pixel).

    python bench/bench_stain.py [--n 16 --scale 1.0]

Prints tiles/s and the ratio to the plain pipeline (1.0 = free).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from anndl.data import read_challenge
from anndl.data import stain, synthetic
from anndl.data.pipeline import tile_dataset
from anndl.data.tiling import TilingConfig, tile_images


def timed(dataset, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in dataset:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench_stain_"))
    data = synthetic.generate(root / "data", n_train=args.n, n_test=1, scale=args.scale, seed=0, progress=False)
    manifest = read_challenge(data, splits=("train",))
    config = TilingConfig()
    tiles = tile_images(manifest, config, progress=False)
    n_tiles = len(tiles)
    print(f"{len(manifest)} images, {n_tiles} tiles of {config.tile_size} px (synthetic, scale {args.scale})")

    plain = tile_dataset(tiles, manifest, ("train",), batch_size=args.batch)
    hed = stain.HEDJitter("strong", seed=0)
    with_hed = plain.map(lambda x, y: (hed(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    t_plain, t_hed = timed(plain), timed(with_hed)

    def line(name, seconds, base):
        print(f"{name:52s} {n_tiles / seconds:8.1f} tiles/s   ratio {base / seconds:5.2f}")

    line("plain tile pipeline (tile_dataset, uncached)", t_plain, t_plain)
    line("+ HED 'strong' in the tf.data map", t_hed, t_plain)


if __name__ == "__main__":
    main()
