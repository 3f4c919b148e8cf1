"""What a result shows, in words generated from its numbers, and the banner that says what produced it.

Every notebook result is followed by a "What this shows" paragraph built here from the numbers of that cell,
so the text stays true when the data (synthetic stand-in or the challenge's), the profile (smoke or full) or
the weights change: swap which voting rule wins and the sentence changes with it. The banner
(``banner``) states the profile, the data and the weights, and says plainly when the numbers are not results;
``stamp`` writes it onto a score figure.

Conventions: scores are dicts with ``macro_f1`` and ``macro_f1_ci95`` (``anndl.evaluate.metrics.image_scores``); a
difference counts as real only when its *paired* bootstrap interval excludes 0 (``metrics.paired_difference``), and
is claimed only between rows that both learned (``metrics.learning_gate``: a real paired gain over the majority
class and a score above the permutation null); a row that did not learn reads "did not learn — no verdict" beside
the baselines' scores.
"""

from __future__ import annotations

from pathlib import Path

from anndl.evaluate.baselines import BASELINE_ROWS
from anndl.evaluate.metrics import flag

REPORT_HARD_VOTING_GAIN = 0.007  # report §4: hard voting 0.7 points better than mask-weighted soft on the test set
REPORT_TEST_F1 = {"scratch_resnet": 0.3436, "convnext": 0.3665, "vit": 0.4071}  # report Table 1 (real test set)
NOT_RESULTS = "numbers are not results"
HEADING = "**What this shows.**"
# where every claim about the report, its authors' notebooks, other teams or the literature is sourced (a Markdown
# link relative to notebooks/, where these sentences are displayed)
FACTS = "[docs/dataset_facts.md](../docs/dataset_facts.md)"


# ------------------------------------------------------------------------------------------ the banner

def is_synthetic_data(data) -> bool:
    """``data``: a data folder (``planted_outliers.csv`` marks the synthetic stand-in) or a data note string."""
    if isinstance(data, Path):
        from anndl.data import is_synthetic

        return is_synthetic(data)
    return "synthetic" in str(data).lower()


def weights_kind(weights) -> str | None:
    """``RANDOM WEIGHTS`` (untrained tiny stand-ins, random encoders), ``TRAINED FROM SCRATCH``, ``PRETRAINED
    WEIGHTS``, or None when no model is involved. ``weights``: a note (or list of notes) as runs record them."""
    if weights is None:
        return None
    notes = [weights] if isinstance(weights, str) else list(weights)
    text = " ".join(map(str, notes)).lower()
    if not text:
        return None
    if "not pretrained" in text or "tiny" in text or ("random" in text and "from scratch" not in text):
        return "RANDOM WEIGHTS"
    if "from scratch" in text:
        return "TRAINED FROM SCRATCH"
    return "PRETRAINED WEIGHTS"


def not_results(profile: str, data, weights=None) -> bool:
    """True when the numbers check the code rather than measure a model: the smoke profile, the synthetic
    stand-in, or untrained random weights."""
    return profile == "smoke" or is_synthetic_data(data) or weights_kind(weights) == "RANDOM WEIGHTS"


def banner(profile: str, data, weights=None) -> str:
    """One line: ``SMOKE PROFILE · SYNTHETIC DATA · RANDOM WEIGHTS — numbers are not results``.

    ``weights``: the run's weights note, or ``"random"`` for the smoke profile's tiny stand-ins, or None
    (notebooks before any model)."""
    parts = [f"{profile.upper()} PROFILE", "SYNTHETIC DATA" if is_synthetic_data(data) else "REAL DATA"]
    if kind := weights_kind(weights):
        parts.append(kind)
    if not_results(profile, data, weights):
        why = []
        if profile == "smoke":
            why.append("tiny models, few epochs")
        if is_synthetic_data(data):
            why.append("a synthetic stand-in, not the challenge images")
        return " · ".join(parts) + f" — {NOT_RESULTS} ({'; '.join(why) or 'untrained weights'})"
    return " · ".join(parts) + " — validation scores of one split; compare models out of fold (notebook 07)"


