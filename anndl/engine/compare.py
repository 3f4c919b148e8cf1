"""Out-of-fold comparisons on the same K folds beside two baselines (``run_comparison``, ``score_runs``, …)."""

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from anndl.core import artifacts
from anndl.core.config import PROFILES, WeightsUnavailable, check_profile
from anndl.core.env import commit, data_label, hardware
from anndl.data.stages import weights_identity
from anndl.engine.experiment import Prepared, ensemble_probabilities, fold_preps, prepare, run_stain, timed
from anndl.engine.runs import Run, fit, open_run
from anndl.evaluate import metrics
from anndl.evaluate.baselines import BASELINE_ROWS, COLOUR, MAJORITY, baseline_predictions, colour_features, score
from anndl.engine import embed
from anndl.engine.heads import HEAD_CLASSES
from anndl.models import encoders
from anndl.models.registry import profile_phases

COLUMNS = ("variant", "model", "oof_macro_f1", "ci95_low", "ci95_high", "gain", "gain_ci95", "verdict", "weights",
           "epochs", "train_seconds", "ms_per_image", "images", "learned", "beats_colour", "null_p95")  # table.csv


def fold_colour(prep: Prepared, run_dir: Path | str, trained_on: Prepared | None = None) -> pd.Series:
    """Colour-histogram baseline class per image of a K-fold run, trained per fold (``trained_on``: on that data)."""
    kept = prep.clean[prep.clean.status == "kept"].sample_index
    features = train_features = colour_features(prep.manifest, kept)
    if trained_on is not None:
        if set(trained_on.clean[trained_on.clean.status == "kept"].sample_index) != set(kept):
            raise ValueError("the runs' training data kept other images than the evaluation data; a stain shift "
                             "needs the same tissue (the same synthetic seed and sizes)")
        train_features = colour_features(trained_on.manifest, kept)
    return pd.concat([baseline_predictions(f.manifest, f.split, train_features, features)
                      for f in fold_preps(prep, run_dir)]).set_index("sample_index").colour_histogram


