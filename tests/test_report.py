"""The results table is built from runs' metrics.json, one ranking per data folder and profile, with the
report's figures kept apart."""

import json

import pandas as pd
import pytest

from anndl.core import artifacts

from anndl.notebook.report import REFERENCE, REPORT_TEST_F1, collect, markdown, sections, select, write_report

SYNTH = "synthetic stand-in (anndl synth) at /somewhere/data/synthetic [fingerprint aaaa11112222]"
OTHER = "synthetic stand-in (anndl synth) at /elsewhere/data/synthetic [fingerprint bbbb33334444]"
REAL = "challenge data at /home/me/anndl/data [fingerprint cccc55556666]"


def _metrics(folder, model, profile="smoke", data=SYNTH, hard=0.5, soft=None, **extra):
    folder.mkdir(parents=True)
    soft = hard - 0.05 if soft is None else soft
    scores = {"macro_f1": hard, "macro_f1_ci95": [hard - 0.1, hard + 0.1], "accuracy": 0.5, "images": 58}
    weights = "random initialisation (trained from scratch)" if model == "scratch_resnet" else "imagenet"
    payload = {"model": model, "profile": profile, "data": data, "weights": weights, **extra}
    payload.setdefault("validation", {"hard": scores, "soft": {**scores, "macro_f1": soft}})
    (folder / "metrics.json").write_text(json.dumps(payload))
    # a finished run: its record names the file (the report reads only runs whose record verifies)
    artifacts.complete(folder, artifacts.request("kfold" if "oof" in payload else "train", data=data),
                       ["metrics.json"])


def test_table_rows_come_from_runs(tmp_path):
    _metrics(tmp_path / "a", "scratch_resnet")
    scores = {"macro_f1": 0.6, "macro_f1_ci95": [0.5, 0.7], "accuracy": 0.6, "images": 581}
    _metrics(tmp_path / "k", "scratch_resnet", folds=5, oof={"hard": scores, "soft": scores}, validation=None)
    _metrics(tmp_path / "k" / "fold_0", "vit")  # fold runs are summarised by their parent
    table = write_report(tmp_path)
    assert len(table) == 4
    assert set(table.evaluated_on) == {"validation split", "out-of-fold (5 folds)"}
    row = table[(table.model == "scratch_resnet") & (table.voting == "soft") & table.folds.isna()].iloc[0]
    assert row.val_macro_f1 == 0.45 and row.val_ci95 == "0.400-0.600"
    assert (table[REFERENCE] == table.model.map(REPORT_TEST_F1)).all()
    assert pd.read_csv(tmp_path / "results.csv").shape[0] == 4
    [(label, profile, _, rows)] = sections(table)
    # one row per model and voting rule: the single-split validation score beside the out-of-fold one
    assert len(rows) == 2 and rows.oof_macro_f1.tolist() == [0.6, 0.6] and rows.val_macro_f1.tolist() == [0.5, 0.45]
    text = (tmp_path / "results.md").read_text()
    assert "not results" in text and "| scratch_resnet | hard |" in text
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert table_lines and not any("**" in line for line in table_lines)  # a smoke check names no winner
    assert REFERENCE not in text
    assert "/somewhere" not in text and "aaaa1111" not in text  # no machine path, no hash in what is shown


def test_two_data_folders_and_two_profiles_are_never_ranked_together(tmp_path):
    _metrics(tmp_path / "scratch_smoke", "scratch_resnet", hard=0.30)
    _metrics(tmp_path / "vit_smoke", "vit", hard=0.20)
    _metrics(tmp_path / "bench_full", "scratch_resnet", profile="full", hard=0.55)   # a benchmark's full run
    _metrics(tmp_path / "other_data", "vit", data=OTHER, hard=0.90)                  # another synthetic folder
    _metrics(tmp_path / "real", "convnext", profile="full", data=REAL, hard=0.40)
    table = write_report(tmp_path)
    found = {(profile, fp): rows for _, profile, fp, rows in sections(table)}
    assert set(found) == {("smoke", "aaaa11112222"), ("full", "aaaa11112222"), ("smoke", "bbbb33334444"),
                          ("full", "cccc55556666")}
    assert set(found["smoke", "aaaa11112222"].model) == {"scratch_resnet", "vit"}  # only this data, this profile
    text = markdown(table)
    assert text.count("## Data:") == 4
    assert "data version 1 of 2" in text and "data version 2 of 2" in text  # same folder name, other content
    smoke = text.split("## Data:")[1:]
    # smoke or synthetic sections name no winner and show no real-data reference; a real full-profile one does
    assert all("| **0." not in part and REFERENCE not in part for part in smoke if "SYNTHETIC DATA" in part)
    real = [part for part in smoke if "REAL DATA" in part]
    assert len(real) == 1 and "**0.400**" in real[0] and REFERENCE in real[0]
    assert "REAL DATA" in text and "SYNTHETIC DATA" in text
    # a notebook selects its own rendering's data and profile
    mine = select(table, data=SYNTH, profile="smoke")
    assert set(mine.run) == {"scratch_smoke", "vit_smoke"}