def banner_markdown(profile: str, data, weights=None) -> str:
    """The banner as a Markdown block for the top of a notebook."""
    return f"> **{banner(profile, data, weights)}**"


def stamp(fig, profile: str, data, weights=None) -> None:
    """Write the banner across the top of a score figure (so a copied PNG keeps its caveat)."""
    text = banner(profile, data, weights)
    colour = "#b00020" if not_results(profile, data, weights) else "#333333"
    fig.text(0.5, 1.0, text, ha="center", va="bottom", fontsize=8, color=colour, weight="bold",
             transform=fig.transFigure)


# ------------------------------------------------------------------------------------------- helpers

def _f1(scores: dict) -> str:
    low, high = scores["macro_f1_ci95"]
    return f"{scores['macro_f1']:.3f} (95% {low:.3f}–{high:.3f})"


def _points(delta: float) -> str:
    return f"{abs(delta) * 100:.1f} points"


def _overlap(a: dict, b: dict) -> bool:
    (al, ah), (bl, bh) = a["macro_f1_ci95"], b["macro_f1_ci95"]
    return al <= bh and bl <= ah


def _smoke_caveat(profile: str) -> str:
    return (" In the smoke profile the models are tiny and barely trained: this checks that the step runs, "
            "it is not a model choice." if profile == "smoke" else "")


def is_baseline_row(row: dict) -> bool:
    """Whether a comparison table's row is one of the baselines (majority class, colour histogram)."""
    return row["variant"] in BASELINE_ROWS or row.get("verdict") == "baseline"


def _gated(rows: list[dict]) -> bool:
    """Whether the table says which rows learned (a comparison scored with the learning gate)."""
    return any(flag(r.get("learned")) is not None for r in rows)


def _baseline_scores(rows: list[dict]) -> str:
    """``majority class 0.120, colour-histogram baseline 0.240`` from a table's baseline rows ('' when none)."""
    return ", ".join(f"{r['variant'].replace(' (no CNN)', '')} {r['oof_macro_f1']:.3f}"
                     for r in rows if is_baseline_row(r))


def _not_learned(rows: list[dict], baselines: list[dict]) -> str:
    """The rows that did not learn, each with its score, beside the baselines' scores."""
    beside = _baseline_scores(baselines)
    return ("; ".join(f"{r['variant']} ({r['oof_macro_f1']:.3f}): did not learn — no verdict" for r in rows)
            + (f" (baselines on the same folds: {beside})" if beside else ""))


NOTHING_LEARNED = ("No model here beat the majority class and the permutation null: the comparison gives no "
                   "verdict.")


def shows(*sentences: str) -> str:
    """Markdown: the heading and the sentences as one paragraph (``IPython.display.Markdown`` renders it)."""
    return f"{HEADING} " + " ".join(s.strip() for s in sentences if s and s.strip())


# ---------------------------------------------------------------------------------- the interpretations

def voting(results: dict, profile: str = "smoke") -> str:
    """Hard vs mask-weighted soft voting against the report's +0.7 points for hard voting (test set).

    ``results``: ``{"hard": scores, "soft": scores}``."""
    hard, soft = results["hard"], results["soft"]
    delta = hard["macro_f1"] - soft["macro_f1"]
    head = f"Hard voting scores {_f1(hard)}, mask-weighted soft voting {_f1(soft)} on {hard.get('images', '?')} images."
    if profile == "smoke":
        direction = ("Which rule wins in a smoke run says nothing about the report's finding (hard voting "
                     f"{_points(REPORT_HARD_VOTING_GAIN)} better on the real test set, report §4, {FACTS}): these are "
                     "tiny, barely trained models.")
    elif abs(delta) < 0.0005:
        direction = ("Both rules give the same macro F1 here; the report found hard voting "
                     f"{_points(REPORT_HARD_VOTING_GAIN)} better on the test set (report §4, {FACTS}).")
    elif delta > 0:
        direction = (f"Hard voting is ahead by {_points(delta)}, the direction the report found on the test set "
                     f"(hard better by {_points(REPORT_HARD_VOTING_GAIN)}, report §4, {FACTS}).")
    else:
        direction = (f"Soft voting is ahead by {_points(delta)}, the opposite of the report's finding on the test "
                     f"set (hard better by {_points(REPORT_HARD_VOTING_GAIN)}, report §4, {FACTS}).")
    noise = ("The two (unpaired) intervals overlap: on this many images one image moves the score by more than the "
             "report's 0.7 points (see notebook 04's out-of-fold comparison)."
             if _overlap(hard, soft) else "The intervals do not even overlap: the rule matters on this data.")
    return shows(head, direction, noise, _smoke_caveat(profile))


