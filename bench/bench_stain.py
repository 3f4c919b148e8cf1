"""Per-tile cost of stain handling against the plain tile pipeline, measured in one run (< 1 min, 2 cores).

On a small full-size synthetic set (default 16 train images at scale 1, tiles as the tile stage keeps them):

* plain: ``anndl.data.pipeline.tile_dataset`` (decode each PNG once, cut its tiles, batch), no cache;
* + HED: the same batches through :class:`anndl.data.stain.HEDJitter` ('strong') in the ``tf.data`` map (on a
  GPU it would run inside the model instead, where its cost is a few element-wise ops per pixel);
* + Macenko / Reinhard in the pipeline: ``tile_dataset(stain=...)``, each image normalised on its ROI tissue
  when it is decoded (``tf.numpy_function``), uncached (training caches decoded tiles: paid once per run);
* Macenko offline: normalising the images once into a folder (``bench/common.py``'s ``write_normalized_folder``),
  after which every epoch costs what the plain pipeline costs.

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
from common import write_normalized_folder


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
    reference = stain.reference_from_manifest(manifest, max_images=8)
    normalizer = stain.StainNormalizer(reference, "macenko")
    macenko = tile_dataset(tiles, manifest, ("train",), batch_size=args.batch, stain=normalizer)
    reinhard = tile_dataset(tiles, manifest, ("train",), batch_size=args.batch,
                            stain=stain.StainNormalizer(reference, "reinhard"))
    t_plain, t_hed, t_macenko, t_reinhard = timed(plain), timed(with_hed), timed(macenko), timed(reinhard)
    start = time.perf_counter()
    write_normalized_folder(data, root / "macenko", "macenko", reference=reference, progress=False)
    t_offline = time.perf_counter() - start

    def line(name, seconds, base):
        print(f"{name:52s} {n_tiles / seconds:8.1f} tiles/s   ratio {base / seconds:5.2f}")

    line("plain tile pipeline (tile_dataset, uncached)", t_plain, t_plain)
    line("+ HED 'strong' in the tf.data map", t_hed, t_plain)
    line("+ Macenko on decoding (tile_dataset(stain=...))", t_macenko, t_plain)
    line("+ Reinhard on decoding", t_reinhard, t_plain)
    line("Macenko offline, once (write_normalized_folder)", t_offline, t_plain)
    print(f"Macenko fallbacks: {normalizer.counts}")


if __name__ == "__main__":
    main()
