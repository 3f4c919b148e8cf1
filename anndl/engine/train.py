"""Training engine for every model: losses, callbacks, resumable phases, selection by image macro F1 (not tile F1)."""

import contextvars
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from anndl.core import artifacts
from anndl.core.config import TrainConfig
from anndl.core.env import portable, raise_pending_signal
from anndl.core.labels import NUM_CLASSES
from anndl.engine.embed import npz_bytes
from anndl.engine.inference import predict_tiles
from anndl.evaluate.metrics import macro_f1
from anndl.evaluate.voting import VOTING_RULES, vote

MONITOR = "val_image_macro_f1"
SHM = "/dev/shm"


class Diverged(ValueError):
    """Training produced a non-finite loss, metric or weight: the run is refused (nothing counts as finished)."""


def nonfinite(model: keras.Model) -> tuple[int, int]:
    """(non-finite values, all values) in ``model``'s weights."""
    values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.weights]
    values = [v for v in values if v.dtype.kind == "f"]
    return sum(int(v.size - np.isfinite(v).sum()) for v in values), sum(int(v.size) for v in values)


def _advice(learning_rate: float | None = None, phase: int = 1) -> str:
    if learning_rate is None or phase == 1:
        knob = "--learning-rate" + ("" if learning_rate is None else f" (phase 1's is {learning_rate:g})")
    else:
        knob = f"learning rate (phase {phase}'s is {learning_rate:g}; --learning-rate sets phase 1's)"
    return "nothing was recorded as finished; try a lower " + knob