def outliers(scores, synthetic: bool) -> str:
    """Precision/recall of outlier removal against the planted ground truth (``outliers.score_against_planted``
    as a DataFrame or a list of row dicts), or None when there is no ground truth."""
    if scores is None:
        return shows("There is no ground truth on this data (no `planted_outliers.csv`): the removal can only be "
                     "checked by eye, with the thumbnails above.")
    rows = scores.to_dict("records") if hasattr(scores, "to_dict") else list(scores)
    parts = [f"{r['kind']}s: precision {r['precision']:.2f}, recall {r['recall']:.2f} "
             f"({r['true_positives']} of {r['planted']} planted found, {r['flagged']} flagged)" for r in rows]
    perfect = all(r["precision"] >= 0.9995 and r["recall"] >= 0.9995 for r in rows)
    if perfect and synthetic:
        verdict = ("Perfect scores on the synthetic set mean the planted outliers are easy to find here (pasted "
                   "cartoons and saturated green blobs on generated tissue), not that the method is perfect: the "
                   "real stickers and blobs vary more, and there the thumbnails are the check.")
    elif perfect:
        verdict = "Every planted outlier is found and nothing else is removed."
    else:
        missed = [r["kind"] for r in rows if r["recall"] < 0.9995]
        extra = [r["kind"] for r in rows if r["precision"] < 0.9995]
        verdict = ("Not perfect: " + "; ".join(
            ([f"missed {', '.join(missed)}s stay in the training set"] if missed else [])
            + ([f"false {', '.join(extra)} flags remove good images"] if extra else [])) + ".")
    return shows("; ".join(parts) + ".", verdict)


SEPARATES_F1 = 0.8  # "colour alone separates the classes" only when even the interval's low end is this high


def _colour_verdict(colour: dict, majority: dict | None, num_classes: int) -> str:
    """What the colour-histogram baseline's interval says about colour on this data, from its numbers only:
    *separates* needs the whole interval at or above ``SEPARATES_F1``; *carries part of the label* needs it
    above both chance (1/K, about the macro F1 of guessing uniformly) and the majority class's interval."""
    low, high = (round(v, 3) for v in colour["macro_f1_ci95"])  # compared as printed: 0.2504 does not clear 0.25
    chance = 1.0 / max(int(num_classes), 1)
    floor = round(max(chance, majority["macro_f1_ci95"][1] if majority else 0.0), 3)
    where = (f"chance (1/{num_classes} = {chance:.2f})" + (f" and the majority class (up to {majority['macro_f1_ci95'][1]:.3f})"
                                                           if majority else ""))
    if low >= SEPARATES_F1:
        return (f"Colour alone separates the classes of this data: the colour histogram's interval ({low:.3f}–"
                f"{high:.3f}) lies at or above {SEPARATES_F1:.2f}.")
    if low > floor:
        return (f"Colour carries part of the label here (the colour histogram's interval, {low:.3f}–{high:.3f}, lies "
                f"above {where}), but it does not separate the classes.")
    return (f"Colour alone does not separate the classes here: the low end of the colour histogram's interval "
            f"({low:.3f}–{high:.3f}) does not clear " + ("the higher of " if majority else "") + f"{where}.")


def _clears_chance(scores: dict, majority: dict | None, num_classes: int) -> bool:
    """Whether an interval's low end (as printed) lies above chance (1/K) and the majority class's interval: the
    learning gate as far as scores without predictions can tell."""
    floor = max(1.0 / max(int(num_classes), 1), majority["macro_f1_ci95"][1] if majority else 0.0)
    return round(scores["macro_f1_ci95"][0], 3) > round(floor, 3)


