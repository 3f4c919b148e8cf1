"""The results table is built from runs' metrics.json, with the report's figures kept apart."""

import json

import pandas as pd
import pytest

from anndl.report import REPORT_TEST_F1, write_report


def _metrics(folder, model, **extra):
    folder.mkdir(parents=True)
    scores = {"macro_f1": 0.5, "macro_f1_ci95": [0.4, 0.6], "accuracy": 0.5, "images": 58}
    payload = {"model": model, "profile": "smoke", "data": "synthetic stand-in", "weights": "random", **extra}
    payload.setdefault("validation", {"hard": scores, "soft": {**scores, "macro_f1": 0.45}})
    (folder / "metrics.json").write_text(json.dumps(payload))


def test_table_rows_come_from_runs(tmp_path):
    _metrics(tmp_path / "a", "scratch_resnet")
    scores = {"macro_f1": 0.6, "macro_f1_ci95": [0.5, 0.7], "accuracy": 0.6, "images": 581}
    _metrics(tmp_path / "k", "vit", folds=5, oof={"hard": scores, "soft": scores}, validation=None)
    _metrics(tmp_path / "k" / "fold_0", "vit")  # fold runs are summarised by their parent
    table = write_report(tmp_path)
    assert len(table) == 4
    assert set(table.evaluated_on) == {"validation split", "out-of-fold (5 folds)"}
    row = table[(table.model == "scratch_resnet") & (table.voting == "soft")].iloc[0]
    assert row.val_macro_f1 == 0.45 and row.val_ci95 == "0.400-0.600"
    assert (table["report_test_f1 (real data, for reference)"] == table.model.map(REPORT_TEST_F1)).all()
    assert pd.read_csv(tmp_path / "results.csv").shape[0] == 4
    text = (tmp_path / "results.md").read_text()
    assert "not results" in text and "| scratch_resnet |" in text


def test_no_runs_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        write_report(tmp_path)


def test_other_label_sets_get_no_challenge_reference_and_comparisons_are_included(tmp_path):
    _metrics(tmp_path / "bach", "scratch_resnet", classes=["in_situ", "invasive"])
    pd.DataFrame({"variant": ["scratch_resnet", "scratch_resnet + TTA"], "oof_macro_f1": [0.5, 0.55],
                  "gain": [0.0, 0.05], "verdict": ["—", "no real difference (interval holds 0)"]}
                 ).to_csv(tmp_path / "compare_bach.csv", index=False)
    table = write_report(tmp_path)
    assert table["report_test_f1 (real data, for reference)"].isna().all()  # a challenge score means nothing here
    text = (tmp_path / "results.md").read_text()
    assert "## Variants on the same folds: bach" in text and "| scratch_resnet + TTA | 0.55 |" in text


def test_report_on_a_broken_metrics_file_names_it(tmp_path, capsys):
    from anndl import cli

    (tmp_path / "runs" / "scratch_resnet").mkdir(parents=True)
    (tmp_path / "runs" / "scratch_resnet" / "metrics.json").write_text("")  # a full disk while writing it
    assert cli.main(["report", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'runs' / 'scratch_resnet' / 'metrics.json'}: "
                                               "unreadable record")
