"""Trivial baselines to beat: ``majority`` and ``colour_histogram`` (a logistic regression on 8x8x8 RGB ROI bins)."""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from anndl.core import artifacts
from anndl.core.labels import NUM_CLASSES
from anndl.data import read_image, read_mask
from anndl.evaluate.metrics import compared, image_scores

MAJORITY = "majority class"                        # the baselines' rows in a comparison table
COLOUR = "colour-histogram baseline (no CNN)"
BASELINE_ROWS = (COLOUR, MAJORITY)


def colour_histogram(image_path, mask_path, bins: int = 8) -> np.ndarray:
    """Normalised joint RGB histogram of the ROI pixels (the whole image when the mask is empty)."""
    image, mask = read_image(image_path), read_mask(mask_path)
    pixels = image[mask] if mask.any() else image.reshape(-1, 3)
    flat = np.ravel_multi_index(tuple((pixels // (256 // bins)).astype(np.intp).T), (bins,) * 3)
    return np.bincount(flat, minlength=bins ** 3) / len(flat)


def colour_features(manifest: pd.DataFrame, samples) -> pd.DataFrame:
    """Colour histograms of the train images ``samples`` (indexed by sample_index), cached until a file changes."""
    rows = manifest[manifest.split == "train"].set_index("sample_index").loc[list(samples)]
    pairs = {str(Path(r.image_path).resolve()): (r.image_path, r.mask_path) for r in rows.itertuples()}
    found = artifacts.remembered(
        "colour_histograms", {key: [artifacts.stamp(p) for p in pair] for key, pair in pairs.items()},
        lambda keys: [colour_histogram(*pairs[k]).tolist() for k in tqdm(keys, desc="baseline features", unit="img")],
        keep=5000)  # 512 numbers an image: a cache of at most ~25 MB
    return pd.DataFrame(np.array(list(found.values()), dtype=float).reshape(len(rows), -1), index=rows.index)


def baseline_predictions(manifest: pd.DataFrame, split: pd.DataFrame, features: pd.DataFrame | None = None,
                         val_features: pd.DataFrame | None = None) -> pd.DataFrame:
    """Both baselines' class per ``val`` image, trained on the rest; ``val_features``: the tissue stained otherwise."""
    labels = manifest[manifest.split == "train"].set_index("sample_index").label_index
    features = colour_features(manifest, split.sample_index) if features is None else features
    train, val = split[split.split != "val"].sample_index, split[split.split == "val"].sample_index
    y_train = labels.loc[train].to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    model.fit(features.loc[train].to_numpy(), y_train)
    return pd.DataFrame({"sample_index": val.to_numpy(), "label_index": labels.loc[val].to_numpy(),
                         "majority": np.bincount(y_train).argmax(),
                         "colour_histogram": model.predict((features if val_features is None else
                                                            val_features).loc[val].to_numpy())})


def majority_per_fold(y_true, folds, n_classes: int) -> np.ndarray:
    """Each image's majority class: the commonest (the lowest on a tie, as ``baseline_predictions``) of other folds'."""
    y_true, folds = np.asarray(y_true, int), np.asarray(folds)
    majority = {k: np.bincount(y_true[folds != k], minlength=n_classes).argmax() for k in np.unique(folds)}
    return np.array([majority[k] for k in folds], int)


def run_baselines(manifest: pd.DataFrame, split: pd.DataFrame, seed: int = 0, n_classes: int = NUM_CLASSES) -> dict:
    """Scores of both baselines on the ``val`` images of ``split``, trained on its other images."""
    predicted = baseline_predictions(manifest, split)
    return {name: image_scores(predicted.label_index, predicted[name], seed, n_classes)
            for name in ("majority", "colour_histogram")}


def score(y_true, predicted: dict, folds, colour, n_classes: int, seed: int) -> tuple[list[dict], dict]:
    """``metrics.compared`` rows and predictions: ``predicted`` (first the reference), ``colour``, folds' majority."""
    majority = majority_per_fold(y_true, folds, n_classes)
    predicted = {**predicted, **({COLOUR: colour} if colour is not None else {}), MAJORITY: majority}
    return compared(y_true, predicted, seed, n_classes, majority=majority, colour=colour,
                    baselines=BASELINE_ROWS), predicted
