"""Tile encoders from wherever they are published, as Keras models that own their preprocessing.

One argument, ``SRC``, names an encoder (``--encoder SRC``):

* ``hf://org/name[@revision]``: a Hugging Face model repository (e.g. ``hf://owkin/phikon``, Phikon: iBOT
  ViT-B/16 on 40 M pathology tiles, Filiot et al., 2023; ``hf://owkin/phikon-v2``, a DINOv2 ViT-L;
  ``hf://facebook/dinov2-base``), downloaded once into the Hugging Face cache where the internet is reachable;
* a local Hugging Face folder (``config.json`` + ``model.safetensors`` + ``preprocessor_config.json``, as
  ``huggingface_hub.snapshot_download`` leaves it) of model type ``vit`` (a bare ``ViTModel``, Phikon's layout,
  or a prefixed ``ViTForImageClassification``) or ``dinov2``;
* a KerasHub preset folder or a KerasHub preset name (e.g. ``dinov2_small``);
* a ``.keras`` model, or a trained run folder (its model cut before the head).

KerasHub 0.32 converts transformers checkpoints itself; two gaps are closed here. Its ViT converter reads
only the ``vit.``-prefixed keys of ``ViTForImageClassification``, so a bare ``ViTModel`` checkpoint is read
through a loader that drops the prefix (the tensors are the same). And it brings no image converter for
these checkpoints, so the normalisation comes from ``preprocessor_config.json`` (``rescale_factor``,
``image_mean``, ``image_std``, the input size), in any of the forms transformers has written over the years.

The feature is the class token of the final normalised hidden state (transformers'
``last_hidden_state[:, 0]``), or with ``pooling="cls+mean"`` that token concatenated with the mean of the
patch tokens (register tokens excluded). An ``Encoder`` carries its ``identity``: source, architecture,
weights note and hash, preprocessing and pooling, which every output built on it records. A checkpoint
written by ``write_random_checkpoint`` says in its ``config.json`` that it is random, and so does every
output made from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anndl.core.config import WeightsUnavailable

HF_SCHEME = "hf://"
NOTE_KEY = "anndl_weights_note"  # a config.json key this package writes into checkpoints it makes
RANDOM_NOTE = "random initialisation (NOT pretrained)"
POOLINGS = ("cls", "cls+mean")
HF_MODEL_TYPES = ("vit", "dinov2", "dinov2_with_registers")
HF_FILES = ["config.json", "preprocessor_config.json", "*.safetensors", "model.safetensors.index.json"]
# transformers' defaults when a preprocessor_config.json omits mean/std (image_utils.py)
_PROCESSOR_DEFAULTS = {"ViT": ([0.5] * 3, [0.5] * 3),
                       "Bit": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])}
_RESAMPLE = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


@dataclass(frozen=True)
class Preprocessing:
    """What a tile goes through before the encoder: resize to ``size`` (when it differs), then
    ``(x * rescale - mean) / std`` per channel. ``source`` says where these numbers come from."""

    size: int
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    source: str = ""


@dataclass
class Encoder:
    """A tile encoder: ``model`` maps (batch, t, t, 3) tiles in [0, 255] to (batch, dim) float32 features."""

    model: object
    identity: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.model.output_shape[-1])

    @property
    def weights_note(self) -> str:
        return self.identity["weights"]


# ------------------------------------------------------------------------------------------- sources

def _is_hf_folder(path: Path) -> bool:
    config = path / "config.json"
    return config.is_file() and "model_type" in json.loads(config.read_text())


def classify(source: str | Path) -> str:
    """The kind of an encoder source: hf_handle | hf_folder | keras_hub_folder | keras_file | run | keras_hub_name."""
    text = str(source)
    if text.startswith(HF_SCHEME):
        return "hf_handle"
    path = Path(text)
    if path.suffix == ".keras":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: encoder model file not found")
        return "keras_file"
    if path.is_dir():
        if _is_hf_folder(path):
            return "hf_folder"
        if (path / "model.keras").is_file():
            return "run"
        if any(path.glob("fold_*/model.keras")):
            raise ValueError(f"{path}: a K-fold run holds several models; pass one fold folder (e.g. {path}/fold_0)")
        if (path / "config.json").is_file() and (path / "metadata.json").is_file():
            return "keras_hub_folder"
        raise ValueError(f"{path}: not an encoder folder (expected a Hugging Face folder with config.json + "
                         "model.safetensors, a KerasHub preset folder, or a run folder with model.keras)")
    if os.sep in text or text.startswith("."):
        raise FileNotFoundError(f"{path}: no such encoder file or folder")
    return "keras_hub_name"


def fetch_hf(handle: str) -> Path:
    """Download (or find in the Hugging Face cache) the files of ``hf://org/name[@revision]``; offline a
    ``WeightsUnavailable`` with one line saying how to pass a local folder."""
    repo, _, revision = handle[len(HF_SCHEME):].partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=HF_FILES,
                                        local_files_only=offline))
    except Exception as e:  # no internet, no package, unknown repository, gated model ...
        raise WeightsUnavailable(
            f"{handle}: could not download ({type(e).__name__}); where the internet is reachable run "
            f"`huggingface-cli download {repo} --local-dir DIR` (data/README.md) and pass --encoder DIR") from None
    if not list(folder.glob("*.safetensors")):
        raise WeightsUnavailable(f"{handle}: the repository has no model.safetensors (only PyTorch .bin weights); "
                                 "convert it once (data/README.md) and pass the folder")
    return folder


_fetched: dict[str, str] = {}  # hf:// handle -> local folder, once per process


def resolve(source: str | Path) -> tuple[str, str]:
    """(kind, local path or preset name) of a source; ``hf://`` handles are fetched first."""
    kind = classify(source)
    if kind == "hf_handle":
        if str(source) not in _fetched:
            _fetched[str(source)] = str(fetch_hf(str(source)))
        return "hf_folder", _fetched[str(source)]
    return kind, str(source)


