"""Training engine shared by every model: Lion, losses, callbacks, image-level model selection.

Early stopping and checkpoint selection watch the **image-level validation macro F1** (the challenge
metric, computed by voting at each epoch end), not a tile-level score: the report's code watched a
tile-level weighted F1, which is not what the leaderboard measures.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from anndl.config import TrainConfig
from anndl.labels import NUM_CLASSES
from anndl.voting import VOTING_RULES, macro_f1, predict_tiles, vote

MONITOR = "val_image_macro_f1"


def get_strategy(name: str | None = None) -> tf.distribute.Strategy:
    """``None``/'default': one device; 'mirrored': all local GPUs; 'tpu': the attached TPU."""
    if name in (None, "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"strategy must be default, mirrored or tpu, got {name!r}")


@contextlib.contextmanager
def precision_policy(name: str | None):
    """Set a Keras dtype policy (e.g. 'mixed_bfloat16') for the models built inside the block."""
    previous = keras.config.dtype_policy()
    if name:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_loss(config: TrainConfig, from_logits: bool = False) -> keras.losses.Loss:
    """Cross-entropy (plain or, with class weights passed to fit, weighted) or focal loss on one-hot labels."""
    if config.loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(gamma=config.focal_gamma, from_logits=from_logits)
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)


def class_weights(labels: np.ndarray, n_classes: int = NUM_CLASSES) -> dict[int, float]:
    """Inverse-frequency weights n / (k * count), for weighted cross-entropy."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return {c: float(len(labels) / (n_classes * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


def one_hot(dataset: tf.data.Dataset, n_classes: int = NUM_CLASSES) -> tf.data.Dataset:
    return dataset.map(lambda x, y: (x, tf.one_hot(y, n_classes)), num_parallel_calls=tf.data.AUTOTUNE)


class ImageF1(keras.callbacks.Callback):
    """At each epoch end: vote the validation tiles into images and log macro F1 for every rule.

    ``logs['val_image_macro_f1']`` is the selected rule's score, for EarlyStopping/ModelCheckpoint,
    which must come after this callback in the list.
    """

    def __init__(self, dataset, y_true: np.ndarray, rule: str = "hard", from_logits: bool = False):
        super().__init__()
        self.dataset, self.y_true, self.rule, self.from_logits = dataset, np.asarray(y_true), rule, from_logits

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        probabilities, numbers, weights = predict_tiles(self.model, self.dataset, self.from_logits)
        for rule in VOTING_RULES:
            logs[f"val_image_f1_{rule}"] = macro_f1(self.y_true, vote(probabilities, numbers, weights,
                                                                      len(self.y_true), rule), probabilities.shape[1])
        logs[MONITOR] = logs[f"val_image_f1_{self.rule}"]


def fit(model: keras.Model, train_ds, val_ds, val_infer_ds, val_labels: np.ndarray, config: TrainConfig,
        run_dir: Path | str, optimizer=None, train_labels: np.ndarray | None = None,
        from_logits: bool = False, log_name: str = "log.csv", initial_epoch: int = 0,
        initial_best: float | None = None) -> keras.callbacks.History:
    """Compile (unless ``optimizer`` is None and the model is compiled) and train with image-level selection.

    Writes ``run_dir/log_name`` (one row per epoch) and ``run_dir/best.weights.h5``; the model ends
    with the best epoch's weights. ``initial_best``: the score an earlier phase reached; this phase's
    checkpoint replaces that phase's only when it beats it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    optimizer = optimizer or keras.optimizers.Lion(learning_rate=config.learning_rate)
    if initial_best is None and best_path(run_dir).exists():
        best_path(run_dir).unlink()  # a fresh run: never fall back to an older run's checkpoint
    model.compile(optimizer=optimizer, loss=make_loss(config, from_logits),
                  metrics=[keras.metrics.CategoricalAccuracy(name="tile_accuracy")])
    best = best_path(run_dir)
    callbacks = [
        ImageF1(val_infer_ds, val_labels, config.voting, from_logits),
        keras.callbacks.CSVLogger(str(run_dir / log_name)),
        keras.callbacks.ModelCheckpoint(str(best), monitor=MONITOR, mode="max", save_best_only=True,
                                        save_weights_only=True, initial_value_threshold=initial_best),
        keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience),
    ]
    n_classes = int(model.output_shape[-1])
    weights = class_weights(train_labels, n_classes) if config.loss == "weighted_crossentropy" else None
    history = model.fit(one_hot(train_ds, n_classes), validation_data=one_hot(val_ds, n_classes),
                        epochs=initial_epoch + config.epochs,
                        initial_epoch=initial_epoch, callbacks=callbacks, class_weight=weights, verbose=2,
                        shuffle=False)  # the dataset shuffles itself, with a seed
    model.load_weights(best)
    return history


def best_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / "best.weights.h5"


def differential_optimizer(backbone_rate: float, head_rate: float, weight_decay: float = 0.0):
    """AdamW for the backbone, AdamW at ``head_rate`` for the ``head_*`` variables (regex over
    ``variable.path``; ``keras.optimizers.MultiOptimizer``, Keras >= 3.15)."""
    head = keras.optimizers.AdamW(learning_rate=head_rate, weight_decay=weight_decay)
    backbone = keras.optimizers.AdamW(learning_rate=backbone_rate, weight_decay=weight_decay)
    return keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(backbone, {"head_.*": head}))


def write_json(path: Path | str, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def config_record(**parts) -> dict:
    """A JSON-ready record of dataclass configs and plain values."""
    return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in parts.items()}
