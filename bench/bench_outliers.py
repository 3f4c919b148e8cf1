"""Outlier removal measured: precision/recall per kind, time and peak memory.

1. The full-size synthetic default (691 train images, 60 stickers, 50 green) against planted_outliers.csv.
2. Real tissue: stickers and green blobs planted on the BACH ROI samples in ../shared/data/he_samples
   (skipped when absent).
Both with the offline embedder (no pretrained weights).
"""

import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anndl.data import outliers  # noqa: E402
from anndl.core.config import DATA_ROOT, SYNTHETIC_DEFAULT  # noqa: E402
from anndl.data import read_challenge, resolve_data_dir  # noqa: E402
from common import bach_pairs, plant_outliers  # noqa: E402

HE_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "he_samples"


def measure(folder: Path, title: str) -> None:
    manifest = read_challenge(folder)
    start = time.perf_counter()
    cleaned = outliers.clean(manifest, outliers.ColourTextureEmbedder())
    seconds = time.perf_counter() - start
    scores = outliers.score_against_planted(cleaned, pd.read_csv(folder / "planted_outliers.csv"))
    n = (manifest.split == "train").sum()
    print(f"\n{title}: {n} train images, cleaning took {seconds:.1f} s ({1000 * seconds / n:.0f} ms/image)")
    print(f"embedder: {cleaned.embedder.iloc[0]}")
    print(scores.round(4).to_string(index=False))


def main():
    synthetic = resolve_data_dir(DATA_ROOT, SYNTHETIC_DEFAULT)
    if not (synthetic / "planted_outliers.csv").is_file():
        print(f"{synthetic} holds real data (no planted ground truth); skipping the synthetic measurement")
    else:
        measure(synthetic, "synthetic default")
    if (HE_SAMPLES / "bach_roi").is_dir():
        work = Path(tempfile.mkdtemp())
        try:
            folder = plant_outliers(bach_pairs(HE_SAMPLES / "bach_roi"), work / "bach", n_stickers=3, n_green=3, seed=3)
            measure(folder, "real BACH tissue with planted outliers (3 stickers, 3 green, 17 genuine)")
        finally:
            shutil.rmtree(work)
    else:
        print(f"\n{HE_SAMPLES / 'bach_roi'} absent: real-tissue check skipped")
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
