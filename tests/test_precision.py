"""Precision options of the training engine: the fused BatchNormalization computes what Keras's does (every policy),
a short run's validation F1 is unchanged within its interval, mixed_float16 keeps its loss scaling, the JAX back end
trains, saves and loads in mixed_bfloat16 (Keras's own normalisation path), and the precision recommended per
device."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from anndl.core import distribute
from anndl.core.config import ScratchResNetConfig, TrainConfig
from anndl.core.distribute import precision_policy
from anndl.engine import experiment
from anndl.engine.train import compile_model, make_loss
from anndl.models import networks
from anndl.models.networks import FusedBatchNormalization, scratch_resnet


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_fused_batch_norm_matches_keras(policy):
    """Same variables, outputs, gradients and moving statistics as keras.layers.BatchNormalization, in training and
    in inference, within each precision's rounding."""
    x = tf.constant(np.random.default_rng(0).normal(2, 3, (4, 10, 10, 6)).astype("float32"))
    with precision_policy(policy):
        fused, stock = FusedBatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    fused.build(x.shape), stock.build(x.shape)
    assert [w.path.split("/")[-1] for w in fused.weights] == [w.path.split("/")[-1] for w in stock.weights]
    for layer in (fused, stock):  # a non-trivial scale and offset
        layer.gamma.assign(np.linspace(0.5, 2, 6)), layer.beta.assign(np.linspace(-1, 1, 6))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outs = [layer(x, training=True) for layer in (fused, stock)]
        losses = [tf.reduce_sum(tf.cast(y, "float32") ** 2 * tf.range(6, dtype="float32")) for y in outs]
    assert outs[0].dtype == outs[1].dtype == keras.mixed_precision.Policy(policy).compute_dtype
    tol = 1e-5 if policy == "float32" else 2e-2
    np.testing.assert_allclose(np.asarray(tf.cast(outs[0], "float32")), np.asarray(tf.cast(outs[1], "float32")),
                               atol=tol * 10, rtol=tol)
    for a, b in zip(tape.gradient(losses[0], [x, fused.gamma.value, fused.beta.value]),
                    tape.gradient(losses[1], [x, stock.gamma.value, stock.beta.value])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4 if policy == "float32" else 5e-2,
                                   atol=1e-3 if policy == "float32" else 0.5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), stock.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), stock.moving_variance.numpy(), rtol=1e-4)
    assert not np.allclose(fused.moving_variance.numpy(), 1.0)  # the update happened
    inference = [np.asarray(tf.cast(layer(x, training=False), "float32")) for layer in (fused, stock)]
    np.testing.assert_allclose(inference[0], inference[1], rtol=2e-2, atol=2e-2)
    frozen = FusedBatchNormalization(momentum=0.9)
    frozen.build(x.shape)
    frozen.trainable = False  # a frozen layer normalises with its moving statistics, as Keras's does
    frozen(x, training=True)
    np.testing.assert_allclose(frozen.moving_mean.numpy(), 0.0)


def test_mixed_float16_trains_with_loss_scaling():
    with precision_policy("mixed_float16"):
        model = scratch_resnet(ScratchResNetConfig(filters=4, stacks=2, blocks_per_stack=1), tile_size=32)
    compile_model(model, keras.optimizers.Lion(1e-4), make_loss(TrainConfig()))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[np.arange(8) % 4]
    losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
    assert np.isfinite(losses).all()
    assert model.get_layer("stem_bn").compute_dtype == "float16"


def test_short_run_f1_is_unchanged_within_its_interval(tiny_data, tmp_path, monkeypatch):
    """The same seeded 2-epoch smoke run with Keras's own BatchNormalization in float32 (the engine before the fused
    layer) and with the fused layer in float32 and in mixed_bfloat16: each validation F1 inside the reference's 95%
    interval."""
    prep = experiment.prepare(tiny_data, tmp_path / "work")

    def f1(name, policy):
        result = experiment.train_run(prep, tmp_path / name, "scratch_resnet", "smoke", epochs=2,
                                      mixed_precision=policy, with_baselines=False)
        return result["metrics"]["validation"]["hard"]

    with monkeypatch.context() as patch:
        patch.setattr(networks, "FusedBatchNormalization", keras.layers.BatchNormalization)
        reference = f1("reference", None)
    low, high = reference["macro_f1_ci95"]
    for name, policy in (("fused", None), ("fused_bf16", "mixed_bfloat16")):
        score = f1(name, policy)["macro_f1"]
        assert low <= score <= high, (name, score, reference)


