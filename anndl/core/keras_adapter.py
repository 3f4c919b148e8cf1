"""Every private Keras and KerasHub name anndl uses, in one place, each with the reason no public API does the job.

The rest of the package calls these functions and never a ``keras.src``/``keras_hub.src`` module or a Keras object's
``_attribute``: ``tests/test_layout.py`` checks that, and checks each name below against the pinned versions, so a
Keras upgrade that moves one fails there, naming it, rather than deep inside a training run.
"""

from __future__ import annotations

import keras

# The private names used, for the layout test: (module or attribute owner, name).
PRIVATE_NAMES = (
    ("keras.src.applications.convnext", "ConvNeXt"),
    ("keras.src.layers.preprocessing.data_layer", "DataLayer"),
    ("keras.layers.Layer", "_layers"),
    ("keras.layers.Layer", "_flatten_layers"),
    ("keras_hub.src.utils.transformers", "convert_vit"),
    ("keras_hub.src.utils.transformers", "convert_dinov2"),
    ("keras_hub.src.utils.transformers.safetensor_utils", "SafetensorLoader"),
    ("keras_hub.src.utils.preset_utils", "get_file"),
)


def convnext_builder():
    """Keras's generic ConvNeXt builder (behind ConvNeXtTiny…XLarge): the only way to build the smoke profile's
    tiny ConvNeXt of the same architecture (custom depths and widths)."""
    from keras.src.applications import convnext

    return convnext.ConvNeXt


def data_layer_base() -> type:
    """Keras's tf.data-safe preprocessing base class (switches to TensorFlow ops inside a ``tf.data`` map under any
    back end), else a plain ``keras.layers.Layer`` where a Keras version lacks it."""
    try:
        from keras.src.layers.preprocessing.data_layer import DataLayer
    except ImportError:  # pragma: no cover - another Keras: a plain layer (fine with the TensorFlow back end)
        return keras.layers.Layer
    return DataLayer


def data_layer_seed(layer, fallback):
    """The seed generator a ``DataLayer`` uses for the back end it runs under (inside ``tf.data``: TensorFlow's);
    ``fallback`` for a plain layer."""
    if hasattr(layer, "_get_seed_generator"):
        return layer._get_seed_generator(layer.backend._backend)
    return fallback


def sublayers(layer) -> list:
    """A layer's direct sublayers: KerasHub's ``ViTEncoder`` is a ``Layer``, which has no public list of them."""
    return list(layer._layers)


def weighted_leaf_layers(model) -> list:
    """The nested layers of ``model`` that hold weights and have no sublayers, in order (no public traversal)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if layer.weights and not layer._flatten_layers(include_self=False, recursive=False)]


def hf_converters():
    """KerasHub's Hugging Face converters: ``(convert_vit, convert_dinov2, SafetensorLoader)`` (KerasHub loads
    ``hf://`` presets through them; no public entry point takes a local transformers folder)."""
    from keras_hub.src.utils.transformers import convert_dinov2, convert_vit
    from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader

    return convert_vit, convert_dinov2, SafetensorLoader


def preset_file(preset: str, name: str) -> str:
    """A file of a KerasHub preset (local folder, ``kaggle://`` or ``hf://``), fetched as KerasHub fetches it."""
    from keras_hub.src.utils.preset_utils import get_file

    return get_file(preset, name)
