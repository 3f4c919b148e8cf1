"""The generated interpretations follow the numbers; the banner follows profile, data and weights."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from anndl.notebook import interpret  # noqa: E402


def _s(f1, low=None, high=None, images=58):
    return {"macro_f1": f1, "macro_f1_ci95": [f1 - 0.1 if low is None else low, f1 + 0.1 if high is None else high],
            "images": images}


def test_voting_sentence_follows_which_rule_wins():
    hard_wins = interpret.voting({"hard": _s(0.52), "soft": _s(0.47)}, "full")
    soft_wins = interpret.voting({"hard": _s(0.47), "soft": _s(0.52)}, "full")
    assert hard_wins.startswith("**What this shows.**")
    assert "Hard voting is ahead by 5.0 points, the direction the report found" in hard_wins
    assert "Soft voting is ahead by 5.0 points, the opposite of the report's finding" in soft_wins
    assert "0.7 points" in hard_wins and "0.7 points" in soft_wins
    assert "(unpaired) intervals overlap" in hard_wins  # overlapping intervals
    apart = interpret.voting({"hard": _s(0.8, 0.75, 0.85), "soft": _s(0.4, 0.35, 0.45)}, "full")
    assert "do not even overlap" in apart and "not a model choice" not in apart
    smoke = interpret.voting({"hard": _s(0.4), "soft": _s(0.5)}, "smoke")
    assert "not a model choice" in smoke and "says nothing about the report's finding" in smoke
    assert "opposite" not in smoke and "direction the report found" not in smoke  # no claim from a smoke run
    chance = interpret.voting({"hard": _s(0.15, 0.09, 0.21), "soft": _s(0.14, 0.09, 0.20)}, "cpu")
    assert "did not learn" in chance and "direction the report found" not in chance  # 05's stand-in at chance


def test_outlier_sentence_perfect_synthetic_means_easy():
    perfect = pd.DataFrame([{"kind": "sticker", "planted": 60, "flagged": 60, "true_positives": 60,
                             "precision": 1.0, "recall": 1.0},
                            {"kind": "green", "planted": 50, "flagged": 50, "true_positives": 50,
                             "precision": 1.0, "recall": 1.0}])
    assert "planted outliers are easy" in interpret.outliers(perfect, synthetic=True)
    missed = perfect.assign(recall=[0.9, 1.0], true_positives=[54, 50])
    text = interpret.outliers(missed, synthetic=True)
    assert "easy" not in text and "missed stickers" in text and "recall 0.90" in text
    assert "no ground truth" in interpret.outliers(None, synthetic=False).lower()


def test_baselines_against_networks():
    nets = {"scratch_resnet": _s(0.53)}
    overlapping = interpret.baselines(nets, {"majority": _s(0.12), "colour_histogram": _s(0.63)}, "full")
    assert "scores above every network" in overlapping and "intervals overlap" in overlapping
    assert "beats every network" not in overlapping  # overlapping intervals establish no winner
    colour_wins = interpret.baselines({"scratch_resnet": _s(0.4, 0.32, 0.48)},
                                      {"majority": _s(0.12, 0.09, 0.15), "colour_histogram": _s(0.9, 0.85, 0.95)}, "full")
    assert "colour histogram baseline beats every network" in colour_wins
    at_chance = interpret.baselines({"convnext": _s(0.15, 0.09, 0.21)},
                                    {"majority": _s(0.12, 0.09, 0.15), "colour_histogram": _s(0.36, 0.25, 0.45)}, "cpu")
    assert "beats every network" not in at_chance and "did not learn" in at_chance  # no verdict at chance
    assert "Colour alone separates the classes of this data" in colour_wins
    net_wins = interpret.baselines({"vit": _s(0.8, 0.75, 0.85)}, {"colour_histogram": _s(0.5, 0.45, 0.55)}, "full")
    assert "The network (vit, 0.800) is ahead" in net_wins and "do not overlap" in net_wins  # one network
    two = interpret.baselines({"vit": _s(0.8, 0.75, 0.85), "convnext": _s(0.7, 0.6, 0.8)},
                              {"colour_histogram": _s(0.5, 0.45, 0.55)}, "full")
    assert "The best network (vit, 0.800) is ahead" in two


def test_colour_sentence_follows_the_colour_interval():
    """The rendered notebooks 04-06 said "colour alone separates the classes" beside 0.357 (0.250-0.449)."""
    rendered = {"majority": _s(0.123, 0.086, 0.155), "colour_histogram": _s(0.357, 0.250, 0.449)}
    text = interpret.baselines({"scratch_resnet": _s(0.194, 0.12, 0.27)}, rendered, "smoke")
    assert "separates the classes of this" not in text
    assert "On these 58 images colour alone is not shown to carry the label" in text  # the split's own count
    assert "chance (1/4 = 0.25)" in text
    uncounted = dict(rendered, colour_histogram={"macro_f1": 0.357, "macro_f1_ci95": [0.250, 0.449]})
    assert "On these images colour alone" in interpret.baselines({"scratch_resnet": _s(0.5)}, uncounted, "cpu")
    part = interpret.baselines({"vit": _s(0.7, 0.6, 0.8)},
                               {"majority": _s(0.12, 0.09, 0.15), "colour_histogram": _s(0.5, 0.42, 0.58)}, "full")
    assert "Colour carries part of the label here" in part and "does not separate the classes" in part
    two = interpret.baselines({"vit": _s(0.7, 0.6, 0.8)}, {"colour_histogram": _s(0.56, 0.48, 0.64)}, "full",
                              num_classes=2)
    assert "does not clear chance (1/2 = 0.50)" in two  # chance depends on the number of classes
    at_chance = interpret.baselines({"vit": _s(0.7, 0.6, 0.8)}, {"colour_histogram": _s(0.33, 0.2504, 0.41)}, "full")
    assert "(0.250–0.410) does not clear chance" in at_chance  # compared as printed: 0.250 is not above 0.25
    assert "Colour" not in interpret.baselines({"vit": _s(0.7)}, {"majority": _s(0.12)}, "full")


def test_sentences_cite_their_sources_and_promise_nothing_missing():
    text = interpret.voting({"hard": _s(0.52), "soft": _s(0.47)}, "full")
    assert "notebook 07 compares the rules" not in text and "out-of-fold voting comparison pairs the two rules" in text
    assert "docs/dataset_facts.md" in text  # the report's +0.7 points is a sourced claim
    assert "docs/dataset_facts.md" in interpret.tiles(3367, 581)
    assert "the report used ViT-S/16" not in interpret.FULL_MODELS["vit"]
    assert "authors' public notebooks used ViT-Small/16" in interpret.FULL_MODELS["vit"]


def test_differences_by_paired_interval_and_smoke_verdicts():
    table = pd.DataFrame({"variant": ["scratch", "scratch + TTA", "ensemble", "colour"],
                          "oof_macro_f1": [0.53, 0.52, 0.45, 0.63], "gain": [0.0, -0.01, -0.08, 0.10],
                          "gain_ci95": [[0, 0], [-0.03, 0.01], [-0.11, -0.04], [0.04, 0.16]]})
    text = interpret.differences(table, "full")
    assert "better by a real difference: colour (+0.100)" in text
    assert "worse by a real difference: ensemble (-0.080)" in text
    assert "no real difference (interval holds 0): scratch + TTA" in text
    assert "not model choices" not in text and "not model choices" in interpret.differences(table, "smoke")


def test_training_sentence_and_tiles():
    assert "still improving" in interpret.training({"best_epoch": 12, "epochs_run": 12})
    assert "did not improve over the last 10" in interpret.training({"best_epoch": 31, "epochs_run": 41})
    text = interpret.tiles(3367, 581, 2743, 477)
    assert "authors' public notebooks cut 3,371" in text and "report itself gives no tile counts" in text
    assert text.index("2,743 test tiles") < text.index("authors'")  # this run's counts, then theirs


def test_banner_from_profile_data_and_weights(tmp_path):
    smoke = interpret.banner("smoke", "synthetic stand-in (anndl synth) at x", "random initialisation (smoke "
                             "profile: a tiny configuration, NOT pretrained)")
    assert smoke.startswith("SMOKE PROFILE · SYNTHETIC DATA · RANDOM WEIGHTS — numbers are not results")
    real = interpret.banner("full", "challenge data at y", "imagenet-22k convnext_large")
    assert real.startswith("FULL PROFILE · REAL DATA · PRETRAINED WEIGHTS") and "not results" not in real
    assert "TRAINED FROM SCRATCH" in interpret.banner("full", "challenge data", "random initialisation (trained from scratch)")
    assert "not results" in interpret.banner("full", "synthetic stand-in", None)
    (tmp_path / "planted_outliers.csv").write_text("sample_index,kind\n")
    assert "SYNTHETIC DATA" in interpret.banner("full", tmp_path)  # a folder: the planted file marks it
    fig = plt.figure()
    interpret.stamp(fig, "smoke", "synthetic", "random")
    assert any("not results" in t.get_text() for t in fig.texts)
    plt.close(fig)


def test_a_ranking_names_no_winner_when_the_intervals_overlap():
    import pandas as pd

    row = lambda model, f1, ci: {"model": model, "voting": "hard", "val_macro_f1": f1, "val_ci95": ci,  # noqa: E731
                                 "oof_macro_f1": None, "profile": "full"}
    close = interpret.results_table(pd.DataFrame([row("vit", 0.220, "0.150-0.291"), row("convnext", 0.173, "0.107-0.239")]))
    assert "Highest here: vit" in close and "names no winner" in close and "convnext" in close
    apart = interpret.results_table(pd.DataFrame([row("vit", 0.62, "0.55-0.70"), row("convnext", 0.30, "0.22-0.38")]))
    assert "Highest here: vit" in apart and "names no winner" not in apart


def test_a_comparison_says_when_two_rows_are_the_same_predictions():
    import pandas as pd
    from types import SimpleNamespace

    table = pd.DataFrame([
        {"variant": "ViT, phase 1 (head only)", "oof_macro_f1": 0.212, "ci95_low": 0.185, "ci95_high": 0.24,
         "gain": 0.0, "gain_ci95": [0.0, 0.0], "verdict": "reference", "weights": "pretrained", "images": 581},
        {"variant": "ViT, phase 2 (fine-tuned)", "oof_macro_f1": 0.212, "ci95_low": 0.185, "ci95_high": 0.24,
         "gain": 0.0, "gain_ci95": [0.0, 0.0], "verdict": "no real difference (interval holds 0)",
         "weights": "pretrained", "images": 581}])
    result = SimpleNamespace(table=table, provenance={"profile": "full", "data": "challenge data [fingerprint ab]",
                                                      "report": None})
    text = interpret.comparison(result)
    assert "the same predictions for every image" in text and "names no winner" in text


def _gated_table(rows):
    """A comparison table as ``compare`` writes it with the learning gate: the baselines' rows last."""
    import pandas as pd

    base = {"ci95_low": 0.0, "ci95_high": 0.0, "images": 120, "weights": "random initialisation (trained from scratch)",
            "null_p95": 0.29, "beats_colour": False}
    return pd.DataFrame([{**base, "ci95_low": r["oof_macro_f1"] - 0.05, "ci95_high": r["oof_macro_f1"] + 0.05, **r}
                         for r in rows])