def compare_variants(prep: Prepared, runs: dict[str, Path | str], rule: str = "hard", with_mil: bool = True,
                     seed: int = 0, tta: bool = True, ensembles: bool = True,
                     trained_on: Prepared | None = None) -> tuple[pd.DataFrame, dict]:
    """(table, details: per-image predictions, last fold's MIL attention) of same-fold K-fold runs with TTA, ensemble
    and MIL; ``ms_per_image`` includes model loading; ``trained_on``: the same tissue stained otherwise."""
    names, first = list(runs), next(iter(runs.values()))
    if len({(Path(r) / "folds.csv").read_text() for r in runs.values()}) != 1:
        raise ValueError("the runs were trained on different folds; compare runs made with the same --folds and seed")
    colour, colour_seconds = timed(fold_colour, prep, first, trained_on)
    preds, cost, truth, attention = {}, {COLOUR: colour_seconds, MAJORITY: 0.0}, [], None
    views = (False, True) if tta else (False,)

    def add(variant, predicted, seconds):
        preds.setdefault(variant, []).append(predicted)
        cost[variant] = cost.get(variant, 0.0) + seconds

    for k, fold in enumerate(fold_preps(prep, first)):
        probabilities = {}
        for name in names:
            for view in views:
                tp, s = timed(ensemble_probabilities, Path(runs[name]) / f"fold_{k}", fold.tiles, fold.manifest,
                              ("val",), tta=view)
                probabilities[name, view] = tp.probabilities, s
                add(name + " + TTA" * view, tp.vote(rule), s)
        for view in views if len(names) > 1 and ensembles else ():
            mean = sum(probabilities[n, view][0] for n in names) / len(names)
            add("ensemble + TTA" if view else "ensemble of " + " + ".join(names),
                dataclasses.replace(tp, probabilities=mean).vote(rule),
                sum(probabilities[n, view][1] for n in names))
        if with_mil:
            start, fold_dir = time.perf_counter(), Path(first) / f"fold_{k}"
            encoder, config = encoders.run_encoder(fold_dir), artifacts.read_json(fold_dir / "config.json")
            kw = dict(tile_size=int(encoder.input_shape[1]), stride=config["tiling"]["stride"],
                      stain=run_stain([fold_dir], [config]))
            encoder = embed.encode_fn(encoder)  # traced once for the fold's train and val tiles
            emb, num, tab = embed.features(encoder, fold.tiles, fold.manifest, ("train", "select"), **kw)
            (emb_v, num_v, tab_v), embed_seconds = timed(embed.features, encoder, fold.tiles, fold.manifest,
                                                         ("val",), **kw)
            mil = HEAD_CLASSES["attention_mil"]  # early stopping on ``select``, never on the held-out images
            head = mil.fit(emb, tab.label_index.to_numpy()[num], num, len(tab), seed, len(prep.classes),
                           select=(tab.split == "select").to_numpy())
            (p, attention_k, mask), s = timed(mil.attention, head, emb_v, num_v, len(tab_v))
            add(f"attention-MIL on {names[0]} embeddings", p.argmax(1), embed_seconds + s)
            attention = {"table": tab_v, "attention": attention_k, "mask": mask, "fold": k,
                         "tiles": fold.tiles[fold.tiles.split == "val"], "train_seconds": time.perf_counter() - start}
        truth.append(tp.table.assign(fold=k))
    truth = pd.concat(truth)
    y_true, images = truth.label_index.to_numpy(), truth.sample_index.to_numpy()
    rows, predicted = score(y_true, {v: np.concatenate(p) for v, p in preds.items()}, truth.fold.to_numpy(),
                            colour.loc[images].to_numpy(), len(prep.classes), seed)
    for row in rows:
        row["ms_per_image"] = round(1000 * cost[row["variant"]] / len(y_true), 1)
    return pd.DataFrame(rows), {"y_true": y_true, "images": images, "predictions": predicted, "attention": attention}


def compare_runs(prep: Prepared, runs: dict, seed: int = 0) -> pd.DataFrame:
    """``score_runs`` of finished runs of any family on one fold set: ``{name: (Run or folder, rule)}``."""
    opened = {name: r if isinstance(r, Run) else open_run(r) for name, (r, _) in runs.items()}
    if len({run.folds_file().read_text() for run in opened.values()}) != 1:
        raise ValueError("the runs were trained on different folds; use the same --folds and seed")
    variants = {name: Variant(opened[name].model, rule=rule) for name, (_, rule) in runs.items()}
    return pd.DataFrame(score_runs(variants, {n: run.folder for n, run in opened.items()}, prep.classes, seed,
                                   colour=fold_colour(prep, next(iter(opened.values())).folder), costs=False)[0])


@dataclass(frozen=True)
class Variant:
    """A model, its ``train_run`` ``overrides`` (loss, focal_gamma, augment, oversample, filters, stain_augment, seed,
    patience, learning_rate), its tiles' stain normalisation, and the prediction scored: voting ``rule``, ``phase``
    (None: the final model)."""

    model: str = "scratch_resnet"
    settings: dict = field(default_factory=dict)
    rule: str = "hard"
    phase: int | None = None
    stain_normalize: str | None = None

    def training(self) -> dict:
        """What decides its K-fold run (rule and phase do not: variants differing only there share one)."""
        return {"model": self.model, "settings": dict(sorted(self.settings.items())),
                "stain_normalize": self.stain_normalize}

    def column(self) -> str:
        """Its ``oof_predictions.csv`` column."""
        return f"pred_{self.rule}" + (f"_phase{self.phase}" if self.phase else "")


