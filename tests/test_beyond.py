"""Beyond the report: folds, TTA views, ensembles, attention-MIL, pluggable encoders."""

import dataclasses
import json

import keras
import numpy as np
import pandas as pd
import pytest

from anndl.data import tiling
from anndl.engine.inference import dihedral, predict_tiles
from anndl.models import encoders, mil
from tests.conftest import HE_SAMPLES, TINY


def test_folds_are_balanced_group_safe_and_seeded():
    rng = np.random.default_rng(0)
    n = 120
    clean = pd.DataFrame({"sample_index": [f"img_{i:04d}.png" for i in range(n)],
                          "label": rng.choice(["Luminal A", "Luminal B", "HER2(+)", "Triple negative"], n,
                                              p=[.3, .3, .3, .1]),
                          "group": np.where(np.arange(n) < 20, np.arange(n) // 2, -1)})
    folds = tiling.assign_folds(clean, 5, seed=1)
    assert sorted(folds.fold.unique()) == [0, 1, 2, 3, 4]
    assert (folds[folds.group >= 0].groupby("group").fold.nunique() == 1).all()
    per_class = pd.crosstab(folds.label, folds.fold)
    assert (per_class.max(axis=1) - per_class.min(axis=1) <= 2).all(), per_class
    assert folds.equals(tiling.assign_folds(clean, 5, seed=1))
    with pytest.raises(ValueError, match="at least 2"):
        tiling.assign_folds(clean, 1)


def test_dihedral_views_are_the_eight_symmetries():
    tile = np.arange(2 * 3 * 3 * 1, dtype="float32").reshape(2, 3, 3, 1)
    views = [np.asarray(dihedral(tile, k)) for k in range(8)]
    assert len({v.tobytes() for v in views}) == 8
    np.testing.assert_array_equal(views[0], tile)


def test_tta_equals_plain_prediction_for_an_orientation_free_model():
    import tensorflow as tf
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)  # blind to orientation
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(pooled))
    tiles = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((tiles, np.arange(5, dtype="int32"), np.ones(5, "float32"))).batch(2)
    plain, numbers, _ = predict_tiles(model, ds)
    tta, _, _ = predict_tiles(model, ds, tta=True)
    np.testing.assert_allclose(plain, tta, rtol=1e-5, atol=1e-6)
    assert numbers.tolist() == [0, 1, 2, 3, 4]


def test_bags_pad_and_attention_ignores_padding(tmp_path):
    emb = np.arange(5 * 3, dtype="float32").reshape(5, 3)
    x, mask = mil.bags(emb, np.array([0, 0, 1, 0, 1]), 2)
    assert x.shape == (2, 3, 3) and mask.tolist() == [[True, True, True], [True, True, False]]
    np.testing.assert_array_equal(x[1, 1], emb[4])
    with pytest.raises(ValueError, match="has no tiles"):
        mil.bags(emb, np.array([0, 0, 0, 0, 0]), 2)
    model = mil.mil_model(3, units=4)
    probabilities, attention = model.predict([x, mask], verbose=0)
    assert attention[1, 2] == 0 and np.allclose(attention.sum(1), 1)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    model.save(tmp_path / "mil.keras")
    again = keras.models.load_model(tmp_path / "mil.keras")
    np.testing.assert_allclose(again.predict([x, mask], verbose=0)[0], probabilities, rtol=1e-5)


def test_attention_mil_learns_which_tile_matters():
    rng = np.random.default_rng(0)
    n, tiles, dim = 160, 6, 8
    x = rng.normal(size=(n, tiles, dim)).astype("float32")
    y = rng.integers(0, 4, n)
    key = rng.integers(0, tiles, n)
    x[np.arange(n), key, :4] += 4 * np.eye(4)[y]      # one informative tile per bag, at a random slot
    mask = np.ones((n, tiles), bool)
    model = mil.train_mil(x[:120], mask[:120], y[:120], x[120:], mask[120:], y[120:], epochs=150)
    probabilities, attention = mil.predict_mil(model, x[120:], mask[120:])
    assert (probabilities.argmax(1) == y[120:]).mean() > 0.8
    assert (attention.argmax(1) == key[120:]).mean() > 0.8


def test_pluggable_encoder_from_a_keras_file(tmp_path):
    inputs = keras.Input((32, 32, 3))
    maps = keras.layers.Conv2D(5, 3, strides=2)(keras.layers.Rescaling(1 / 255)(inputs))
    keras.Model(inputs, maps).save(tmp_path / "enc.keras")
    encoder = encoders.keras_encoder(tmp_path / "enc.keras")
    tiles = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert encoder(tiles).shape == (2, 5)
    with pytest.raises(FileNotFoundError, match="nothing.keras"):
        encoders.keras_encoder(tmp_path / "nothing.keras")


@pytest.mark.slow
def test_kfold_ensemble_tta_and_comparison_end_to_end(tiny_data, shared_outputs, tmp_path):
    """The K-fold runs of table 1 (tests/test_compare.py trained them in the session's outputs; reused through
    their records) as an ensemble with TTA, and every extra variant on their folds."""
    from anndl.data import read_challenge
    from anndl.engine import compare, experiment

    table1 = compare.run_comparison("table1", tiny_data, shared_outputs, folds=2).provenance["runs"]
    prep = experiment.prepare(tiny_data, shared_outputs)
    runs = {"scratch_resnet": shared_outputs / table1["scratch ResNet"], "vit": shared_outputs / table1["ViT"]}
    for name, folder in runs.items():
        metrics = json.loads((folder / "metrics.json").read_text())
        assert {"oof_macro_f1", "oof_macro_f1_ci"} <= set(metrics)
        assert metrics["folds"] == 2 and metrics["model"] == name
        oof = pd.read_csv(folder / "oof_predictions.csv")
        assert sorted(oof.sample_index) == sorted(prep.clean.sample_index[prep.clean.status == "kept"])  # once each
    out = experiment.predict_run(list(runs.values()), tiny_data, tmp_path / "ensemble.csv", tta=True)
    note = json.loads(out.with_suffix(".json").read_text())
    assert len(note["runs"]) == 4 and note["tta"] is True
    manifest = read_challenge(tiny_data)
    assert len(pd.read_csv(out)) == (manifest.split == "test").sum()
    table, details = compare.compare_variants(prep, runs)
    assert {"scratch_resnet", "scratch_resnet + TTA", "ensemble of scratch_resnet + vit",
            "attention-MIL on scratch_resnet embeddings", "colour-histogram baseline (no CNN)",
            "majority class"} <= set(table.variant)
    assert (table.images == len(details["y_true"])).all()
    assert (table.ci95_low <= table.oof_macro_f1).all() and (table.oof_macro_f1 <= table.ci95_high).all()
    assert table.gain.iloc[0] == 0 and table.verdict.iloc[0].startswith("reference: ")  # says whether it learned
    for row in table.itertuples():   # the gain is the difference of the two out-of-fold scores
        assert row.gain == pytest.approx(row.oof_macro_f1 - table.oof_macro_f1.iloc[0], abs=2e-4)
        assert row.gain_ci95[0] <= row.gain <= row.gain_ci95[1]

    # a stain shift: the same tissue stained otherwise (same seed, each class its own site), scored by the runs
    # and the colour baseline trained on ``prep``; no TTA, ensemble or MIL rows when not asked for
    from anndl.data import synthetic
    from anndl.evaluate.baselines import baseline_predictions, colour_features

    twin = synthetic.generate(tmp_path / "twin", progress=False, **TINY, site_class_correlation=1.0)
    shifted = experiment.prepare(twin, tmp_path / "twin_work")
    table, details = compare.compare_variants(shifted, runs, tta=False, ensembles=False, with_mil=False,
                                              trained_on=prep)
    assert list(table.variant) == ["scratch_resnet", "vit", "colour-histogram baseline (no CNN)", "majority class"]
    kept = prep.clean.sample_index[prep.clean.status == "kept"]
    folds = pd.read_csv(runs["scratch_resnet"] / "folds.csv")
    expected = []
    for k in sorted(folds.fold.unique()):
        split = folds.assign(split=np.where(folds.fold == k, "val", "train"))
        expected.append(baseline_predictions(prep.manifest, split, colour_features(prep.manifest, kept),
                                             colour_features(shifted.manifest, kept)))
    expected = pd.concat(expected).set_index("sample_index").colour_histogram
    got = pd.Series(details["predictions"]["colour-histogram baseline (no CNN)"], index=details["images"])
    assert (got == expected.loc[got.index]).all()
    other = dataclasses.replace(prep, clean=prep.clean.assign(status="kept"))  # the outliers kept too
    with pytest.raises(ValueError, match="kept other images"):
        compare.compare_variants(shifted, runs, tta=False, with_mil=False, trained_on=other)


def _two_class_copy(data_copy):
    """The tiny folder relabelled into two classes (``classes.txt``: other, luminal)."""
    path = data_copy / "train_labels.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [line.split(",")[0] + ("," + ("luminal" if "Luminal" in line else "other"))
                                            for line in lines[1:]]) + "\n")
    (data_copy / "classes.txt").write_text("other\nluminal\n")
    return data_copy


