"""Training on several devices under either Keras back end, with one context manager.

``strategy_scope(name)`` builds and trains a model on every device the name asks for and yields a
:class:`Replicas` (``.name``, ``.num_replicas``, ``.devices``, the back end's own object)::

    with strategy_scope("mirrored") as replicas:
        model = build()                        # variables are created mirrored / replicated
        model.compile(...)
        model.fit(replicas.fit_dataset(train_ds), ...)

The batch size of the dataset is the **global** batch: each of the ``num_replicas`` devices gets
``batch_size / num_replicas`` tiles of it (keep it divisible), and the gradients are averaged across
replicas, so one step with N replicas is one step of the same global batch on one device.

Names:

============================  ==============================================================================
``KERAS_BACKEND=tensorflow``
``None`` / ``"default"``      one device (``tf.distribute.get_strategy()``)
``"mirrored"`` /              ``tf.distribute.MirroredStrategy`` over the visible GPUs, or, without a GPU,
``"data_parallel"``           over the logical CPU devices (see :func:`use_cpu_devices`)
``"tpu"``                     ``tf.distribute.TPUStrategy`` on the attached TPU (Colab/Kaggle TPU runtimes)
``KERAS_BACKEND=jax``
``None`` / ``"default"``      one device (no distribution)
``"mirrored"`` /              ``keras.distribution.DataParallel(devices=jax.devices())``: variables replicated,
``"data_parallel"`` /         each batch sharded on its first axis across the devices; the previous
``"tpu"``                     distribution is restored on leaving the block
============================  ==============================================================================

A ``tf.distribute.Strategy`` object may be passed instead of a name (TensorFlow back end).

With several replicas, pass the training and validation datasets through
:meth:`Replicas.fit_dataset`: it rounds a batch whose size is not a multiple of the replica count (the
short last one) up by repeating some of its tiles (at most ``num_replicas - 1`` per epoch). JAX needs this
(it shards arrays evenly; an odd batch fails with ``IndivisibleError``), and so does TensorFlow when the
validation set is smaller than one global batch (Keras 3.15 builds ``evaluate`` by averaging the first
batch's per-replica parts, which fails when they differ in size). The input pipeline stays tf.data under
both back ends. Image-level evaluation (``predict_tiles``) calls the model on whole batches and needs
neither.

Several devices on one CPU (tests, CI, ``--cpu-devices``), set up before the framework starts:

* TensorFlow: :func:`use_cpu_devices` ``(n)`` before any TensorFlow op runs
  (``tf.config.set_logical_device_configuration``; importing TensorFlow is fine);
* JAX: ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` in the environment **before jax is
  imported** (importing Keras with the JAX back end imports jax) — the portable way, and what CI uses.
  :func:`use_cpu_devices` also sets jax's ``jax_num_cpu_devices`` option (jax >= 0.4.38), which works after
  the import too, as long as no jax computation has run yet; it raises ``RuntimeError`` when jax already
  started with another device count.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

STRATEGIES = ("default", "mirrored", "data_parallel", "tpu")


def backend() -> str:
    """The Keras back end this process uses (read without importing Keras)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


# ---------------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------------

