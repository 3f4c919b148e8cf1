"""One lifecycle for every model family (``anndl.engine.runs``): each spec of the registry trains K-fold, is
interrupted before it finishes and resumed, predicts the test set, is compared on the same folds and is
reported, through the same calls (the test's parameters are the registry's names)."""

import json

import pandas as pd
import pytest

from anndl.core import artifacts
from anndl.data import tiling
from anndl.engine import compare, embed, experiment, runs
from anndl.models import specs
from anndl.notebook import report
from bench.common import write_random_checkpoint

TILE = 32
FOLDS = 2


@pytest.fixture(scope="module")
def setting(tiny_data, tmp_path_factory):
    """Prepared tiny tiles, a random tiny ViT checkpoint and its embedding cache (what the heads read)."""
    work = tmp_path_factory.mktemp("runs")
    prep = experiment.prepare(tiny_data, work, tiling_config=tiling.TilingConfig(TILE, TILE, 200))
    checkpoint = write_random_checkpoint(work / "vit_bare", "vit", image_size=TILE, patch_size=8,
                                                  hidden_size=16, num_layers=1, num_heads=2)
    emb = embed.embed(prep, str(checkpoint), work / "emb", progress=False)
    return work, prep, checkpoint, emb


def _fit(setting, model: str):
    work, prep, _, emb = setting
    if specs.SPEC[model].consumes == "embeddings":
        kwargs = {"embeddings": emb}
    else:
        kwargs = {"profile": "smoke", "epochs": 1}
    return runs.fit(prep, work / "runs" / model, model, folds=FOLDS, seed=3, **kwargs)


@pytest.mark.parametrize("model", specs.names())
def test_every_family_fits_resumes_predicts_compares_and_reports(setting, tiny_data, model, monkeypatch, tmp_path,
                                                                 capsys):
    work, prep, _, _ = setting
    run_dir = work / "runs" / model
    write_csv = artifacts.write_csv

    def killed_before_the_end(frame, path):  # the kill comes as the out-of-fold table is written
        if path.name == "oof_predictions.csv":
            raise KeyboardInterrupt
        return write_csv(frame, path)

    monkeypatch.setattr(artifacts, "write_csv", killed_before_the_end)
    with pytest.raises(KeyboardInterrupt):
        _fit(setting, model)
    monkeypatch.setattr(artifacts, "write_csv", write_csv)
    with pytest.raises(artifacts.ArtifactError, match="not a finished"):
        runs.open_run(run_dir)  # an interrupted run never counts as done
    folds_before = {p.parent.name: artifacts.read_json(p)["id"] for p in run_dir.glob("fold_*/record.json")}
    capsys.readouterr()

    run = _fit(setting, model)
    assert run.model == model and run.folds == FOLDS and run.stage in runs.STAGES
    printed = capsys.readouterr().out
    if specs.SPEC[model].consumes == "tiles":  # the finished folds were kept, not trained again
        assert len(folds_before) == FOLDS and "Epoch" not in printed
        assert {p.parent.name: artifacts.read_json(p)["id"] for p in run_dir.glob("fold_*/record.json")} == folds_before
    else:
        assert all(f"{model}: fold {k + 1} reused from the interrupted run" in printed for k in range(FOLDS)), printed
    oof = run.predictions()
    kept = prep.clean[prep.clean.status == "kept"]
    assert sorted(oof.sample_index) == sorted(kept.sample_index)  # every kept image scored once, out of fold
    held = []  # nested selection: each fold selects on part of its own training images, only scores its held-out
    for k in range(FOLDS):
        split = pd.read_csv(run_dir / f"fold_{k}" / "split.csv", keep_default_na=False)
        assert set(split.split) <= {"train", "select", "held_out"} and split.sample_index.is_unique
        held.append(set(split.sample_index[split.split == "held_out"]))
        select = set(split.sample_index[split.split == "select"])
        assert not select & held[-1] and set(split.sample_index) == set(kept.sample_index)
        assert bool(select) == (model != "linear_probe")  # what selects has a selection split; the probe selects nothing
        assert held[-1] == set(oof.sample_index[oof.fold == k])  # the images it scores are the held-out ones
        recorded = (artifacts.load(run_dir / f"fold_{k}")["files"] if specs.SPEC[model].consumes == "tiles" else
                    {n.split("/", 1)[1] for n in artifacts.load(run_dir)["files"] if n.startswith(f"fold_{k}/")})
        assert "split.csv" in recorded  # the run's record says so
    assert set().union(*held) == set(kept.sample_index) and sum(map(len, held)) == len(kept)  # a partition
    assert runs.open_run(run_dir).record["id"] == run.record["id"]
    assert _fit(setting, model).record["id"] == run.record["id"]  # the same request again: reused as it is

    out = tmp_path / "submission.csv"
    runs.predict(run, tiny_data, out)
    test = prep.manifest[prep.manifest.split == "test"]
    assert sorted(pd.read_csv(out).sample_index) == sorted(test.sample_index)  # one row per test image
    note = json.loads(out.with_suffix(".json").read_text())
    assert note["models"] == [model] * len(note["runs"]) and len(note["run_ids"]) == len(note["runs"])
    assert note["data"] == prep.data_note  # the data it predicted, by fingerprint
    shares = pd.read_csv(out, keep_default_na=False).label.value_counts(normalize=True)
    assert (note["dominated_by"] is not None) == (shares.max() > 0.8)  # a one-class submission says so
    assert note["dominated_by"] is None or note["dominated_by"]["class"] == shares.idxmax()

    rule = run.rules[0]
    table = compare.compare_runs(prep, {model: (run, rule)})
    assert list(table.variant) == [model, "colour-histogram baseline (no CNN)", "majority class"]
    assert table.oof_macro_f1.iloc[0] == run.scores[rule]["macro_f1"] and (table.images == len(kept)).all()

    if model == "attention_mil":  # what it attends to, per held-out image, sums to 1 over the image's tiles
        from anndl.engine import heads

        maps = heads.attention_maps(run.folder, setting[3], fold=1)
        assert maps and all(len(t) == len(a) and abs(a.sum() - 1) < 1e-4 for _, t, a in maps)

    rows = report.collect(work / "runs")
    mine = rows[rows.run == model]
    assert set(mine.model) == {model} and set(mine.voting) == set(run.rules) and (mine.folds == FOLDS).all()


def test_fit_refuses_what_a_family_cannot_use(setting):
    work, prep, _, emb = setting
    with pytest.raises(ValueError, match="unknown model 'resnet50'; choose from scratch_resnet"):
        runs.fit(prep, work / "x", "resnet50")
    with pytest.raises(ValueError, match="pass embeddings="):
        runs.fit(prep, work / "x", "linear_probe")
    with pytest.raises(ValueError, match="epochs apply to networks trained on tiles"):
        runs.fit(prep, work / "x", "linear_probe", embeddings=emb, epochs=3)
    with pytest.raises(ValueError, match="trains on tiles; embeddings= is for the heads"):
        runs.fit(prep, work / "x", "scratch_resnet", embeddings=emb)
    assert not (work / "x").exists()
