"""Every private Keras/KerasHub name anndl uses, each with why no public API does (``tests/test_layout.py`` checks)."""

PRIVATE_NAMES = (  # (module or attribute owner, name), for the layout test
    ("keras.src.applications.convnext", "ConvNeXt"),
    ("keras.src.layers.preprocessing.data_layer", "DataLayer"),
    ("keras.layers.Layer", "_layers"),
    ("keras_hub.src.utils.transformers", "convert_vit"),
    ("keras_hub.src.utils.transformers", "convert_dinov2"),
    ("keras_hub.src.utils.transformers.safetensor_utils", "SafetensorLoader"),
)


def convnext_builder():
    """Keras's generic ConvNeXt builder: the only way to a tiny ConvNeXt (custom depths and widths)."""
    from keras.src.applications import convnext
    return convnext.ConvNeXt


def data_layer_base() -> type:
    """Keras's tf.data-safe preprocessing base class (every Keras >= 3.15, the lower bound, has it)."""
    from keras.src.layers.preprocessing.data_layer import DataLayer
    return DataLayer


def data_layer_seed(layer):
    """The seed generator a ``DataLayer`` uses for the back end it runs under."""
    return layer._get_seed_generator(layer.backend._backend)


def sublayers(layer) -> list:
    """A layer's direct sublayers: KerasHub's ``ViTEncoder`` is a ``Layer``, which has no public list of them."""
    return list(layer._layers)


def hf_converters():
    """KerasHub's Hugging Face converters: no public entry point takes a local transformers folder."""
    from keras_hub.src.utils.transformers import convert_dinov2, convert_vit
    from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader
    return convert_vit, convert_dinov2, SafetensorLoader