@dataclass(frozen=True)
class Comparison:
    """Variants on the same folds (the first the reference), the report's finding (``SOURCE``) and test numbers."""

    variants: dict[str, Variant]
    question: str
    report: str | None = None
    report_numbers: dict = field(default_factory=dict)


BOOTSTRAP_SEED = 0  # the intervals' resampling seed, as in every run's metrics.json; not the training seed
GATE = ("learned: a real paired gain over the majority class of the same folds and a macro F1 above the 95th "
        "percentile of 1,000 label permutations; a verdict only between variants that both learned")
SOURCE = "docs/dataset_facts.md, “The report's experiments”"  # where each report finding below is cited from
FOCAL_GAMMA = 2.0
COMPARISONS: dict[str, Comparison] = {  # a new comparison is one entry here
    "table1": Comparison({"scratch ResNet": Variant(), "ConvNeXt": Variant("convnext"), "ViT": Variant("vit")},
                         "the report's three models (Table 1)",
                         "Table 1: scratch ResNet 34.36, ConvNeXt Large 36.65, ViT 40.71 test macro F1",
                         {"scratch ResNet": 0.3436, "ConvNeXt": 0.3665, "ViT": 0.4071}),
    "losses": Comparison(
        {"cross-entropy": Variant(),  # the report's scratch ResNet as the profile has it
         "class-weighted cross-entropy": Variant(settings={"loss": "weighted_crossentropy"}),
         f"focal (γ={FOCAL_GAMMA:g})": Variant(settings={"loss": "focal", "focal_gamma": FOCAL_GAMMA})},
        "the loss against class imbalance", "§3: class weights and focal loss both degraded the test score"),
    "augmentation": Comparison(
        {"no augmentation": Variant(),
         "geometric (flips, rotations, crops)": Variant(settings={"augment": "geometric"}),
         "photometric (colour jitter)": Variant(settings={"augment": "photometric"}),
         "Triple negative ×2, both augmented": Variant(settings={"augment": "both", "oversample": "Triple negative"})},
        "data augmentation and oversampling of the smallest class",
        "§6: every augmentation scheme degraded validation and test scores"),
    "voting": Comparison({"hard voting": Variant(rule="hard"), "mask-weighted soft voting": Variant(rule="soft")},
                         "how tile predictions become an image's label (the same runs, paired)",
                         "§4: hard voting 0.7 points better than mask-weighted soft voting on the test set"),
    "fine_tuning_convnext": Comparison(
        {"ConvNeXt, phase 1 (head only)": Variant("convnext", phase=1),
         "ConvNeXt, phase 2 (fine-tuned)": Variant("convnext", phase=2)},
        "what fine-tuning the last stage adds to a trained head (the same runs)",
        "§4.2.1: ConvNeXt Large fine-tuned to 36.65 test macro F1 (no phase-1 score given)"),
    "fine_tuning_vit": Comparison(
        {"ViT, phase 1 (head only)": Variant("vit", phase=1), "ViT, phase 2 (fine-tuned)": Variant("vit", phase=2)},
        "what fine-tuning the last transformer block adds to a trained head (the same runs)",
        "§4.2.2: fine-tuning gained 1.46 points, to 40.71 test macro F1"),
    "width": Comparison({"16 filters": Variant(settings={"filters": 16}),
                         "32 filters": Variant(settings={"filters": 32})}, "the scratch ResNet's starting width",
                        "§4.1: 32 starting filters chosen over 16 for tiles (no score given)"),
    "stain": Comparison({"no stain handling": Variant(),
                         "HED augmentation (strong)": Variant(settings={"stain_augment": "strong"}),
                         "Macenko normalisation": Variant(stain_normalize="macenko")},
                        "stain handling (beyond the report)"),
    "seeds": Comparison({"seed 42": Variant(), "seed 7": Variant(settings={"seed": 7})},
                        "another seed of the same model (the run-to-run spread)"),
}
VARIANTS: dict[str, Variant] = {name: v for c in COMPARISONS.values() for name, v in c.variants.items()} | {
    "HED augmentation (light)": Variant(settings={"stain_augment": "light"}),  # for bench/oof_compare.py
    "no early stopping": Variant(settings={"patience": 1000})}


