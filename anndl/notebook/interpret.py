"""The notebooks' "What this shows" sentences and banner. Scores: dicts with ``macro_f1``, ``macro_f1_ci95``; a
difference is claimed only when its paired interval excludes 0 and both rows learned (``metrics.learning_gate``)."""

import re
from pathlib import Path

import pandas as pd

from anndl.core.config import PROFILES
from anndl.data import is_synthetic
from anndl.evaluate.baselines import BASELINE_ROWS
from anndl.evaluate.metrics import flag
from anndl.evaluate.submission import dominance

REPORT_HARD_VOTING_GAIN = 0.007  # report §4: hard voting 0.7 points better than mask-weighted soft on the test set
REPORT_TEST_F1 = {"scratch_resnet": 0.3436, "convnext": 0.3665, "vit": 0.4071}  # report Table 1 (real test set)
HEADING = "**What this shows.**"
FACTS = "[docs/dataset_facts.md](../docs/dataset_facts.md)"  # the source of every claim about the report
SEPARATES_F1 = 0.8  # "colour alone separates the classes" only when even the interval's low end is this high
NOTHING_LEARNED = ("No model here beat the majority class and the permutation null: the comparison gives no "
                   "verdict.")
SMOKE = ("In the smoke profile the models are tiny and barely trained: this checks that the step runs, it is not a "
         "model choice.")
SMOKE_VERDICTS = ("These are smoke-profile verdicts on tiny, barely trained models: they show that the paired "
                  "statistics work, they are not model choices.")


def is_synthetic_data(data) -> bool:
    """``data``: a data folder (``planted_outliers.csv`` marks the synthetic stand-in) or a data note."""
    return is_synthetic(data) if isinstance(data, Path) else "synthetic" in str(data).lower()


def weights_kind(weights) -> str | None:
    """``RANDOM WEIGHTS``, ``TRAINED FROM SCRATCH``, ``PRETRAINED WEIGHTS`` or None from a weights note (or notes)."""
    if not (text := " ".join(map(str, [weights] if isinstance(weights, str) else weights or [])).lower()):
        return None
    if "not pretrained" in text or "tiny" in text or ("random" in text and "from scratch" not in text):
        return "RANDOM WEIGHTS"
    return "TRAINED FROM SCRATCH" if "from scratch" in text else "PRETRAINED WEIGHTS"


def not_results(profile: str, data, weights=None) -> bool:
    """True when the numbers check the code: the smoke profile, the synthetic stand-in, or random weights."""
    return profile == "smoke" or is_synthetic_data(data) or weights_kind(weights) == "RANDOM WEIGHTS"


def banner(profile: str, data, weights=None) -> str:
    """``SMOKE PROFILE · SYNTHETIC DATA · RANDOM WEIGHTS — numbers are not results (…)``; weights: a note or None."""
    synthetic = is_synthetic_data(data)
    head = " · ".join(filter(None, [f"{profile.upper()} PROFILE", "SYNTHETIC DATA" if synthetic else "REAL DATA",
                                    weights_kind(weights)]))
    if not not_results(profile, data, weights):
        return head + " — validation scores of one split; compare models out of fold (notebook 07)"
    why = [w for w, on in [("tiny models, few epochs", profile == "smoke"),
                           ("a synthetic stand-in, not the challenge images", synthetic)] if on]
    return f"{head} — numbers are not results ({'; '.join(why) or 'untrained weights'})"


def stamp(fig, profile: str, data, weights=None) -> None:
    """Write the banner across the top of a score figure (so a copied PNG keeps its caveat)."""
    fig.text(0.5, 1.0, banner(profile, data, weights), ha="center", va="bottom", fontsize=8, weight="bold",
             color="#b00020" if not_results(profile, data, weights) else "#333333", transform=fig.transFigure)


def shows(*sentences: str) -> str:
    """Markdown: the heading and the sentences as one paragraph."""
    return f"{HEADING} " + " ".join(s.strip() for s in sentences if s and s.strip())


