"""Shared set-up and helpers for the benchmarks (TensorFlow and Keras imported on use: ``--help`` stays fast)."""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from anndl.core.labels import LABELS
from anndl.data import CLASSES_FILE, SOURCE_FILE, read_image, read_mask
from anndl.data.synthetic import STICKER_SKIN, draw_green_blob, draw_sticker, write_rows
from anndl.models import encoders

# Shades to test the sticker/green distinction with (``plant_outliers(sticker_skins=...)``): the generator's, a
# clearer green, and a saturated green like the real "Shrek" images, which colour alone would call green.
STICKER_SKINS = {"olive": STICKER_SKIN, "green": (110, 200, 50), "saturated": (70, 215, 40)}


def prepared():
    """The data in data/ (generated on first use) with its clean manifest and tiles under outputs/."""
    from anndl.core.config import DATA_ROOT, OUTPUTS, SYNTHETIC_DEFAULT
    from anndl.data import resolve_data_dir
    from anndl.engine import experiment

    data = resolve_data_dir(DATA_ROOT, SYNTHETIC_DEFAULT)
    return experiment.prepare(data, Path(OUTPUTS))


def bach_pairs(root: Path | str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of the BACH ROI samples, in ``labels.csv`` order."""
    root = Path(root)
    with open(root / "labels.csv", newline="") as f:
        return [(root / r["image"], root / r["mask"]) for r in csv.DictReader(f)]


def bach_challenge(root: Path | str, out: Path | str) -> Path:
    """The BACH ROI samples (``labels.csv``: image, mask, label) as a challenge folder of their own label set
    (``classes.txt``, sorted) with a ``source.txt``: every sample in ``train_data/``, the first also in
    ``test_data/`` (the layout needs one; never scored)."""
    root, out = Path(root), Path(out)
    with open(root / "labels.csv", newline="") as f:
        samples = list(csv.DictReader(f))
    for folder, chosen in (("train_data", samples), ("test_data", samples[:1])):
        (out / folder).mkdir(parents=True)
        for i, sample in enumerate(chosen):
            shutil.copyfile(root / sample["image"], out / folder / f"img_{i:04d}.png")
            shutil.copyfile(root / sample["mask"], out / folder / f"mask_{i:04d}.png")
    rows = [[f"img_{i:04d}.png", sample["label"]] for i, sample in enumerate(samples)]
    write_rows(out / "train_labels.csv", [["sample_index", "label"], *rows])
    classes = sorted({label for _, label in rows})
    (out / CLASSES_FILE).write_text("\n".join(classes) + "\n")
    (out / SOURCE_FILE).write_text(f"real H&E: BACH ROI samples ({len(rows)} images, classes {', '.join(classes)})\n")
    return out


def plant_outliers(pairs: list[tuple[Path, Path]], out: Path | str, n_stickers: int, n_green: int,
                   seed: int = 0, sticker_skins=None, n_green_twins: int = 0,
                   sticker_alpha: tuple[float, float] | None = None) -> Path:
    """A challenge folder with ``planted_outliers.csv`` (to measure outlier detection on real tissue): all ``pairs``
    (the first ``n_green`` with a green blob), then ``n_stickers`` sticker copies of the next ones (sticker ``k`` in
    ``sticker_skins[k % len]``, pasted at an opacity drawn from ``sticker_alpha``, default opaque), then
    ``n_green_twins`` green-blob copies of the images after those, each copy with a byte copy of its original's mask.
    The layout needs a test folder (never scored): a copy of the first train pair."""
    if n_green + n_stickers + n_green_twins > len(pairs):
        raise ValueError(f"{n_green} green + {n_stickers} sticker twins need more than {len(pairs)} images")
    rng = np.random.default_rng(seed)
    out = Path(out)
    train = out / "train_data"
    train.mkdir(parents=True)
    rows, planted = [], []

    def write(number: int, image: np.ndarray, mask: np.ndarray | Path) -> str:  # mask: pixels, or a file to copy
        name = f"img_{number:04d}.png"
        cv2.imwrite(str(train / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if isinstance(mask, Path):
            shutil.copyfile(mask, train / f"mask_{number:04d}.png")
        else:
            cv2.imwrite(str(train / f"mask_{number:04d}.png"), mask.astype(np.uint8) * 255)
        rows.append([name, LABELS[rng.integers(len(LABELS))]])
        return name

    for i, (image_path, mask_path) in enumerate(pairs):
        image, mask = read_image(image_path), read_mask(mask_path)
        name = write(i, draw_green_blob(rng, image, mask) if i < n_green else image, mask)
        if i < n_green:
            planted.append([name, "green", ""])
    for k in range(n_stickers):
        twin = n_green + k
        skin = {} if not sticker_skins else {"skin": list(sticker_skins)[k % len(sticker_skins)]}
        original = read_image(pairs[twin][0])
        image = draw_sticker(rng, original, **skin)
        if sticker_alpha is not None:  # a translucent sticker: the twin's tissue shows through it
            alpha = rng.uniform(*sticker_alpha)
            image = (original * (1 - alpha) + image * alpha).round().astype(np.uint8)
        name = write(len(pairs) + k, image, train / f"mask_{twin:04d}.png")
        planted.append([name, "sticker", f"img_{twin:04d}.png"])
    for k in range(n_green_twins):
        twin = n_green + n_stickers + k
        image = draw_green_blob(rng, read_image(pairs[twin][0]), read_mask(pairs[twin][1]))
        name = write(len(pairs) + n_stickers + k, image, train / f"mask_{twin:04d}.png")
        planted.append([name, "green", f"img_{twin:04d}.png"])
    (out / "test_data").mkdir()
    for kind in ("img", "mask"):
        shutil.copyfile(train / f"{kind}_0000.png", out / "test_data" / f"{kind}_0000.png")
    write_rows(out / "train_labels.csv", [["sample_index", "label"], *rows])
    write_rows(out / "planted_outliers.csv", [["sample_index", "kind", "twin"], *planted])
    return out


def decode_only_dataset(paths: list[str]):
    """The throughput floor: the same PNGs decoded, nothing else."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    return ds.map(lambda p: tf.shape(tf.io.decode_png(tf.io.read_file(p), channels=3)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def write_normalized_folder(data_dir: Path | str, out_dir: Path | str, method: str = "macenko", reference=None,
                            max_reference_images: int = 64, seed: int = 0, progress: bool = True) -> Path:
    """A stain-normalised copy of a challenge folder (masks and label files copied), recorded as an artifact
    (method, constants, reference; fallback counts in ``stain_counts.json``) and reused when its record matches.
    ``reference``: an ``anndl.data.stain.StainReference``, else fitted on up to ``max_reference_images``."""
    import cv2
    from tqdm.auto import tqdm

    from anndl.core import artifacts
    from anndl.data import CLASSES_FILE, LABELS_FILE, SOURCE_FILE, SPLIT_DIRS, read_challenge, read_image, read_mask
    from anndl.data import stain

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = read_challenge(data_dir)
    if reference is None:
        reference = stain.reference_from_manifest(manifest, max_reference_images, seed)
    normalizer = stain.StainNormalizer(reference, method)
    content = artifacts.fingerprint(manifest.drop(columns=["image_path", "mask_path"]).to_dict("list"))
    req = artifacts.request("stain", data=f"{data_dir.resolve()} [{content}]", settings=normalizer.settings())

    def build(staging):
        files = []
        for row in tqdm(list(manifest.itertuples()), desc=f"stain {method}", unit="img", disable=not progress):
            image_file, mask_file = (Path(SPLIT_DIRS[row.split], Path(p).name) for p in (row.image_path, row.mask_path))
            image = normalizer(read_image(row.image_path), read_mask(row.mask_path))
            png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1]
            artifacts.write_bytes(staging / image_file, png.tobytes())
            shutil.copyfile(row.mask_path, staging / mask_file)
            files += [str(image_file), str(mask_file)]
        for name in (LABELS_FILE, CLASSES_FILE, SOURCE_FILE, "planted_outliers.csv", "sites.csv"):
            if (data_dir / name).is_file():
                shutil.copyfile(data_dir / name, staging / name)
                files.append(name)
        artifacts.write_json(staging / "stain_counts.json", {"counts": normalizer.counts, "images": len(manifest)})
        return files + ["stain_counts.json"]

    artifacts.ensure(out_dir, req, build, label=f"stain-normalised folder {out_dir}")
    return out_dir