# ------------------------------------------------------------------------------------ preprocessing

def _side(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if key in value:
                return int(value[key])
    if isinstance(value, (list, tuple)):
        return int(value[0])
    raise ValueError(f"unreadable size {value!r}")


def hf_preprocessing(folder: Path | str, config: dict | None = None) -> Preprocessing:
    """Normalise a transformers ``preprocessor_config.json`` (old ``ViTFeatureExtractor`` or new image
    processor layout) into a ``Preprocessing``. The input size is the centre crop when the processor crops,
    else its resize target, else the model's ``image_size``; a tile of another size is resized to it
    (tiles are already the model's field of view, so the resize-then-crop zoom is not applied)."""
    folder = Path(folder)
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the encoder's normalisation (image_mean, image_std) is unknown "
                                "(download it with the weights)")
    pre = json.loads(path.read_text())
    config = config if config is not None else json.loads((folder / "config.json").read_text())
    kind = pre.get("image_processor_type") or pre.get("feature_extractor_type") or ""
    defaults = next((v for k, v in _PROCESSOR_DEFAULTS.items() if kind.startswith(k)), None)
    if ("image_mean" not in pre or "image_std" not in pre) and defaults is None:
        raise ValueError(f"{path}: no image_mean/image_std and an unknown processor type {kind!r}")
    mean = pre.get("image_mean", defaults[0] if defaults else None)
    std = pre.get("image_std", defaults[1] if defaults else None)
    if not pre.get("do_normalize", True):
        mean, std = [0.0] * 3, [1.0] * 3
    rescale = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
    size = (_side(pre.get("crop_size")) if pre.get("do_center_crop", False) else None) or \
        (_side(pre.get("size")) if pre.get("do_resize", True) else None) or int(config.get("image_size", 224))
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{path}: image_mean and image_std need 3 values, got {mean}, {std}")
    return Preprocessing(size, rescale, tuple(map(float, mean)), tuple(map(float, std)),
                         _RESAMPLE.get(int(pre.get("resample", 2)), "bilinear"), str(path.name))


