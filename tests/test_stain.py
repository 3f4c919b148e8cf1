"""Stain handling: HED augmentation layer, Macenko / Reinhard normalisation, synthetic stain sites."""

import json
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from anndl.core import artifacts
from anndl.core.labels import LABELS
from anndl.data import read_challenge, read_image
from anndl.data import stain, synthetic
from anndl.notebook.report import scores_markdown


def _tiles(n=4, size=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("float32")


def rgb_to_hed(image):
    """H, E, DAB concentrations (optical-density units) of an RGB image in [0, 255], in numpy."""
    return -np.log((np.asarray(image, np.float64) + 1.0) / 256.0) @ stain.HED_FROM_RGB


def hed_to_rgb(hed):
    """Inverse of :func:`rgb_to_hed`, clipped to [0, 255]."""
    return np.clip(256.0 * np.exp(-(np.asarray(hed, np.float64) @ stain.RGB_FROM_HED)) - 1.0, 0.0, 255.0)


def test_ruifrok_matrix_is_scikit_images_and_deconvolution_inverts():
    assert stain.RGB_FROM_HED.tolist() == [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]
    x = _tiles()
    np.testing.assert_allclose(hed_to_rgb(rgb_to_hed(x)), x, atol=1e-6)
    # the layer's own tensor path: deconvolve, (almost) no jitter, reconvolve
    layer = stain.HEDJitter(1e-7, seed=0)
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), x, atol=0.02)


def test_hed_jitter_is_identity_at_zero_strength_and_in_inference():
    x = _tiles()
    assert np.array_equal(np.asarray(stain.HEDJitter(0.0)(x, training=True)), x)
    strong = stain.HEDJitter("strong", seed=1)
    assert np.array_equal(np.asarray(strong(x, training=False)), x)
    y = np.asarray(strong(x, training=True))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    assert np.abs(y - x).mean() > 3  # it does change colours in training
    # per tile: tiles get different draws
    deltas = (y - x).reshape(len(x), -1).mean(1)
    assert np.ptp(deltas) > 0.5
    assert stain.HED_PRESETS == {"light": 0.05, "strong": 0.2}
    with pytest.raises(ValueError, match="strength"):
        stain.HEDJitter("medium")


def test_hed_jitter_is_seeded_serialisable_and_runs_in_tf_data(tmp_path):
    import tensorflow as tf

    x = _tiles()
    a = np.asarray(stain.HEDJitter("light", seed=3)(x, training=True))
    b = np.asarray(stain.HEDJitter("light", seed=3)(x, training=True))
    np.testing.assert_allclose(a, b)
    inputs = keras.Input((24, 24, 3))
    model = keras.Model(inputs, keras.layers.Rescaling(1 / 255)(stain.HEDJitter("strong", seed=2)(inputs)))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    layer = [la for la in loaded.layers if isinstance(la, stain.HEDJitter)][0]
    assert layer.sigma == 0.2 and layer.seed == 2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), x / 255, atol=1e-6)  # inference: identity
    light = stain.HEDJitter("light", seed=0)  # made outside the map: its seed state is a variable
    ds = tf.data.Dataset.from_tensor_slices(x.astype("uint8")).map(lambda t: light(t, training=True))
    out = [t.numpy() for t in ds]
    assert out[0].shape == (24, 24, 3) and out[0].dtype == np.float32


def _same_tissue_two_sites(i, j, seed=3, size=320):
    a, mask = synthetic.render_tissue(np.random.default_rng(seed), size, size, "HER2(+)", synthetic.SITES[i])
    b, mask_b = synthetic.render_tissue(np.random.default_rng(seed), size, size, "HER2(+)", synthetic.SITES[j])
    assert np.array_equal(mask, mask_b)  # same tissue, different stain
    return a, b, mask


def _site_table(tmp_path, correlation, n=400):
    out = synthetic.generate(tmp_path / f"c{correlation}", n_train=n, n_test=1, scale=0.02, seed=1, progress=False,
                             stain_sites=len(synthetic.SITES), site_class_correlation=correlation)
    sites = pd.read_csv(out / synthetic.SITES_FILE)
    labels = pd.read_csv(out / "train_labels.csv")
    train = sites[sites.split == "train"].merge(labels, on="sample_index", suffixes=("", "_csv"))
    assert (train.label == train.label_csv).all() and len(train) == n
    stickers = pd.read_csv(out / "planted_outliers.csv").query("kind == 'sticker'").sample_index
    train = train[~train.sample_index.isin(stickers)]  # a sticker copies its twin's stain
    return pd.crosstab(train.label, train.site), train


