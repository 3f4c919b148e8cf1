"""`anndl compare`: every named comparison on a tiny folder, its table against a hand computation, the CLI."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from anndl import cli
from anndl.core import artifacts
from anndl.core.labels import LABELS
from anndl.data import pipeline
from anndl.engine import compare
from anndl.evaluate import metrics
from anndl.evaluate.baselines import BASELINE_ROWS, COLOUR, MAJORITY
from anndl.notebook import interpret, report


@pytest.fixture(scope="module")
def compared(tiny_data, shared_outputs):
    """Every named comparison on the tiny folder, 2 folds, smoke profile, in the session's shared outputs (the
    notebooks' comparisons then reuse these runs)."""
    out = shared_outputs
    return out, {name: compare.run_comparison(name, tiny_data, out, folds=2) for name in compare.COMPARISONS}


def test_every_named_comparison_runs_and_scores_every_variant(compared, tiny_data):
    out, results = compared
    kept = artifacts.read_csv(out / "clean" / "clean_manifest.csv").query("status == 'kept'")
    for name, result in results.items():
        spec = compare.COMPARISONS[name]
        assert list(result.table.variant) == list(spec.variants) + list(BASELINE_ROWS), name  # baselines last
        variants = result.table[~result.table.variant.isin(BASELINE_ROWS)]
        assert variants.verdict.iloc[0] in ("reference: learned", f"reference: {metrics.NO_VERDICT}")
        assert set(variants.verdict.iloc[1:]) <= {"real difference", "no real difference (interval holds 0)",
                                                  metrics.NO_VERDICT, metrics.REFERENCE_NO_VERDICT}
        for row in variants.itertuples():  # a verdict between two rows only when both learned
            assert row.learned in (True, False) and row.beats_colour in (True, False)
            if "real difference" in row.verdict:
                assert row.learned and variants.learned.iloc[0]
        assert set(result.table.verdict[result.table.variant.isin(BASELINE_ROWS)]) == {"baseline"}
        assert (result.table.images == len(kept)).all(), name   # every kept image predicted out of fold, once
        assert sorted(result.predictions.sample_index) == sorted(kept.sample_index)
        assert (variants.train_seconds > 0).all() and (variants.epochs > 0).all()
        for row in variants.itertuples():  # a variant's hard-voting interval is its K-fold run's, as recorded
            variant = compare.VARIANTS[row.variant]
            if variant.rule == "hard" and variant.phase is None:
                recorded = artifacts.read_json(out / result.provenance["runs"][row.variant] / "metrics.json")
                assert [row.ci95_low, row.ci95_high] == recorded["oof_macro_f1_ci"], (name, row.variant)
        line = result.provenance_line()
        assert "smoke profile, 2 folds" in line and str(tiny_data.parent) not in line
        text = interpret.comparison(result)
        assert "cannot confirm or refute" in text   # smoke profile, synthetic data: never a result
        if spec.report:
            assert spec.report in text and compare.SOURCE in text
    # the same request again reuses the recorded comparison: nothing trains
    again = compare.run_comparison("losses", tiny_data, out, folds=2)
    assert again.table.drop(columns=["train_seconds"]).equals(results["losses"].table.drop(columns=["train_seconds"]))


def test_variants_that_differ_only_in_scoring_share_one_run(compared):
    _, results = compared
    voting = results["voting"].provenance["runs"]
    assert voting["hard voting"] == voting["mask-weighted soft voting"]
    assert voting["hard voting"] == results["losses"].provenance["runs"]["cross-entropy"]
    tuned = results["fine_tuning_vit"].provenance["runs"]
    assert tuned["ViT, phase 1 (head only)"] == tuned["ViT, phase 2 (fine-tuned)"] == results["table1"].provenance["runs"]["ViT"]
    assert len(set(results["augmentation"].provenance["runs"].values())) == 4


