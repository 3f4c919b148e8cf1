"""Tile classifiers, each a ``keras.Model`` taking uint8-range RGB tiles and owning its preprocessing.

* ``scratch_resnet``: the report's from-scratch ResNet (§4.1; He et al., 2016, "Deep Residual
  Learning"): a strided stem, ``stacks`` stacks of ``blocks_per_stack`` basic residual blocks whose
  width doubles per stack, global average pooling, dropout, a 4-way softmax.

Parts are named (``stem``, ``stack{i}_block{j}``, ``head_*``) so that optimisers and freezing can
address them by ``variable.path``.
"""

from __future__ import annotations

import keras
from keras import layers

from anndl.config import ScratchResNetConfig
from anndl.labels import NUM_CLASSES


def augmentation(seed: int = 42) -> keras.Sequential:
    """Geometric (flips, 90-degree-free rotations, zoom) and photometric (colour jitter) augmentation,
    active only in training. Off by default, as in the report (§6: it degraded their scores)."""
    return keras.Sequential([
        layers.RandomFlip("horizontal_and_vertical", seed=seed),
        layers.RandomRotation(0.5, fill_mode="reflect", seed=seed),
        layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed),
        layers.RandomColorJitter(value_range=(0, 255), brightness_factor=0.1, contrast_factor=0.1,
                                 saturation_factor=(0.4, 0.6), hue_factor=0.02, seed=seed),
    ], name="augmentation")


def _residual_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        # ResNet-D shortcut (average pool, then 1x1 conv): the plain strided 1x1 projection crashes
        # TensorFlow 2.21's oneDNN backward pass on AVX-512/AMX CPUs (heap corruption), and ResNet-D
        # is no worse (He et al., 2019, "Bag of Tricks").
        if stride != 1:
            shortcut = layers.AveragePooling2D(stride, strides=stride, padding="same", name=f"{name}_pool")(shortcut)
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def scratch_resnet(config: ScratchResNetConfig = ScratchResNetConfig(), tile_size: int = 224,
                   augment: bool = False, seed: int = 42) -> keras.Model:
    """The from-scratch ResNet; input: (tile_size, tile_size, 3) tiles in [0, 255]."""
    inputs = keras.Input((tile_size, tile_size, 3), name="tile")
    x = augmentation(seed)(inputs) if augment else inputs
    x = layers.Rescaling(1 / 255, name="rescale")(x)
    x = layers.Conv2D(config.filters, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s in range(config.stacks):
        for b in range(config.blocks_per_stack):
            stride = 2 if (s > 0 and b == 0) else 1
            x = _residual_block(x, config.filters * 2 ** s, stride, f"stack{s + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(config.dropout, name="head_dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="head_softmax")(x)
    return keras.Model(inputs, outputs, name="scratch_resnet")