def baselines(networks: dict, reference: dict, profile: str = "smoke", num_classes: int = 4) -> str:
    """Networks vs the no-CNN baselines on the same images. ``networks`` / ``reference``: name -> scores
    (``reference`` as ``baselines.run_baselines`` names them: ``majority``, ``colour_histogram``).

    A baseline "beats" the networks only when its interval clears theirs; the best network is "ahead" only when
    its interval also clears chance (1/``num_classes``) and the majority class (else it did not learn: no verdict);
    what colour says about the data is computed from the colour histogram's interval against the same floor."""
    if not networks or not reference:
        return shows("No baseline was scored on these images.")
    best_net = max(networks, key=lambda k: networks[k]["macro_f1"])
    best_base = max(reference, key=lambda k: reference[k]["macro_f1"])
    n, b = networks[best_net], reference[best_base]
    base_name = best_base.replace("_", " ")
    named = ", ".join(f"{k.replace('_', ' ')} {_f1(v)}" for k, v in reference.items())
    if b["macro_f1"] > n["macro_f1"] and not _overlap(n, b):
        verdict = (f"The {base_name} baseline beats every network (best: {best_net} {n['macro_f1']:.3f}; the "
                   "intervals do not overlap): on this data simple image statistics carry the label better than "
                   "these models learned to.")
    elif b["macro_f1"] > n["macro_f1"]:
        verdict = (f"The {base_name} baseline scores above every network (best: {best_net} {n['macro_f1']:.3f}), "
                   "but the intervals overlap, so the baseline is not established as better on these images.")
    elif not _clears_chance(n, reference.get("majority"), num_classes):
        verdict = (f"The best network ({best_net}, {_f1(n)}) does not clear chance (1/{num_classes} = "
                   f"{1 / max(int(num_classes), 1):.2f})" + (" and the majority class" if "majority" in reference
                                                             else "") +
                   ": by its interval it did not learn on these images — no verdict between it and the baselines.")
    else:
        verdict = (f"The best network ({best_net}, {n['macro_f1']:.3f}) is ahead of the best baseline "
                   f"({base_name}, {b['macro_f1']:.3f}) by {_points(n['macro_f1'] - b['macro_f1'])}"
                   + ("; the intervals overlap, so the gap is not established on these images." if _overlap(n, b)
                      else "; the intervals do not overlap."))
    colour = (_colour_verdict(reference["colour_histogram"], reference.get("majority"), num_classes)
              if "colour_histogram" in reference else "")
    return shows(f"Baselines without a CNN: {named}.", verdict, colour, _smoke_caveat(profile))


def differences(table, profile: str = "smoke") -> str:
    """Which variants differ from the first row by their paired interval (``compare.compare_variants`` or
    ``compare.compare_runs``: columns ``variant``, ``oof_macro_f1``, ``gain``, ``gain_ci95``, and ``learned``): a
    difference is named only between rows that both learned; a row that did not learn reads "did not learn — no
    verdict" beside the baselines' scores."""
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    if _gated(rows):
        return _gated_differences(rows, profile)
    first, rest = rows[0], rows[1:]
    real = [r for r in rest if r["gain_ci95"][0] > 0 or r["gain_ci95"][1] < 0]
    better = [r for r in real if r["gain"] > 0]
    worse = [r for r in real if r["gain"] < 0]
    same = [r for r in rest if r not in real]
    best = max(rows, key=lambda r: r["oof_macro_f1"])
    out = [f"Against {first['variant']} ({first['oof_macro_f1']:.3f}), on the same images (paired bootstrap):"]
    if better:
        out.append("better by a real difference: " + ", ".join(f"{r['variant']} ({r['gain']:+.3f})" for r in better)
                   + ";")
    if worse:
        out.append("worse by a real difference: " + ", ".join(f"{r['variant']} ({r['gain']:+.3f})" for r in worse)
                   + ";")
    if same:
        out.append("no real difference (interval holds 0): " + ", ".join(r["variant"] for r in same) + ".")
    if best in better:  # a winner is named only when its paired interval says it beats the reference
        out.append(f"The highest score is {best['variant']} ({best['oof_macro_f1']:.3f}).")
    elif not better:
        out.append("No variant is ahead of the reference by its paired interval: these numbers name no winner.")
    if profile == "smoke":
        out.append(_SMOKE_VERDICTS)
    return shows(*out)


