"""Tile probabilities over ``(tile, image_number, weight)`` data; TTA: 8 dihedral views (tissue has no orientation)."""

import weakref

import numpy as np
from scipy.special import softmax

_CALLS = weakref.WeakKeyDictionary()  # model -> its inference as one traced graph (eager: ~3x slower on ConvNeXt)


def _call(model):
    import keras
    if keras.backend.backend() != "tensorflow":
        return lambda tiles: model(tiles, training=False)
    import tensorflow as tf
    return _CALLS.setdefault(model, tf.function(lambda tiles: model(tiles, training=False), reduce_retracing=True))


def dihedral(tiles, k: int):
    """The k-th dihedral transform of a (batch, h, w, c) tensor: k*90 degrees, then flipped for k >= 4."""
    import tensorflow as tf
    out = tf.image.rot90(tiles, k % 4)
    return tf.image.flip_left_right(out) if k >= 4 else out


def predict_tiles(model, dataset, from_logits: bool = False, tta: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tile probabilities (float32, softmaxed if logits), image numbers, weights) in order; ``tta``: 8-view mean."""
    batches, call = [], _call(model)
    for tiles, image_numbers, tile_weights in dataset:
        views = [dihedral(tiles, k) for k in range(8)] if tta else [tiles]
        outputs = [np.asarray(call(view), np.float32) for view in views]  # reduce_retracing: the last batch's size
        probabilities = sum(softmax(o, axis=1) if from_logits else o for o in outputs) / len(views)
        batches.append((probabilities, image_numbers.numpy(), tile_weights.numpy()))
    if not batches:
        raise ValueError("the inference dataset is empty")
    return tuple(map(np.concatenate, zip(*batches)))