def _f1(scores: dict) -> str:
    low, high = scores["macro_f1_ci95"]
    return f"{scores['macro_f1']:.3f} (95% {low:.3f}–{high:.3f})"


def _points(delta: float) -> str:
    return f"{abs(delta) * 100:.1f} points"


def _overlap(a: dict, b: dict) -> bool:
    (al, ah), (bl, bh) = a["macro_f1_ci95"], b["macro_f1_ci95"]
    return al <= bh and bl <= ah


def voting(results: dict, profile: str = "smoke") -> str:
    """Hard vs mask-weighted soft voting (``{"hard": scores, "soft": scores}``) against the report's finding."""
    hard, soft = results["hard"], results["soft"]
    delta = hard["macro_f1"] - soft["macro_f1"]
    report = f"hard voting {_points(REPORT_HARD_VOTING_GAIN)} better on the real test set, report §4, {FACTS}"
    if profile == "smoke":
        direction = (f"Which rule wins in a smoke run says nothing about the report's finding ({report}): these are "
                     "tiny, barely trained models.")
    elif max(hard["macro_f1_ci95"][0], soft["macro_f1_ci95"][0]) <= 0.25:
        direction = (f"Neither rule's interval clears chance (0.25): this model did not learn, so which rule is ahead "
                     f"says nothing about the report's finding ({report}).")
    elif abs(delta) < 0.0005:
        direction = f"Both rules give the same macro F1 here (the report's finding: {report})."
    else:
        direction = (f"{'Hard' if delta > 0 else 'Soft'} voting is ahead by {_points(delta)}, "
                     + ("the direction the report found" if delta > 0 else "the opposite of the report's finding")
                     + f" ({report}).")
    noise = ("The two (unpaired) intervals overlap: on this many images one image moves the score by more than the "
             "report's 0.7 points (the out-of-fold voting comparison pairs the two rules on every image)."
             if _overlap(hard, soft) else "The intervals do not even overlap: the rule matters on this data.")
    head = f"Hard voting scores {_f1(hard)}, mask-weighted soft voting {_f1(soft)} on {hard.get('images', '?')} images."
    return shows(head, direction, noise, SMOKE if profile == "smoke" else "")


def outliers(scores, synthetic: bool) -> str:
    """Outlier removal against the planted ground truth (``outliers.score_against_planted``; None: there is none)."""
    if scores is None:
        return shows("There is no ground truth on this data (no `planted_outliers.csv`): the removal can only be "
                     "checked by eye, with the thumbnails above.")
    rows = scores.to_dict("records") if hasattr(scores, "to_dict") else list(scores)
    parts = [f"{r['kind']}s: precision {r['precision']:.2f}, recall {r['recall']:.2f} "
             f"({r['true_positives']} of {r['planted']} planted found, {r['flagged']} flagged)" for r in rows]
    missed = ", ".join(r["kind"] for r in rows if r["recall"] < 0.9995)
    extra = ", ".join(r["kind"] for r in rows if r["precision"] < 0.9995)
    if missed or extra:
        verdict = "Not perfect: " + "; ".join(filter(None, [missed and f"missed {missed}s stay in the training set",
                                                            extra and f"false {extra} flags remove good images"])) + "."
    elif synthetic:
        verdict = ("Perfect scores on the synthetic set mean the planted outliers are easy to find here (pasted "
                   "cartoons and saturated green blobs on generated tissue), not that the method is perfect: the "
                   "real stickers and blobs vary more, and there the thumbnails are the check.")
    else:
        verdict = "Every planted outlier is found and nothing else is removed."
    return shows("; ".join(parts) + ".", verdict)


