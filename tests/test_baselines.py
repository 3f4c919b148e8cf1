"""The baselines a model must beat: majority class and a colour-histogram classifier."""

import cv2
import numpy as np
import pandas as pd

from anndl.evaluate.baselines import baseline_predictions, colour_features, run_baselines


def _colour_coded(tmp_path, n=24):
    """Images whose class is their colour (red-ish: 0, blue-ish: 1), 16 of class 0 and 8 of class 1."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = int(i % 3 == 0)
        image = np.zeros((32, 32, 3), np.uint8)
        image[..., 2 if label == 0 else 0] = rng.integers(150, 255)   # BGR on disk
        image[..., 1] = rng.integers(0, 100)
        cv2.imwrite(str(tmp_path / f"img_{i:04d}.png"), image)
        cv2.imwrite(str(tmp_path / f"mask_{i:04d}.png"), np.full((32, 32), 255, np.uint8))
        rows.append({"split": "train", "sample_index": f"img_{i:04d}.png", "label_index": label,
                     "image_path": str(tmp_path / f"img_{i:04d}.png"), "mask_path": str(tmp_path / f"mask_{i:04d}.png")})
    manifest = pd.DataFrame(rows)
    split = pd.DataFrame({"sample_index": manifest.sample_index, "split": np.where(np.arange(n) < 16, "train", "val")})
    return manifest, split


def test_colour_baseline_learns_colour_and_majority_predicts_the_commonest_class(tmp_path):
    manifest, split = _colour_coded(tmp_path)
    predicted = baseline_predictions(manifest, split)
    assert list(predicted.sample_index) == list(split[split.split == "val"].sample_index)
    assert (predicted.colour_histogram == predicted.label_index).all()
    assert (predicted.majority == 0).all()
    scores = run_baselines(manifest, split, n_classes=2)
    assert scores["colour_histogram"]["macro_f1"] == 1.0 and scores["majority"]["macro_f1"] < 0.5
    features = colour_features(manifest, manifest.sample_index)   # computed once, reused per fold
    assert baseline_predictions(manifest, split, features).equals(predicted)