def write_random_checkpoint(folder: Path | str, model_type: str = "vit", prefixed: bool = False,
                            image_size: int = 224, patch_size: int = 16, hidden_size: int = 768, num_layers: int = 12,
                            num_heads: int = 12, intermediate_size: int | None = None, seed: int = 0,
                            processor_size: int | None = None) -> Path:
    """Write a random checkpoint, with numpy only, under exactly the tensor names, shapes and files transformers writes:
    a ``vit`` (a bare ``ViTModel`` as Phikon, or with ``prefixed`` a ``ViTForImageClassification``) or a ``dinov2``
    (``Dinov2Model``), ViT-B/16's sizes by default, with the ImageNet mean/std; its config says that it is random."""
    from safetensors.numpy import save_file

    if model_type not in ("vit", "dinov2"):
        raise ValueError(f"model_type must be vit or dinov2, got {model_type!r}")
    folder, side, hidden = Path(folder), processor_size or image_size, hidden_size
    intermediate, rng = intermediate_size or 4 * hidden, np.random.default_rng(seed)

    def dense(name, n_out, n_in, scale=0.1):  # (name, shape, scale, offset), drawn in this order
        return [(f"{name}.weight", (n_out, n_in), scale, 0), (f"{name}.bias", (n_out,), 0.02, 0)]

    def norm(name):
        return [(f"{name}.weight", (hidden,), 0.1, 1), (f"{name}.bias", (hidden,), 0.02, 0)]

    def draw(spec):
        return {name: (rng.standard_normal(shape) * scale).astype(np.float32) + offset
                for name, shape, scale, offset in spec}

    spec = [("embeddings.cls_token", (1, 1, hidden), 0.02, 0),
            ("embeddings.position_embeddings", (1, (image_size // patch_size) ** 2 + 1, hidden), 0.02, 0),
            ("embeddings.patch_embeddings.projection.weight", (hidden, 3, patch_size, patch_size), 0.05, 0),
            ("embeddings.patch_embeddings.projection.bias", (hidden,), 0.02, 0)]
    for p in (f"encoder.layer.{i}" for i in range(num_layers)):
        for name in ("attention.query", "attention.key", "attention.value", "output.dense"):
            spec += dense(f"{p}.attention.{name}", hidden, hidden)
        if model_type == "dinov2":
            spec += norm(f"{p}.norm1") + norm(f"{p}.norm2") + dense(f"{p}.mlp.fc1", intermediate, hidden)
            spec += dense(f"{p}.mlp.fc2", hidden, intermediate)
            spec += [(f"{p}.layer_scale{k}.lambda1", (hidden,), 0.1, 1) for k in (1, 2)]
        else:
            spec += norm(f"{p}.layernorm_before") + norm(f"{p}.layernorm_after")
            spec += dense(f"{p}.intermediate.dense", intermediate, hidden)
            spec += dense(f"{p}.output.dense", hidden, intermediate)
    tensors = draw(spec + norm("layernorm"))
    if model_type == "dinov2":
        tensors["embeddings.mask_token"] = np.zeros((1, hidden), np.float32)
    elif prefixed:
        tensors = {f"vit.{k}": v for k, v in tensors.items()} | draw(dense("classifier", 2, hidden, 0.02))
    else:
        tensors |= draw(dense("pooler.dense", hidden, hidden, 0.02))
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    common = {"hidden_size": hidden, "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "initializer_range": 0.02, "image_size": image_size, "patch_size": patch_size, "num_channels": 3,
              "qkv_bias": True, "torch_dtype": "float32",
              encoders.NOTE_KEY: f"{encoders.RANDOM_NOTE}: tiny random {model_type} checkpoint written by anndl (seed {seed})"}
    if model_type == "vit":
        config = {"architectures": ["ViTForImageClassification" if prefixed else "ViTModel"], "model_type": "vit",
                  "intermediate_size": intermediate, "layer_norm_eps": 1e-12, "encoder_stride": patch_size, **common}
        config |= {"id2label": {"0": "a", "1": "b"}, "label2id": {"a": 0, "b": 1}} if prefixed else {}  # its labels
        processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "resample": 2,
                     "size": {"height": side, "width": side}}
    else:
        config = {"architectures": ["Dinov2Model"], "model_type": "dinov2", "mlp_ratio": intermediate / hidden,
                  "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "drop_path_rate": 0.0, "use_swiglu_ffn": False,
                  **common}
        processor = {"image_processor_type": "BitImageProcessor", "do_resize": True, "resample": 3,
                     "size": {"shortest_edge": side}, "do_center_crop": True,
                     "crop_size": {"height": side, "width": side}}
    processor |= {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                  "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    return folder