BASELINE_ROWS = [
    {"variant": "colour-histogram baseline (no CNN)", "oof_macro_f1": 0.24, "gain": 0.05, "gain_ci95": [0.01, 0.09],
     "learned": None, "beats_colour": None, "null_p95": None, "verdict": "baseline"},
    {"variant": "majority class", "oof_macro_f1": 0.12, "gain": -0.07, "gain_ci95": [-0.1, -0.04], "learned": None,
     "beats_colour": None, "null_p95": None, "verdict": "baseline"}]


def test_nothing_learned_names_no_winner_in_any_generated_sentence():
    """The rendered comparisons said "focal (γ=2) beats the reference here" between models at chance."""
    from types import SimpleNamespace

    table = _gated_table([
        {"variant": "cross-entropy", "oof_macro_f1": 0.19, "gain": 0.0, "gain_ci95": [0.0, 0.0], "learned": False,
         "verdict": "reference: did not learn — no verdict"},
        {"variant": "focal (γ=2)", "oof_macro_f1": 0.23, "gain": 0.04, "gain_ci95": [0.01, 0.07], "learned": False,
         "verdict": "did not learn — no verdict"},
        {"variant": "class-weighted", "oof_macro_f1": 0.14, "gain": -0.05, "gain_ci95": [-0.08, -0.02],
         "learned": False, "verdict": "did not learn — no verdict"}, *BASELINE_ROWS])
    result = SimpleNamespace(table=table, provenance={"profile": "full", "data": "challenge data [fingerprint ab]",
                                                      "report": None})
    for text in (interpret.differences(table, "full"), interpret.differences(table, "smoke"),
                 interpret.comparison(result)):
        assert interpret.NOTHING_LEARNED in text
        assert "majority class 0.120" in text and "colour-histogram baseline 0.240" in text
        assert "focal (γ=2)" in text and "0.230" in text
        for claim in ("beats", "better", "real difference"):
            assert claim not in text, (claim, text)


