"""Scratch ResNet and the training engine on tiny data: build, fit, select, save/load, submit."""

import keras
import numpy as np
import pandas as pd
import pytest

from anndl.core.config import ScratchResNetConfig, TrainConfig
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


@pytest.mark.parametrize("loss", ["crossentropy", "focal"])
def test_one_validation_pass_gives_keras_own_validation_loss_and_accuracy(loss):
    """Training passes no validation_data to Keras: ImageF1's pass over the validation tiles logs the loss and
    tile accuracy that Keras's evaluate would (each tile labelled as its image)."""
    import tensorflow as tf

    from anndl.engine.train import ImageF1

    keras.utils.set_random_seed(1)
    model = scratch_resnet(ScratchResNetConfig(filters=4, stacks=1, blocks_per_stack=1), tile_size=32)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, 32, 32, 3)).astype("float32")
    numbers = np.repeat(np.arange(5), 2)
    y_image = np.array([0, 1, 2, 3, 1])
    config = TrainConfig(loss=loss)
    model.compile(loss=make_loss(config), metrics=[keras.metrics.CategoricalAccuracy(name="tile_accuracy")])
    keras_loss, keras_accuracy = model.evaluate(x, np.eye(4)[y_image[numbers]], batch_size=4, verbose=0)
    callback = ImageF1(tf.data.Dataset.from_tensor_slices((x, numbers, np.full(10, 0.5, "float32"))).batch(4),
                       y_image, loss=make_loss(config))
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["val_loss"] == pytest.approx(keras_loss, rel=1e-5)
    assert logs["val_tile_accuracy"] == pytest.approx(keras_accuracy, abs=1e-7)
