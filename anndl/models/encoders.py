"""Tile encoders as Keras models that own their preprocessing.
``SRC`` (``--encoder SRC``): ``hf://org/name[@revision]`` (e.g. ``hf://owkin/phikon``), a local Hugging Face ``vit``
(bare ``ViTModel`` as Phikon, or ``ViTForImageClassification``) or ``dinov2`` folder, a timm hub folder (UNI, UNI2-h,
Virchow2, H-optimus, Prov-GigaPath), a ``.keras`` model or a run folder (cut before the head); feature: class token."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anndl.core.artifacts import content_digest
from anndl.core.config import WeightsUnavailable
from anndl.core.distribute import precision_policy
from anndl.models import timm_vit

HF_SCHEME = "hf://"
NOTE_KEY = "anndl_weights_note"  # a config.json key this package writes into checkpoints it makes
RANDOM_NOTE = "random initialisation (NOT pretrained)"
POOLINGS = ("cls", "cls+mean")
HF_MODEL_TYPES = ("vit", "dinov2", "dinov2_with_registers")
HF_FILES = ["config.json", "preprocessor_config.json", "*.safetensors", "model.safetensors.index.json"]
_PROCESSOR_DEFAULTS = {"ViT": ([0.5] * 3, [0.5] * 3),  # transformers' defaults if mean/std omitted (image_utils.py)
                       "Bit": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])}
_RESAMPLE = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``size`` (when a tile differs), then ``(x * rescale - mean) / std`` per channel."""

    size: int
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    source: str = ""


@dataclass
class Encoder:
    """``model``: (batch, t, t, 3) tiles in [0, 255] -> (batch, dim) float32; ``identity`` (``identify``): recorded."""

    model: object
    identity: dict

    @property
    def dim(self) -> int:
        return int(self.model.output_shape[-1])


def classify(source: str | Path) -> tuple[str, str]:
    """(kind: hf_folder | timm_folder | keras_file | run, local path) of an encoder source; ``hf://`` fetched first."""
    text = str(source)
    path = fetch_hf(text) if text.startswith(HF_SCHEME) else Path(text)
    if timm_vit.is_timm_folder(path):
        return "timm_folder", str(path)
    if text.startswith(HF_SCHEME):
        return "hf_folder", str(path)
    if path.suffix == ".keras":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: encoder model file not found")
        return "keras_file", text
    if path.is_dir():
        if (path / "config.json").is_file() and "model_type" in json.loads((path / "config.json").read_text()):
            return "hf_folder", text
        if (path / "model.keras").is_file():
            return "run", text
        if any(path.glob("fold_*/model.keras")):
            raise ValueError(f"{path}: a K-fold run holds several models; pass one fold folder (e.g. {path}/fold_0)")
        raise ValueError(f"{path}: not an encoder folder (expected a Hugging Face or timm folder with config.json + "
                         "model.safetensors, or a run folder with model.keras)")
    raise FileNotFoundError(f"{path}: no such encoder file or folder")


@functools.cache  # once per process
def fetch_hf(handle: str) -> Path:
    """The files of ``hf://org/name[@revision]`` in the Hugging Face cache (downloaded there when missing)."""
    repo, _, revision = handle[len(HF_SCHEME):].partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        from huggingface_hub import snapshot_download
        download = functools.partial(snapshot_download, repo, revision=revision or None, local_files_only=offline)
        folder = Path(download(allow_patterns=HF_FILES))
        if not list(folder.glob("*.safetensors")) and timm_vit.is_timm_folder(folder):  # timm reads .bin without torch
            folder = Path(download(allow_patterns=HF_FILES + ["pytorch_model.bin"]))
    except Exception as e:  # no internet, no package, unknown repository, gated model ...
        gated = "gated" in f"{type(e).__name__} {e}".lower() or "401" in str(e)
        raise WeightsUnavailable(
            f"{handle}: could not download ({type(e).__name__})"
            + ("; a gated model: accept its terms on huggingface.co and set HF_TOKEN (a Kaggle secret or Colab "
               "userdata named HF_TOKEN is read by the notebooks' setup)" if gated else "")
            + f"; where the internet is reachable run `huggingface-cli download {repo} --local-dir DIR` "
              "(data/README.md) and pass --encoder DIR") from None
    if not list(folder.glob("*.safetensors")) and not timm_vit.is_timm_folder(folder):
        raise WeightsUnavailable(f"{handle}: the repository has no model.safetensors (only PyTorch .bin weights); "
                                 "convert it once (data/README.md) and pass the folder")
    return folder


def _side(value) -> int | None:
    """One side of a transformers size: n, [h, w] or {height|shortest_edge|width: n}."""
    if isinstance(value, dict):
        value = next((value[k] for k in ("height", "shortest_edge", "width") if k in value), value)
    value = value[0] if isinstance(value, (list, tuple)) else value
    if value is not None and not isinstance(value, (int, float)):
        raise ValueError(f"unreadable size {value!r}")
    return None if value is None else int(value)


