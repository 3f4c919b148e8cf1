"""Training on several devices under either Keras back end (TensorFlow, JAX), and the precision to train with."""

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

STRATEGIES = ("default", "mirrored", "data_parallel")


def backend() -> str:
    """The Keras back end this process uses (read without importing Keras)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


@dataclass
class Replicas:
    """What :func:`strategy_scope` set up: a ``tf.distribute.Strategy`` or (JAX) a ``keras.distribution``."""

    name: str
    backend: str
    num_replicas: int
    devices: tuple[str, ...]
    strategy: Any = field(default=None, repr=False)
    distribution: Any = field(default=None, repr=False)

    def per_replica_batch(self, global_batch: int) -> int:
        """Tiles per device per step; raises when the global batch does not split evenly."""
        if global_batch % self.num_replicas:
            raise ValueError(f"the global batch size {global_batch} does not split across "
                             f"{self.num_replicas} replicas; use a multiple of {self.num_replicas}")
        return global_batch // self.num_replicas

    def fit_dataset(self, dataset):
        """``dataset`` (batched) with each batch rounded up to a multiple of the replica count by repeating its first
        tiles: JAX shards only even batches, and Keras's TensorFlow ``evaluate`` fails on an uneven first batch."""
        if self.num_replicas == 1:
            return dataset
        import tensorflow as tf
        n = self.num_replicas

        def round_up(*parts):
            size = tf.shape(tf.nest.flatten(parts)[0])[0]
            index = tf.range((size + n - 1) // n * n) % size
            rounded = tf.nest.map_structure(lambda t: tf.gather(t, index), parts)
            return rounded if len(parts) > 1 else rounded[0]

        return dataset.map(round_up, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def record(self) -> dict:
        return {"strategy": self.name, "backend": self.backend, "replicas": self.num_replicas,
                "devices": list(self.devices)}


@contextlib.contextmanager
def strategy_scope(name=None) -> Iterator[Replicas]:
    """Build and train models inside this block on the devices ``name`` (``STRATEGIES`` or a ``tf.distribute.Strategy``)
    asks for, the batch split across them; 'data_parallel' under TensorFlow is 'mirrored' (GPUs, else CPU devices)."""
    kind = backend()
    if name not in (None, *STRATEGIES) and not (kind == "tensorflow" and hasattr(name, "scope")):
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)} (or, under TensorFlow, a "
                         f"tf.distribute.Strategy), got {name!r}")
    if kind == "tensorflow":
        import tensorflow as tf
        if name in ("mirrored", "data_parallel"):
            cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(None if tf.config.list_logical_devices("GPU") else cpus)
        elif name in (None, "default"):
            strategy, name = tf.distribute.get_strategy(), "default"
        else:  # a tf.distribute.Strategy
            strategy, name = name, type(name).__name__
        devices = ()
        with contextlib.suppress(AttributeError, NotImplementedError, RuntimeError):  # the default strategy has none
            devices = tuple(strategy.extended.worker_devices)
        replicas = Replicas(name, kind, int(strategy.num_replicas_in_sync), devices, strategy=strategy)
        scope = strategy.scope()
    else:
        import jax
        import keras
        devices = jax.devices()
        if name in (None, "default"):
            replicas, scope = Replicas("default", kind, 1, (str(devices[0]),)), contextlib.nullcontext()
        else:
            distribution = keras.distribution.DataParallel(devices=devices)
            replicas = Replicas(name, kind, len(devices), tuple(map(str, devices)), distribution=distribution)
            scope = distribution.scope()
    with scope:
        yield replicas


@contextlib.contextmanager
def precision_policy(name: str | None):
    """Set a Keras dtype policy (e.g. 'mixed_bfloat16') inside the block."""
    import keras
    previous = keras.config.dtype_policy()
    if name:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# (policy, GPU names, least compute capability, why), by name first: pre-Ampere GPUs have float16 units, no fast
# bfloat16 (mixed_float16, loss scaling); Ampere+ and TPUs bfloat16 (float32's range); 7.x float16 (6.x: slow float16)
GPU_RULES = (("mixed_bfloat16", ("A100", "A10", "A30", "A40", "L4", "L40", "H100", "H200", "H20", "GH200", "B100",
                                 "B200", "RTX 30", "RTX 40", "RTX 50", "RTX A"), (8, 0), "bfloat16 tensor cores"),
             ("mixed_float16", ("T4", "P100", "V100", "TITAN V", "RTX 20"), (7, 0), "float16 units, no fast bfloat16"))
# native bfloat16 dot flags (oneDNN); else emulated: scratch ResNet step 0.3-0.4x float32's, Ice Lake (measurements.md)
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


def precision_for(kind: str, name: str = "", compute_capability: tuple[int, int] | None = None,
                  cpu_flags=()) -> tuple[str, str]:
    """(Keras dtype policy, reason) for a 'gpu' (by ``name``, else ``compute_capability``), 'tpu' or 'cpu'."""
    kind = kind.lower()
    if kind == "tpu":
        return "mixed_bfloat16", "TPU: bfloat16 matrix units"
    if kind == "gpu":
        for policy, names, _, units in GPU_RULES:
            if hit := next((n for n in names if n in name.upper()), None):
                return policy, f"GPU {name} ({hit}: {units})"
        for policy, _, capability, _ in GPU_RULES:
            if compute_capability is not None and tuple(compute_capability) >= capability:
                return policy, f"GPU {name or '?'} (compute capability {compute_capability}: {policy[6:]})"
        return "float32", f"GPU {name or '?'}: no known fast reduced precision"
    if kind == "cpu":
        if have := [flag for flag in CPU_BFLOAT16_FLAGS if flag in set(cpu_flags)]:
            return "mixed_bfloat16", f"CPU with {', '.join(have)}: native bfloat16 kernels"
        return "float32", ("CPU without amx_bf16/avx512_bf16: bfloat16 is emulated and slower than float32 "
                           "(float16 has no fast CPU kernels)")
    raise ValueError(f"kind must be 'gpu', 'tpu' or 'cpu', got {kind!r}")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where it is not readable)."""
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def precision_advice() -> tuple[str, str]:
    """(Keras dtype policy, one-line reason) for the first accelerator the back end sees, else the CPU."""
    if backend() == "jax":
        import jax
        device = jax.devices()[0]
        if device.platform in ("gpu", "cuda", "rocm"):
            cc = getattr(device, "compute_capability", None)
            cc = tuple(int(p) for p in str(cc).split(".")[:2]) if cc else None
            return precision_for("gpu", device.device_kind, cc)
        if device.platform == "tpu":
            return precision_for("tpu", device.device_kind)
    else:
        import tensorflow as tf
        if tf.config.list_logical_devices("TPU"):
            return precision_for("tpu", "TPU")
        if gpus := tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpus[0])
            return precision_for("gpu", details.get("device_name", ""), details.get("compute_capability"))
    return precision_for("cpu", cpu_flags=cpu_flags())


def fastest_precision() -> str:
    """The Keras dtype policy that trains fastest here, by device rules (a timing run is unreliable on a shared CPU)."""
    return precision_advice()[0]