# ---------------------------------------------------------------------------------- HF checkpoints

def _safetensor_keys(folder: Path) -> set[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    path = folder / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (KerasHub reads safetensors; PyTorch .bin weights need converting, "
                                "data/README.md)")
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return set(f.keys())


def hf_layout(folder: Path | str) -> str:
    """``vit`` (prefixed, ``ViTForImageClassification``), ``vit_bare`` (``ViTModel``, e.g. Phikon) or ``dinov2``."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"{folder / 'config.json'}: model type {model_type!r} is not supported as an encoder "
                         f"(supported: {', '.join(HF_MODEL_TYPES)})")
    if model_type != "vit":
        return "dinov2"
    keys = _safetensor_keys(folder)
    if "vit.embeddings.cls_token" in keys:
        return "vit"
    if "embeddings.cls_token" in keys:
        return "vit_bare"
    raise ValueError(f"{folder}: a ViT config, but the safetensors hold neither embeddings.cls_token nor "
                     "vit.embeddings.cls_token")


def hf_backbone(folder: Path | str, image_size: int | None = None):
    """A KerasHub backbone with the checkpoint's weights: (backbone, layout, config).

    ``image_size``: the DINOv2 input side (its position embeddings are interpolated once, as KerasHub
    does); ViTs keep their ``image_size`` (tiles are resized to it)."""
    from anndl.core.keras_adapter import hf_converters

    convert_vit, convert_dinov2, SafetensorLoader = hf_converters()

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    layout = hf_layout(folder)
    if layout == "dinov2":
        converter, overrides = convert_dinov2, {}
        if image_size:
            overrides["image_shape"] = (image_size, image_size, 3)
    else:  # transformers' ViT LayerNorm epsilon (KerasHub's converter leaves its own default, 1e-6)
        converter, overrides = convert_vit, {"layer_norm_epsilon": float(config.get("layer_norm_eps", 1e-12))}
    backbone = converter.backbone_cls(**{**converter.convert_backbone_config(config), **overrides})

    class Loader(SafetensorLoader):
        def get_tensor(self, key):
            if layout == "vit_bare":
                key = key.removeprefix("vit.")  # the bare ViTModel layout: same tensors, no prefix
            return super().get_tensor(key)

    try:
        with Loader(str(folder)) as loader:
            converter.convert_weights(backbone, loader, config)
    except Exception as e:
        raise ValueError(f"{folder}: could not read the {layout} checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from e
    return backbone, layout, config


# ------------------------------------------------------------------------------------------ building

def weights_digest(paths) -> str:
    """A hash over the weight files' bytes (in order; each file's sha256 remembered by size and times, so a 1 GB
    checkpoint is read once); what the outputs record as the weights' identity."""
    from anndl.core.artifacts import content_digest

    return hashlib.sha256("".join(content_digest(p) for p in paths).encode()).hexdigest()[:16]