def profile_variants(name: str, profile: str) -> dict[str, Variant]:
    """The comparison's variants that ``profile`` trains (its ``left_out`` ones dropped)."""
    if name not in COMPARISONS:
        raise ValueError(f"unknown comparison {name!r}; choose from {list(COMPARISONS)}")
    skip = PROFILES[check_profile(profile)].left_out
    return {label: v for label, v in COMPARISONS[name].variants.items() if label not in skip}


@dataclass
class ComparisonResult:
    """A comparison's table (one row per variant), its provenance and the per-image predictions."""

    name: str
    table: pd.DataFrame
    provenance: dict
    predictions: pd.DataFrame
    folder: Path

    def provenance_line(self) -> str:
        """One line: what produced the table (no machine path)."""
        p = self.provenance
        epochs = f"at most {p['epochs']} epochs" if p["epochs"] else "the profile's epochs"
        return (f"{self.name}: {p['profile']} profile, {p['folds']} folds, {epochs}, seed {p['seed']}, "
                f"{p['precision'] or 'float32'}; data: {data_label(p['data'])} [fingerprint "
                f"{p['data_fingerprint']}]; trained on {p['machine']}; code {p['commit']}"
                + (f"; left out at this profile (its time budget): {', '.join(p['left_out'])}" if p.get("left_out")
                   else ""))


def binding_cap(variant: Variant, profile: str, epochs: int | None) -> int | None:
    """``epochs`` if it caps one of the variant's phases, else None (a cap binding no phase: the same run)."""
    if epochs is None:
        return None
    longest = int(variant.settings.get("epochs", max(p.epochs for p in profile_phases(variant.model, profile))))
    return int(epochs) if int(epochs) < longest else None


def kfold_run(prep: Prepared, out: Path | str, variant: Variant, *, profile: str = "smoke", folds: int = 3,
              epochs: int | None = None, seed: int = 42, mixed_precision: str | None = None,
              weights: str | None = None, redo: bool = False) -> Path:
    """The variant's K-fold run (``runs.fit``); a scratch width equal to the profile's is the reference's run.
    ``prep`` must have the variant's stain normalisation."""
    if (prep.stain or {}).get("method") != variant.stain_normalize:
        raise ValueError(f"the variant wants stain normalisation {variant.stain_normalize!r}, the tiles have "
                         f"{(prep.stain or {}).get('method')!r}; prepare the data with stain_normalize=…")
    own_width = PROFILES[check_profile(profile)].scratch.filters
    if variant.model == "scratch_resnet" and variant.settings.get("filters") == own_width:
        variant = dataclasses.replace(variant, settings={k: v for k, v in variant.settings.items() if k != "filters"})
    epochs = binding_cap(variant, profile, epochs)
    key = artifacts.fingerprint({**variant.training(), "profile": profile, "folds": folds, "epochs": epochs,
                                 "seed": seed, "weights": weights_identity(weights)})[:10]
    return fit(prep, Path(out) / "compare" / "runs" / f"{variant.model}-{key}", variant.model, folds=folds, seed=seed,
               redo=redo, profile=profile, mixed_precision=mixed_precision, overrides=dict(variant.settings),
               **({"weights": weights} if weights else {}), **({"max_epochs": epochs} if epochs else {})).folder