def test_no_runs_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        write_report(tmp_path)


def test_other_label_sets_get_no_challenge_reference_and_comparisons_are_included(tmp_path):
    _metrics(tmp_path / "bach", "scratch_resnet", classes=["in_situ", "invasive"])
    pd.DataFrame({"variant": ["scratch_resnet", "scratch_resnet + TTA"], "oof_macro_f1": [0.5, 0.55],
                  "gain": [0.0, 0.05], "verdict": ["—", "no real difference (interval holds 0)"]}
                 ).to_csv(tmp_path / "compare_bach.csv", index=False)
    table = write_report(tmp_path)
    assert collect(tmp_path)[REFERENCE].isna().all()  # a challenge score means nothing here
    text = (tmp_path / "results.md").read_text()
    assert "## Variants on the same folds: bach" in text and "| scratch_resnet + TTA | 0.55 |" in text
    assert len(table) == 2


def test_a_cut_or_unrecorded_run_is_not_ranked_and_a_line_names_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    _metrics(runs / "scratch_resnet", "scratch_resnet", hard=0.5)
    _metrics(runs / "vit", "vit", hard=0.9)
    (runs / "vit" / "metrics.json").write_text("")  # a full disk while rewriting it
    _metrics(runs / "convnext", "convnext", hard=0.8)
    (runs / "convnext" / artifacts.RECORD).unlink()  # killed before its record was written
    write_report(runs)
    out = capsys.readouterr().out
    assert f"not ranked: {runs / 'vit'}: metrics.json changed since it was recorded" in out
    assert f"not ranked: {runs / 'convnext'}: not a finished artifact" in out
    table = pd.read_csv(runs / "results.csv")
    assert set(table.model) == {"scratch_resnet"}  # only the run whose record verifies
    (runs / "scratch_resnet" / "metrics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no finished run found"):  # nothing left to rank: not an empty table
        write_report(runs)


def _gated_result():
    """A comparison result as ``compare.run_comparison`` reads it back: one variant learned, one did not."""
    from types import SimpleNamespace

    common = {"ci95_low": 0.1, "ci95_high": 0.3, "images": 120, "weights": "random initialisation (trained from "
              "scratch)", "epochs": 3.0, "train_seconds": 12.0, "ms_per_image": 1.5}
    rows = [{"variant": "cross-entropy", "oof_macro_f1": 0.5, "gain": 0.0, "gain_ci95": [0.0, 0.0], "learned": True,
             "verdict": "reference: learned"},
            {"variant": "focal", "oof_macro_f1": 0.2, "gain": -0.3, "gain_ci95": [-0.36, -0.24], "learned": False,
             "verdict": "did not learn — no verdict"},
            {"variant": "colour-histogram baseline (no CNN)", "oof_macro_f1": 0.25, "gain": -0.25,
             "gain_ci95": [-0.3, -0.2], "learned": None, "verdict": "baseline", "weights": "none (no CNN)"},
            {"variant": "majority class", "oof_macro_f1": 0.12, "gain": -0.38, "gain_ci95": [-0.42, -0.34],
             "learned": None, "verdict": "baseline", "weights": "none (no CNN)"}]
    return SimpleNamespace(name="losses", table=pd.DataFrame([{**common, **r} for r in rows]),
                           provenance={"profile": "full", "data": REAL, "report": None, "question": "the loss"},
                           provenance_line=lambda: "losses: full profile")


def test_a_comparison_table_says_which_rows_learned_and_keeps_the_computed_verdict():
    from anndl.notebook.report import comparison_markdown, comparison_table

    shown = comparison_table(_gated_result()).set_index("variant")
    assert shown.learned.tolist() == ["yes", "no — did not learn", "—", "—"]
    assert shown.verdict.tolist() == ["reference: learned", "did not learn — no verdict", "baseline", "baseline"]
    assert shown.loc["cross-entropy", "Δ vs reference (paired 95%)"] == "—"
    assert shown.loc["majority class", "Δ vs reference (paired 95%)"] == "-0.380 (-0.420 to -0.340)"
    assert shown.loc["majority class", "weights"] == "—" and shown.loc["focal", "weights"] == "trained from scratch"
    text = comparison_markdown(_gated_result())
    assert "| focal | 0.200 | 0.100–0.300 | -0.300 (-0.360 to -0.240) | no — did not learn |" in text
    assert "focal (0.200): did not learn — no verdict" in text and "worse by a real difference" not in text
