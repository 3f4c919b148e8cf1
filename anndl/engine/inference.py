"""Inference: tile probabilities from a model over a ``(tile, image_number, weight)`` dataset, with optional
8-view test-time augmentation (the dihedral group: tissue has no orientation)."""

from __future__ import annotations

import numpy as np


def dihedral(tiles, k: int):
    """The k-th of the eight dihedral transforms of a (batch, h, w, c) tensor: rotations by k*90 degrees,
    then a horizontal flip for k >= 4."""
    import tensorflow as tf

    out = tf.image.rot90(tiles, k % 4)
    return tf.image.flip_left_right(out) if k >= 4 else out


def predict_tiles(model, dataset, from_logits: bool = False, tta: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a model over an inference dataset of ``(tile, image_number, weight)`` batches.

    Returns tile probabilities (float32; softmax applied when the model outputs logits), image
    numbers and weights, in dataset order. ``tta``: average the probabilities over the eight
    dihedral transforms of each tile (flips and 90-degree rotations; tissue has no orientation).
    """
    probabilities, numbers, weights = [], [], []
    for tiles, image_numbers, tile_weights in dataset:
        views = [dihedral(tiles, k) for k in range(8)] if tta else [tiles]
        mean = 0
        for view in views:
            output = np.asarray(model(view, training=False), np.float32)  # no retracing on a short last batch
            if from_logits:
                output = np.exp(output - output.max(1, keepdims=True))
                output /= output.sum(1, keepdims=True)
            mean = mean + output / len(views)
        probabilities.append(mean)
        numbers.append(image_numbers.numpy())
        weights.append(tile_weights.numpy())
    if not probabilities:
        raise ValueError("the inference dataset is empty")
    return np.concatenate(probabilities), np.concatenate(numbers), np.concatenate(weights)