def baselines(networks: dict, reference: dict, profile: str = "smoke", num_classes: int = 4) -> str:
    """Networks vs the no-CNN baselines ({name: scores}) on the same images: a side wins only when its interval clears
    the other's, and a network's must also clear chance (1/K) and the majority class (colour: the same floor)."""
    if not networks or not reference:
        return shows("No baseline was scored on these images.")
    (best_net, n), (best_base, b) = (max(d.items(), key=lambda kv: kv[1]["macro_f1"]) for d in (networks, reference))
    base, majority, chance = best_base.replace("_", " "), reference.get("majority"), 1.0 / max(int(num_classes), 1)
    floor = round(max(chance, majority["macro_f1_ci95"][1] if majority else 0.0), 3)
    lead = "The best network" if len(networks) > 1 else "The network"
    where = f"chance (1/{num_classes} = {chance:.2f})" + (
        f" and the majority class (up to {majority['macro_f1_ci95'][1]:.3f})" if majority else "")
    if round(n["macro_f1_ci95"][0], 3) <= floor:  # a network that did not learn: no verdict either way
        verdict = (f"{lead} ({best_net}, {_f1(n)}) does not clear {where}: by its interval it did not "
                   "learn on these images — no verdict between it and the baselines.")
    elif b["macro_f1"] > n["macro_f1"] and not _overlap(n, b):
        verdict = (f"The {base} baseline beats every network (best: {best_net} {n['macro_f1']:.3f}; the intervals do "
                   "not overlap): on this data simple image statistics carry the label better than these models "
                   "learned to.")
    elif b["macro_f1"] > n["macro_f1"]:
        verdict = (f"The {base} baseline scores above every network (best: {best_net} {n['macro_f1']:.3f}), but the "
                   "intervals overlap, so the baseline is not established as better on these images.")
    else:
        verdict = (f"{lead} ({best_net}, {n['macro_f1']:.3f}) is ahead of the best baseline ({base}, "
                   f"{b['macro_f1']:.3f}) by {_points(n['macro_f1'] - b['macro_f1'])}; the intervals "
                   + ("overlap, so the gap is not established on these images." if _overlap(n, b)
                      else "do not overlap."))
    colour = ""
    if "colour_histogram" in reference:
        low, high = (round(v, 3) for v in reference["colour_histogram"]["macro_f1_ci95"])
        if low >= SEPARATES_F1:
            colour = (f"Colour alone separates the classes of this data: the colour histogram's interval ({low:.3f}–"
                      f"{high:.3f}) lies at or above {SEPARATES_F1:.2f}.")
        elif low > floor:
            colour = (f"Colour carries part of the label here (the colour histogram's interval, {low:.3f}–{high:.3f}, "
                      f"lies above {where}), but it does not separate the classes.")
        else:
            images = reference["colour_histogram"].get("images")
            colour = (f"On these {f'{images} ' if images else ''}images colour alone is not shown to carry the label: "
                      f"the low end of the colour histogram's interval ({low:.3f}–{high:.3f}) does not clear "
                      + ("the higher of " if majority else "") + f"{where}.")
    named = ", ".join(f"{k.replace('_', ' ')} {_f1(v)}" for k, v in reference.items())
    return shows(f"Baselines without a CNN: {named}.", verdict, colour, SMOKE if profile == "smoke" else "")


def is_baseline_row(row: dict) -> bool:
    """Whether a comparison table's row is one of the baselines (majority class, colour histogram)."""
    return row["variant"] in BASELINE_ROWS or row.get("verdict") == "baseline"


def _scores(rows: list[dict]) -> str:
    return ", ".join(f"{r['variant']} ({r['oof_macro_f1']:.3f})" for r in rows)


def _groups(*groups: tuple[str, list[str]]) -> str:
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in groups if names)