def use_cpu_devices(n: int) -> list[str]:
    """Split the host CPU into ``n`` logical devices (for multi-replica runs without accelerators).

    Call it first thing in a process: TensorFlow fixes its devices at its first op, jax when its CPU
    backend starts (its first computation; with jax < 0.4.38 only ``XLA_FLAGS`` set before importing jax works). Returns the CPU device names. Raises ``RuntimeError`` when the
    framework already started with another device count.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if backend() == "jax":
        return _jax_cpu_devices(n)
    return _tf_cpu_devices(n)


def _tf_cpu_devices(n: int) -> list[str]:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as error:  # TensorFlow already initialised its devices
        have = tf.config.list_logical_devices("CPU")
        if len(have) != n:
            raise RuntimeError(f"TensorFlow already initialised with {len(have)} CPU devices; call "
                               f"use_cpu_devices({n}) before any TensorFlow op runs") from error
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _jax_cpu_devices(n: int) -> list[str]:
    flag = f"--xla_force_host_platform_device_count={n}"
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if
             not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [flag])
    import jax

    with contextlib.suppress(AttributeError, RuntimeError, ValueError):  # jax >= 0.4.38; before the backend starts
        jax.config.update("jax_num_cpu_devices", n)
    devices = jax.devices("cpu")
    if len(devices) != n:
        raise RuntimeError(f"jax already started with {len(devices)} CPU devices; set "
                           f"XLA_FLAGS={flag} in the environment before jax (or Keras) is imported")
    return [str(d) for d in devices]


# ---------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------

@dataclass
class Replicas:
    """What :func:`strategy_scope` set up.

    ``strategy``: the ``tf.distribute.Strategy`` (TensorFlow back end), else ``None``;
    ``distribution``: the ``keras.distribution.Distribution`` (JAX back end, several devices), else ``None``.
    """

    name: str
    backend: str
    num_replicas: int
    devices: tuple[str, ...]
    strategy: Any = field(default=None, repr=False)
    distribution: Any = field(default=None, repr=False)

    @property
    def num_replicas_in_sync(self) -> int:  # tf.distribute's spelling
        return self.num_replicas

    def per_replica_batch(self, global_batch: int) -> int:
        """Tiles per device per step; raises when the global batch does not split evenly."""
        if global_batch % self.num_replicas:
            raise ValueError(f"the global batch size {global_batch} does not split across "
                             f"{self.num_replicas} replicas; use a multiple of {self.num_replicas}")
        return global_batch // self.num_replicas

    def fit_dataset(self, dataset):
        """``dataset`` (batched tf.data) made safe for ``fit``/``evaluate`` on these replicas (see the module
        docstring): with several replicas, a batch whose size is not a multiple of the replica count is rounded
        up by repeating its first tiles (at most ``num_replicas - 1`` tiles count twice in that epoch's loss;
        none is skipped, and the number of steps stays known). With one replica: unchanged.
        """
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
        """JSON-ready description for a run's config."""
        return {"strategy": self.name, "backend": self.backend, "replicas": self.num_replicas,
                "devices": list(self.devices)}


