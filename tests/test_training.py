"""Scratch ResNet and the training engine on tiny data: build, fit, select, save/load, submit."""

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from anndl.core.config import ScratchResNetConfig, TrainConfig
from anndl.data import read_challenge
from anndl.engine.train import class_weights, make_loss
from anndl.models.networks import scratch_resnet


def test_scratch_resnet_shape_names_and_round_trip(tmp_path):
    model = scratch_resnet(ScratchResNetConfig(filters=4, stacks=2, blocks_per_stack=2), tile_size=32)
    assert model.output_shape == (None, 4)
    names = {layer.name for layer in model.layers}
    assert {"stem_conv", "stack1_block1_conv1", "stack2_block2_conv2", "head_dropout", "head_softmax"} <= names
    assert model.get_layer("stack2_block1_conv1").filters == 8  # width doubles per stack
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0).sum(1), 1, rtol=1e-5)


def test_report_config_is_the_default():
    config = ScratchResNetConfig()
    assert (config.filters, config.stacks, config.blocks_per_stack, config.dropout) == (32, 2, 3, 0.5)
    assert TrainConfig().learning_rate == 1e-5


def test_losses_and_class_weights():
    assert isinstance(make_loss(TrainConfig(loss="focal", focal_gamma=3.0)), keras.losses.CategoricalFocalCrossentropy)
    weights = class_weights(np.array([0, 0, 0, 1, 2, 3]))
    assert weights[0] < weights[1] == weights[2] == weights[3]
    with pytest.raises(ValueError, match="loss must be"):
        TrainConfig(loss="mse")


def test_run_command_end_to_end(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "anndl", "run", "--data", str(tiny_data), "--out", str(out),
                             "--profile", "smoke", "--epochs", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    run = out / "runs" / "scratch_resnet"
    for name in ("model.keras", "config.json", "log.csv", "metrics.json", "best.weights.h5", "val_predictions.csv"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["profile"] == "smoke" and "synthetic" in metrics["data"]
    assert metrics["weights"].startswith("random initialisation")
    assert set(metrics["validation"]) == {"hard", "soft"}
    log = pd.read_csv(run / "log.csv")
    assert len(log) == 2 and "val_image_macro_f1" in log.columns
    assert metrics["best_epoch"] == int(log.val_image_macro_f1.idxmax()) + 1
    submission = pd.read_csv(out / "submission.csv")
    manifest = read_challenge(tiny_data)
    assert sorted(submission.sample_index) == sorted(manifest.sample_index[manifest.split == "test"])
    assert json.loads((out / "submission.json").read_text())["profiles"] == ["smoke"]
    # a second run reuses every step
    again = subprocess.run([sys.executable, "-m", "anndl", "run", "--data", str(tiny_data), "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("reusing") == 3, again.stdout
    # predict with soft voting from the saved run
    soft = subprocess.run([sys.executable, "-m", "anndl", "predict", "--run", str(run), "--data", str(tiny_data),
                           "--out", str(tmp_path / "soft.csv"), "--voting", "soft"], capture_output=True, text=True)
    assert soft.returncode == 0, soft.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "soft.csv")) == len(submission)