def _verdicts(rows: list[dict]) -> list[str]:
    """Each variant against the first row by paired interval; with ``learned``, only rows that learned get verdicts."""
    gated = any(flag(r.get("learned")) is not None for r in rows)
    bases = [r for r in rows if gated and is_baseline_row(r)]
    first, *rest = [r for r in rows if not (gated and is_baseline_row(r))]
    learned = [r for r in rest if not gated or flag(r.get("learned"))]
    unlearned = [r for r in rest if gated and not flag(r.get("learned"))]
    beside = ", ".join(f"{r['variant'].replace(' (no CNN)', '')} {r['oof_macro_f1']:.3f}" for r in bases)
    null = f" (the reference's 95th percentile: {first['null_p95']:.3f})" if pd.notna(first.get("null_p95")) else ""
    if gated and not flag(first.get("learned")):
        if not learned:
            return [f"{first['variant']}, the reference, did not learn" + (", nor did any variant" if rest else "")
                    + ": none has both a real paired gain over the majority class and a score above its permutation "
                    f"null{null}.", NOTHING_LEARNED, f"Out-of-fold macro F1: {_scores([first, *rest])}"
                    + (f"; baselines on the same folds: {beside}." if beside else ".")]
        out = [f"{first['variant']}, the reference ({first['oof_macro_f1']:.3f}), did not learn: no real paired gain "
               f"over the majority class, or not above the permutation null{null}; no variant gets a verdict against "
               f"it. Learned, without a verdict: {_scores(learned)}."]
    else:
        out = [f"Against {first['variant']} ({first['oof_macro_f1']:.3f}{', learned' if gated else ''}), on the same "
               "images (paired bootstrap)" + ((", among the variants that learned:" if gated else ":") if learned
                                              else ", no variant learned.")]
        real = [r for r in learned if r["gain_ci95"][0] > 0 or r["gain_ci95"][1] < 0]
        better, worse = [r for r in real if r["gain"] > 0], [r for r in real if r["gain"] <= 0]
        same = [r["variant"] + (" (the same predictions for every image)"
                                if r["gain"] == 0 and tuple(r["gain_ci95"]) == (0, 0) else "")
                for r in learned if r not in real]
        if learned:
            out.append(_groups(("better by a real difference", [f"{r['variant']} ({r['gain']:+.3f})" for r in better]),
                               ("worse by a real difference", [f"{r['variant']} ({r['gain']:+.3f})" for r in worse]),
                               ("no real difference (interval holds 0)", same)) + ".")
            best = max([first, *learned], key=lambda r: r["oof_macro_f1"])
            out.append(f"The highest score is {best['variant']} ({best['oof_macro_f1']:.3f}); "
                       f"{max(better, key=lambda r: r['gain'])['variant']} beats the reference here." if better else
                       f"No variant{' that learned' if gated else ''} is ahead of the reference by its paired "
                       "interval: the comparison names no winner.")
    if unlearned:
        out.append("; ".join(f"{r['variant']} ({r['oof_macro_f1']:.3f}): did not learn — no verdict" for r in unlearned)
                   + (f" (baselines on the same folds: {beside})." if beside else "."))
    elif beside:
        out.append(f"Baselines on the same folds: {beside}.")
    colour = {r["variant"]: flag(r.get("beats_colour")) for r in [first, *learned] if flag(r.get("learned"))}
    if any(beats is not None for beats in colour.values()):
        out.append("Against the colour-histogram baseline (paired): " + _groups(
            ("ahead by a real difference", [v for v, beats in colour.items() if beats]),
            ("no real paired gain over it", [v for v, beats in colour.items() if beats is False])) + ".")
    return out


def differences(table, profile: str = "smoke") -> str:
    """``_verdicts`` of a ``compare.compare_variants`` / ``compare_runs`` table (smoke: a caveat)."""
    return shows(*_verdicts(table.to_dict("records")), SMOKE_VERDICTS if profile == "smoke" else "")


