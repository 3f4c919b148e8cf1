"""Tile classifiers (``keras.Model`` on uint8 RGB, own preprocessing): ``scratch_resnet`` (§4.1; He et al., 2016) and
``transfer_model`` (ConvNeXt Large, Liu et al., 2022; ViT, Dosovitskiy et al., 2021); parts named for freezing."""

import contextlib

import keras
from keras import layers

from anndl.core.config import ScratchResNetConfig, WeightsUnavailable, augment_kind
from anndl.core.keras_adapter import convnext_builder, sublayers
from anndl.core.labels import NUM_CLASSES
from anndl.models.layers import FusedBatchNormalization

CONVNEXT_PRESET = "imagenet"                       # keras.applications ConvNeXtLarge weights
VIT_PRESET = "vit_base_patch16_224_imagenet"       # KerasHub preset
STAND_IN_NOTE = "random initialisation (a tiny stand-in configuration, NOT pretrained)"


def augmentation(seed: int = 42, kind: str | bool = "both") -> keras.Sequential:
    """The report's augmentation sets (§6), active only in training: ``geometric``, ``photometric`` or ``both``."""
    kind = augment_kind(kind)
    geometric = [layers.RandomFlip("horizontal_and_vertical", seed=seed),
                 layers.RandomRotation(0.5, fill_mode="reflect", seed=seed),
                 layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed)]
    photometric = [layers.RandomColorJitter(value_range=(0, 255), brightness_factor=0.1, contrast_factor=0.1,
                                            saturation_factor=(0.4, 0.6), hue_factor=0.02, seed=seed)]
    chosen = {"geometric": geometric, "photometric": photometric, "both": geometric + photometric}[kind]
    return keras.Sequential(chosen, name="augmentation")


def _augmented_input(tile_size: int, augment, stain_augment, seed: int):
    """The tile input and what the network sees: HED stain jitter first (Tellez et al., 2019; ``stain_augment``
    'light', 'strong' or a sigma), so that it perturbs the stains as scanned, then ``augmentation``; training only."""
    inputs = x = keras.Input((tile_size, tile_size, 3), name="tile")
    if stain_augment is not None:
        from anndl.data.stain import HEDJitter
        x = HEDJitter(stain_augment, seed=seed, name="stain_augmentation")(x)
    return inputs, augmentation(seed, augment)(x) if augment else x