class StopOnNonFinite(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` raising a one-line ``Diverged`` (run, phase, epoch), also for any non-finite logged value at
    an epoch's end; re-raises swallowed Ctrl-Cs per batch."""

    def __init__(self, run: str, phase: int, learning_rate: float | None = None):
        super().__init__(raise_error=True)
        self.run, self.phase, self.learning_rate, self.epoch = run, phase, learning_rate, 0

    def _fail(self, what: str):
        raise Diverged(f"{self.run}: training diverged in phase {self.phase}, epoch {self.epoch + 1} ({what}): "
                       + _advice(self.learning_rate, self.phase))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        raise_pending_signal()
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            self._fail(f"loss {float((logs or {}).get('loss')):g} at batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        for key, value in sorted((logs or {}).items()):
            if not np.all(np.isfinite(np.asarray(value, dtype=float))):
                self._fail(f"{key} {float(value):g}")


def make_loss(config: TrainConfig, from_logits: bool = False) -> keras.losses.Loss:
    """Cross-entropy (plain or, with class weights passed to fit, weighted) or focal loss on one-hot labels."""
    if config.loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(gamma=config.focal_gamma, from_logits=from_logits)
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)


def class_weights(labels: np.ndarray, n_classes: int = NUM_CLASSES) -> dict[int, float]:
    """Inverse-frequency weights n / (k * count), for weighted cross-entropy."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return {c: float(len(labels) / (n_classes * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


class ImageF1(keras.callbacks.Callback):
    """At each epoch end, from one pass over the validation tiles: ``val_loss``, ``val_tile_accuracy`` and each voting
    rule's image macro F1; ``logs[MONITOR]``: the selected rule's (callbacks that read it come after this one)."""

    def __init__(self, dataset, y_true: np.ndarray, rule: str = "hard", from_logits: bool = False,
                 loss: keras.losses.Loss | None = None):
        super().__init__()
        self.dataset, self.y_true, self.rule, self.from_logits = dataset, np.asarray(y_true), rule, from_logits
        self.loss = loss or keras.losses.CategoricalCrossentropy()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        probabilities, numbers, weights = predict_tiles(self.model, self.dataset, self.from_logits)
        labels = self.y_true[numbers]  # each tile carries its image's label
        logs["val_loss"] = float(self.loss(np.eye(probabilities.shape[1], dtype="float32")[labels], probabilities))
        logs["val_tile_accuracy"] = float(np.mean(probabilities.argmax(1) == labels))
        for rule in VOTING_RULES:
            logs[f"val_image_f1_{rule}"] = macro_f1(self.y_true, vote(probabilities, numbers, weights,
                                                                      len(self.y_true), rule), probabilities.shape[1])
        logs[MONITOR] = logs[f"val_image_f1_{self.rule}"]


class RunProgress(keras.callbacks.Callback):
    """Per epoch, atomically: log row, best weights, resume ``state``; a resumable ``EarlyStopping`` (``patience``)."""

    def __init__(self, run_dir: Path, log_name: str, rows: list[dict], state: dict, patience: int):
        super().__init__()
        self.run_dir, self.log_name, self.rows, self.state, self.patience = run_dir, log_name, rows, state, patience

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.rows.append({"epoch": epoch, **{k: float(logs[k]) for k in sorted(logs)}})
        best, wait = self.state["best"], self.state["wait"] + 1
        if best is None or float(logs[MONITOR]) > best:
            best, wait = float(logs[MONITOR]), 0
            save_weights(self.model, self.run_dir / "best.weights.h5")
        artifacts.write_csv(pd.DataFrame(self.rows), self.run_dir / self.log_name)
        self.state.update(epochs=len(self.rows), best=best, wait=wait)
        save_state(self.model, self.run_dir, self.state)
        if wait >= self.patience:
            self.model.stop_training = True


def tensorboard_callback(run_dir: Path | str) -> list:
    """``[TensorBoard]`` epoch logs (no graph) in ``run_dir/tensorboard``, after ``ImageF1`` (it logs its scores);
    ``[]`` without the tensorboard package (TensorFlow 2.21 no longer brings it): training never depends on it."""
    if importlib.util.find_spec("tensorboard") is None:
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / "tensorboard"), write_graph=False)]


def save_weights(model: keras.Model, path: Path) -> None:
    """``model.save`` (a ``.keras`` path) or ``model.save_weights``, atomically; non-finite weights: ``Diverged``."""
    path = Path(path)
    bad, total = nonfinite(model)
    if bad:
        raise Diverged(f"{path}: not saved: {bad:,} of {total:,} weights are not finite (training diverged); "
                       + _advice())
    size = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
    save_atomically(model.save if path.suffix == ".keras" else model.save_weights, path, size)


def _memory_folder(needed: int) -> str | None:
    """``SHM`` if it has room for ``needed`` bytes, else None; first removes dead processes' scratch folders there."""
    try:
        for path in Path(SHM).glob("anndl-*-*"):
            pid = path.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(path, ignore_errors=True)
        st = os.statvfs(SHM)
    except OSError:
        return None
    return SHM if st.f_bavail * st.f_frsize > 2 * needed + (64 << 20) else None


def save_atomically(save, path: Path, size_hint: int = 0) -> None:
    """``save(tmp)``, then atomically in place (via ``SHM`` if roomy: HDF5 dies on a full disk); ``ArtifactError``."""
    path = Path(path)
    memory = _memory_folder(4 * size_hint)  # a .keras file also holds the optimizer's variables
    # fresh (no planted link), removed on return/exception/signal; after a SIGKILL in memory, by the next save's sweep
    scratch = Path(tempfile.mkdtemp(prefix=f"anndl-{os.getpid()}-" if memory else ".anndl-save-",
                                    dir=memory or path.parent))
    tmp = scratch / path.name
    try:
        save(tmp)
        if memory:
            data = tmp.read_bytes()
            shutil.rmtree(scratch, ignore_errors=True)
            artifacts.write_bytes(path, data)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit, artifacts.ArtifactError)):
            raise
        cause = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:200]
        raise artifacts.ArtifactError(f"{path}: could not write ({cause or type(e).__name__})") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def save_state(model: keras.Model, run_dir: Path, info: dict) -> None:
    """Model and optimizer variables (``resume/state.npz``), then ``resume/state.json`` (last: it makes it count)."""
    optimizer_variables = model.optimizer.variables if model.optimizer is not None else []
    data = npz_bytes(*[np.asarray(v.numpy()) for v in [*model.variables, *optimizer_variables]])
    artifacts.write_bytes(Path(run_dir) / "resume" / "state.npz", data)
    artifacts.write_json(Path(run_dir) / "resume" / "state.json",
                         dict(info, model_variables=len(model.variables), sha256=hashlib.sha256(data).hexdigest()))


def load_state(run_dir: Path | str, request: str) -> dict | None:
    """``request``'s resume state (``state.json`` + ``arrays``); None if absent, another's or unverified (no pickle)."""
    try:
        info = json.loads((Path(run_dir) / "resume" / "state.json").read_text())
        data = (Path(run_dir) / "resume" / "state.npz").read_bytes()
        if hashlib.sha256(data).hexdigest() != info.get("sha256") or info.get("request") != request:
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            info["arrays"] = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    except (OSError, ValueError, KeyError):
        return None
    return info


def restore_state(model: keras.Model, state: dict, with_optimizer: bool) -> None:
    """Assign a saved state to the model's variables (and its optimizer's, built first on this phase's trainables)."""
    arrays, n = state["arrays"], state["model_variables"]
    for variable, value in zip(model.variables, arrays[:n], strict=True):
        variable.assign(value)
    if with_optimizer:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for variable, value in zip(model.optimizer.variables, arrays[n:], strict=True):
            variable.assign(value)


EPOCH_LINES = contextvars.ContextVar("EPOCH_LINES", default=True)  # False: no Keras line per epoch (K-fold: per fold)


def compile_model(model: keras.Model, optimizer, loss, metrics=None) -> None:
    """``model.compile``, the optimizer's slots built now (else TensorFlow traces the first step twice to make them)."""
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    if model.built and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def load_best(model: keras.Model, path: Path) -> None:
    """The selected weights of a phase (the checkpoint's optimizer slots belong to another phase: not loaded)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def fit(model: keras.Model, train_ds, steps_per_epoch: int, val_infer_ds, val_labels: np.ndarray,
        config: TrainConfig, run_dir: Path | str, optimizer, *, phase: int = 1, train_labels: np.ndarray | None = None,
        from_logits: bool = False, log_name: str = "log.csv", initial_epoch: int = 0,
        resume: dict | None = None, request: str | None = None) -> list[dict]:
    """Compile and train one phase selecting on images (``val_*``); returns its log rows, ends on the best weights. Each
    epoch of ``train_ds`` (``epoch_batches``) writes log, best weights, resume state; ``resume``: ``load_state``'s."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    compile_model(model, optimizer, make_loss(config, from_logits),
                  metrics=[keras.metrics.CategoricalAccuracy(name="tile_accuracy")])
    rows, state = [], {"request": request, "phase": phase, "complete": False, "epochs": 0, "best": None, "wait": 0}
    if resume is not None:
        restore_state(model, resume, with_optimizer=True)
        rows = artifacts.read_csv(run_dir / log_name).iloc[: resume["epochs"]].to_dict("records")
        state.update(best=resume["best"], wait=resume["wait"])
        print(f"resuming from epoch {initial_epoch + len(rows) + 1} (phase {phase}; {len(rows)} epoch(s) done)")
    n_classes = int(model.output_shape[-1])
    weights = class_weights(train_labels, n_classes) if config.loss == "weighted_crossentropy" else None
    name = run_dir.parent if run_dir.name == artifacts.STAGING else run_dir
    if len(rows) < config.epochs and state["wait"] < config.patience:
        # no validation_data: ImageF1's one pass over the validation tiles gives their loss and accuracy too
        one_hot = train_ds.map(lambda x, y: (x, tf.one_hot(y, n_classes)), num_parallel_calls=tf.data.AUTOTUNE)
        model.fit(one_hot, steps_per_epoch=steps_per_epoch, epochs=initial_epoch + config.epochs, shuffle=False,
                  initial_epoch=initial_epoch + len(rows), class_weight=weights, verbose=2 if EPOCH_LINES.get() else 0,
                  callbacks=[ImageF1(val_infer_ds, val_labels, config.voting, from_logits, make_loss(config)),
                             StopOnNonFinite(portable(name), phase, config.learning_rate),  # val_loss included
                             RunProgress(run_dir, log_name, rows, state, config.patience),
                             *tensorboard_callback(run_dir)])
    if (run_dir / "best.weights.h5").exists():
        load_best(model, run_dir / "best.weights.h5")
    return rows