def run_comparison(name: str, data_dir: Path | str, out: Path | str, *, profile: str = "smoke", folds: int = 3,
                   epochs: int | None = None, seed: int = 42, mixed_precision: str | None = None,
                   weights: dict[str, str] | None = None, redo: bool = False) -> ComparisonResult:
    """Train or reuse comparison ``name``'s variants as K-fold runs on one fold set, scored in ``out/compare/<name>/``.
    ``weights``: {model: local file or preset folder}; unloadable weights: a row saying so, never random weights."""
    variants = profile_variants(name, profile)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    out, weights = Path(out), dict(weights or {})
    code = commit()  # the code that trains, taken before anything runs
    runs, refused, prepared = {}, {}, {}
    bar = tqdm(list(variants.items()), desc=f"compare {name}", unit="variant")
    for label, variant in bar:
        bar.set_postfix_str(label)
        stain = variant.stain_normalize  # the data stages once per stain normalisation
        if stain not in prepared:
            prepared[stain] = prepare(Path(data_dir), out, seed=seed, stain_normalize=stain)
        try:
            runs[label] = kfold_run(prepared[stain], out, variant, profile=profile, folds=folds, epochs=epochs,
                                    seed=seed, mixed_precision=mixed_precision, weights=weights.get(variant.model),
                                    redo=redo)
        except WeightsUnavailable as e:
            refused[label] = " ".join(str(e).split())
    reference = next(iter(variants))
    if reference not in runs:
        raise WeightsUnavailable(f"{reference} (the reference of {name}): {refused[reference]}")
    prep = prepared[variants[reference].stain_normalize]
    note, spec = prep.data_note, COMPARISONS[name]
    provenance = {"comparison": name, "variants": {k: v.training() | {"rule": v.rule, "phase": v.phase}
                                                   for k, v in variants.items()},
                  "profile": profile, "folds": folds, "epochs": epochs, "seed": seed, "precision": mixed_precision,
                  "data": note, "data_fingerprint": note.rsplit("fingerprint ", 1)[-1].rstrip("]"), "commit": code,
                  "machine": hardware(), "runs": {k: str(v.relative_to(out)) for k, v in runs.items()},
                  "not_run": refused, "gate": GATE, "question": spec.question, "report": spec.report,
                  "report_numbers": spec.report_numbers, "source": SOURCE if spec.report else None,
                  "left_out": [label for label in spec.variants if label not in variants]}
    req = artifacts.request("compare", data=note,
                            inputs={k: artifacts.read_json(v / artifacts.RECORD)["id"] for k, v in runs.items()},
                            settings={k: v for k, v in provenance.items() if k not in ("commit", "machine")})

    def build(staging: Path):
        rows, predictions = score_runs(variants, runs, prep.classes, BOOTSTRAP_SEED, refused,
                                       colour=fold_colour(prep, runs[reference]))
        artifacts.write_csv(pd.DataFrame(rows).assign(gain_ci95=lambda t: t.gain_ci95.map(json.dumps)),
                            staging / "table.csv")
        artifacts.write_csv(predictions, staging / "predictions.csv")
        artifacts.write_json(staging / "comparison.json", provenance)
        return ["table.csv", "predictions.csv", "comparison.json"]

    artifacts.ensure(out / "compare" / name, req, build, redo=redo, label=f"comparison {name}", verb="scoring")
    return read_comparison_result(out / "compare" / name)


def read_comparison_result(folder: Path | str) -> ComparisonResult:
    """A recorded comparison (files verified), as ``run_comparison`` returns it."""
    folder = Path(folder)
    artifacts.load(folder, "compare")
    table = artifacts.read_csv(folder / "table.csv")
    table["gain_ci95"] = table.gain_ci95.map(lambda v: json.loads(v) if isinstance(v, str) and v else None)
    flags = table.columns.intersection(["learned", "beats_colour"])  # True / False / None (a baseline, not run)
    table[flags] = table[flags].map(metrics.flag)
    numbers = table.columns.intersection(["oof_macro_f1", "ci95_low", "ci95_high", "gain", "null_p95",
                                          "ms_per_image", "train_seconds"])
    table[numbers] = table[numbers].apply(pd.to_numeric, errors="coerce")  # an empty cell is NaN, not text
    provenance = artifacts.read_json(folder / "comparison.json")
    return ComparisonResult(provenance["comparison"], table, provenance, artifacts.read_csv(folder / "predictions.csv"),
                            folder)


