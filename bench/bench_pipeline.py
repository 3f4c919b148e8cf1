"""Tile pipeline throughput against the decode-only floor, measured in one run.

Prints tiles/s of (a) decoding the same PNGs with no tiling (the floor), (b) the tile pipeline's first,
uncached pass, (c) a memory-cached second epoch, and the ratio (b)/(a). Aim: ratio >= 0.9.
"""

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import decode_only_dataset, prepared  # noqa: E402

from anndl.data.pipeline import image_table, tile_dataset  # noqa: E402


def timed_pass(dataset) -> float:
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def main():
    prep = prepared()
    splits = ("train", "val")
    table = image_table(prep.tiles, prep.manifest, splits)
    n_tiles = int(prep.tiles.split.isin(splits).sum())
    print(f"{len(table)} images, {n_tiles} tiles ({prep.data_note})")
    floor = timed_pass(decode_only_dataset(table.image_path.tolist()))
    piped = timed_pass(tile_dataset(prep.tiles, prep.manifest, splits, batch_size=64))
    cached = tile_dataset(prep.tiles, prep.manifest, splits, batch_size=64, cache="memory")
    first = timed_pass(cached)
    second = timed_pass(cached)
    print(f"decode-only floor:        {n_tiles / floor:8.1f} tiles/s ({floor:.1f} s)")
    print(f"tile pipeline (no cache): {n_tiles / piped:8.1f} tiles/s ({piped:.1f} s)")
    print(f"ratio pipeline / floor:   {floor / piped:8.3f}")
    print(f"memory cache: first epoch {n_tiles / first:.1f} tiles/s, second epoch {n_tiles / second:.1f} tiles/s")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