def test_table1_rows_say_their_weights_and_carry_the_reports_column(compared):
    _, results = compared
    shown = report.comparison_table(results["table1"]).set_index("variant")
    assert shown.loc["ConvNeXt", "weights"] == shown.loc["ViT", "weights"] == "random weights"
    assert shown.loc["scratch ResNet", "weights"] == "trained from scratch"
    assert shown["report: test F1 (real data)"].tolist() == ["0.3436", "0.3665", "0.4071", "—", "—"]
    assert "report: test F1 (real data)" not in report.comparison_table(results["losses"])


def test_fine_tuning_reads_each_phase_of_the_same_runs(compared):
    out, results = compared
    run = out / results["fine_tuning_convnext"].provenance["runs"]["ConvNeXt, phase 1 (head only)"]
    oof = artifacts.read_csv(run / "oof_predictions.csv")
    assert {"pred_hard_phase1", "pred_soft_phase1", "pred_hard_phase2", "pred_soft_phase2"} <= set(oof.columns)
    for k in range(2):  # the final model is the phase that scored best on the fold's selection images
        log = artifacts.read_csv(run / f"fold_{k}" / "log.csv")
        chosen = int(log.groupby("phase").val_image_macro_f1.max().idxmax())
        fold = oof[oof.fold == k]
        assert (fold[f"pred_hard_phase{chosen}"] == fold.pred_hard).all()
    phase1 = results["fine_tuning_convnext"].predictions.set_index("sample_index")["ConvNeXt, phase 1 (head only)"]
    assert (phase1.loc[oof.sample_index].to_numpy() == oof.pred_hard_phase1.to_numpy()).all()
    cost = results["fine_tuning_convnext"].table.set_index("variant")  # phase 1's model cost phase 1 only
    logs = [artifacts.read_csv(run / f"fold_{k}" / "log.csv") for k in range(2)]
    assert cost.loc["ConvNeXt, phase 1 (head only)", "epochs"] == np.mean([(log.phase == 1).sum() for log in logs])
    assert cost.loc["ConvNeXt, phase 2 (fine-tuned)", "epochs"] == np.mean([len(log) for log in logs])
    phase_seconds = [artifacts.read_json(run / f"fold_{k}" / "cost.json")["phase_seconds"] for k in range(2)]
    phase1_seconds = sum(s[0] for s in phase_seconds)
    assert cost.loc["ConvNeXt, phase 1 (head only)", "train_seconds"] == pytest.approx(phase1_seconds, abs=0.11)


def _fake_kfold(folder: Path, oof: pd.DataFrame, seconds: float) -> Path:
    """A finished-looking K-fold run of two folds with the given out-of-fold predictions and cost."""
    folder.mkdir(parents=True)
    artifacts.write_csv(oof, folder / "oof_predictions.csv")
    for k in range(2):
        artifacts.write_json(folder / f"fold_{k}" / "metrics.json", {
            "epochs_run": 3, "weights": "random initialisation (trained from scratch)"})
        artifacts.write_json(folder / f"fold_{k}" / "cost.json", {
            "train_seconds": seconds, "predict_seconds": 0.5, "validation_images": len(oof) // 2})
    artifacts.write_json(folder / artifacts.RECORD, {"fold_runs": ["fold_0", "fold_1"]})
    return folder


def _hand_paired(y, a, b, seed, n_boot=1000):
    rows = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))
    diffs = [f1_score(y[r], b[r], average="macro", labels=range(4), zero_division=0)
             - f1_score(y[r], a[r], average="macro", labels=range(4), zero_division=0) for r in rows]
    return np.percentile(diffs, [2.5, 97.5])


