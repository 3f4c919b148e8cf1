"""The precision to train with: a Keras dtype policy inside a block, and the one recommended per device."""

import contextlib
import os
import sys


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
    keras = sys.modules.get("keras")  # the back end read without importing Keras
    if (keras.backend.backend() if keras else os.environ.get("KERAS_BACKEND", "tensorflow")) == "jax":
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