_SMOKE_VERDICTS = ("These are smoke-profile verdicts on tiny, barely trained models: they show that the paired "
                   "statistics work, they are not model choices.")


def _gated_differences(rows: list[dict], profile: str) -> str:
    """``differences`` of a table that says which rows learned."""
    bases = [r for r in rows if is_baseline_row(r)]
    models = [r for r in rows if not is_baseline_row(r)]
    first, rest = models[0], models[1:]
    ref_learned = bool(flag(first.get("learned")))
    learned = [r for r in rest if flag(r.get("learned"))]
    unlearned = [r for r in rest if not flag(r.get("learned"))]
    if not ref_learned and not learned:
        out = [NOTHING_LEARNED, "Out-of-fold macro F1: " + ", ".join(f"{r['variant']} {r['oof_macro_f1']:.3f}"
                                                                     for r in models)
               + (f"; baselines on the same folds: {_baseline_scores(bases)}." if bases else ".")]
        if profile == "smoke":
            out.append("In the smoke profile the models are tiny and barely trained: this checks that the step runs.")
        return shows(*out)
    out = []
    if ref_learned:
        out.append(f"Against {first['variant']} ({first['oof_macro_f1']:.3f}, learned), on the same images "
                   "(paired bootstrap), among the variants that learned:")
        real = [r for r in learned if r["gain_ci95"][0] > 0 or r["gain_ci95"][1] < 0]
        better = [r for r in real if r["gain"] > 0]
        worse = [r for r in real if r["gain"] < 0]
        same = [r for r in learned if r not in real]
        if better:
            out.append("better by a real difference: " + ", ".join(f"{r['variant']} ({r['gain']:+.3f})"
                                                                  for r in better) + ";")
        if worse:
            out.append("worse by a real difference: " + ", ".join(f"{r['variant']} ({r['gain']:+.3f})"
                                                                 for r in worse) + ";")
        if same:
            out.append("no real difference (interval holds 0): " + ", ".join(r["variant"] for r in same) + ";")
        best = max([first, *learned], key=lambda r: r["oof_macro_f1"])
        if best in better:
            out.append(f"The highest score is {best['variant']} ({best['oof_macro_f1']:.3f}).")
        elif not better:
            out.append("No variant that learned is ahead of the reference by its paired interval: these numbers "
                       "name no winner.")
    else:
        out.append(f"The reference, {first['variant']} ({first['oof_macro_f1']:.3f}), did not learn (no real paired "
                   "gain over the majority class, or not above the permutation null): no variant gets a verdict "
                   "against it. Learned, without a verdict: "
                   + ", ".join(f"{r['variant']} ({r['oof_macro_f1']:.3f})" for r in learned) + ".")
    if unlearned:
        out.append(_not_learned(unlearned, bases) + ".")
    colour = [r for r in [first, *learned]
              if flag(r.get("learned")) and flag(r.get("beats_colour")) is not None]
    if colour:
        out.append(_colour_line(colour))
    if profile == "smoke":
        out.append(_SMOKE_VERDICTS)
    return shows(*out)


def _colour_line(rows: list[dict]) -> str:
    """Which rows that learned beat the colour-histogram baseline by a real paired difference."""
    yes = [r["variant"] for r in rows if flag(r.get("beats_colour"))]
    no = [r["variant"] for r in rows if not flag(r.get("beats_colour"))]
    return ("Against the colour-histogram baseline (paired): " + "; ".join(
        ([f"ahead by a real difference: {', '.join(yes)}"] if yes else [])
        + ([f"no real paired gain over it: {', '.join(no)}"] if no else [])) + ".")