def test_table_matches_a_hand_computation(tmp_path):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 60)
    ref = np.where(rng.random(60) < 0.4, y, rng.integers(0, 4, 60))
    better = np.where(rng.random(60) < 0.85, y, rng.integers(0, 4, 60))
    names = [f"img_{i:04d}.png" for i in range(60)]
    frame = lambda p, soft: pd.DataFrame({"sample_index": names, "label": [LABELS[i] for i in y],  # noqa: E731
                                          "pred_hard": [LABELS[i] for i in p], "pred_soft": [LABELS[i] for i in soft],
                                          "fold": np.arange(60) % 2})
    runs = {"a": _fake_kfold(tmp_path / "a", frame(ref, better), 10.0),
            "b": _fake_kfold(tmp_path / "b", frame(better, ref).sample(frac=1, random_state=0), 20.0)}
    variants = {"a": compare.Variant(), "b": compare.Variant(settings={"loss": "focal"}),
                "a soft": compare.Variant(rule="soft")}
    rows, predictions = compare.score_runs(variants, {**runs, "a soft": runs["a"]}, LABELS, seed=5)
    table = pd.DataFrame(rows).set_index("variant")
    assert table.loc["a", "oof_macro_f1"] == pytest.approx(f1_score(y, ref, average="macro"), abs=1e-4)
    assert table.loc["b", "oof_macro_f1"] == pytest.approx(f1_score(y, better, average="macro"), abs=1e-4)
    # b's rows were shuffled: aligned by image before pairing; a's soft column is b's predictions
    assert table.loc["a soft", "oof_macro_f1"] == pytest.approx(table.loc["b", "oof_macro_f1"])
    low, high = _hand_paired(y, ref, better, seed=5)
    assert table.loc["b", "gain_ci95"] == pytest.approx([low, high], abs=1e-4)
    assert table.loc["b", "gain"] == pytest.approx(f1_score(y, better, average="macro") - f1_score(y, ref, average="macro"),
                                                   abs=1e-4)
    assert table.loc["b", "verdict"] == ("real difference" if low > 0 or high < 0 else
                                         "no real difference (interval holds 0)")
    assert low > 0  # 85% vs 40% correct on 60 images: a real difference
    assert table.loc["a", "verdict"] == "reference: learned" and table.loc["a", "gain"] == 0
    assert table.loc["a", "learned"] and table.loc["b", "learned"]  # both beat the majority class and the null
    # the majority class of each fold, counted on the other fold's labels, has its row (and a baseline's verdict)
    folds = np.arange(60) % 2
    majority = np.array([np.bincount(y[folds != k], minlength=4).argmax() for k in (0, 1)])[folds]
    assert table.loc["majority class", "oof_macro_f1"] == pytest.approx(
        f1_score(y, majority, average="macro", labels=range(4), zero_division=0), abs=1e-4)
    assert table.loc["majority class", "verdict"] == "baseline" and table.loc["majority class", "learned"] is None
    assert table.loc["b", "train_seconds"] == 40.0 and table.loc["b", "ms_per_image"] == pytest.approx(1000 / 60, abs=0.1)
    assert table.loc["b", "epochs"] == 3
    ci = metrics.bootstrap_ci(y, better, seed=5)
    assert [table.loc["b", "ci95_low"], table.loc["b", "ci95_high"]] == pytest.approx(ci, abs=1e-4)
    assert list(predictions.columns) == ["sample_index", "y_true", "a", "b", "a soft", "majority class"]


def test_scoring_refuses_runs_of_other_images_and_missing_phases(tmp_path):
    names = [f"img_{i:04d}.png" for i in range(8)]
    base = pd.DataFrame({"sample_index": names, "label": LABELS[0], "pred_hard": LABELS[0], "pred_soft": LABELS[1],
                         "fold": np.arange(8) % 2})
    a = _fake_kfold(tmp_path / "a", base, 1.0)
    b = _fake_kfold(tmp_path / "b", base.iloc[:6], 1.0)
    with pytest.raises(ValueError, match="different images"):
        compare.score_runs({"a": compare.Variant(), "b": compare.Variant(rule="soft")}, {"a": a, "b": b}, LABELS)
    with pytest.raises(ValueError, match="pred_hard_phase1.*one training phase"):
        compare.score_runs({"a": compare.Variant(), "a1": compare.Variant(phase=1)}, {"a": a, "a1": a}, LABELS)


