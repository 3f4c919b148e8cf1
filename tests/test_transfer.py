"""Transfer learning: what each phase trains, at which rate, and offline loading of local weights."""

import keras
import numpy as np
import pytest

from anndl.models.networks import (WeightsUnavailable, convnext_backbone, convnext_last_stage, freeze_backbone,
                                   transfer_model, vit_backbone, vit_last_block)
from anndl.models.registry import differential_optimizer


def _step(model, optimizer, x, y):
    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    before = {v.path: np.array(v) for v in model.weights}
    model.train_on_batch(x, y)
    return before, {v.path: np.array(v) for v in model.weights}


@pytest.mark.parametrize("kind", ["convnext", "vit"])
def test_phase_two_moves_only_the_last_stage_and_head_at_their_own_rates(kind, monkeypatch):
    keras.utils.set_random_seed(0)
    model, note = transfer_model(kind, False, 32, head_units=8, head_dropout=0.0)  # deterministic gradients
    assert "NOT pretrained" in note
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, 8)]

    freeze_backbone(model)
    before, after = _step(model, keras.optimizers.SGD(0.1), x, y)
    moved = {p for p in before if not np.array_equal(before[p], after[p])}
    assert moved and all(p.startswith("head_") for p in moved), moved

    trained = (convnext_last_stage if kind == "convnext" else vit_last_block)(model)
    assert trained
    trainable = {v.path for v in model.trainable_variables}
    frozen = {v.path for v in model.weights} - trainable
    # the project's differential optimizer, with SGD in place of AdamW: an update is exactly -lr * gradient,
    # so the rate each variable got is measurable (swapping the head and backbone rates fails here)
    monkeypatch.setattr(keras.optimizers, "AdamW", lambda learning_rate, weight_decay=0.0: keras.optimizers.SGD(learning_rate))
    backbone_lr, head_lr = 1e-3, 3e-3
    sgd = differential_optimizer(backbone_lr, head_lr)
    import tensorflow as tf
    with tf.GradientTape() as tape:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)(y, model(x, training=True))
    grads = {v.path: np.array(g) for v, g in zip(model.trainable_variables,
                                                 tape.gradient(loss, model.trainable_variables))}
    before, after = _step(model, sgd, x, y)
    for path in frozen:
        np.testing.assert_array_equal(before[path], after[path], err_msg=f"frozen {path} moved")
    checked = {"head": 0, "backbone": 0}
    for path in trainable:
        g = grads[path]
        if np.abs(g).max() < 1e-7:
            continue
        rate = head_lr if path.startswith("head_") else backbone_lr
        np.testing.assert_allclose(before[path] - after[path], rate * g, rtol=2e-3, atol=2e-7,  # float32 rounding of x - dx
                                   err_msg=path)
        checked["head" if path.startswith("head_") else "backbone"] += 1
    assert checked["head"] and checked["backbone"], checked
    assert not any("stem" in p or "patching" in p for p in trainable)


def test_differential_optimizer_maps_head_and_backbone():
    optimizer = differential_optimizer(1e-5, 3e-5, 1e-4)
    rates = sorted(float(o.learning_rate) for o in optimizer.optimizers)
    assert rates == pytest.approx([1e-5, 3e-5])


def test_local_convnext_weights_load_through_the_same_path(tmp_path):
    backbone, _ = convnext_backbone(False, 32)
    path = tmp_path / "convnext_smoke.weights.h5"
    backbone.save_weights(path)
    loaded, note = convnext_backbone(False, 32, weights=str(path))
    assert str(path) in note and "NOT pretrained" not in note
    for a, b in zip(backbone.weights, loaded.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_local_vit_preset_loads_through_the_same_path(tmp_path):
    backbone, converter, _ = vit_backbone(False, 32)
    backbone.save_to_preset(str(tmp_path / "vit_preset"))
    loaded, loaded_converter, note = vit_backbone(False, 32, weights=str(tmp_path / "vit_preset"))
    assert "vit_preset" in note
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(backbone(converter(x)), loaded(loaded_converter(x)), rtol=1e-5, atol=1e-6)


def test_missing_pretrained_weights_stop_with_instructions(tmp_path):
    with pytest.raises(WeightsUnavailable, match="--weights"):
        convnext_backbone(True, 32, weights=str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsUnavailable, match="--weights DIR"):
        vit_backbone(True, 32, weights=str(tmp_path / "no_preset"))
