"""timm ViT checkpoints (hub layout) as Keras models (UNI, UNI2-h, Virchow2, H-optimus, Prov-GigaPath), no torch."""

import collections
import json
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np

# heads of the timm architectures the pathology cards build on, when model_args does not say
HEADS = {"vit_small": 6, "vit_base": 12, "vit_large": 16, "vit_huge": 16, "vit_giant_patch14_224": 16,
         "vit_giant_patch14_dinov2": 24, "vit_giant_patch14_reg4_dinov2": 24, "vit_gigantic": 16}
_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
             "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32, "BoolStorage": np.bool_}


def is_timm_folder(folder: Path) -> bool:
    config = Path(folder) / "config.json"
    return config.is_file() and "architecture" in json.loads(config.read_text())


def weight_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) or [p for p in [folder / "pytorch_model.bin"] if p.is_file()]
    if not files:
        raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin (download the weights with "
                                "config.json)")
    return files


def read_torch(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch zip checkpoint as numpy arrays, by an unpickler that rebuilds only tensors (no file code runs)."""
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        root = pkl[:-len("data.pkl")]

        def rebuild(storage, offset, size, stride, *_):
            if storage.dtype == np.uint16:  # bfloat16: the high half of a float32
                storage = (storage.astype(np.uint32) << 16).view(np.float32)
            strides = [s * storage.itemsize for s in stride]
            return np.lib.stride_tricks.as_strided(storage[offset:], size, strides).copy()

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if module == "torch" and name in _STORAGES:
                    return name
                raise pickle.UnpicklingError(f"{path}: holds {module}.{name}, not a plain state dict of tensors")

            def persistent_load(self, pid):  # ("storage", storage type, key, location, numel)
                return np.frombuffer(archive.read(f"{root}data/{pid[2]}"), _STORAGES[pid[1]])

        return dict(Unpickler(archive.open(pkl)).load())


def architecture(folder: Path, weights: dict) -> dict:
    """The ViT's shape from config.json and the weights."""
    config = json.loads((Path(folder) / "config.json").read_text())
    name, args = config["architecture"], config.get("model_args", {})
    heads = args.get("num_heads") or next((n for k, n in HEADS.items() if name.startswith(k)), None)
    unknown = [k for k in weights if not re.match(r"(cls_token|reg_token|pos_embed|patch_embed\.proj|blocks\.\d+\."
                                                  r"(norm[12]|attn\.qkv|attn\.proj|ls[12]|mlp\.fc[12])|norm|norm_pre|"
                                                  r"head)\b", k)]
    if heads is None or unknown or "cls_token" not in weights:
        why = f"unsupported weights {unknown[:3]}" if unknown else "no class token" if heads else \
            f"unknown head count of {name!r} (add num_heads to model_args)"
        raise ValueError(f"{folder}: not a supported timm ViT ({why})")
    dim, patch = weights["cls_token"].shape[-1], weights["patch_embed.proj.weight"].shape[-1]
    size = int(config.get("pretrained_cfg", {}).get("input_size", [3, 224])[1])
    patches, registers = (size // patch) ** 2, weights.get("reg_token", np.zeros((1, 0, dim))).shape[1]
    positions = weights["pos_embed"].shape[1]
    if positions not in (patches, patches + 1 + registers):
        raise ValueError(f"{folder}: {positions} position embeddings fit neither {patches} patches nor them with "
                         f"{1 + registers} prefix tokens (input {size}, patch {patch})")
    fc1, fc2 = weights["blocks.0.mlp.fc1.weight"].shape[0], weights["blocks.0.mlp.fc2.weight"].shape[1]
    depth = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("blocks."))
    return {"architecture": name, "dim": int(dim), "depth": depth, "heads": int(heads), "patch": int(patch),
            "size": size, "registers": int(registers), "embed_prefix": positions > patches, "swiglu": fc1 == 2 * fc2,
            "layer_scale": "blocks.0.ls1.gamma" in weights, "pre_norm": "norm_pre.weight" in weights}


def preprocessing(folder: Path) -> dict:
    cfg = json.loads((Path(folder) / "config.json").read_text()).get("pretrained_cfg", {})
    return {"size": int(cfg.get("input_size", [3, 224])[1]), "rescale": 1 / 255,
            "mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))), "std": tuple(cfg.get("std", (0.229, 0.224, 0.225))),
            "interpolation": cfg.get("interpolation", "bicubic"), "source": "config.json pretrained_cfg"}


def backbone(folder: Path):
    """Keras model: normalised images -> (tokens, dim) after the final norm, ``num_register_tokens`` as KerasHub's."""
    import keras
    from keras import layers, ops
    from safetensors.numpy import load_file

    weights = {k.removeprefix("module."): v for path in weight_files(folder)
               for k, v in (read_torch(path) if path.suffix == ".bin" else load_file(str(path))).items()}
    arch = architecture(folder, weights)
    dim, heads, registers = arch["dim"], arch["heads"], arch["registers"]

    class PrefixTokens(layers.Layer):
        """Class and register tokens, and the position embedding (added before or after they are prepended)."""

        def build(self, shape):
            self.tokens = self.add_weight((1, 1 + registers, dim), name="tokens")
            self.pos = self.add_weight(weights["pos_embed"].shape, name="pos_embed")

        def call(self, x):
            tokens = ops.broadcast_to(ops.cast(self.tokens, x.dtype), (ops.shape(x)[0], 1 + registers, dim))
            pos = ops.cast(self.pos, x.dtype)
            if arch["embed_prefix"]:
                return ops.concatenate([tokens, x], 1) + pos
            return ops.concatenate([tokens, x + pos], 1)

    def norm(key):
        assigned[key.replace(".", "_")] = [weights[key + ".weight"], weights[key + ".bias"]]
        return layers.LayerNormalization(epsilon=1e-6, name=key.replace(".", "_"))

    tokens = np.concatenate([weights["cls_token"], weights.get("reg_token", np.zeros((1, 0, dim)))], 1)
    assigned = {"patch_embed": [weights["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
                                weights["patch_embed.proj.bias"]], "prefix_tokens": [tokens, weights["pos_embed"]]}
    inputs = keras.Input((arch["size"], arch["size"], 3), name="pixels")
    x = layers.Conv2D(dim, arch["patch"], strides=arch["patch"], name="patch_embed")(inputs)
    x = PrefixTokens(name="prefix_tokens")(layers.Reshape((-1, dim))(x))
    for key in ["norm_pre"] * arch["pre_norm"]:
        x = norm(key)(x)
    for i in range(arch["depth"]):
        b = f"blocks.{i}."
        ls1, ls2 = (weights.get(f"{b}{k}.gamma", np.ones(dim, np.float32)) for k in ("ls1", "ls2"))
        y = norm(b + "norm1")(x)
        x = x + layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attn")(y, y)
        y = layers.Dense(weights[b + "mlp.fc1.weight"].shape[0], name=f"block{i}_fc1")(norm(b + "norm2")(x))
        if arch["swiglu"]:
            half, gate = ops.split(y, 2, axis=-1)
            y = ops.silu(half) * gate
        else:
            y = ops.gelu(y, approximate=False)
        x = x + layers.Dense(dim, name=f"block{i}_fc2")(y)
        qkv, qkv_bias = weights[b + "attn.qkv.weight"], weights.get(b + "attn.qkv.bias", np.zeros(3 * dim, np.float32))
        assigned[f"block{i}_attn"] = [a for j in range(3) for a in (
            qkv[j * dim:(j + 1) * dim].T.reshape(dim, heads, -1), qkv_bias[j * dim:(j + 1) * dim].reshape(heads, -1))]
        assigned[f"block{i}_attn"] += [(weights[b + "attn.proj.weight"].T * ls1).reshape(heads, -1, dim),
                                       weights[b + "attn.proj.bias"] * ls1]
        assigned[f"block{i}_fc1"] = [weights[b + "mlp.fc1.weight"].T, weights[b + "mlp.fc1.bias"]]
        assigned[f"block{i}_fc2"] = [weights[b + "mlp.fc2.weight"].T * ls2, weights[b + "mlp.fc2.bias"] * ls2]
    x = norm("norm")(x)
    model = keras.Model(inputs, x, name="timm_vit")
    for name, values in assigned.items():
        model.get_layer(name).set_weights(values)
    model.num_register_tokens = registers
    return model
