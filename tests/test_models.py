"""Every registered model kind on a tiny configuration: build, output shape, what each phase trains, and a
save/load round trip that predicts the same (one shared helper, as KerasHub's tiny-configuration tests)."""

import keras
import numpy as np
import pytest

from anndl.core.config import ModelSettings
from anndl.models import registry, specs

TILE = 32


def check_model(built: registry.Built, tmp_path, n_classes: int = 4) -> None:
    """The checks every model kind must pass."""
    model = built.model
    x = np.random.default_rng(0).uniform(0, 255, (2, TILE, TILE, 3)).astype("float32")
    out = np.asarray(model(x, training=False))
    assert out.shape == (2, n_classes) and np.isfinite(out).all()
    if not built.record["from_logits"]:
        np.testing.assert_allclose(out.sum(1), 1, rtol=1e-5)
    for phase in built.phases:  # each phase trains something, and the head always
        if phase.set_trainable:
            phase.set_trainable(model)
        trainable = {v.path for v in model.trainable_variables}
        assert trainable and any(p.startswith("head_") for p in trainable)
        assert phase.optimizer(phase.config) is not None
    if len(built.phases) == 2:  # transfer learning: phase 1 trains the head only, phase 2 more
        built.phases[0].set_trainable(model)
        head_only = len(model.trainable_variables)
        built.phases[1].set_trainable(model)
        assert len(model.trainable_variables) > head_only
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [s.name for s in specs.SPECS if s.consumes == "tiles"])
def test_every_registered_model_kind(name, tmp_path):
    check_model(registry.build_model(ModelSettings(name, "smoke", TILE, num_classes=4)), tmp_path)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose from"):
        registry.build_model(ModelSettings("resnet"))


def test_the_cli_and_the_report_read_the_specs():
    """Adding a model family is one spec (and a builder for a network): the CLI's choices, `run --model all` and the
    report's row order follow from ``specs.SPECS``; every network spec has a builder and no other name has one."""
    from anndl import cli

    parser = cli.build_parser()
    for name in specs.names():
        assert parser.parse_args(["train", "--model", name, "--out", "x", "--data", "d"]).model == name
    for name in (*specs.names(consumes="tiles"), "all"):
        assert parser.parse_args(["run", "--model", name, "--out", "x", "--data", "d"]).model == name
    for argv in (["train", "--model", "resnet", "--out", "x", "--data", "d"],
                 ["run", "--model", "linear_probe", "--out", "x", "--data", "d"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert specs.names(consumes="tiles") == ("scratch_resnet", "convnext", "vit")  # run --model all
    assert set(registry.BUILDERS) == set(specs.names(consumes="tiles"))
    assert sorted(["vit", "linear_probe", "unknown", "scratch_resnet", "convnext"], key=specs.order) == \
        ["scratch_resnet", "convnext", "vit", "linear_probe", "unknown"]


def test_the_cpu_profile_is_the_reports_network_with_moving_statistics_that_keep_up():
    from anndl.core.config import PROFILES

    cpu, full = (registry.build_model(ModelSettings(profile=p, tile_size=32)).model for p in ("cpu", "full"))
    momenta = {p: {layer.momentum for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)}
               for p, m in (("cpu", cpu), ("full", full))}
    assert momenta == {"cpu": {0.9}, "full": {0.99}}  # the full profile keeps Keras's default, the report's
    assert cpu.count_params() == full.count_params()  # the same network
    assert PROFILES["cpu"].train.learning_rate == 1e-4 and not PROFILES["cpu"].pretrained