def test_jax_backend_trains_saves_and_loads_in_bfloat16(tmp_path):
    code = ("import numpy as np, keras\n"
            "from anndl.core.config import ScratchResNetConfig, TrainConfig\n"
            "from anndl.models.networks import scratch_resnet\n"
            "from anndl.core.distribute import precision_policy\n"
            "from anndl.engine.train import compile_model, make_loss\n"
            "with precision_policy('mixed_bfloat16'):\n"
            "    m = scratch_resnet(ScratchResNetConfig(filters=4, stacks=2, blocks_per_stack=1), tile_size=32)\n"
            "compile_model(m, keras.optimizers.Lion(1e-4), make_loss(TrainConfig()))\n"
            "x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype('float32')\n"
            "y = np.eye(4, dtype='float32')[np.arange(8) % 4]\n"
            "loss = [float(m.train_on_batch(x, y)) for _ in range(2)]\n"
            "assert np.isfinite(loss).all(), loss\n"
            "import sys\n"
            "m.save(sys.argv[1])\n"
            "again = keras.models.load_model(sys.argv[1])\n"
            "np.testing.assert_allclose(m.predict(x, verbose=0), again.predict(x, verbose=0), rtol=1e-2, atol=1e-2)\n"
            "print(keras.backend.backend(), m.jit_compile)\n")
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["jax", "True"]


@pytest.mark.parametrize("kind, name, cc, flags, expected", [
    ("gpu", "Tesla T4", (7, 5), (), "mixed_float16"),
    ("gpu", "Tesla P100-PCIE-16GB", (6, 0), (), "mixed_float16"),
    ("gpu", "Tesla V100-SXM2-16GB", (7, 0), (), "mixed_float16"),
    ("gpu", "NVIDIA L4", (8, 9), (), "mixed_bfloat16"),
    ("gpu", "NVIDIA A100-SXM4-40GB", (8, 0), (), "mixed_bfloat16"),
    ("gpu", "NVIDIA H100 80GB HBM3", (9, 0), (), "mixed_bfloat16"),
    ("gpu", "Some Future GPU", (10, 0), (), "mixed_bfloat16"),
    ("gpu", "Tesla P40", (6, 1), (), "float32"),
    ("tpu", "TPU v5 lite", None, (), "mixed_bfloat16"),
    ("cpu", "", None, ("avx512f", "avx512_vnni"), "float32"),
    ("cpu", "", None, ("avx512f", "avx512_bf16"), "mixed_bfloat16"),
    ("cpu", "", None, ("amx_bf16", "amx_tile"), "mixed_bfloat16"),
])
def test_precision_for_devices(kind, name, cc, flags, expected):
    policy, reason = distribute.precision_for(kind, name, cc, flags)
    assert policy == expected and reason


def test_fastest_precision_on_this_machine(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    assert distribute.cpu_flags(str(cpuinfo)) >= {"amx_bf16", "avx512f"}
    assert distribute.cpu_flags(str(tmp_path / "missing")) == set()
    policy, reason = distribute.precision_advice()
    assert distribute.fastest_precision() == policy in ("float32", "mixed_bfloat16", "mixed_float16")
    if not tf.config.list_physical_devices("GPU"):
        native = bool(set(distribute.CPU_BFLOAT16_FLAGS) & distribute.cpu_flags())
        assert policy == ("mixed_bfloat16" if native else "float32"), reason
    with pytest.raises(ValueError, match="kind must be"):
        distribute.precision_for("npu")


def test_notebook_setup_resolves_auto_precision(tiny_data, tmp_path, capsys):
    """A notebook's MIXED_PRECISION = "auto" becomes this runtime's fastest policy before any cell uses it."""
    from anndl.notebook import setup

    namespace = {"DATA_DIR": str(tiny_data), "OUTPUT_DIR": str(tmp_path), "PROFILE": "smoke", "MIXED_PRECISION": "auto"}
    setup(namespace)
    assert namespace["MIXED_PRECISION"] == distribute.precision_advice()[0]
    assert f"MIXED_PRECISION = {namespace['MIXED_PRECISION']!r} (auto: " in capsys.readouterr().out