@pytest.mark.parametrize("method", stain.METHODS)
def test_normalisation_brings_two_stains_of_one_tissue_closer(method):
    reference_image, _, reference_mask = _same_tissue_two_sites(0, 0, seed=11)
    reference = stain.fit_reference([reference_image], [reference_mask], source="one synthetic image")
    json.dumps(reference.to_dict())  # recordable
    assert stain.StainReference.from_dict(reference.to_dict()) == reference
    normalizer = stain.StainNormalizer(reference, method)
    for i, j in [(2, 3), (1, 4)]:
        a, b, mask = _same_tissue_two_sites(i, j)
        na, nb = normalizer(a, mask), normalizer(b, mask)
        assert na.dtype == np.uint8 and na.shape == a.shape
        rgb = nb.astype(int)  # no green tint anywhere (background and lumina included)
        assert not ((rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2])) > 40).any()

        def mean_colour_gap(x, y):
            return np.linalg.norm(x[mask].mean(0) - y[mask].astype(float).mean(0))

        assert mean_colour_gap(na, nb) < 0.5 * mean_colour_gap(a, b), (i, j)
        if method == "macenko":  # pixel by pixel as well
            assert np.abs(na.astype(float) - nb)[mask].mean() < 0.3 * np.abs(a.astype(float) - b)[mask].mean()
    assert normalizer.counts == {"roi": 4, "whole_image": 0, "reference": 0}


def test_normalisation_survives_images_without_tissue():
    image, _, mask = _same_tissue_two_sites(0, 0)
    reference = stain.fit_reference([image], [mask])
    blank = np.full((40, 50, 3), 236, np.uint8)
    for method in stain.METHODS:
        normalizer = stain.StainNormalizer(reference, method)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = normalizer(blank, np.zeros((40, 50), bool))
            normalizer(image, np.zeros(mask.shape, bool))  # empty ROI, tissue elsewhere
        assert out.shape == blank.shape and out.dtype == np.uint8
        assert normalizer.counts == {"roi": 0, "whole_image": 1, "reference": 1}
        assert len(caught) == 2
    with pytest.raises(stain.StainEstimationError):
        stain.fit_reference([blank])


def test_sites_are_independent_of_class_unless_switched_on(tmp_path):
    table, _ = _site_table(tmp_path, 0.0)
    assert table.shape == (len(LABELS), len(synthetic.SITES))
    assert chi2_contingency(table)[1] > 0.01                      # independent (chi-square)
    table, train = _site_table(tmp_path, 1.0)
    assert (train.site == train.label.map(LABELS.index) % len(synthetic.SITES)).all()
    table, _ = _site_table(tmp_path, 0.6)
    chi2, p, *_ = chi2_contingency(table)
    assert p < 1e-10


def test_site_switch_arguments(tmp_path):
    args = dict(n_train=8, n_test=1, scale=0.05, progress=False)
    two = synthetic.generate(tmp_path / "two", stain_sites=2, site_class_correlation=True, **args)
    sites = pd.read_csv(two / synthetic.SITES_FILE)
    assert set(sites.site) <= {0, 1} and (sites.site_class_correlation == 1.0).all()
    for bad in (dict(stain_sites=9), dict(site_class_correlation=1.5), dict(stain_sites=0)):
        with pytest.raises(ValueError):
            synthetic.generate(tmp_path / "bad", **args, **bad)


def test_no_site_makes_green_dominant_pixels():
    for k, site in enumerate(synthetic.SITES):
        rgb, _ = synthetic.render_tissue(np.random.default_rng(k), 200, 200, "Triple negative", site)
        rgb = rgb.astype(int)
        assert not ((rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2])) > 40).any(), site.name


def test_normalised_folder_is_a_recorded_challenge_folder(tiny_data, tmp_path, monkeypatch):
    from bench.common import write_normalized_folder  # bench/bench_stain.py's

    out = write_normalized_folder(tiny_data, tmp_path / "norm", "macenko", max_reference_images=8, progress=False)
    manifest = read_challenge(out)
    assert len(manifest) == len(read_challenge(tiny_data))
    record = json.loads((out / "record.json").read_text())
    assert record["stage"] == "stain" and record["settings"]["method"] == "macenko"
    assert record["settings"]["reference"]["n_images"] >= 1
    row = manifest.iloc[0]
    assert read_image(row.image_path).shape[:2] == (row.height, row.width)
    mtime = (out / "record.json").stat().st_mtime_ns
    write_normalized_folder(tiny_data, out, "macenko", max_reference_images=8, progress=False)
    assert (out / "record.json").stat().st_mtime_ns == mtime  # reused


