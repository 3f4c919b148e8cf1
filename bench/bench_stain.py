"""Per-tile cost of stain handling against the plain tile pipeline, measured in one run (< 1 min, 2 cores).

On a small full-size synthetic set (default 16 train images at scale 1, tiles as ``anndl tile`` keeps them):

* plain: ``anndl.pipeline.tile_dataset`` (decode each PNG once, cut its tiles, batch), no cache;
* + HED: the same batches through :class:`anndl.stain.HEDJitter` ('strong') in the ``tf.data`` map (on a
  GPU it would run inside the model instead, where its cost is a few element-wise ops per pixel);
* + Macenko in the pipeline: decode -> ``tf.numpy_function`` Macenko on the whole image (ROI tissue) ->
  cut, against the same hand-built pipeline without it (``pipeline._cut``), both uncached;
* Macenko offline: normalising the images once into a folder (:func:`anndl.stain.write_normalized_folder`),
  after which every epoch costs what the plain pipeline costs.

    python bench/bench_stain.py [--n 16 --scale 1.0]

Prints tiles/s and the ratio to the plain pipeline (1.0 = free).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from anndl import stain, synthetic
from anndl.data import read_challenge, read_image, read_mask
from anndl.pipeline import _cut, tile_dataset
from anndl.tiling import TilingConfig, select_tiles


def timed(dataset, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in dataset:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def tiles_for(manifest: pd.DataFrame, config: TilingConfig) -> pd.DataFrame:
    parts = []
    for row in manifest.itertuples():
        kept = select_tiles(read_mask(row.mask_path), config)
        parts.append(kept.assign(split="train", sample_index=row.sample_index, label=row.label))
    return pd.concat(parts, ignore_index=True)


def decode_cut(table: pd.DataFrame, tile_size: int, normalizer: stain.StainNormalizer | None, batch: int):
    """decode -> (Macenko) -> cut -> batch, like the tile pipeline's decode map."""
    ds = tf.data.Dataset.from_tensor_slices({
        "path": table.image_path.to_numpy(str), "mask": table.mask_path.to_numpy(str),
        "ys": tf.ragged.constant(table.tile_y.tolist(), dtype=tf.int32),
        "xs": tf.ragged.constant(table.tile_x.tolist(), dtype=tf.int32)})
    normalize = stain.tf_normalize(normalizer) if normalizer else None

    def load(item):
        image = tf.io.decode_png(tf.io.read_file(item["path"]), channels=3)
        if normalize is not None:
            mask = tf.io.decode_png(tf.io.read_file(item["mask"]), channels=1)[..., 0] > 127
            image = normalize(image, mask)
        return _cut(image, item["ys"], item["xs"], tile_size, tile_size)

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).unbatch().batch(batch).prefetch(tf.data.AUTOTUNE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench_stain_"))
    data = synthetic.generate(root / "data", n_train=args.n, n_test=1, scale=args.scale, seed=0, n_stickers=0,
                              n_green=0, progress=False)
    manifest = read_challenge(data, splits=("train",))
    config = TilingConfig()
    tiles = tiles_for(manifest, config)
    n_tiles = len(tiles)
    table = tiles.groupby("sample_index", sort=False).agg(tile_x=("x", list), tile_y=("y", list)).reset_index()
    table = table.merge(manifest[["sample_index", "image_path", "mask_path"]], on="sample_index")
    print(f"{len(manifest)} images, {n_tiles} tiles of {config.tile_size} px (synthetic, scale {args.scale})")

    plain = tile_dataset(tiles, manifest, ("train",), batch_size=args.batch)
    hed = stain.HEDJitter("strong", seed=0)
    with_hed = plain.map(lambda x, y: (hed(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    reference = stain.reference_from_manifest(manifest, max_images=8)
    t_plain, t_hed = timed(plain), timed(with_hed)
    t_cut = timed(decode_cut(table, config.tile_size, None, args.batch))
    normalizer = stain.StainNormalizer(reference, "macenko")
    t_macenko = timed(decode_cut(table, config.tile_size, normalizer, args.batch))
    start = time.perf_counter()
    for row in manifest.itertuples():
        stain.StainNormalizer(reference, "reinhard")(read_image(row.image_path), read_mask(row.mask_path))
    t_reinhard_offline = time.perf_counter() - start
    start = time.perf_counter()
    stain.write_normalized_folder(data, root / "macenko", "macenko", reference=reference, progress=False)
    t_offline = time.perf_counter() - start

    def line(name, seconds, base):
        print(f"{name:44s} {n_tiles / seconds:8.1f} tiles/s   ratio {base / seconds:5.2f}")

    line("plain tile pipeline (tile_dataset)", t_plain, t_plain)
    line("+ HED 'strong' in the tf.data map", t_hed, t_plain)
    line("decode -> cut (hand-built, same work)", t_cut, t_cut)
    line("decode -> Macenko (numpy_function) -> cut", t_macenko, t_cut)
    line("Macenko offline, once (write folder)", t_offline, t_plain)
    line("Reinhard, once (numpy, per image)", t_reinhard_offline, t_plain)
    print(f"Macenko fallbacks: {normalizer.counts}")


if __name__ == "__main__":
    import anndl

    if not hasattr(anndl, "__version__"):  # this branch predates anndl.__version__ (artifacts.version)
        from anndl import artifacts
        artifacts.version = lambda: "dev"
    main()
