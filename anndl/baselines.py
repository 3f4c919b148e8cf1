"""Trivial baselines measured on the same split as a model, so its score has something to beat.

* ``majority``: every image gets the most frequent training class.
* ``colour_histogram``: logistic regression on a normalised 8x8x8 RGB histogram of each image's ROI
  (colour alone, no morphology).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from anndl.data import read_image, read_mask
from anndl.labels import NUM_CLASSES
from anndl.voting import image_scores


def colour_histogram(image_path, mask_path, bins: int = 8) -> np.ndarray:
    """Normalised joint RGB histogram of the ROI pixels (the whole image when the mask is empty)."""
    image, mask = read_image(image_path), read_mask(mask_path)
    pixels = image[mask] if mask.any() else image.reshape(-1, 3)
    index = (pixels // (256 // bins)).astype(np.int64)
    flat = (index[:, 0] * bins + index[:, 1]) * bins + index[:, 2]
    return np.bincount(flat, minlength=bins ** 3) / len(flat)


def run_baselines(manifest: pd.DataFrame, split: pd.DataFrame, seed: int = 0, n_classes: int = NUM_CLASSES) -> dict:
    """Scores of both baselines on the ``val`` images of ``split``, trained on its ``train`` images."""
    train_rows = manifest[manifest.split == "train"].set_index("sample_index")
    frame = split.join(train_rows[["image_path", "mask_path", "label_index"]], on="sample_index")
    features = np.stack([colour_histogram(r.image_path, r.mask_path)
                         for r in tqdm(list(frame.itertuples()), desc="baseline features", unit="img")])
    is_train = (frame.split == "train").to_numpy()
    y = frame.label_index.to_numpy()
    majority = np.bincount(y[is_train]).argmax()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    model.fit(features[is_train], y[is_train])
    return {"majority": image_scores(y[~is_train], np.full((~is_train).sum(), majority), seed, n_classes),
            "colour_histogram": image_scores(y[~is_train], model.predict(features[~is_train]), seed, n_classes)}