def identify(source: str | Path, pooling: str = "cls") -> dict:
    """What an encoder source is, without building it: kind, architecture, weights note and hash,
    preprocessing, pooling. Cheap enough to decide whether a cached output can be reused."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    kind, where = resolve(source)
    out = {"source": str(source), "kind": kind, "pooling": pooling}
    if kind == "hf_folder":
        folder = Path(where)
        config = json.loads((folder / "config.json").read_text())
        layout = hf_layout(folder)
        files = sorted(folder.glob("*.safetensors"))
        pre = hf_preprocessing(folder, config)
        note = config.get(NOTE_KEY) or f"pretrained checkpoint {source}"
        arch = {k: config.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                            "patch_size", "image_size", "num_register_tokens") if k in config}
        out.update(layout=layout, architecture=arch, weights=note, weights_sha256=weights_digest(files),
                   preprocessing=pre.__dict__)
    elif kind in ("keras_file", "run"):
        path = Path(where) / "model.keras" if kind == "run" else Path(where)
        note = f"local model file {path}"
        if kind == "run":
            note = describe_run(where)
        out.update(weights=note, weights_sha256=weights_digest([path]),
                   preprocessing="the model's own layers", pooling="the model's feature layer")
    else:  # a KerasHub preset folder or name
        from anndl.core.keras_adapter import preset_file as get_file

        try:
            files = [get_file(where, name) for name in ("config.json", "model.weights.h5")]
        except Exception as e:
            raise WeightsUnavailable(f"{source}: could not load the KerasHub preset ({type(e).__name__}); offline, "
                                     "save it with save_to_preset where the internet is reachable and pass the "
                                     "folder") from None
        config = json.loads(Path(files[0]).read_text())
        note = config.get(NOTE_KEY) or f"KerasHub preset {source}"
        out.update(weights=note, weights_sha256=weights_digest(files[1:]),
                   architecture=config.get("class_name"), preprocessing="the preset's image converter")
    out["pretrained"] = RANDOM_NOTE not in out["weights"]
    return out


def _features(model: keras.Model, output) -> keras.Model:
    """Wrap ``output`` as a (batch, D) feature vector: pool maps, take the class token of sequences."""
    import keras
    from keras import layers

    if len(output.shape) == 4:
        output = layers.GlobalAveragePooling2D(name="encoder_pool")(output)
    elif len(output.shape) == 3:
        output = output[:, 0, :]
    return keras.Model(model.inputs, output, name="encoder")


def run_encoder(run_dir: Path | str) -> keras.Model:
    """A trained run's model without its head: tiles -> the features its head reads."""
    from anndl.models.layers import load_model

    model = load_model(Path(run_dir) / "model.keras")
    names = [layer.name for layer in model.layers]
    if "head_pool" in names:
        return _features(model, model.get_layer("head_pool").output)
    return _features(model, model.get_layer("head_dense").input)


def keras_encoder(path: Path | str, tile_size: int = 224) -> keras.Model:
    """A tile encoder from a local ``.keras`` model file or a KerasHub preset folder.

    The encoder receives tiles in [0, 255]; a ``.keras`` model must include its own preprocessing, a
    preset brings its image converter when it saved one (else tiles are scaled to [-1, 1])."""
    import keras
    from keras import layers

    path = Path(path)
    if path.suffix == ".keras":
        from anndl.models.layers import load_model

        model = load_model(path)
        return _features(model, model.outputs[0])
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: expected a .keras file or a KerasHub preset folder")
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(path))
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(str(path))
    except Exception:
        converter = layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")
    inputs = keras.Input((tile_size, tile_size, 3), name="tile")
    output = backbone(converter(inputs))
    if isinstance(output, dict):  # some backbones return several outputs
        output = output.get("pooled_output", next(iter(output.values())))
    return _features(keras.Model(inputs, output), output)


def describe_run(source: Path | str) -> str:
    """Say what an encoder is, for the outputs that use it."""
    source = Path(source)
    config = source / "config.json"
    if config.is_file():
        info = json.loads(config.read_text())
        return f"{info['model']} run {source} ({info['profile']} profile; weights: {info['weights']})"
    return f"local encoder {source}"


def _pool(tokens, pooling: str, skip: int):
    """(batch, tokens, dim) -> class token, or class token + mean of the patch tokens (from ``skip`` on)."""
    from keras import ops

    cls = tokens[:, 0, :]
    if pooling == "cls":
        return cls
    return ops.concatenate([cls, ops.mean(tokens[:, skip:, :], axis=1)], axis=-1)


