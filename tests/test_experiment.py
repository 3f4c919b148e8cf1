"""The shared steps reuse earlier outputs only when they come from the same data and settings."""

import json

import numpy as np
import pandas as pd
import pytest

from anndl.core import artifacts
from anndl.data import outliers, synthetic, tiling
from anndl.engine import experiment


def test_prepare_reuses_only_outputs_of_the_same_data(tiny_data, tmp_path, capsys):
    first = experiment.prepare(tiny_data, tmp_path / "work")
    again = experiment.prepare(tiny_data, tmp_path / "work")
    assert capsys.readouterr().out.count("reusing") == 3  # clean, train tiles, test tiles
    assert again.tiles.equals(first.tiles) and again.split.equals(first.split)
    other = synthetic.generate(tmp_path / "other", n_train=16, n_test=2, scale=0.25, seed=99, progress=False)
    swapped = experiment.prepare(other, tmp_path / "work")
    assert "reusing" not in capsys.readouterr().out
    assert set(swapped.clean.sample_index) == {f"img_{i:04d}.png" for i in range(16)}
    recorded = json.loads((tmp_path / "work" / "clean" / "clean_summary.json").read_text())["data"]
    assert recorded == experiment.data_note(other, swapped.manifest) and "[fingerprint " in recorded
    smaller = experiment.prepare(other, tmp_path / "work", tiling_config=tiling.TilingConfig(tile_size=64))
    assert (smaller.tiles.x % 64 == 0).all() and len(smaller.tiles) > len(swapped.tiles)


def test_changed_cleaning_settings_or_outputs_redo_what_follows(tiny_data, tmp_path, capsys):
    experiment.prepare(tiny_data, tmp_path / "work")
    info_path = tmp_path / "work" / "clean" / "clean_summary.json"
    info_path.write_text(info_path.read_text().replace('"sticker_min_z": 10.0', '"sticker_min_z": 3.0'))
    capsys.readouterr()
    experiment.prepare(tiny_data, tmp_path / "work")  # an edited output: cleaned again, same result, tiles stand
    out = capsys.readouterr().out
    assert "clean_summary.json changed since it was recorded" in out and "cleaning it again" in out
    assert '"sticker_min_z": 10.0' in info_path.read_text()
    assert out.count("reusing") == 2 and "tiles.csv" in out.split("reusing")[1]  # train tiles, test tiles
    lenient = outliers.OutlierConfig(sticker_min_z=1e6)  # other settings: no sticker is flagged
    prep = experiment.prepare(tiny_data, tmp_path / "work", outlier_config=lenient)
    out = capsys.readouterr().out
    assert "made with settings config.sticker_min_z 10.0, not 1000000.0" in out
    assert out.count("reusing") == 1 and "tiles/test/tiles.csv" in out  # the test tiles do not depend on cleaning
    assert "sticker" not in set(prep.clean.status) and set(prep.split.sample_index) == set(
        prep.clean.sample_index[prep.clean.status == "kept"])


def test_train_run_trains_the_model_a_notebook_already_built(tiny_data, tmp_path):
    prep = experiment.prepare(tiny_data, tmp_path / "work")
    built = experiment.build_model("scratch_resnet", "smoke", prep.tiling.tile_size)
    again = experiment.build_model("scratch_resnet", "smoke", prep.tiling.tile_size)
    for a, b in zip(built.model.get_weights(), again.model.get_weights()):  # seeded: the same start wherever built
        np.testing.assert_array_equal(a, b)
    other_seed = experiment.build_model("scratch_resnet", "smoke", prep.tiling.tile_size, seed=7)
    assert any((a != b).any() for a, b in zip(built.model.get_weights(), other_seed.model.get_weights()))
    with pytest.raises(ValueError, match="was built as"):
        experiment.train_run(prep, tmp_path / "other", "scratch_resnet", "smoke", epochs=1, built=built,
                             overrides={"augment": True})
    result = experiment.train_run(prep, tmp_path / "run", "scratch_resnet", "smoke", epochs=1, built=built,
                                  with_baselines=False)
    assert result["model"] is built.model and (tmp_path / "run" / "model.keras").is_file()


def test_stain_augmentation_is_part_of_the_model_and_of_its_run_request():
    plain = experiment.build_model("scratch_resnet", "smoke", 32)
    jittered = experiment.build_model("scratch_resnet", "smoke", 32, stain_augment="light")
    names = {layer.name for layer in jittered.model.layers}
    assert "stain_augmentation" in names and "stain_augmentation" not in {layer.name for layer in plain.model.layers}
    assert jittered.settings.stain_augment == "light" != plain.settings.stain_augment


def test_fine_tuning_is_measured_each_phase_s_own_model_scored_on_the_held_out_images(tiny_data, tmp_path,
                                                                                       monkeypatch):
    """Phase 2's model is selected among phase 2's epochs on the selection split and scored on the held-out
    images even where it selects worse than phase 1; the final model is the phase that selected best."""
    prep = experiment.prepare(tiny_data, tmp_path / "work", tiling_config=tiling.TilingConfig(32, 32, 200))
    kept = prep.clean[prep.clean.status == "kept"]
    artifacts.write_csv(tiling.assign_folds(kept, 2, seed=1), tmp_path / "folds.csv")
    fold = experiment.fold_preps(prep, tmp_path)[0]
    assert set(fold.split.split) == {"train", "select", "val"}
    real_fit, chosen = experiment.fit, {}

    def fit(model, *args, phase=1, **kwargs):
        rows = real_fit(model, *args, phase=phase, **kwargs)
        if phase == 2:  # phase 2 now votes one class (not phase 1's most frequent) and selects worse than phase 1
            first = pd.read_csv(args[5] / "val_predictions_phase1.csv", keep_default_na=False).pred_hard
            chosen["class"] = next(c for c in prep.classes if c != first.mode()[0])
            bias = model.get_layer("head_logits").bias
            bias.assign(bias.numpy() + 100 * np.eye(len(prep.classes))[prep.classes.index(chosen["class"])])
            rows = [dict(r, val_image_macro_f1=-1.0) for r in rows]
        return rows

    monkeypatch.setattr(experiment, "fit", fit)
    result = experiment.train_run(fold, tmp_path / "run", "vit", "smoke", epochs=1, with_baselines=False)
    predictions = pd.read_csv(tmp_path / "run" / "val_predictions.csv", keep_default_na=False)
    assert (predictions.pred_hard_phase2 == chosen["class"]).all()          # phase 2's own model, scored
    assert (predictions.pred_hard_phase1 != predictions.pred_hard_phase2).any()
    assert (predictions.pred_hard == predictions.pred_hard_phase1).all()     # phase 1 selected best: the final model
    assert result["metrics"]["best_phase"] == 1 and result["metrics"]["selected_on"] == "select"
    held = set(fold.split.sample_index[fold.split.split == "val"])
    assert set(predictions.sample_index) == held                             # scored on the held-out images only