def get_strategy(name: str | None = None):
    """The ``tf.distribute.Strategy`` for a name (TensorFlow back end): ``None``/'default' one device,
    'mirrored' every visible GPU (else every logical CPU device), 'tpu' the attached TPU."""
    import tensorflow as tf

    name = _check(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name in ("mirrored", "data_parallel"):
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _check(name: str | None) -> str:
    name = "default" if name is None else name
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    return name


@contextlib.contextmanager
def strategy_scope(name=None) -> Iterator[Replicas]:
    """Build and train models inside this block on the devices ``name`` asks for (module docstring).

    ``name``: ``None``, 'default', 'mirrored', 'data_parallel', 'tpu', or a ``tf.distribute.Strategy``.
    Yields a :class:`Replicas`.
    """
    kind = backend()
    if kind == "jax":
        if not isinstance(name, (str, type(None))):
            raise TypeError(f"under KERAS_BACKEND=jax the strategy is a name, got {type(name).__name__}")
        yield from _jax_scope(_check(name))
    elif kind == "tensorflow":
        import tensorflow as tf

        if isinstance(name, tf.distribute.Strategy):
            strategy, label = name, type(name).__name__
        else:
            label = _check(name)
            strategy = get_strategy(label)
        try:
            devices = tuple(strategy.extended.worker_devices)
        except (AttributeError, NotImplementedError, RuntimeError):  # the default strategy
            devices = ()
        replicas = Replicas(label, kind, int(strategy.num_replicas_in_sync), devices, strategy=strategy)
        with strategy.scope():
            yield replicas
    else:
        if _check(name) != "default":
            raise ValueError(f"strategy {name!r} needs KERAS_BACKEND=tensorflow or jax, not {kind}")
        yield Replicas("default", kind, 1, ())


def _jax_scope(name: str) -> Iterator[Replicas]:
    import jax
    import keras

    if name == "default":
        yield Replicas(name, "jax", 1, (str(jax.devices()[0]),))
        return
    devices = jax.devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield Replicas(name, "jax", len(devices), tuple(str(d) for d in devices), distribution=distribution)
    finally:
        keras.distribution.set_distribution(previous)


# ---------------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def precision_policy(name: str | None):
    """Set a Keras dtype policy (e.g. 'mixed_bfloat16') for the models built inside the block."""
    import keras

    previous = keras.config.dtype_policy()
    if name:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# GPUs named by Colab/Kaggle/cloud runtimes. float16 tensor cores (or P100's double-rate float16) but no
# fast bfloat16: mixed_float16 (with Keras's loss scaling). Ampere and later, and TPUs: mixed_bfloat16 (float32's
# range, no loss scaling needed).
FLOAT16_GPUS = ("T4", "P100", "V100", "TITAN V", "RTX 20")
BFLOAT16_GPUS = ("A100", "A10", "A30", "A40", "L4", "L40", "H100", "H200", "H20", "GH200", "B100", "B200", "RTX 30",
                 "RTX 40", "RTX 50", "RTX A")
# x86 CPU flags (/proc/cpuinfo) of a native bfloat16 dot product: oneDNN then runs bfloat16 convolutions on
# avx512_core_bf16 or AMX kernels. Without them it emulates bfloat16 (jit_bf16:avx512_core in ONEDNN_VERBOSE),
# which made the scratch ResNet's training step 0.3-0.4x float32's on an Ice Lake CPU (README, "Training speed").
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


def precision_for(kind: str, name: str = "", compute_capability: tuple[int, int] | None = None,
                  cpu_flags=()) -> tuple[str, str]:
    """(Keras dtype policy, reason) for training on a device of ``kind`` 'gpu', 'tpu' or 'cpu': the rules of
    :func:`fastest_precision`, without looking at the machine. ``name``: the GPU's name (e.g. 'Tesla T4');
    ``compute_capability``: used when the name is not one listed; ``cpu_flags``: the CPU's flags."""
    kind = kind.lower()
    if kind == "tpu":
        return "mixed_bfloat16", "TPU: bfloat16 matrix units"
    if kind == "gpu":
        upper = name.upper()
        for policy, names in (("mixed_bfloat16", BFLOAT16_GPUS), ("mixed_float16", FLOAT16_GPUS)):
            hit = next((n for n in names if n in upper), None)
            if hit:
                units = "bfloat16 tensor cores" if policy == "mixed_bfloat16" else "float16 units, no fast bfloat16"
                return policy, f"GPU {name} ({hit}: {units})"
        if compute_capability is not None:
            if tuple(compute_capability) >= (8, 0):
                return "mixed_bfloat16", f"GPU {name or '?'} (compute capability {compute_capability}: bfloat16)"
            if tuple(compute_capability) >= (7, 0):  # Volta/Turing tensor cores (most 6.x Pascal: slow float16)
                return "mixed_float16", f"GPU {name or '?'} (compute capability {compute_capability}: float16)"
        return "float32", f"GPU {name or '?'}: no known fast reduced precision"
    if kind == "cpu":
        have = [flag for flag in CPU_BFLOAT16_FLAGS if flag in set(cpu_flags)]
        if have:
            return "mixed_bfloat16", f"CPU with {', '.join(have)}: native bfloat16 kernels"
        return "float32", ("CPU without amx_bf16/avx512_bf16: bfloat16 is emulated and slower than float32 "
                           "(float16 has no fast CPU kernels)")
    raise ValueError(f"kind must be 'gpu', 'tpu' or 'cpu', got {kind!r}")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where it is not readable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _accelerator() -> tuple[str, str, tuple[int, int] | None]:
    """(kind, name, compute capability) of the first accelerator the Keras back end sees, else ('cpu', '', None)."""
    if backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform in ("gpu", "cuda", "rocm"):
            cc = getattr(device, "compute_capability", None)
            cc = tuple(int(p) for p in str(cc).split(".")[:2]) if cc else None
            return "gpu", device.device_kind, cc
        if device.platform == "tpu":
            return "tpu", device.device_kind, None
        return "cpu", "", None
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu", "TPU", None
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return "gpu", details.get("device_name", ""), details.get("compute_capability")
    return "cpu", "", None


def precision_advice() -> tuple[str, str]:
    """(Keras dtype policy, one-line reason) to train with on this machine; see :func:`fastest_precision`."""
    kind, name, cc = _accelerator()
    return precision_for(kind, name, cc, cpu_flags() if kind == "cpu" else ())


def fastest_precision() -> str:
    """The Keras dtype policy that trains fastest here, for notebooks' ``MIXED_PRECISION`` and ``doctor``.

    By device rules, not a timing run: a GPU by name (mixed_float16 on T4/P100/V100, mixed_bfloat16 on
    A100/L4/H100 and later; else by compute capability), mixed_bfloat16 on a TPU, and on a CPU by its flags:
    mixed_bfloat16 only with ``amx_bf16`` or ``avx512_bf16``, else float32. Flags rather than a micro-benchmark:
    they decide which kernels oneDNN runs, they cost nothing to read, and a benchmark of both policies takes a
    minute of two model builds and is unreliable on a CPU shared with other jobs (the reason ``bench/`` interleaves
    its runs). 'float32' means: no mixed precision.
    """
    return precision_advice()[0]