def _paired(r: dict) -> str:
    """One row's gain over the reference with its paired interval and what that interval says."""
    low, high = r["gain_ci95"]
    real = low > 0 or high < 0
    return (f"{r['variant']} {r['gain']:+.3f} (95% {low:+.3f} to {high:+.3f}): "
            + ("the same predictions for every image" if low == high == r["gain"] == 0 else
               ("better" if r["gain"] > 0 else "worse") + " by a real difference" if real else "no real difference"))


def comparison(result) -> str:
    """What a named comparison shows (``compare.run_comparison``'s result): each variant against the reference
    by its paired interval, a winner only when that interval excludes 0 and both learned (a row that did not
    learn: "did not learn — no verdict", beside the baselines' scores), the rows that could not run, and what
    the numbers can and cannot tell about the report's finding (cited) on this data and profile."""
    table, p = result.table, result.provenance
    rows = table.to_dict("records")
    scored = [r for r in rows if r["gain_ci95"] is not None and r["images"] and not is_baseline_row(r)]
    bases = [r for r in rows if r["gain_ci95"] is not None and r["images"] and is_baseline_row(r)]
    reference, rest = scored[0], scored[1:]
    if _gated(rows):
        out = _gated_comparison(reference, rest, bases)
    else:
        out = [f"Against {reference['variant']} (out-of-fold macro F1 {reference['oof_macro_f1']:.3f}, 95% "
               f"{reference['ci95_low']:.3f}–{reference['ci95_high']:.3f}), on the same {reference['images']} images "
               f"(paired bootstrap):"]
        out.append("; ".join(map(_paired, rest)) + ".")
        winners = [r for r in rest if r["gain_ci95"][0] > 0]
        losers = [r for r in rest if r["gain_ci95"][1] < 0]
        if not winners and not losers:
            out.append("No interval excludes 0: on these images the comparison names no winner.")
        elif winners:
            best = max(winners, key=lambda r: r["gain"])
            out.append(f"{best['variant']} beats the reference here.")
    for r in rows:
        if r not in scored and not is_baseline_row(r):
            out.append(f"{r['variant']}: {r['verdict']}.")
    weights = [r["weights"] for r in scored]
    report = f"{p['report']} [{p['source']}]" if p.get("report") else None
    if not_results(p["profile"], p["data"], weights):
        what = [("the smoke profile's tiny, briefly trained models" if p["profile"] == "smoke" else
                 f"the {p['profile']} profile's models"),
                "random (not pretrained) weights" if weights_kind(weights) == "RANDOM WEIGHTS" else None,
                "the synthetic stand-in" if is_synthetic_data(p["data"]) else None]
        out.append(f"These numbers come from {what[0]}" + (f" with {what[1]}" if what[1] else "")
                   + (f" on {what[2]}" if what[2] else "") + ": they show that the comparison runs and what its "
                   "paired statistics say on this data, and cannot confirm or refute a finding about the challenge"
                   + (f". The report's finding: {report}." if report else "."))
    elif report:
        out.append(f"The report's finding, for reference (its real test set): {report}.")
    return shows(*out)