def test_models_take_an_optional_stain_augmentation(tmp_path):
    from anndl.core.config import ScratchResNetConfig
    from anndl.models import networks

    model = networks.scratch_resnet(ScratchResNetConfig(filters=4, stacks=1, blocks_per_stack=1), tile_size=32,
                                  stain_augment="strong")
    assert isinstance(model.get_layer("stain_augmentation"), stain.HEDJitter)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = _tiles(2, 32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    plain = networks.scratch_resnet(ScratchResNetConfig(filters=4, stacks=1, blocks_per_stack=1), tile_size=32)
    assert "stain_augmentation" not in [layer.name for layer in plain.layers]


def test_stain_examples_figure(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from anndl.notebook import plots

    image, other, mask = _same_tissue_two_sites(3, 2, size=160)
    reference = stain.fit_reference([image], [mask])
    fig = plots.stain_examples([("dark", image, mask), ("blue-pale", other, None)], reference, tile_size=96,
                               n_augment=1)
    assert len(fig.axes) == 2 * 5
    plots.save_fig(fig, "stain", tmp_path)
    assert (tmp_path / "stain.png").stat().st_size > 0


def test_pipeline_normalises_each_image_on_its_roi_before_cutting(tiny_data):
    from anndl.data import pipeline, tiling
    from anndl.data import read_mask

    manifest = read_challenge(tiny_data)
    test = manifest[manifest.split == "test"].head(2)
    tiles = tiling.tile_images(test.assign(label=""), tiling.TilingConfig(), progress=False)
    reference = stain.reference_from_manifest(manifest, max_images=4)
    normalizer = stain.StainNormalizer(reference, "macenko")
    ds = pipeline.tile_dataset(tiles, manifest, ("test",), batch_size=None, with_labels=False, stain=normalizer)
    got = np.stack([tile.numpy() for tile, _, _ in ds])
    plain = np.stack([tile.numpy() for tile, _, _ in pipeline.tile_dataset(
        tiles, manifest, ("test",), batch_size=None, with_labels=False)])
    expected = []
    for row in test.itertuples():  # normalise the whole image on its ROI mask, then cut its tiles
        image = normalizer(read_image(row.image_path), read_mask(row.mask_path))
        for t in tiles[tiles.sample_index == row.sample_index].itertuples():
            expected.append(image[t.y:t.y + 224, t.x:t.x + 224])
    np.testing.assert_array_equal(got, np.stack(expected))
    assert np.abs(got.astype(int) - plain).mean() > 1  # it did change the colours


def test_normalizer_settings_round_trip_and_refuse_other_constants():
    reference = stain.fit_reference([_same_tissue_two_sites(0, 1)[0]])
    settings = stain.StainNormalizer(reference, "reinhard").settings()
    again = stain.normalizer_from_settings(json.loads(json.dumps(settings)))
    assert again.method == "reinhard" and again.settings() == settings
    assert stain.normalizer_from_settings(None) is None
    with pytest.raises(ValueError, match="other constants"):
        stain.normalizer_from_settings({**settings, "io": 250})


def test_a_stain_normalised_run_records_it_and_predicts_through_it(tiny_data, tmp_path, capsys):
    from anndl.core import artifacts
    from anndl.engine import experiment

    prep = experiment.prepare(tiny_data, tmp_path / "work", stain_normalize="macenko")
    assert prep.stain["method"] == "macenko" and (tmp_path / "work" / "stain_macenko" / "record.json").is_file()
    plain = experiment.prepare(tiny_data, tmp_path / "work")
    assert plain.stain is None and plain.tiles_id == prep.tiles_id  # tiles are cut from masks, whatever the stain
    experiment.train_run(prep, tmp_path / "run", "scratch_resnet", "smoke", epochs=1, with_baselines=False)
    assert "tiles stain-normalised on decoding: macenko" in capsys.readouterr().out
    config = artifacts.read_json(tmp_path / "run" / "config.json")
    assert config["stain_normalization"] == prep.stain
    assert artifacts.read_json(tmp_path / "run" / "record.json")["settings"]["stain_normalization"] == prep.stain
    # prediction applies the run's normalisation to the test tiles: other probabilities than without it
    test = prep.manifest[prep.manifest.split == "test"]
    tiles = prep.tiles[prep.tiles.split == "test"]
    normalised = experiment.ensemble_probabilities(tmp_path / "run", tiles, prep.manifest, ("test",))
    assert experiment.run_stain([tmp_path / "run"], [config]).settings() == prep.stain
    submission = experiment.predict_run(tmp_path / "run", tiny_data, tmp_path / "sub.csv")
    assert len(pd.read_csv(submission)) == len(test)
    assert artifacts.read_json(submission.with_suffix(".json"))["stain_normalization"] == prep.stain
    with pytest.raises(ValueError, match="differently stain-normalised"):
        experiment.run_stain(["a", "b"], [config, {**config, "stain_normalization": None}])
    from anndl.data import pipeline
    from anndl.engine.inference import predict_tiles

    model, _ = experiment.load_run(tmp_path / "run")
    unnormalised, _, _ = predict_tiles(model, pipeline.tile_dataset(tiles, prep.manifest, ("test",),
                                                                    with_labels=False), False)
    assert normalised.probabilities.shape == unnormalised.shape
    assert not np.allclose(normalised.probabilities, unnormalised, atol=1e-6)
    # the same run asked for without normalisation is another request: trained again, not reused
    experiment.train_run(plain, tmp_path / "run", "scratch_resnet", "smoke", epochs=1, with_baselines=False)
    assert "training it again" in capsys.readouterr().out


def test_the_bench_tables_give_no_verdict_at_chance_and_name_who_learned_the_colour(tmp_path):
    """bench/results' stain tables predate the learning gate (notebook 07 shows them through bench/stain_compare.py):
    a row learned only when its interval clears chance and the majority class, so a reference at chance gets no
    "real difference" against it; the stain-shift sentence names who learned the colour."""
    from bench import stain_compare as bench

    shifted, _ = bench.read_table(bench.RESULTS / "stain_shortcut_stain_shift.md")   # no stain handling: 0.248
    table, floor = bench.gated(shifted)
    assert floor == 0.25 and not table.learned.iloc[0]
    text = bench.differences(table, floor)
    assert "real difference" not in text.replace("no real difference", "") and "did not learn" in text, text
    shown = scores_markdown(table)   # the table shown beside that sentence holds no verdict at chance either
    assert shown.splitlines()[2].endswith("| reference: did not learn |") and "| real difference |" not in shown
    assert "| -0.039 (-0.074 to -0.004) | no verdict: an interval not above 0.250" in shown
    assert "| majority class | 0.123 | 0.112–0.133 | -0.126 (-0.160 to -0.090) | baseline |" in shown
    sites, floor = bench.gated(bench.read_table(bench.RESULTS / "stain_sites.md")[0])  # all above chance: verdicts stand
    text = bench.differences(sites, floor)
    assert "better by a real difference: Macenko normalisation (+0.050)" in text, text
    assert "majority class (-" not in text  # baselines are set apart, never a verdict
    assert "| Macenko normalisation | 0.464 | 0.434–0.494 | +0.050 (+0.020 to +0.080) | real difference |" \
        in scores_markdown(sites)

    def scores(rows):
        return pd.DataFrame([{"variant": v, "oof_macro_f1": f, "ci95_low": f - 0.03, "ci95_high": f + 0.03}
                             for v, f in rows])
    inside = scores([("none", 0.90), ("Macenko", 0.40), ("colour", 0.95), ("majority class", 0.12)])
    moved = bench.stain_shift(inside, scores([("none", 0.13), ("Macenko", 0.38), ("colour", 0.10),
                                              ("majority class", 0.12)]))
    assert "none falls from 0.900 to 0.130 (no better than the majority class: it learned the colour)" in moved
    assert "Macenko falls from 0.400 to 0.380;" in moved and "majority class falls" not in moved
    kept = bench.stain_shift(inside, scores([("none", 0.92), ("majority class", 0.12)]))
    assert "none rises from 0.900 to 0.920." in kept and "the interval of none still clears chance (0.25)." in kept
    assert "Under the shift the interval of Macenko still clears chance (0.25)." in moved  # none 0.13, colour 0.10
    whole = bench.shown(data_note="synthetic at data/synthetic [fingerprint 5f5ba5068e1e]")
    assert "data/synthetic [fingerprint 5f5ba5068e1e] (the same data as this rendering)" in whole
    assert "[fingerprint 2f6205179fee] (**not** the data of this rendering)" in whole
    assert whole.count("The record names no commit.") == 3  # the tables predate the commit in their settings
    assert whole.count("the fingerprint of the data it was trained on") == 1  # the stain shift's record
    assert "none of them (no stain handling, HED augmentation (strong), Macenko normalisation) shows" in whole
    (tmp_path / "stain_sites.md").write_text("| a table without its settings |\n")
    with pytest.raises(artifacts.ArtifactError, match="stain_sites.md: no settings block"):
        bench.shown(tmp_path)