def load(source: str | Path, tile_size: int = 224, pooling: str = "cls", mixed_precision: str | None = None,
         identity: dict | None = None) -> Encoder:
    """Build the encoder of ``source`` for (tile_size, tile_size, 3) tiles in [0, 255]."""
    import keras
    from keras import layers

    identity = identity or identify(source, pooling)
    kind, where = resolve(source)
    if kind in ("keras_file", "run"):
        from anndl.core.artifacts import read_json

        config = Path(where) / "config.json"
        if kind == "run" and config.is_file() and read_json(config).get("stain_normalization"):
            raise ValueError(f"{where}: trained on stain-normalised tiles; embedding with it is not supported "
                             "(its tiles would need the same normalisation)")
        model = run_encoder(where) if kind == "run" else keras_encoder(where, tile_size)
        return Encoder(model, identity)
    from anndl.core.distribute import precision_policy

    with precision_policy(mixed_precision):
        inputs = keras.Input((tile_size, tile_size, 3), name="tile")
        if kind == "hf_folder":
            pre = Preprocessing(**identity["preprocessing"])
            backbone, layout, config = hf_backbone(where, pre.size)
            skip = 1 + int(config.get("num_register_tokens", 0) or 0)
            x = inputs
            if pre.size != tile_size:
                x = layers.Resizing(pre.size, pre.size, interpolation=pre.interpolation, antialias=pre.size < tile_size,
                                    dtype="float32", name="resize")(x)
            std = np.asarray(pre.std)
            x = layers.Rescaling(scale=(pre.rescale / std).tolist(), offset=(-np.asarray(pre.mean) / std).tolist(),
                                 dtype="float32", name="normalise")(x)
        else:
            import keras_hub

            backbone = keras_hub.models.Backbone.from_preset(where)
            try:
                converter = keras_hub.layers.ImageConverter.from_preset(where)
            except Exception:
                raise ValueError(f"{source}: the preset has no image converter; its normalisation is unknown") from None
            converter.image_size = (tile_size, tile_size)
            skip = 1 + int(getattr(backbone, "num_register_tokens", 0) or 0)
            x = converter(inputs)
        backbone.name = "backbone_core"
        inputs_struct = backbone.input
        output = backbone({next(iter(inputs_struct)): x} if isinstance(inputs_struct, dict) else x)
        if isinstance(output, dict):
            output = output.get("sequence_output", output.get("pooled_output", next(iter(output.values()))))
        if len(output.shape) == 4:
            features = layers.GlobalAveragePooling2D(name="encoder_pool")(output)
        elif len(output.shape) == 3:
            features = _pool(output, pooling, skip)
        else:
            features = output
        features = layers.Activation("linear", dtype="float32", name="features")(features)
    return Encoder(keras.Model(inputs, features, name="encoder"), identity)


# ------------------------------------------------------------------------- tiny random checkpoints