def _gated_comparison(reference: dict, rest: list[dict], bases: list[dict]) -> list[str]:
    """``comparison``'s sentences for a table that says which rows learned."""
    ref_learned = bool(flag(reference.get("learned")))
    learned = [r for r in rest if flag(r.get("learned"))]
    unlearned = [r for r in rest if not flag(r.get("learned"))]
    interval = (f"out-of-fold macro F1 {reference['oof_macro_f1']:.3f}, 95% {reference['ci95_low']:.3f}–"
                f"{reference['ci95_high']:.3f}")
    null = reference.get("null_p95")
    null = f" (the reference's 95th percentile: {null:.3f})" if isinstance(null, float) and null == null else ""
    beside = _baseline_scores(bases)
    if not ref_learned and not learned:
        others = ", ".join(f"{r['variant']} ({r['oof_macro_f1']:.3f})" for r in rest)
        return [f"{reference['variant']}, the reference ({interval}, on {reference['images']} images), did not learn"
                + (f", and neither did {others}" if others else "") + ": none has both a real paired gain over the "
                f"majority class and a score above its permutation null{null}.",
                NOTHING_LEARNED + (f" Baselines on the same folds: {beside}." if beside else "")]
    if not ref_learned:
        out = [f"{reference['variant']}, the reference ({interval}, on {reference['images']} images), did not learn: "
               f"it does not clear both the majority class by a real paired gain and the permutation null{null}, so no "
               "variant gets a verdict against it. Learned, without a verdict against the reference: "
               + ", ".join(f"{r['variant']} ({r['oof_macro_f1']:.3f})" for r in learned) + "."]
    else:
        out = [f"Against {reference['variant']} ({interval}; it learned), on the same {reference['images']} images "
               "(paired bootstrap):"]
        verdicts = [_paired(r) for r in learned]
        if verdicts:
            out.append("; ".join(verdicts) + ".")
        winners = [r for r in learned if r["gain_ci95"][0] > 0]
        losers = [r for r in learned if r["gain_ci95"][1] < 0]
        if winners:
            out.append(f"{max(winners, key=lambda r: r['gain'])['variant']} beats the reference here.")
        elif not losers:
            out.append("No interval between variants that learned excludes 0: on these images the comparison names "
                       "no winner.")
    if unlearned:
        out.append(_not_learned(unlearned, bases) + ".")
    elif beside:
        out.append(f"Baselines on the same folds: {beside}.")
    colour = [r for r in [reference, *learned]
              if flag(r.get("learned")) and flag(r.get("beats_colour")) is not None]
    if colour:
        out.append(_colour_line(colour))
    return out


def stain_shift(in_distribution, shifted) -> str:
    """How each variant's out-of-fold score moves from the training stains to a stain shift (two tables of
    ``compare.compare_variants`` over the same models: scored on their own stains, then on other stains of the
    same tissue). A variant that falls to about the majority baseline learned the colour, not the tissue."""
    before = {r["variant"]: r for r in in_distribution.to_dict("records")}
    after = {r["variant"]: r for r in shifted.to_dict("records")}
    floor = after.get("majority class", {}).get("oof_macro_f1")
    out = ["Trained on stains that give the class away, then scored on the same tissue stained independently of it:"]
    moves = []
    for name, row in after.items():
        if name not in before or name == "majority class":
            continue
        a, b = before[name]["oof_macro_f1"], row["oof_macro_f1"]
        verb = "falls" if b < a else "rises" if b > a else "stays"
        moves.append(f"{name} {verb} from {a:.3f} to {b:.3f}"
                     + (" (no better than the majority class: it learned the colour)"
                        if floor is not None and row["ci95_high"] < floor + 0.05 else ""))
    out.append("; ".join(moves) + ".")
    return shows(*out)


def training(metrics: dict, log=None) -> str:
    """Where the selected epoch lies and what that says (still improving, or past its best)."""
    best, run = int(metrics["best_epoch"]), int(metrics["epochs_run"])
    text = f"The checkpoint kept is epoch {best} of {run}, chosen by {metrics.get('selected_by', 'validation macro F1')}."
    if run <= 3:
        text += " With this few epochs the curves show that training runs, not how it converges."
    elif best == run:
        text += " The best epoch is the last one: the model was still improving when training stopped."
    else:
        text += f" Validation did not improve over the last {run - best} epochs, so training stopped there."
    text += (" A single-split run's validation score is selected on the images it scores (the maximum over noisy "
             "epochs on few images), so it is optimistic, as the report's was. Out-of-fold scores (the comparisons "
             "of notebooks 04–07) are not: each K-fold fold selects its epoch on an inner selection split of its own "
             "training images, and its held-out images are only scored, so no image is scored by a checkpoint "
             "selected on it.")
    return shows(text)


def _ci_overlap(a, b) -> bool:
    """Whether two intervals written ``"0.117-0.166"`` (or as pairs) overlap; False when either is missing."""
    import re

    def bounds(ci):
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            return float(ci[0]), float(ci[1])
        found = re.findall(r"\d+\.\d+", str(ci)) if ci is not None else []
        return (float(found[0]), float(found[1])) if len(found) >= 2 else None

    x, y = bounds(a), bounds(b)
    return bool(x and y and x[0] <= y[1] and y[0] <= x[1])