def test_a_row_that_did_not_learn_gets_no_verdict_beside_one_that_did():
    from types import SimpleNamespace

    table = _gated_table([
        {"variant": "cross-entropy", "oof_macro_f1": 0.50, "gain": 0.0, "gain_ci95": [0.0, 0.0], "learned": True,
         "beats_colour": True, "verdict": "reference: learned"},
        {"variant": "focal", "oof_macro_f1": 0.60, "gain": 0.10, "gain_ci95": [0.04, 0.16], "learned": True,
         "beats_colour": True, "verdict": "real difference"},
        {"variant": "weighted", "oof_macro_f1": 0.26, "gain": -0.24, "gain_ci95": [-0.3, -0.18], "learned": False,
         "verdict": "did not learn — no verdict"}, *BASELINE_ROWS])
    text = interpret.differences(table, "full")
    assert "better by a real difference: focal (+0.100)" in text and "worse by a real difference" not in text
    assert "weighted (0.260): did not learn — no verdict (baselines on the same folds: " in text
    assert "The highest score is focal" in text and interpret.NOTHING_LEARNED not in text
    result = SimpleNamespace(table=table, provenance={"profile": "full", "data": "challenge data [fingerprint ab]",
                                                      "report": None})
    text = interpret.comparison(result)
    assert "focal beats the reference here" in text and "weighted -0.240" not in text
    assert "weighted (0.260): did not learn — no verdict" in text and "majority class: baseline" not in text
    # the reference did not learn: a variant that did gets no verdict against it
    unlearned = table.assign(learned=[False, True, False, None, None])
    text = interpret.differences(unlearned, "full")
    assert "did not learn" in text and "no variant gets a verdict against it" in text and "better" not in text
    assert "beats the reference" not in interpret.comparison(SimpleNamespace(table=unlearned,
                                                                             provenance=result.provenance))
    from anndl.notebook.report import scores_markdown
    shown = scores_markdown(table).splitlines()  # the table shown beside those sentences
    assert shown[2].endswith("| — | reference: learned |") and "| did not learn — no verdict |" in shown[4]
    assert shown[-1] == "| majority class | 0.120 | 0.070–0.170 | -0.070 (-0.100 to -0.040) | baseline |"


