"""Multi-replica training (TensorFlow MirroredStrategy, Keras/JAX DataParallel) on 2 CPU devices, and
the TensorBoard callback.

Each multi-replica run happens in its own process (``tests/distributed_worker.py``): the device count
must be fixed before TensorFlow or jax starts. Both processes start together when the first of these
tests asks for them, so the pair costs about the time of the slower one.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"
HAS_JAX = importlib.util.find_spec("jax") is not None
CASES = {"tensorflow": ("tensorflow", "mirrored"), "jax": ("jax", "data_parallel")}


def _start(backend: str, strategy: str) -> subprocess.Popen:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if backend == "jax":
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return subprocess.Popen([sys.executable, str(WORKER), strategy, "2"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs():
    started = {key: _start(*case) for key, case in CASES.items() if key != "jax" or HAS_JAX}
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def _result(runs, key: str) -> dict:
    output, _ = runs[key].communicate(timeout=300)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert runs[key].returncode == 0 and lines, f"{key} worker failed:\n{output[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _check_two_replicas(result: dict, backend: str):
    assert result["backend"] == backend
    assert result["replicas"] == 2 and result["mesh"] == 2, result
    assert result["variable_devices"] == 2, "the model's variables should live on both devices"
    assert result["per_replica_batch"] == [4, 4], "the global batch of 8 should split 4 + 4"
    assert np.isfinite(result["loss"])
    assert 0.0 <= result["val_image_macro_f1"] <= 1.0  # the image-level F1 callback ran inside fit
    assert result["prediction_shape"] == [10, 4] and result["probability_shape"] == [20, 4]
    assert result["max_abs_difference"] < 1e-5, "predict_tiles differs from a single-device copy"
    assert {"best.weights.h5", "log.csv"} <= set(result["written"])


def test_tensorflow_mirrored_on_two_cpu_devices(runs):
    _check_two_replicas(_result(runs, "tensorflow"), "tensorflow")


@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
def test_jax_data_parallel_on_two_cpu_devices(runs):
    _check_two_replicas(_result(runs, "jax"), "jax")


def test_strategy_names():
    from anndl.core import distribute

    with pytest.raises(ValueError, match="strategy must be one of"):
        with distribute.strategy_scope("mirored"):
            pass
    with distribute.strategy_scope(None) as replicas:
        assert replicas.num_replicas == 1 and replicas.name == "default"
        assert replicas.per_replica_batch(32) == 32
        assert replicas.record()["replicas"] == 1
    with distribute.strategy_scope("default") as replicas:
        assert replicas.fit_dataset("unchanged") == "unchanged"


def test_tensorboard_writes_epoch_logs(tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    from anndl.engine.train import tensorboard_callback

    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[np.arange(16) % 4]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(keras.optimizers.Lion(1e-3), "categorical_crossentropy")
    image_f1 = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(val_image_macro_f1=0.5))
    model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=8, verbose=0,
              callbacks=[image_f1, *tensorboard_callback(tmp_path)])  # as in training: after the F1 callback
    tags = {}
    for part in ("train", "validation"):
        files = list((tmp_path / "tensorboard" / part).glob("events.out.tfevents.*"))
        assert files, f"no event file in tensorboard/{part}"
        tags[part] = {value.tag for record in tf.data.TFRecordDataset([str(f) for f in files])
                      for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value}
    assert "epoch_loss" in tags["train"]
    assert {"epoch_loss", "epoch_image_macro_f1"} <= tags["validation"]
    import importlib.util  # a runtime without the tensorboard package trains without these logs
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else object())
    assert tensorboard_callback(tmp_path / "other") == []
