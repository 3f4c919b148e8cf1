"""Voting: tile probabilities to image predictions.
``hard``: each tile votes its argmax; most votes wins, a tie the tied class with the largest summed tile probability
(then the lower index). ``soft`` (mask-weighted): argmax of the sum of probability x tile weight (mask-pixel share)."""

import numpy as np

VOTING_RULES = ("hard", "soft")


def vote(probabilities: np.ndarray, image_numbers: np.ndarray, weights: np.ndarray, n_images: int,
         rule: str = "hard") -> np.ndarray:
    """Class index per image (``n_images``) from tile probabilities (n_tiles, n_classes)."""
    probabilities, image_numbers = np.asarray(probabilities, np.float64), np.asarray(image_numbers)
    missing = np.setdiff1d(np.arange(n_images), image_numbers)
    if missing.size:
        raise ValueError(f"{missing.size} images have no tile prediction (e.g. image number {missing[0]})")
    if rule == "soft":
        return mask_weighted(probabilities, image_numbers, weights, n_images).argmax(1)
    if rule != "hard":
        raise ValueError(f"voting rule must be one of {VOTING_RULES}, got {rule!r}")
    summed, votes = np.zeros((2, n_images, probabilities.shape[1]))
    np.add.at(summed, image_numbers, probabilities)
    np.add.at(votes, (image_numbers, probabilities.argmax(1)), 1)
    return np.where(votes == votes.max(1, keepdims=True), summed, -np.inf).argmax(1)  # ties: the larger sum


def mask_weighted(probabilities: np.ndarray, image_numbers: np.ndarray, weights: np.ndarray,
                  n_images: int) -> np.ndarray:
    """Each image's mask-weighted mean tile probability (rows sum to 1): soft scores ensembles average pre-argmax."""
    out = np.zeros((n_images, np.shape(probabilities)[1]))
    weighted = np.asarray(probabilities, np.float64) * np.asarray(weights, np.float64)[:, None]
    np.add.at(out, np.asarray(image_numbers), weighted)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)


def probability_columns(classes) -> list[str]:
    """The columns of the image probabilities a K-fold run keeps out of fold (what ``blend`` averages)."""
    return [f"prob_{c}" for c in classes]