def _hf_tensors(model_type: str, prefixed: bool, image_size: int, patch_size: int, hidden: int, layers_: int,
                intermediate: int, rng) -> dict[str, np.ndarray]:
    """Random tensors under exactly the names and shapes transformers saves (ViTModel, ViTFor..., Dinov2Model)."""
    def w(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def ln(name):
        return {f"{name}.weight": (1 + w(hidden, scale=0.1)), f"{name}.bias": w(hidden)}

    n = (image_size // patch_size) ** 2
    t = {"embeddings.cls_token": w(1, 1, hidden), "embeddings.position_embeddings": w(1, n + 1, hidden),
         "embeddings.patch_embeddings.projection.weight": w(hidden, 3, patch_size, patch_size, scale=0.05),
         "embeddings.patch_embeddings.projection.bias": w(hidden)}
    if model_type == "dinov2":
        t["embeddings.mask_token"] = np.zeros((1, hidden), np.float32)
    for i in range(layers_):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            t[f"{p}.attention.attention.{name}.weight"] = w(hidden, hidden, scale=0.1)
            t[f"{p}.attention.attention.{name}.bias"] = w(hidden)
        t[f"{p}.attention.output.dense.weight"] = w(hidden, hidden, scale=0.1)
        t[f"{p}.attention.output.dense.bias"] = w(hidden)
        if model_type == "dinov2":
            t |= ln(f"{p}.norm1") | ln(f"{p}.norm2")
            t[f"{p}.mlp.fc1.weight"], t[f"{p}.mlp.fc1.bias"] = w(intermediate, hidden, scale=0.1), w(intermediate)
            t[f"{p}.mlp.fc2.weight"], t[f"{p}.mlp.fc2.bias"] = w(hidden, intermediate, scale=0.1), w(hidden)
            t[f"{p}.layer_scale1.lambda1"] = (1 + w(hidden, scale=0.1))
            t[f"{p}.layer_scale2.lambda1"] = (1 + w(hidden, scale=0.1))
        else:
            t |= ln(f"{p}.layernorm_before") | ln(f"{p}.layernorm_after")
            t[f"{p}.intermediate.dense.weight"] = w(intermediate, hidden, scale=0.1)
            t[f"{p}.intermediate.dense.bias"] = w(intermediate)
            t[f"{p}.output.dense.weight"] = w(hidden, intermediate, scale=0.1)
            t[f"{p}.output.dense.bias"] = w(hidden)
    t |= ln("layernorm")
    if model_type == "vit" and prefixed:
        t = {f"vit.{k}": v for k, v in t.items()}
        t["classifier.weight"], t["classifier.bias"] = w(2, hidden), w(2)
    elif model_type == "vit":
        t["pooler.dense.weight"], t["pooler.dense.bias"] = w(hidden, hidden), w(hidden)
    return t


def write_random_checkpoint(folder: Path | str, model_type: str = "vit", prefixed: bool = False,
                            image_size: int = 224, patch_size: int = 16, hidden_size: int = 768, num_layers: int = 12,
                            num_heads: int = 12, intermediate_size: int | None = None, seed: int = 0,
                            processor_size: int | None = None) -> Path:
    """Write a randomly initialised checkpoint in a transformers layout (``config.json``,
    ``model.safetensors``, ``preprocessor_config.json`` with the ImageNet mean/std), with numpy only.

    ``model_type`` 'vit' (``prefixed``: ``ViTForImageClassification``'s ``vit.`` keys; else a bare ``ViTModel``
    as Phikon) or 'dinov2' (``Dinov2Model``). The defaults are ViT-B/16's sizes. Its config says it is random
    (``anndl_weights_note``), and so does every output made from it."""
    from safetensors.numpy import save_file

    if model_type not in ("vit", "dinov2"):
        raise ValueError(f"model_type must be vit or dinov2, got {model_type!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    intermediate = intermediate_size or 4 * hidden_size
    rng = np.random.default_rng(seed)
    tensors = _hf_tensors(model_type, prefixed, image_size, patch_size, hidden_size, num_layers, intermediate, rng)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    common = {"hidden_size": hidden_size, "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "initializer_range": 0.02, "image_size": image_size, "patch_size": patch_size, "num_channels": 3,
              "qkv_bias": True, NOTE_KEY: f"{RANDOM_NOTE}: tiny random {model_type} checkpoint written by anndl "
                                          f"(seed {seed})", "torch_dtype": "float32"}
    if model_type == "vit":
        config = {"architectures": ["ViTForImageClassification" if prefixed else "ViTModel"], "model_type": "vit",
                  "intermediate_size": intermediate, "layer_norm_eps": 1e-12, "encoder_stride": patch_size, **common}
        processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "resample": 2,
                     "size": {"height": processor_size or image_size, "width": processor_size or image_size}}
    else:
        config = {"architectures": ["Dinov2Model"], "model_type": "dinov2", "mlp_ratio": intermediate / hidden_size,
                  "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "drop_path_rate": 0.0, "use_swiglu_ffn": False,
                  **common}
        side = processor_size or image_size
        processor = {"image_processor_type": "BitImageProcessor", "do_resize": True, "resample": 3,
                     "size": {"shortest_edge": side}, "do_center_crop": True, "crop_size": {"height": side, "width": side}}
    if model_type == "vit" and prefixed:
        config["id2label"], config["label2id"] = {"0": "a", "1": "b"}, {"a": 0, "b": 1}
    processor |= {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                  "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    return folder