def results_table(table, profile: str | None = None) -> str:
    """The ranking inside one section of ``report.sections`` (same data, same profile)."""
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    if not rows:
        return shows("No run of this data and profile yet.")
    profile = profile or rows[0].get("profile", "")
    folded = [r for r in rows if isinstance(r.get("oof_macro_f1"), float) and r["oof_macro_f1"] == r["oof_macro_f1"]]
    if folded:  # out of fold is the honest comparison: rank by it when it exists
        best = max(folded, key=lambda r: r["oof_macro_f1"])
        text = (f"Highest out of fold: {best['model']} with {best['voting']} voting, {best['oof_macro_f1']:.3f} "
                f"({best['oof_ci95']}).")
        top_val = max(rows, key=lambda r: r["val_macro_f1"] if r["val_macro_f1"] == r["val_macro_f1"] else -1)
        if top_val is not best and top_val["val_macro_f1"] == top_val["val_macro_f1"]:
            text += (f" The highest single-split validation score ({top_val['model']} {top_val['voting']}, "
                     f"{top_val['val_macro_f1']:.3f}) is the maximum over noisy epochs on few images; out of fold it "
                     f"scores {top_val['oof_macro_f1']:.3f}." if isinstance(top_val.get("oof_macro_f1"), float)
                     else "")
    else:
        best = max(rows, key=lambda r: r["val_macro_f1"])
        text = (f"Highest here: {best['model']} with {best['voting']} voting, validation macro F1 "
                f"{best['val_macro_f1']:.3f} ({best['val_ci95']}).")
    key, ci = ("oof_macro_f1", "oof_ci95") if folded else ("val_macro_f1", "val_ci95")
    pool = folded or [r for r in rows if r[key] == r[key]]
    rivals = [r for r in pool if r is not best and _ci_overlap(r.get(ci), best.get(ci))]
    if rivals:  # a winner is named only when its interval clears the others'
        rival = max(rivals, key=lambda r: r[key])
        text += (f" It is not clearly ahead: its interval overlaps that of {rival['model']} with {rival['voting']} "
                 f"voting ({rival[key]:.3f}, {rival[ci]}), so this ranking names no winner.")
    ref = best.get("report test F1 (real data)")
    if profile != "smoke" and isinstance(ref, float) and ref == ref:
        text += (f" The report's {ref:.3f} for the same model (Table 1, {FACTS}) is a Kaggle *test* score on the real "
                 "data: a reference for the scale, not a row of this ranking.")
    return shows(text, _smoke_caveat(profile))


def tiles(n_tiles: int, n_images: int, n_test_tiles: int | None = None, n_test_images: int | None = None) -> str:
    """Tile counts against those of the report's authors' public notebooks (3,371 from 581; 2,707 from 477)."""
    text = (f"{n_tiles:,} train+validation tiles from {n_images} clean images ({n_tiles / max(n_images, 1):.1f} per "
            f"image); the report's authors' public notebooks cut 3,371 from 581 (5.8 per image; {FACTS})")
    if n_test_tiles is not None and n_test_images:
        text += f", and {n_test_tiles:,} test tiles from {n_test_images} images (theirs: 2,707 from 477)"
    return shows(text + ". The report itself gives no tile counts.")


FULL_MODELS = {"scratch_resnet": "the report's scratch ResNet (2 stacks × 3 residual blocks, 32 filters; ~0.69 M "
                                 "parameters)",
               "convnext": "ConvNeXt Large (~196 M parameters, ImageNet-22k weights)",
               "vit": "ViT-B/16 (~86 M parameters, ImageNet weights; the report names no size, the authors' public "
                      "notebooks used ViT-Small/16: docs/dataset_facts.md, \"What the report's authors actually ran\")"}


def model_line(model, name: str, profile: str) -> str:
    """A model as one line: parameter count and, in the smoke profile, what it stands in for (instead of a
    long summary of a tiny network under text that describes the real one)."""
    count = model.count_params()
    full = FULL_MODELS.get(name, name)
    if profile == "smoke":
        return f"{count:,} parameters — a tiny stand-in of {full}, randomly initialised (smoke profile)"
    return f"{count:,} parameters — {full}"