def comparison(result) -> str:
    """A ``compare.run_comparison`` result: ``_verdicts``, rows not run, and what it can tell about the report."""
    p, rows = result.provenance, result.table.to_dict("records")
    scored = [r for r in rows if r["gain_ci95"] is not None and r["images"]]
    out = _verdicts(scored) + [f"{r['variant']}: {r['verdict']}." for r in rows
                               if r not in scored and not is_baseline_row(r)]
    weights = [r["weights"] for r in scored if not is_baseline_row(r)]
    report = f"{p['report']} [{p['source']}]" if p.get("report") else None
    if not_results(p["profile"], p["data"], weights):
        what = ("the smoke profile's tiny, briefly trained models" if p["profile"] == "smoke"
                else f"the {p['profile']} profile's models")
        what += " with random (not pretrained) weights" if weights_kind(weights) == "RANDOM WEIGHTS" else ""
        what += " on the synthetic stand-in" if is_synthetic_data(p["data"]) else ""
        out.append(f"These numbers come from {what}: they show that the comparison runs and what its paired "
                   "statistics say on this data, and cannot confirm or refute a finding about the challenge"
                   + (f". The report's finding: {report}." if report else "."))
    elif report:
        out.append(f"The report's finding, for reference (its real test set): {report}.")
    return shows(*out)


def training(metrics: dict) -> str:
    """Where the selected epoch lies and what that says (still improving, or past its best)."""
    best, run = int(metrics["best_epoch"]), int(metrics["epochs_run"])
    by = metrics.get("selected_by", "validation macro F1")
    text = f"The checkpoint kept is epoch {best} of {run}, chosen by {by}."
    if run <= 3:
        text += " With this few epochs the curves show that training runs, not how it converges."
    elif best == run:
        text += " The best epoch is the last one: the model was still improving when training stopped."
    else:
        text += f" Validation did not improve over the last {run - best} epochs, so training stopped there."
    return shows(text, "A single-split run's validation score is selected on the images it scores (the maximum over "
                 "noisy epochs on few images), so it is optimistic, as the report's was. Out-of-fold scores (the "
                 "comparisons of notebooks 04–07) are not: each K-fold fold selects its epoch on an inner selection "
                 "split of its own training images, and its held-out images are only scored, so no image is scored "
                 "by a checkpoint selected on it.")


def _ci_overlap(a, b) -> bool:
    """Whether two intervals written ``"0.117-0.166"`` (or as pairs) overlap; False when either is missing."""
    x, y = ([float(v) for v in re.findall(r"\d+\.\d+", str(ci))][:2] for ci in (a, b))
    return len(x) == len(y) == 2 and x[0] <= y[1] and y[0] <= x[1]


def results_table(table, profile: str | None = None) -> str:
    """The ranking of one ``report.sections`` table: out of fold where it exists, a winner only clear of the rest."""
    if not (rows := table.to_dict("records") if hasattr(table, "to_dict") else list(table)):
        return shows("No run of this data and profile yet.")
    profile = profile or rows[0].get("profile", "")
    folded = [r for r in rows if pd.notna(r.get("oof_macro_f1"))]
    key, ci = ("oof_macro_f1", "oof_ci95") if folded else ("val_macro_f1", "val_ci95")
    pool = folded or [r for r in rows if pd.notna(r[key])]
    best = max(pool, key=lambda r: r[key])
    text = (f"Highest {'out of fold' if folded else 'here'}: {best['model']} with {best['voting']} voting, "
            + ("" if folded else "validation macro F1 ") + f"{best[key]:.3f} ({best[ci]}).")
    top = max([r for r in rows if pd.notna(r["val_macro_f1"])], key=lambda r: r["val_macro_f1"], default=best)
    if folded and top is not best and pd.notna(top.get("oof_macro_f1")):
        text += (f" The highest single-split validation score ({top['model']} {top['voting']}, "
                 f"{top['val_macro_f1']:.3f}) is the maximum over noisy epochs on few images; out of fold it scores "
                 f"{top['oof_macro_f1']:.3f}.")
    if (rivals := [r for r in pool if r is not best and _ci_overlap(r.get(ci), best.get(ci))]):
        rival = max(rivals, key=lambda r: r[key])
        text += (f" It is not clearly ahead: its interval overlaps that of {rival['model']} with {rival['voting']} "
                 f"voting ({rival[key]:.3f}, {rival[ci]}), so this ranking names no winner.")
    ref = best.get("report test F1 (real data)")
    if profile != "smoke" and pd.notna(ref):
        text += (f" The report's {ref:.3f} for the same model (Table 1, {FACTS}) is a Kaggle *test* score on the real "
                 "data: a reference for the scale, not a row of this ranking.")
    return shows(text, SMOKE if profile == "smoke" else "")


