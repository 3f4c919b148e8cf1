"""Voting: tile probabilities to image predictions.

Voting rules:

* ``hard``: each tile votes for its argmax class; the image takes the class with most votes. A tie
  goes to the tied class with the largest summed tile probability (then the lower class index).
* ``soft`` (mask-weighted): the image takes the argmax of sum over tiles of probability x tile weight,
  where a tile's weight is its share of the image's mask pixels.

The metric (macro F1 over images) lives in ``anndl.evaluate.metrics``, the submission format in
``anndl.evaluate.submission``, tile inference in ``anndl.engine.inference``.
"""

from __future__ import annotations

import numpy as np

VOTING_RULES = ("hard", "soft")


def vote(probabilities: np.ndarray, image_numbers: np.ndarray, weights: np.ndarray, n_images: int,
         rule: str = "hard") -> np.ndarray:
    """Class index per image (``n_images``) from tile probabilities (n_tiles, n_classes)."""
    probabilities = np.asarray(probabilities, np.float64)
    image_numbers = np.asarray(image_numbers)
    missing = np.setdiff1d(np.arange(n_images), image_numbers)
    if missing.size:
        raise ValueError(f"{missing.size} images have no tile prediction (e.g. image number {missing[0]})")
    n_classes = probabilities.shape[1]
    summed = np.zeros((n_images, n_classes))
    np.add.at(summed, image_numbers, probabilities)
    if rule == "soft":
        return mask_weighted(probabilities, image_numbers, weights, n_images).argmax(1)
    if rule != "hard":
        raise ValueError(f"voting rule must be one of {VOTING_RULES}, got {rule!r}")
    votes = np.zeros((n_images, n_classes))
    np.add.at(votes, (image_numbers, probabilities.argmax(1)), 1)
    tied = votes == votes.max(1, keepdims=True)
    return np.where(tied, summed, -np.inf).argmax(1)


def mask_weighted(probabilities: np.ndarray, image_numbers: np.ndarray, weights: np.ndarray,
                  n_images: int) -> np.ndarray:
    """Each image's mask-weighted mean tile probability (n_images, n_classes), rows summing to 1: the soft
    rule's scores, which can be averaged over an ensemble's members before the argmax."""
    out = np.zeros((n_images, np.shape(probabilities)[1]))
    np.add.at(out, np.asarray(image_numbers), np.asarray(probabilities, np.float64) * np.asarray(weights, np.float64)[:, None])
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)
