"""The learning gate: a model learned only when it beats the majority class (paired) and a permutation null;
between models that did not learn, a comparison gives no verdict."""

import numpy as np
import pandas as pd
import pytest

from anndl import cli
from anndl.engine import compare
from anndl.evaluate import metrics
from anndl.evaluate.baselines import BASELINE_ROWS

N = 240


def _data(seed=0):
    """Imbalanced labels (40/30/20/10%), their majority-class predictions and a predictor right on 70% of them."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, N, p=[0.4, 0.3, 0.2, 0.1])
    good = np.where(rng.random(N) < 0.7, y, rng.integers(0, 4, N))
    return rng, y, np.zeros(N, int), good


def test_a_perfect_predictor_learned_constant_shuffled_and_uniform_guesses_did_not():
    rng, y, majority, good = _data()
    perfect = metrics.learning_gate(y, y, majority, 4)
    assert perfect["learned"] and perfect["beats_majority"] and perfect["beats_null"]
    assert perfect["macro_f1"] == 1.0 and perfect["null_p95"] < 0.5 and perfect["over_majority_ci95"][0] > 0
    assert perfect["beats_colour"] is None  # no colour predictions given: not reported
    assert metrics.learning_gate(y, good, majority, 4)["learned"]
    assert not metrics.learning_gate(y, majority, majority, 4)["learned"]           # the majority class itself
    assert not metrics.learning_gate(y, np.full(N, 2), majority, 4)["learned"]       # another constant
    shuffled = metrics.learning_gate(y, rng.permutation(y), majority, 4)
    assert not shuffled["learned"] and not shuffled["beats_null"]
    uniform = metrics.learning_gate(y, rng.integers(0, 4, N), majority, 4)
    assert uniform["macro_f1"] == pytest.approx(0.25, abs=0.05)
    assert uniform["beats_majority"]  # guessing beats the majority class's macro F1 ...
    assert not uniform["beats_null"] and not uniform["learned"]  # ... but not the permutation null


def test_colour_is_reported_beside_and_not_part_of_learned():
    rng, y, majority, good = _data(1)
    gate = metrics.learning_gate(y, good, majority, 4, colour=y)  # a colour baseline that is always right
    assert gate["learned"] and gate["beats_colour"] is False and gate["over_colour_ci95"][1] < 0
    assert metrics.learning_gate(y, good, majority, 4, colour=rng.integers(0, 4, N))["beats_colour"] is True


def test_the_permutation_null_is_seeded_and_scores_each_shuffle_like_macro_f1():
    rng, y, _, good = _data(2)
    null = metrics.permutation_null(y, good, n_perm=50, seed=3)
    again = metrics.permutation_null(y, good, n_perm=50, seed=3)
    assert (null == again).all() and len(null) == 50
    shuffles = np.random.default_rng(3).permuted(np.tile(y, (50, 1)), axis=1)
    assert null == pytest.approx([metrics.macro_f1(t, good) for t in shuffles])


def test_compared_gives_a_verdict_only_between_rows_that_both_learned():
    rng, y, majority, good = _data(3)
    better = np.where(rng.random(N) < 0.9, y, good)
    guess = rng.integers(0, 4, N)
    colour = rng.integers(0, 4, N)
    baselines = ("colour-histogram baseline (no CNN)", "majority class")

    def table(predicted):
        rows = metrics.compared(y, predicted, majority=majority, colour=colour, baselines=baselines)
        return {r["variant"]: r for r in rows}

    both = table({"good": good, "better": better, "guess": guess, "colour-histogram baseline (no CNN)": colour,
                  "majority class": majority})
    assert both["good"]["learned"] and both["better"]["learned"] and not both["guess"]["learned"]
    assert both["good"]["verdict"] == "reference: learned"
    assert both["better"]["verdict"] == "real difference" and both["better"]["beats_colour"]
    assert both["guess"]["verdict"] == metrics.NO_VERDICT  # a real paired loss, but it did not learn
    assert both["guess"]["gain_ci95"][1] < 0
    for name in baselines:
        assert both[name]["learned"] is None and both[name]["verdict"] == "baseline"

    unlearned_reference = table({"guess": guess, "good": good, "majority class": majority})
    assert unlearned_reference["guess"]["verdict"] == f"reference: {metrics.NO_VERDICT}"
    assert unlearned_reference["good"]["learned"]
    assert unlearned_reference["good"]["verdict"] == metrics.REFERENCE_NO_VERDICT  # a real gain, no verdict
    assert unlearned_reference["good"]["gain_ci95"][0] > 0

    nothing = table({"guess": guess, "shuffled": rng.permutation(y), "constant": np.full(N, 1)})
    assert all(not r["learned"] and "did not learn — no verdict" in r["verdict"] for r in nothing.values())
    assert not any(r["verdict"] in ("real difference", "no real difference (interval holds 0)")
                   for r in nothing.values())


def test_compared_without_majority_keeps_the_paired_verdicts():
    _, y, _, good = _data(4)
    rows = metrics.compared(y, {"ref": good, "same": good, "perfect": y}, reference_verdict="reference")
    assert [r["verdict"] for r in rows] == ["reference", "no real difference (interval holds 0)", "real difference"]
    assert all(r["learned"] is None and r["beats_colour"] is None for r in rows)


# its own module, off the worker that runs the shared comparisons and notebooks (tests/conftest.py)
@pytest.mark.slow
def test_on_shuffled_labels_the_comparison_says_nothing_learned_and_gives_no_verdict(data_copy, tmp_path, capsys):
    """Issue 34: labels permuted at random (a fixed seed) leave nothing to learn; `anndl compare losses` must
    not name a difference between its variants, and must say that the reference did not learn."""
    path = data_copy / "train_labels.csv"
    labels = pd.read_csv(path, keep_default_na=False)
    planted = set(pd.read_csv(data_copy / "planted_outliers.csv").sample_index)  # removed: their labels stay
    known = (labels.label != "") & ~labels.sample_index.isin(planted)  # each class keeps its count of kept images
    labels.loc[known, "label"] = np.random.default_rng(0).permutation(labels.label[known].to_numpy())
    labels.to_csv(path, index=False, lineterminator="\n")
    out = tmp_path / "out"
    assert cli.main(["compare", "losses", "--data", str(data_copy), "--out", str(out), "--folds", "2",
                     "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    table = compare.read_comparison_result(out / "compare" / "losses").table.set_index("variant")
    assert table.loc["cross-entropy", "verdict"] == f"reference: {metrics.NO_VERDICT}"
    assert table.loc["cross-entropy", "learned"] is False
    assert not {"real difference", "no real difference (interval holds 0)"} & set(table.verdict)
    assert set(table.verdict.loc[list(BASELINE_ROWS)]) == {"baseline"}
    assert "real difference" not in printed and "beats the reference" not in printed
    assert "| cross-entropy |" in printed and "no — did not learn" in printed
    assert "cross-entropy, the reference" in printed and "did not learn" in printed
