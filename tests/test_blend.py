"""Blending K-fold runs (issue 37): weights chosen per fold without the images it scores, from the runs'
out-of-fold probabilities alone; a blend of a tile network and a head on a timm encoder, and its submission."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anndl import cli
from anndl.core import artifacts
from anndl.engine import runs as runs_
from anndl.evaluate.voting import probability_columns

CLASSES = ["Luminal A", "Luminal B", "HER2(+)", "Triple negative"]
TIMM = Path(__file__).parent / "data" / "timm"


def _kfold_run(folder: Path, model: str, y: np.ndarray, folds: np.ndarray, probabilities: np.ndarray) -> Path:
    """A finished K-fold run as its out-of-fold files alone (what blend reads)."""
    table = pd.DataFrame({"sample_index": [f"img_{i:04d}.png" for i in range(len(y))],
                          "label": [CLASSES[i] for i in y], "fold": folds,
                          "pred_hard": [CLASSES[i] for i in probabilities.argmax(1)]})
    table[probability_columns(CLASSES)] = probabilities
    artifacts.write_csv(table, folder / "oof_predictions.csv")
    artifacts.write_json(folder / "metrics.json", {
        "model": model, "profile": "test", "data": "made up", "classes": CLASSES, "weights": "none", "folds": 3,
        "oof": {"hard": {}}, "oof_macro_f1": 0.0})
    artifacts.complete(folder, artifacts.request("kfold", settings={"model": model}),
                       ["oof_predictions.csv", "metrics.json"])
    return folder


def test_a_member_perfect_only_on_a_folds_images_gets_no_weight_there(tmp_path):
    rng = np.random.default_rng(0)
    y, folds = rng.integers(0, 4, 90), np.repeat([0, 1, 2], 30)
    noisy = np.eye(4)[np.where(rng.random(90) < 0.6, y, rng.integers(0, 4, 90))] + 0.1 * rng.random((90, 4))
    oracle = np.eye(4)[np.where(folds == 0, y, (y + 1) % 4)]  # right on fold 0's images, wrong everywhere else
    runs = [_kfold_run(tmp_path / "noisy", "noisy", y, folds, noisy / noisy.sum(1, keepdims=True)),
            _kfold_run(tmp_path / "oracle", "oracle", y, folds, oracle)]
    metrics = runs_.blend(runs, tmp_path / "blend").metrics
    assert metrics["weights_per_fold"]["fold_0"]["2:oracle"] == 0  # chosen on folds 1 and 2, where it is wrong
    oof = pd.read_csv(tmp_path / "blend" / "oof_predictions.csv")
    assert oof.sample_index.is_unique and len(oof) == 90
    assert (oof.pred_blend[oof.fold == 0] != oof.label[oof.fold == 0]).mean() > 0.2  # no leak: not perfect there
    assert [row["variant"] for row in metrics["compared"][:3]] == ["blend", "1:noisy", "2:oracle"]


def test_runs_on_other_folds_or_without_probabilities_are_refused(tmp_path):
    y, folds = np.arange(60) % 4, np.repeat([0, 1, 2], 20)
    p = np.eye(4)[y]
    a = _kfold_run(tmp_path / "a", "a", y, folds, p)
    b = _kfold_run(tmp_path / "b", "b", y, np.roll(folds, 1), p)
    with pytest.raises(ValueError, match="not scored on the same folds"):
        runs_.blend([a, b], tmp_path / "blend")
    table = pd.read_csv(b / "oof_predictions.csv").drop(columns=probability_columns(CLASSES))
    artifacts.write_csv(table.assign(fold=folds), tmp_path / "c" / "oof_predictions.csv")
    (tmp_path / "c" / "metrics.json").write_text((b / "metrics.json").read_text())
    artifacts.complete(tmp_path / "c", artifacts.request("kfold"), ["oof_predictions.csv", "metrics.json"])
    with pytest.raises(ValueError, match=r"c/oof_predictions.csv: no out-of-fold probabilities"):
        runs_.blend([a, tmp_path / "c"], tmp_path / "blend")


@pytest.mark.slow
def test_blend_of_a_tile_network_and_a_probe_on_a_timm_encoder(tiny_data, shared_outputs, tmp_path):
    """The scratch ResNet K-fold run of table 1 (tests/test_compare.py trained it in the session's outputs) and a
    linear probe on the tiny UNI layout's embeddings, on the same folds; blended, then a submission."""
    from anndl.engine import compare, embed, experiment, runs

    table1 = compare.run_comparison("table1", tiny_data, shared_outputs, folds=2).provenance["runs"]
    prep = experiment.prepare(tiny_data, shared_outputs)
    emb = embed.embed(prep, str(TIMM / "uni"), tmp_path / "emb_uni")
    probe = runs.fit(prep, tmp_path / "probe", "linear_probe", folds=2, embeddings=emb)
    assert emb.encoder["layout"] == "timm" and "NOT pretrained" in probe.metrics["weights"]
    members = [shared_outputs / table1["scratch ResNet"], probe.folder]
    runs.blend(members, tmp_path / "blend")
    metrics = json.loads((tmp_path / "blend" / "metrics.json").read_text())
    assert 0 <= metrics["oof_macro_f1"] <= 1 and len(metrics["oof_macro_f1_ci"]) == 2
    assert "1:scratch_resnet" in metrics["blend_weights"]
    assert sum(metrics["blend_weights"].values()) == pytest.approx(1)
    out = tmp_path / "submission.csv"
    assert cli.main(["predict", "--run", str(tmp_path / "blend"), "--data", str(tiny_data), "--out", str(out)]) == 0
    submission = pd.read_csv(out)
    test_images = sorted(p.name for p in (tiny_data / "test_data").glob("img_*"))
    assert sorted(submission.sample_index) == test_images
    note = json.loads(out.with_suffix(".json").read_text())
    assert note["blend_weights"] == metrics["blend_weights"] and len(note["members"]) == 2