def score_runs(variants: dict[str, Variant], runs: dict[str, Path], classes, seed: int = 42,
               refused: dict[str, str] | None = None, colour: pd.Series | None = None, costs: bool = True):
    """The one scorer of same-fold runs: (rows, per-image predictions); ``refused``: {variant: why}, an unscored row."""
    predicted, first = {}, None
    for label in (label for label in variants if label in runs):
        path, column = Path(runs[label]) / "oof_predictions.csv", variants[label].column()
        frame = artifacts.read_csv(path).set_index("sample_index")
        if column not in frame:
            raise ValueError(f"{label}: {path} has no {column}" + (
                f" ({variants[label].model} has one training phase)" if variants[label].phase else ""))
        if first is None:
            reference, first, where = label, frame, path
        if set(frame.index) != set(first.index):
            raise ValueError(f"{label} ({path}) and {reference} were scored on different images; a comparison "
                             "needs one fold set")
        predicted[label] = frame.loc[first.index, column].map(classes.index).to_numpy()
    if "fold" not in first:
        raise ValueError(f"{reference}: {where} has no fold column (the fold that held each image out); its "
                         "majority-class baseline cannot be counted")
    images, y_true = first.index, first.label.map(classes.index).to_numpy()
    if colour is not None:
        if (missing := set(images) - set(colour.index)):
            raise ValueError(f"the colour baseline predicted other images than {reference}, e.g. "
                             f"{sorted(missing)[0]}")
        colour = colour.loc[images].to_numpy().astype(int)
    scored, predicted = score(y_true, predicted, first.fold.to_numpy(), colour, len(classes), seed)
    scored = {row["variant"]: row for row in scored}
    nan = float("nan")
    rows = [scored[label] | {"model": variant.model} | (_fold_costs(runs[label], variant.phase) if costs else {})
            if label in runs else
            dict.fromkeys(COLUMNS, nan) | {"variant": label, "model": variant.model, "gain_ci95": None, "images": 0,
                                           "verdict": f"not run: {refused[label]}", "weights": "unavailable",
                                           "epochs": 0, "train_seconds": 0.0, "learned": None, "beats_colour": None}
            for label, variant in variants.items()]
    rows += [scored[label] | {"model": "baseline", "weights": "none (no CNN)", "epochs": 0, "train_seconds": 0.0,
                              "ms_per_image": nan, "null_p95": nan} for label in BASELINE_ROWS if label in scored]
    frame = pd.DataFrame({"sample_index": images, "y_true": [classes[i] for i in y_true],
                          **{label: [classes[i] for i in p] for label, p in predicted.items()}})
    return [{column: row.get(column) for column in COLUMNS} for row in rows], frame


def _fold_costs(run_dir: Path, phase: int | None = None) -> dict:
    """A K-fold run's cost over its folds, mean epochs per fold, weights note; ``phase``: cost up to its end."""
    folds = artifacts.read_json(run_dir / artifacts.RECORD)["fold_runs"]
    train = predict = images = epochs = 0.0
    for fold in folds:
        m, cost = (artifacts.read_json(run_dir / fold / name) for name in ("metrics.json", "cost.json"))
        seconds = cost.get("phase_seconds")
        train += sum(seconds[:phase]) if phase is not None and seconds else cost.get("train_seconds", 0.0)
        predict += cost.get("predict_seconds", 0.0)
        images += cost.get("validation_images", 0)
        epochs += (m["epochs_run"] if phase is None else
                   int((artifacts.read_csv(run_dir / fold / "log.csv").phase <= phase).sum()))
    return {"train_seconds": round(train, 1), "ms_per_image": round(1000 * predict / max(images, 1), 1),
            "epochs": round(epochs / len(folds), 1), "weights": m["weights"]}