def _residual_block(x, filters: int, stride: int, name: str, momentum: float = 0.99):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = FusedBatchNormalization(momentum=momentum, name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = FusedBatchNormalization(momentum=momentum, name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        # ResNet-D shortcut (He et al., 2019): a strided 1x1 conv crashes TF 2.21 oneDNN backprop on AVX-512/AMX CPUs
        if stride != 1:
            shortcut = layers.AveragePooling2D(stride, strides=stride, padding="same", name=f"{name}_pool")(shortcut)
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = FusedBatchNormalization(momentum=momentum, name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def scratch_resnet(config: ScratchResNetConfig = ScratchResNetConfig(), tile_size: int = 224,
                   augment: bool | str = False, seed: int = 42, num_classes: int = NUM_CLASSES,
                   stain_augment: str | float | None = None) -> keras.Model:
    """The from-scratch ResNet (§4.1): stacks of basic residual blocks, width doubling per stack; tiles in [0, 255]."""
    inputs, x = _augmented_input(tile_size, augment, stain_augment, seed)
    x = layers.Rescaling(1 / 255, name="rescale")(x)
    x = layers.Conv2D(config.filters, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = FusedBatchNormalization(momentum=config.bn_momentum, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s in range(config.stacks):
        for b in range(config.blocks_per_stack):
            stride = 2 if (s > 0 and b == 0) else 1
            x = _residual_block(x, config.filters * 2 ** s, stride, f"stack{s + 1}_block{b + 1}", config.bn_momentum)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(config.dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head_softmax")(x)
    return keras.Model(inputs, outputs, name="scratch_resnet")


def convnext_backbone(pretrained: bool, tile_size: int, weights: str | None = None) -> tuple[keras.Model, str]:
    """(backbone, weights note): ConvNeXt Large if ``pretrained`` (download or local ``weights``), else a tiny one."""
    if pretrained:
        source = weights or CONVNEXT_PRESET
        try:
            backbone = keras.applications.ConvNeXtLarge(include_top=False, weights=source, pooling="avg",
                                                        input_shape=(tile_size, tile_size, 3))
        except Exception as e:
            raise WeightsUnavailable(
                f"could not load ConvNeXtLarge weights {source!r} ({type(e).__name__}: {str(e)[:200]}). "
                "Without internet, download convnext_large_notop.h5 from the keras-applications release "
                "where the internet is reachable and pass --weights /path/to/convnext_large_notop.h5") from e
        note = f"ImageNet-pretrained ConvNeXtLarge ({'local file ' + str(weights) if weights else 'downloaded'})"
    else:
        backbone = convnext_builder()(depths=[1, 1, 1, 1], projection_dims=[8, 16, 32, 64], default_size=tile_size,
                                      name="convnext_smoke", include_top=False, weights=weights, pooling="avg",
                                      input_shape=(tile_size, tile_size, 3))
        note = f"local weights {weights} (a tiny configuration)" if weights else STAND_IN_NOTE
    backbone.name = "backbone"
    return backbone, note


def vit_backbone(pretrained: bool, tile_size: int, weights: str | None = None):
    """(backbone, converter, weights note): the KerasHub preset ``VIT_PRESET`` or ``weights``, or a tiny random ViT."""
    import keras_hub

    converter = None
    if pretrained or weights:
        source = weights or VIT_PRESET
        try:
            backbone = keras_hub.models.ViTBackbone.from_preset(source)
        except Exception as e:
            raise WeightsUnavailable(
                f"could not load the KerasHub ViT preset {source!r} ({type(e).__name__}: {str(e)[:200]}). "
                f"Without internet, download the preset {VIT_PRESET} where the internet is reachable "
                "(keras_hub.models.ViTBackbone.from_preset(...).save_to_preset(DIR) with the converter) "
                "and pass --weights DIR") from e
        with contextlib.suppress(Exception):  # a backbone-only preset has none: the one below
            converter = keras_hub.layers.ViTImageConverter.from_preset(source)
        note = f"pretrained ViT preset {source}" if pretrained else f"local preset {source} (a tiny configuration)"
    else:
        backbone = keras_hub.models.ViTBackbone(image_shape=(tile_size, tile_size, 3), patch_size=32,
                                                num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
        note = STAND_IN_NOTE
    if converter is None:  # the ImageNet ViT presets' scaling, to [-1, 1]
        converter = keras_hub.layers.ViTImageConverter(image_size=(tile_size, tile_size), scale=1 / 127.5, offset=-1.0)
    backbone.name = "backbone"
    converter.name = "preprocess"
    return backbone, converter, note


def transfer_model(kind: str, pretrained: bool, tile_size: int, head_units: int = 256, head_dropout: float = 0.2,
                   weights: str | None = None, augment: bool | str = False, seed: int = 42,
                   num_classes: int = NUM_CLASSES, stain_augment: str | float | None = None) -> tuple[keras.Model, str]:
    """``kind`` 'convnext' or 'vit': (model with logits output, weights note); ``stain_augment``: as scratch_resnet."""
    inputs, x = _augmented_input(tile_size, augment, stain_augment, seed)
    if kind == "convnext":
        backbone, note = convnext_backbone(pretrained, tile_size, weights)
        features = backbone(x, training=False)  # frozen-BN/dropout behaviour, as the Keras fine-tuning guide
    elif kind == "vit":
        backbone, converter, note = vit_backbone(pretrained, tile_size, weights)
        features = backbone(converter(x), training=False)[:, 0, :]  # the class token
    else:
        raise ValueError(f"unknown transfer model {kind!r}")
    x = layers.Dense(head_units, activation="relu", name="head_dense")(features)
    x = layers.Dropout(head_dropout, name="head_dropout")(x)
    return keras.Model(inputs, layers.Dense(num_classes, dtype="float32", name="head_logits")(x), name=kind), note


def freeze_backbone(model: keras.Model) -> list[str]:
    """Phase 1 of transfer learning: only the head trains."""
    model.get_layer("backbone").trainable = False
    return []


def convnext_last_stage(model: keras.Model) -> list[str]:
    """Phase 2 for ConvNeXt: the head and the backbone from its last downsampling block on (with the final norm)."""
    backbone = model.get_layer("backbone")
    backbone.trainable = True
    last = max(i for i, layer in enumerate(backbone.layers) if "downsampling_block" in layer.name)
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= last
    return [layer.name for layer in backbone.layers[last:]]


def vit_last_block(model: keras.Model) -> list[str]:
    """Phase 2 for the ViT: the head, the last transformer block and the final layer norm."""
    backbone = model.get_layer("backbone")
    backbone.trainable = True
    backbone.get_layer("vit_patching_and_embedding").trainable = False
    inner = sublayers(backbone.get_layer("vit_encoder"))
    last = [layer for layer in inner if layer.name.startswith("transformer_block")][-1]
    for layer in inner:
        layer.trainable = layer is last or layer.name == "ln"
    return [last.name, "ln"]
