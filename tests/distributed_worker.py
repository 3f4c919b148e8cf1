"""One multi-replica smoke training, run in its own process by ``tests/test_distributed.py``.

``python tests/distributed_worker.py STRATEGY N_DEVICES`` with ``KERAS_BACKEND`` set (and, for JAX,
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) splits the CPU into N devices *before* the
framework starts, trains the tiny scratch ResNet for one epoch through ``anndl.engine.train.fit`` (Lion, image-level
F1 callback, checkpoint) inside ``distribute.strategy_scope``, and prints one JSON line: replicas used,
how many devices hold the variables, loss, prediction shape, and the largest difference between
``predict_tiles`` on the trained model and on a single-device copy of it.
"""

import contextlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anndl.core import distribute  # noqa: E402  (imports no framework)


def use_cpu_devices(n: int) -> list[str]:
    """Split the host CPU into ``n`` logical devices, before the framework starts; their names."""
    if distribute.backend() == "jax":
        import jax
        with contextlib.suppress(AttributeError, RuntimeError, ValueError):  # jax started: checked below
            jax.config.update("jax_num_cpu_devices", n)
        devices = [str(d) for d in jax.devices("cpu")]
        fix = f"set XLA_FLAGS=--xla_force_host_platform_device_count={n} before jax (or Keras) is imported"
    else:
        import tensorflow as tf
        with contextlib.suppress(RuntimeError):  # TensorFlow already initialised its devices: checked below
            tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                                       [tf.config.LogicalDeviceConfiguration()] * n)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        fix = f"call use_cpu_devices({n}) before any TensorFlow op runs"
    if len(devices) != n:
        raise RuntimeError(f"{distribute.backend()} already started with {len(devices)} CPU devices; {fix}")
    return devices


def main(name: str, n_devices: int) -> dict:
    devices = use_cpu_devices(n_devices)  # before Keras/TensorFlow/jax start

    import keras
    import numpy as np
    import tensorflow as tf

    from anndl.core.config import ScratchResNetConfig, TrainConfig
    from anndl.engine import train
    from anndl.models.networks import scratch_resnet
    try:
        from anndl.engine.inference import predict_tiles
    except ImportError:
        from anndl.evaluate.voting import predict_tiles

    rng = np.random.default_rng(0)
    n_tiles, tiles_per_image, size, batch = 37, 4, 32, 8  # 4 full global batches + an odd one of 5
    x = rng.integers(0, 256, (n_tiles, size, size, 3), dtype=np.uint8)
    y = (np.arange(n_tiles) // tiles_per_image % 4).astype(np.int64)
    numbers = np.arange(n_tiles) // tiles_per_image
    weights = np.full(n_tiles, 1 / tiles_per_image, np.float32)
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n_tiles, seed=0).batch(batch)
    infer_ds = tf.data.Dataset.from_tensor_slices((x[:20], numbers[:20], weights[:20])).batch(batch)
    val_labels = np.arange(20 // tiles_per_image) % 4
    model_config = ScratchResNetConfig(filters=4, stacks=1, blocks_per_stack=1)
    config = TrainConfig(epochs=1, batch_size=batch, learning_rate=1e-3, patience=1, cache=None)

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as run_dir:
        with distribute.strategy_scope(name) as replicas:
            model = scratch_resnet(model_config, size)
            steps = -(-n_tiles // batch)
            rows = train.fit(model, replicas.fit_dataset(train_ds), steps, infer_ds, val_labels, config, run_dir,
                             keras.optimizers.Lion(config.learning_rate), train_labels=y)
            written = sorted(p.name for p in Path(run_dir).iterdir())
            distributed = predict_tiles(model, infer_ds)[0]
            kernel = model.get_layer("stem_conv").kernel
            if replicas.backend == "jax":
                holders = len(kernel.value.sharding.device_set)
                mesh = int(np.prod(replicas.distribution.device_mesh.shape))
                layout = replicas.distribution.get_data_layout((batch, size, size, 3)).backend_layout
                per_replica = [int(layout.shard_shape((batch, size, size, 3))[0])] * mesh
            else:
                holders = len(getattr(kernel.value, "values", [kernel.value]))  # a MirroredVariable's copies
                mesh = int(replicas.strategy.num_replicas_in_sync)
                first = next(iter(replicas.strategy.experimental_distribute_dataset(train_ds)))[0]
                per_replica = [int(t.shape[0]) for t in replicas.strategy.experimental_local_results(first)]
            predicted = model.predict(x[:10], verbose=0)
        after = predict_tiles(model, infer_ds)[0]  # as in experiment.train_run: evaluation and saving after the scope
        model.save(Path(run_dir) / "model.keras")
        reloaded = predict_tiles(keras.models.load_model(Path(run_dir) / "model.keras", compile=False), infer_ds)[0]
    single = scratch_resnet(model_config, size)  # one device
    single.set_weights(model.get_weights())
    alone = predict_tiles(single, infer_ds)[0]
    return {"backend": keras.backend.backend(), "devices": devices, "replicas": replicas.num_replicas,
            "record": replicas.record(), "mesh": mesh, "per_replica_batch": per_replica, "variable_devices": holders,
            "loss": float(rows[-1]["loss"]),
            "val_image_macro_f1": float(rows[-1]["val_image_macro_f1"]),
            "prediction_shape": list(predicted.shape), "probability_shape": list(alone.shape),
            "max_abs_difference": float(max(np.abs(distributed - alone).max(), np.abs(after - alone).max(),
                                             np.abs(reloaded - alone).max())),
            "written": written}


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], int(sys.argv[2]))), flush=True)