def submission(labels, classes) -> str:
    """A submission's class counts, classes never predicted (test F1 0, capping macro F1) and a dominating class."""
    counts = pd.Series(list(labels), dtype=object).value_counts().reindex(list(classes), fill_value=0)
    total = int(counts.sum())
    parts = ", ".join(f"{c} {n} ({n / max(total, 1):.0%})" for c, n in counts.sort_values(ascending=False).items())
    never = [c for c, n in counts.items() if n == 0]
    found = dominance(list(labels), tuple(classes))
    whose = "that class's F1 on the test set is" if len(never) == 1 else "their F1s on the test set are"
    return shows(
        f"The {total} test images are predicted {parts}.",
        f"It never predicts {' or '.join(never)}: {whose} 0 whatever else is right, so macro F1 can reach at most "
        f"{(len(classes) - len(never)) / len(classes):.2f}." if never else "",
        f"One class, {found['class']}, takes {found['share']:.0%} of the predictions: a model that learned little "
        "predicts one class." if found else "")


def tiles(n_tiles: int, n_images: int, n_test_tiles: int | None = None, n_test_images: int | None = None) -> str:
    """Tile counts against those of the report's authors' public notebooks (3,371 from 581; 2,707 from 477)."""
    text = (f"This run cuts {n_tiles:,} train+validation tiles from {n_images} clean images "
            f"({n_tiles / max(n_images, 1):.1f} per image)")
    if n_test_tiles is not None and n_test_images:
        text += f" and {n_test_tiles:,} test tiles from {n_test_images} images"
    return shows(text + "; the report's authors' public notebooks cut 3,371 train+validation tiles from 581 images "
                 f"(5.8 per image) and 2,707 test tiles from 477 ({FACTS}). The report itself gives no tile counts.")


AUTHORS_SCRATCH_PARAMS = 690_000  # "~0.69 M" (docs/dataset_facts.md, "What the report's authors actually ran")
FULL_MODELS = {"scratch_resnet": "the report's scratch ResNet (2 stacks × 3 residual blocks, 32 filters)",
               "convnext": "ConvNeXt Large (~196 M parameters, ImageNet-22k weights)",
               "vit": "ViT-B/16 (~86 M parameters, ImageNet weights; the report names no size, the authors' public "
                      "notebooks used ViT-Small/16: docs/dataset_facts.md, \"What the report's authors actually ran\")"}


def model_line(model, name: str, profile: str) -> str:
    """A model as one line: parameter count and what it is (a tiny stand-in: what it stands for)."""
    full, count = FULL_MODELS.get(name, name), model.count_params()
    if profile == "smoke" or (name != "scratch_resnet" and not PROFILES[profile].pretrained):
        full = f"a tiny stand-in of {full}, randomly initialised ({profile} profile)"
    elif name == "scratch_resnet" and abs(count / AUTHORS_SCRATCH_PARAMS - 1) > 0.1:
        full += (f"; the authors' notebooks' network has ~{AUTHORS_SCRATCH_PARAMS / 1e6:.2f} M "
                 f"(docs/dataset_facts.md): {count / AUTHORS_SCRATCH_PARAMS:.0%} of it, as the report's description "
                 "does not fix the layers around the residual stacks")
    return f"{count:,} parameters — {full}"
