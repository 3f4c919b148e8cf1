"""How much of the synthetic label the colour histogram reads, out of fold, without training a CNN.

Generates small synthetic sets (default: 400 train images at scale 0.25) with the stain sites
independent of class (the default) and with the site-class correlation switched on, and scores the
colour-histogram logistic regression (:mod:`anndl.evaluate.baselines`) over 3 folds
(:func:`anndl.data.tiling.assign_folds`). Issue 14 asks for <= 0.40 macro F1 on the new default.

    python bench/colour_baseline_check.py [--n-train 120 --scale 0.25 --folds 3 --out /tmp/colour_check]

Takes ~1-2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from anndl.data import read_challenge
from anndl.data import synthetic
from anndl.data.tiling import assign_folds
from anndl.evaluate.baselines import baseline_predictions, colour_features
from anndl.evaluate.voting import image_scores

SETTINGS = {
    "sites, independent of class": dict(stain_sites=5),
    "sites, site-class correlation 1.0": dict(stain_sites=5, site_class_correlation=1.0),
}


def oof_colour_baseline(data: Path, n_folds: int = 3, seed: int = 0) -> dict:
    """Out-of-fold scores of the colour-histogram and majority baselines on a challenge folder."""
    manifest = read_challenge(data, splits=("train",))
    train = manifest[manifest.split == "train"]
    frame = train.assign(group=-1)[["sample_index", "label", "group"]]
    folds = assign_folds(frame, n_folds, seed=42)
    features = colour_features(manifest, folds.sample_index)
    predicted = []
    for k in range(n_folds):
        split = folds.assign(split=np.where(folds.fold == k, "val", "train"))[["sample_index", "split"]]
        predicted.append(baseline_predictions(manifest, split, features))
    predicted = pd.concat(predicted, ignore_index=True)
    return {name: image_scores(predicted.label_index, predicted[name], seed)
            for name in ("colour_histogram", "majority")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where the sets go (default: a temp folder)")
    args = parser.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="colour_check_"))
    print(f"{args.n_train} train images at scale {args.scale}, {args.folds} folds, seed {args.seed}; sets in {root}")
    for i, (name, options) in enumerate(SETTINGS.items()):
        start = time.perf_counter()
        data = synthetic.generate(root / f"set{i}", n_train=args.n_train, n_test=1, scale=args.scale,
                                  seed=args.seed, progress=False, **options)
        scores = oof_colour_baseline(data, args.folds)
        c, m = scores["colour_histogram"], scores["majority"]
        lo, hi = c["macro_f1_ci95"]
        print(f"{name:40s} colour histogram OOF macro F1 {c['macro_f1']:.3f} ({lo:.3f}-{hi:.3f}); "
              f"majority {m['macro_f1']:.3f}  [{time.perf_counter() - start:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