def hf_preprocessing(folder: Path | str, config: dict | None = None) -> Preprocessing:
    """A ``preprocessor_config.json`` as ``Preprocessing``; size: crop, else resize, else ``image_size`` (no zoom)."""
    folder = Path(folder)
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the encoder's normalisation (image_mean, image_std) is unknown "
                                "(download it with the weights)")
    pre = json.loads(path.read_text())
    config = config if config is not None else json.loads((folder / "config.json").read_text())
    kind = pre.get("image_processor_type") or pre.get("feature_extractor_type") or ""
    defaults = next((v for k, v in _PROCESSOR_DEFAULTS.items() if kind.startswith(k)), (None, None))
    mean, std = pre.get("image_mean", defaults[0]), pre.get("image_std", defaults[1])
    if mean is None or std is None:
        raise ValueError(f"{path}: no image_mean/image_std and an unknown processor type {kind!r}")
    if not pre.get("do_normalize", True):
        mean, std = [0.0] * 3, [1.0] * 3
    rescale = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
    size = (_side(pre.get("crop_size")) if pre.get("do_center_crop", False) else None) or \
        (_side(pre.get("size")) if pre.get("do_resize", True) else None) or int(config.get("image_size", 224))
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{path}: image_mean and image_std need 3 values, got {mean}, {std}")
    return Preprocessing(size, rescale, tuple(map(float, mean)), tuple(map(float, std)),
                         _RESAMPLE.get(int(pre.get("resample", 2)), "bilinear"), str(path.name))


def hf_layout(folder: Path | str) -> str:
    """``vit`` (prefixed, ``ViTForImageClassification``), ``vit_bare`` (``ViTModel``, e.g. Phikon) or ``dinov2``."""
    folder = Path(folder)
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"{folder / 'config.json'}: model type {model_type!r} is not supported as an encoder "
                         f"(supported: {', '.join(HF_MODEL_TYPES)})")
    if model_type != "vit":
        return "dinov2"
    index, path = folder / "model.safetensors.index.json", folder / "model.safetensors"
    if index.is_file():
        keys = set(json.loads(index.read_text())["weight_map"])
    elif not path.is_file():
        raise FileNotFoundError(f"{path}: missing (KerasHub reads safetensors; PyTorch .bin weights need converting, "
                                "data/README.md)")
    else:
        from safetensors import safe_open
        with safe_open(str(path), framework="np") as f:
            keys = set(f.keys())
    if "vit.embeddings.cls_token" in keys:
        return "vit"
    if "embeddings.cls_token" in keys:
        return "vit_bare"
    raise ValueError(f"{folder}: a ViT config, but the safetensors hold neither embeddings.cls_token nor "
                     "vit.embeddings.cls_token")


