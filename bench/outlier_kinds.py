"""Sticker vs green by more than colour: precision and recall per kind on a folder's own planted outliers,
then on sets planted from its genuine images with stickers in three shades of green (``STICKER_SKINS``) and
green blobs inside identical-mask groups as well as alone.

    python bench/outlier_kinds.py DATA [--genuine N] [--stickers K] [--green G] [--green-twins T]
    python bench/outlier_kinds.py --bach        # real BACH tissue (shared/data/he_samples/bach_roi)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from anndl.data import outliers
from anndl.data import read_challenge
from common import STICKER_SKINS, bach_pairs, plant_outliers

HE = Path(__file__).resolve().parents[2] / "shared" / "data" / "he_samples" / "bach_roi"


def scored(folder: Path) -> pd.DataFrame:
    cleaned = outliers.clean(read_challenge(folder), outliers.ColourTextureEmbedder())
    return outliers.score_against_planted(cleaned, pd.read_csv(folder / "planted_outliers.csv"))


def line(name: str, scores: pd.DataFrame) -> str:
    return name + ": " + "; ".join(f"{r.kind} {r.true_positives}/{r.planted} found, {r.flagged} flagged, precision "
                                   f"{r.precision:.2f}, recall {r.recall:.2f}" for r in scores.itertuples())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--bach", action="store_true")
    parser.add_argument("--genuine", type=int, default=120)
    parser.add_argument("--stickers", type=int, default=20)
    parser.add_argument("--green", type=int, default=10)
    parser.add_argument("--green-twins", type=int, default=10)
    args = parser.parse_args()
    if args.bach:
        pairs = bach_pairs(HE)
        n = dict(n_stickers=3, n_green=2, n_green_twins=2)
    else:
        print(line(f"{args.data.name} (its own planted outliers)", scored(args.data)))
        planted = pd.read_csv(args.data / "planted_outliers.csv")
        bad = set(planted.sample_index) | set(planted.twin.dropna())
        train = args.data / "train_data"
        names = sorted(p.name for p in train.glob("img_*.png") if p.name not in bad)[: args.genuine]
        pairs = [(train / n_, train / n_.replace("img_", "mask_")) for n_ in names]
        n = dict(n_stickers=args.stickers, n_green=args.green, n_green_twins=args.green_twins)
    with tempfile.TemporaryDirectory() as tmp:
        for shade, skin in STICKER_SKINS.items():
            folder = plant_outliers(pairs, Path(tmp) / shade, sticker_skins=[skin], seed=1, **n)
            print(line(f"stickers {shade} {skin}, {n['n_green']} green alone + {n['n_green_twins']} in mask groups, "
                       f"{len(pairs)} genuine", scored(folder)))


if __name__ == "__main__":
    main()