@pytest.mark.slow
def test_another_label_set_runs_end_to_end(data_copy, tiny_data, tmp_path):
    from anndl.engine import compare, experiment

    folder = _two_class_copy(data_copy)
    prep = experiment.prepare(folder, tmp_path / "work")
    assert prep.classes == ("other", "luminal")
    experiment.train_folds(prep, tmp_path / "run", "scratch_resnet", "smoke", folds=2, epochs=1)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classes"] == ["other", "luminal"]
    model, _ = experiment.load_run(tmp_path / "run" / "fold_0")
    assert model.output_shape[-1] == 2
    oof = pd.read_csv(tmp_path / "run" / "oof_predictions.csv")
    assert set(oof.pred_hard) <= {"other", "luminal"}
    table, _ = compare.compare_variants(prep, {"scratch_resnet": tmp_path / "run"})
    assert "attention-MIL on scratch_resnet embeddings" in set(table.variant)
    submission = pd.read_csv(experiment.predict_run(tmp_path / "run", folder, tmp_path / "sub.csv"))
    assert set(submission.label) <= {"other", "luminal"} and len(submission) == TINY["n_test"]
    with pytest.raises(ValueError, match="predicts \\['other', 'luminal'\\]"):
        experiment.predict_run(tmp_path / "run", tiny_data, tmp_path / "wrong.csv")


@pytest.mark.real
@pytest.mark.skipif(not (HE_SAMPLES / "bach_roi").is_dir(), reason="real H&E samples not present")
def test_bach_samples_as_a_two_class_challenge_folder(tmp_path):
    from bench.common import bach_challenge
    from anndl.engine import experiment

    folder = bach_challenge(HE_SAMPLES / "bach_roi", tmp_path / "bach")
    prep = experiment.prepare(folder, tmp_path / "work")
    assert prep.classes == ("in_situ", "invasive")
    assert prep.manifest.query("split == 'train'").label.value_counts().to_dict() == {"invasive": 11, "in_situ": 6}
    assert (prep.clean.status == "kept").all()  # real tissue: nothing flagged, nothing lost
    assert set(prep.tiles[prep.tiles.split != "test"].sample_index) == set(prep.clean.sample_index)
    assert prep.data_note.startswith("real H&E: BACH ROI samples")