def test_a_row_that_could_not_run_says_why_and_has_no_score(tmp_path):
    names = [f"img_{i:04d}.png" for i in range(8)]
    base = pd.DataFrame({"sample_index": names, "label": LABELS[0], "pred_hard": LABELS[0], "pred_soft": LABELS[1],
                         "fold": np.arange(8) % 2})
    a = _fake_kfold(tmp_path / "a", base, 1.0)
    rows, _ = compare.score_runs({"a": compare.Variant(), "ViT": compare.Variant("vit")}, {"a": a}, LABELS,
                                 refused={"ViT": "no ImageNet weights here"})
    assert rows[1]["verdict"] == "not run: no ImageNet weights here" and np.isnan(rows[1]["oof_macro_f1"])


def test_runs_that_did_not_learn_get_no_verdict_beside_both_baselines(tmp_path):
    rng = np.random.default_rng(13)  # guessing passes the gate 5% of the time: a seed where it does not
    y = rng.choice(4, 120, p=[0.4, 0.3, 0.2, 0.1])
    guess, other = rng.integers(0, 4, 120), np.where(rng.random(120) < 0.3, 3, rng.integers(0, 4, 120))
    names = [f"img_{i:04d}.png" for i in range(120)]
    frame = lambda p: pd.DataFrame({"sample_index": names, "label": [LABELS[i] for i in y],  # noqa: E731
                                    "pred_hard": [LABELS[i] for i in p], "pred_soft": [LABELS[i] for i in p],
                                    "fold": np.arange(120) % 2})
    runs = {"a": _fake_kfold(tmp_path / "a", frame(guess), 1.0), "b": _fake_kfold(tmp_path / "b", frame(other), 1.0)}
    colour = pd.Series(rng.integers(0, 4, 120), index=names[::-1])  # aligned by image, not by order
    rows, predictions = compare.score_runs({"a": compare.Variant(), "b": compare.Variant(settings={"loss": "focal"})},
                                           runs, LABELS, colour=colour)
    table = pd.DataFrame(rows).set_index("variant")
    assert list(table.index) == ["a", "b", COLOUR, MAJORITY]
    assert table.loc["a", "verdict"] == f"reference: {metrics.NO_VERDICT}"
    assert table.loc["b", "verdict"] == metrics.NO_VERDICT
    assert not table.loc["a", "learned"] and not table.loc["b", "learned"]
    assert table.loc["b", "beats_colour"] in (True, False) and table.loc[COLOUR, "learned"] is None
    assert table.loc[COLOUR, "oof_macro_f1"] == pytest.approx(
        metrics.macro_f1(y, colour.loc[names].to_numpy()), abs=1e-4)
    assert list(predictions.columns) == ["sample_index", "y_true", "a", "b", COLOUR, MAJORITY]
    # a run's out-of-fold predictions without the fold of each image: its majority class cannot be counted
    with pytest.raises(ValueError, match="no fold column"):
        compare.score_runs({"a": compare.Variant()}, {"a": _fake_kfold(tmp_path / "c", frame(guess).drop(
            columns="fold"), 1.0)}, LABELS)


def test_an_unknown_comparison_is_named():
    with pytest.raises(ValueError, match="unknown comparison 'lossses'"):
        compare.run_comparison("lossses", ".", ".")


