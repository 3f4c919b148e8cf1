"""The scratch ResNet with the report's full-profile settings on the full-size synthetic default, on a
GPU machine that has no TensorFlow: Keras 3 with the JAX backend, tiles held in memory as arrays.

Measures image-level validation macro F1 (hard and soft voting, bootstrap 95% interval) at the best epoch,
selected by that F1 with patience 10, next to the majority-class and colour-histogram baselines on the same
split. Writes the per-epoch log and a JSON summary into $OUT (or ./outputs/gpu).
Usage (on the GPU machine): KERAS_BACKEND=jax python bench/gpu_full_scratch.py
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from anndl.evaluate import metrics, voting  # noqa: E402
from anndl.data import outliers, synthetic, tiling
from anndl.evaluate.baselines import run_baselines  # noqa: E402
from anndl.core.config import PROFILES, SYNTHETIC_DEFAULT, ScratchResNetConfig  # noqa: E402
from anndl.data import describe_data, read_challenge, read_image  # noqa: E402
from anndl.models.networks import scratch_resnet  # noqa: E402

OUT = Path(os.environ.get("OUT", "outputs/gpu"))


def cut_tiles(manifest, tiles, split, t):
    """uint8 tile arrays, label indices, image numbers and weights of one split (tiles.csv order)."""
    paths = manifest[manifest.split == "train"].set_index("sample_index").image_path
    part = tiles[tiles.split == split]
    names = list(dict.fromkeys(part.sample_index))
    number = {n: i for i, n in enumerate(names)}
    x = np.zeros((len(part), t, t, 3), np.uint8)
    for name, rows in part.groupby("sample_index", sort=False):
        image = read_image(paths[name])
        padded = np.zeros((max(t, image.shape[0]), max(t, image.shape[1]), 3), np.uint8)
        padded[: image.shape[0], : image.shape[1]] = image
        for i, r in zip(np.flatnonzero(part.sample_index.to_numpy() == name), rows.itertuples()):
            x[i] = padded[r.y:r.y + t, r.x:r.x + t]
    labels = part.label.map({l: i for i, l in enumerate(["Luminal A", "Luminal B", "HER2(+)", "Triple negative"])})
    per_image = part.groupby("sample_index", sort=False).label.first().map(
        {l: i for i, l in enumerate(["Luminal A", "Luminal B", "HER2(+)", "Triple negative"])})
    return x, labels.to_numpy(), part.sample_index.map(number).to_numpy(), part.weight.to_numpy(), per_image.to_numpy()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    smoke = os.environ.get("ANNDL_SMOKE") == "1"  # a quick local check of this script itself
    size = dict(n_train=40, n_test=4, scale=0.3, seed=0) if smoke else SYNTHETIC_DEFAULT
    data = synthetic.generate("/tmp/anndl_synthetic", progress=False, **size)
    manifest = read_challenge(data, workers=os.cpu_count())
    cleaned = outliers.clean(manifest, outliers.ColourTextureEmbedder())
    kept = cleaned[cleaned.status == "kept"]
    split = tiling.split_images(kept, 0.1, seed=42)
    tiles = tiling.build_tiles(manifest, cleaned, split, tiling.TilingConfig(), progress=False)
    x_train, y_train, _, _, _ = cut_tiles(manifest, tiles, "train", 224)
    x_val, _, val_numbers, val_weights, val_truth = cut_tiles(manifest, tiles, "val", 224)
    baselines = run_baselines(manifest, split)
    prep_seconds = time.perf_counter() - start
    print(f"data ready in {prep_seconds:.0f} s: {len(x_train)} train tiles, {len(val_truth)} val images; "
          f"baselines {json.dumps(baselines)}", flush=True)

    train_config = PROFILES["full"].train
    keras.utils.set_random_seed(42)
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = scratch_resnet(ScratchResNetConfig(), 224)
    model.compile(keras.optimizers.Lion(train_config.learning_rate), "categorical_crossentropy")
    y_onehot = np.eye(4, dtype="float32")[y_train]
    rows, best, best_weights, waited = [], -1.0, None, 0
    train_start = time.perf_counter()
    for epoch in range(2 if smoke else train_config.epochs):
        history = model.fit(x_train.astype("float32"), y_onehot, batch_size=train_config.batch_size, epochs=1,
                            shuffle=True, verbose=0)
        probabilities = model.predict(x_val.astype("float32"), batch_size=128, verbose=0)
        row = {"epoch": epoch + 1, "loss": float(history.history["loss"][0])}
        for rule in voting.VOTING_RULES:
            predicted = voting.vote(probabilities, val_numbers, val_weights, len(val_truth), rule)
            row[f"f1_{rule}"] = metrics.macro_f1(val_truth, predicted)
        rows.append(row)
        print(row, flush=True)
        if row["f1_hard"] > best:
            best, best_weights, waited = row["f1_hard"], model.get_weights(), 0
        else:
            waited += 1
            if waited >= train_config.patience:
                break
    model.set_weights(best_weights)
    probabilities = model.predict(x_val.astype("float32"), batch_size=128, verbose=0)
    scores = {rule: metrics.image_scores(val_truth, voting.vote(probabilities, val_numbers, val_weights,
                                                               len(val_truth), rule)) for rule in voting.VOTING_RULES}
    log = pd.DataFrame(rows)
    log.to_csv(OUT / "gpu_full_scratch_log.csv", index=False)
    summary = {"model": "scratch_resnet", "profile": "full (report settings: Lion 1e-5, batch 32, patience 10)",
               "backend": f"keras {keras.__version__} / {keras.backend.backend()}, mixed_bfloat16",
               "device": _device(), "data": describe_data(data), "weights": "random initialisation (trained from scratch)",
               "best_epoch": int(log.f1_hard.idxmax()) + 1, "epochs_run": len(log),
               "validation": scores, "baselines": baselines,
               "seconds": {"data": round(prep_seconds), "training": round(time.perf_counter() - train_start)}}
    (OUT / "gpu_full_scratch.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _device() -> str:
    """The accelerator that trained (its kind as the back end reports it)."""
    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return keras.backend.backend()


if __name__ == "__main__":
    main()
