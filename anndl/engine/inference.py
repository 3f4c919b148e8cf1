"""Tile probabilities from a model over a ``(tile, image_number, weight)`` dataset, with optional test-time
augmentation over the eight dihedral views (tissue has no orientation)."""

import numpy as np
from scipy.special import softmax


def dihedral(tiles, k: int):
    """The k-th dihedral transform of a (batch, h, w, c) tensor: k*90 degrees, then flipped for k >= 4."""
    import tensorflow as tf
    out = tf.image.rot90(tiles, k % 4)
    return tf.image.flip_left_right(out) if k >= 4 else out


def predict_tiles(model, dataset, from_logits: bool = False, tta: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tile probabilities (float32, softmaxed when the model outputs logits), image numbers, weights) in
    dataset order; ``tta``: averaged over the eight dihedral views of each tile."""
    probabilities, numbers, weights = [], [], []
    for tiles, image_numbers, tile_weights in dataset:
        views = [dihedral(tiles, k) for k in range(8)] if tta else [tiles]
        outputs = [np.asarray(model(view, training=False), np.float32) for view in views]  # no retracing (last batch)
        probabilities.append(sum(softmax(o, axis=1) if from_logits else o for o in outputs) / len(views))
        numbers.append(image_numbers.numpy())
        weights.append(tile_weights.numpy())
    if not probabilities:
        raise ValueError("the inference dataset is empty")
    return np.concatenate(probabilities), np.concatenate(numbers), np.concatenate(weights)