def test_cli_compare_reuses_runs_and_prints_table_and_interpretation(compared, tiny_data, capsys):
    out, _ = compared
    assert cli.main(["compare", "voting", "--data", str(tiny_data), "--out", str(out), "--folds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "reusing comparison voting" in printed and "| mask-weighted soft voting |" in printed
    assert interpret.HEADING in printed and "wrote" in printed
    assert cli.main(["compare", "--list"]) == 0
    assert "augmentation: data augmentation" in capsys.readouterr().out
    assert cli.main(["compare", "--data", str(tiny_data), "--out", str(out)]) == 2
    assert "name a comparison" in capsys.readouterr().err


def test_an_epoch_cap_that_binds_no_phase_shares_the_run(compared, tiny_data, capsys):
    """The smoke profile trains 2 epochs (1 per transfer phase): a cap of 10 is the same run as no cap (reused,
    nothing trains), a cap of 1 is another request."""
    out, results = compared
    ref, vit = compare.VARIANTS["cross-entropy"], compare.VARIANTS["ViT"]
    assert compare.binding_cap(ref, "smoke", None) is None and compare.binding_cap(ref, "smoke", 10) is None
    assert compare.binding_cap(ref, "smoke", 2) is None and compare.binding_cap(ref, "smoke", 1) == 1
    assert compare.binding_cap(vit, "smoke", 1) is None and compare.binding_cap(vit, "full", 19) == 19
    longer = compare.Variant(settings={"epochs": 5})
    assert compare.binding_cap(longer, "smoke", 3) == 3 and compare.binding_cap(longer, "smoke", 5) is None
    capped = compare.run_comparison("losses", tiny_data, out, folds=2, epochs=10)
    assert capped.provenance["runs"] == results["losses"].provenance["runs"]
    assert "Epoch 1/" not in capsys.readouterr().out and capped.provenance["epochs"] == 10


def test_oversampling_doubles_the_named_class_and_bad_values_are_refused(tiny_data, tmp_path):
    from anndl.core.config import ModelSettings, TrainConfig
    from anndl.engine import experiment

    prep = experiment.prepare(tiny_data, tmp_path, seed=42)
    train = prep.tiles[prep.tiles.split == "train"]
    triple = LABELS.index("Triple negative")
    _, n = pipeline.training_tiles(prep.tiles, prep.manifest, ("train",), tile_size=prep.tiling.tile_size)
    pairs, doubled = pipeline.training_tiles(prep.tiles, prep.manifest, ("train",), tile_size=prep.tiling.tile_size,
                                             oversample=triple)
    labels = np.array([int(label) for _, label in pairs.as_numpy_iterator()])
    assert n == len(train) and doubled == n + (train.label == "Triple negative").sum() == len(labels)
    assert (labels == triple).sum() == 2 * (train.label == "Triple negative").sum()
    with pytest.raises(ValueError, match="augment must be one of"):
        ModelSettings(augment="strong")
    with pytest.raises(ValueError, match="filters must be a positive integer"):
        ModelSettings(filters=0)
    assert ModelSettings(augment=True).augment == "both"
    with pytest.raises(ValueError, match="'Triple Negative' is not a class of this data"):
        experiment.train_run(prep, tmp_path / "run", overrides={"oversample": "Triple Negative"}, epochs=1)
    with pytest.raises(ValueError, match="filters sets the scratch ResNet's width; vit"):
        experiment.train_run(prep, tmp_path / "vit", "vit", overrides={"filters": 16}, epochs=1)
    assert TrainConfig(oversample="Triple negative").oversample == "Triple negative"


def test_a_profile_leaves_out_its_named_variants():
    oversampled = "Triple negative ×2, both augmented"
    assert oversampled in compare.profile_variants("augmentation", "full")
    assert oversampled not in compare.profile_variants("augmentation", "cpu")
    with pytest.raises(ValueError, match="unknown comparison"):
        compare.profile_variants("nope", "cpu")
    provenance = {"profile": "cpu", "folds": 3, "epochs": None, "seed": 42, "precision": None, "data": "synthetic",
                  "data_fingerprint": "f", "machine": "m", "commit": "c", "left_out": [oversampled]}
    result = compare.ComparisonResult("augmentation", pd.DataFrame(), provenance, pd.DataFrame(), Path("."))
    line = result.provenance_line()
    assert line.endswith(f"left out at this profile (its time budget): {oversampled}")