def hf_backbone(folder: Path | str, image_size: int | None = None):
    """The KerasHub backbone with the checkpoint's weights; ``image_size``: DINOv2's (positions interpolated)."""
    from anndl.core.keras_adapter import hf_converters

    convert_vit, convert_dinov2, SafetensorLoader = hf_converters()
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    layout = hf_layout(folder)
    if layout == "dinov2":
        converter, overrides = convert_dinov2, ({"image_shape": (image_size, image_size, 3)} if image_size else {})
    else:  # transformers' ViT LayerNorm epsilon (KerasHub's converter leaves its own default, 1e-6)
        converter, overrides = convert_vit, {"layer_norm_epsilon": float(config.get("layer_norm_eps", 1e-12))}
    backbone = converter.backbone_cls(**{**converter.convert_backbone_config(config), **overrides})

    class Loader(SafetensorLoader):
        def get_tensor(self, key):  # KerasHub asks for ``vit.`` keys; a bare ViTModel holds them without the prefix
            return super().get_tensor(key.removeprefix("vit.") if layout == "vit_bare" else key)

    try:
        with Loader(str(folder)) as loader:
            converter.convert_weights(backbone, loader, config)
    except Exception as e:
        raise ValueError(f"{folder}: could not read the {layout} checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from e
    return backbone


def weights_digest(paths) -> str:
    """A hash over the weight files' bytes, in order (each file's sha256 remembered: a 1 GB checkpoint is read once)."""
    return hashlib.sha256("".join(content_digest(p) for p in paths).encode()).hexdigest()[:16]


def identify(source: str | Path, pooling: str = "cls") -> dict:
    """What an encoder source is (kind, architecture, weights note and hash, preprocessing, pooling), unbuilt."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    kind, where = classify(source)
    out = {"source": str(source), "kind": kind, "pooling": pooling}
    if kind in ("hf_folder", "timm_folder"):
        folder = Path(where)
        config = json.loads((folder / "config.json").read_text())
        if kind == "hf_folder":
            layout, pre = hf_layout(folder), hf_preprocessing(folder, config).__dict__
            arch = {k: config[k] for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "patch_size", "image_size", "num_register_tokens") if k in config}
            files = sorted(folder.glob("*.safetensors"))
        else:
            layout, pre, files = "timm", timm_vit.preprocessing(folder), timm_vit.weight_files(folder)
            arch = {"architecture": config["architecture"], **config.get("model_args", {})}
        out.update(layout=layout, architecture=arch, weights=config.get(NOTE_KEY) or f"pretrained checkpoint {source}",
                   weights_sha256=weights_digest(files), preprocessing=pre)
    else:  # a .keras model or a run folder
        path, config = Path(where), Path(where) / "config.json"
        note = f"local model file {path}" if kind == "keras_file" else f"local encoder {path}"
        if kind == "run" and config.is_file():
            info = json.loads(config.read_text())
            note = f"{info['model']} run {path} ({info['profile']} profile; weights: {info['weights']})"
        out.update(weights=note, weights_sha256=weights_digest([path / "model.keras" if kind == "run" else path]),
                   preprocessing="the model's own layers", pooling="the model's feature layer")
    out["pretrained"] = RANDOM_NOTE not in out["weights"]
    return out


def _pooled(output, pooling: str = "cls", skip: int = 1):
    """(batch, D) features: maps average-pooled, a sequence's class token (``cls+mean``: and the mean from ``skip``)."""
    from keras import layers, ops
    if len(output.shape) == 4:
        return layers.GlobalAveragePooling2D(name="encoder_pool")(output)
    if len(output.shape) != 3:
        return output
    if pooling == "cls":
        return output[:, 0, :]
    return ops.concatenate([output[:, 0, :], ops.mean(output[:, skip:, :], axis=1)], axis=-1)


def run_encoder(run_dir: Path | str) -> keras.Model:
    """A trained run's model without its head: tiles -> the features its head reads."""
    import keras

    from anndl.models.layers import load_model
    model = load_model(Path(run_dir) / "model.keras")
    pooled = "head_pool" in [layer.name for layer in model.layers]
    output = model.get_layer("head_pool").output if pooled else model.get_layer("head_dense").input
    return keras.Model(model.inputs, _pooled(output), name="encoder")


def keras_encoder(path: Path | str) -> keras.Model:
    """A tile encoder (tiles in [0, 255]) from a ``.keras`` model, which must hold its own preprocessing."""
    import keras

    from anndl.models.layers import load_model
    model = load_model(Path(path))
    return keras.Model(model.inputs, _pooled(model.outputs[0]), name="encoder")


def load(source: str | Path, tile_size: int = 224, pooling: str = "cls", mixed_precision: str | None = None,
         identity: dict | None = None) -> Encoder:
    """Build the encoder of ``source`` for (tile_size, tile_size, 3) tiles in [0, 255]."""
    import keras
    from keras import layers

    identity = identity or identify(source, pooling)
    kind, where = classify(source)
    if kind in ("keras_file", "run"):
        config = Path(where) / "config.json"
        if kind == "run" and config.is_file() and json.loads(config.read_text()).get("stain_normalization"):
            raise ValueError(f"{where}: trained on stain-normalised tiles; embedding with it is not supported "
                             "(its tiles would need the same normalisation)")
        return Encoder(run_encoder(where) if kind == "run" else keras_encoder(where), identity)
    with precision_policy(mixed_precision):  # a Hugging Face or timm folder
        inputs = x = keras.Input((tile_size, tile_size, 3), name="tile")
        pre = Preprocessing(**identity["preprocessing"])
        backbone = timm_vit.backbone(where) if kind == "timm_folder" else hf_backbone(where, pre.size)
        if pre.size != tile_size:
            x = layers.Resizing(pre.size, pre.size, interpolation=pre.interpolation, antialias=pre.size < tile_size,
                                dtype="float32", name="resize")(x)
        std = np.asarray(pre.std)
        x = layers.Rescaling(scale=(pre.rescale / std).tolist(), offset=(-np.asarray(pre.mean) / std).tolist(),
                             dtype="float32", name="normalise")(x)
        backbone.name = "backbone_core"
        output = backbone({next(iter(backbone.input)): x} if isinstance(backbone.input, dict) else x)
        if isinstance(output, dict):
            output = output.get("sequence_output", output.get("pooled_output", next(iter(output.values()))))
        features = _pooled(output, pooling, 1 + int(getattr(backbone, "num_register_tokens", 0) or 0))
        features = layers.Activation("linear", dtype="float32", name="features")(features)
    return Encoder(keras.Model(inputs, features, name="encoder"), identity)