def test_training_sentence_says_out_of_fold_epochs_are_selected_on_inner_training_images():
    text = interpret.training({"best_epoch": 5, "epochs_run": 9})
    assert "optimistic too" not in text and "still chosen on those images" not in text
    assert "inner selection split of its own training images" in text
    assert "single-split run's validation score is selected on the images it scores" in text


def test_a_network_at_chance_is_not_ahead_of_the_baselines():
    text = interpret.baselines({"scratch_resnet": _s(0.21, 0.17, 0.25)},
                               {"majority": _s(0.12, 0.09, 0.15), "colour_histogram": _s(0.19, 0.15, 0.23)}, "full")
    assert "is ahead" not in text and "did not learn" in text and "does not clear chance (1/4 = 0.25)" in text


def test_interpret_names_the_baseline_rows_as_compare_does():
    from anndl.evaluate.baselines import BASELINE_ROWS as NAMES

    assert all(interpret.is_baseline_row({"variant": name}) for name in NAMES)
    assert not interpret.is_baseline_row({"variant": "cross-entropy", "verdict": "reference: learned"})


def test_the_submission_sentence_names_a_class_never_predicted_and_a_dominant_one():
    classes = ("Luminal A", "Luminal B", "HER2(+)", "Triple negative")
    text = interpret.submission(["HER2(+)"] * 225 + ["Luminal B"] * 178 + ["Luminal A"] * 74, classes)
    assert "477 test images are predicted HER2(+) 225 (47%), Luminal B 178 (37%), Luminal A 74 (16%), " \
           "Triple negative 0 (0%)" in text
    assert "never predicts Triple negative" in text and "at most 0.75" in text and "takes" not in text
    text = interpret.submission(["Luminal B"] * 90 + ["Luminal A"] * 5 + ["HER2(+)"] * 3 + ["Triple negative"] * 2,
                                classes)
    assert "never" not in text and "Luminal B, takes 90%" in text
    text = interpret.submission(["Luminal B"] * 9 + ["HER2(+)"], classes)
    assert "never predicts Luminal A or Triple negative: their F1s on the test set are 0" in text and "0.50" in text


def test_the_model_line_says_how_the_scratch_resnet_differs_from_the_authors_count():
    from types import SimpleNamespace
    line = interpret.model_line(SimpleNamespace(count_params=lambda: 263_908), "scratch_resnet", "cpu")
    assert line.startswith("263,908 parameters — the report's scratch ResNet") and "~0.69 M" in line and "38%" in line
    assert "0.69" not in interpret.model_line(SimpleNamespace(count_params=lambda: 700_000), "scratch_resnet", "full")
    assert "tiny stand-in" in interpret.model_line(SimpleNamespace(count_params=lambda: 5_308), "scratch_resnet",
                                                   "smoke")
