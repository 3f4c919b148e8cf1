"""Comparisons out of fold on the same K folds: the report's experiments, and what goes past the report.

A **variant** is a named set of overrides of a model's settings (``VARIANTS``, one table); a **comparison**
is a named list of variants, the first the reference (``COMPARISONS``: the report's Table 1, losses,
augmentation, voting, fine-tuning, width; stain handling; seeds). ``run_comparison`` trains each variant
as a recorded, resumable K-fold run (``experiment.train_folds``: reused when its record matches), reads
every variant's out-of-fold prediction of every image, and scores it: macro F1 with its bootstrap 95%
interval, the paired 95% interval of its difference from the reference, whether it learned
(``metrics.learning_gate``: a real paired gain over the majority class of the same folds and a score above a
permutation null) and whether it beats the colour-histogram baseline, a verdict ("real difference" only when
that interval excludes 0, and only between variants that both learned), the training and prediction cost, and
the data, profile, epochs and commit that produced it (``comparison.json`` beside ``table.csv``, with a
record). ``compare_variants`` scores runs that exist already, with test-time augmentation, ensembles,
attention-MIL and the two baselines (majority class, colour histogram) that any of them must beat. Every
table carries the two baselines' rows, scored on the same folds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anndl.core import artifacts
from anndl.data.stages import weights_identity
from anndl.engine.experiment import Prepared, ensemble_probabilities, fold_preps, run_stain
from anndl.evaluate import metrics, voting
from anndl.evaluate.baselines import (BASELINE_ROWS, COLOUR, MAJORITY, baseline_predictions, colour_features,
                                     majority_per_fold)
from anndl.engine import embed
from anndl.engine.heads import HEAD_CLASSES
from anndl.models import encoders


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def compare_variants(prep: Prepared, runs: dict[str, Path | str], rule: str = "hard", with_mil: bool = True,
                     seed: int = 0, tta: bool = True, ensembles: bool = True,
                     trained_on: Prepared | None = None) -> tuple[pd.DataFrame, dict]:
    """Out-of-fold scores of every variant for K-fold runs sharing one ``folds.csv``.

    ``runs``: {name: K-fold run folder}. Returns the table and the details: per-image out-of-fold predictions
    and the MIL attention of the last fold (for drawing). The table has, per variant, its macro F1 with its
    interval, ``ms_per_image`` (prediction wall time on this machine, model loading included) and the ``gain``
    over the first row (the first run's single model) with its paired-bootstrap interval, ``learned``,
    ``beats_colour`` and a verdict (``metrics.compared`` with both baselines of the same folds).
    ``tta``/``ensembles``: also score each run with test-time augmentation / the runs' ensemble.
    ``trained_on``: the runs were trained on other images of the same tissue (another staining, same names and
    masks): each held-out image is scored as ``prep`` has it (a stain shift), the colour baseline likewise.
    """
    names = list(runs)
    folds_files = {(Path(r) / "folds.csv").read_text() for r in runs.values()}
    if len(folds_files) != 1:
        raise ValueError("the runs were trained on different folds; compare runs made with the same --folds and seed")
    preds: dict[str, list] = {}
    cost: dict[str, float] = {}
    truth, images, attention = [], [], None
    n_images_total = 0

    def add(variant, predicted, seconds):
        preds.setdefault(variant, []).append(predicted)
        cost[variant] = cost.get(variant, 0.0) + seconds

    kept = prep.clean[prep.clean.status == "kept"].sample_index
    features, feature_seconds = _timed(colour_features, prep.manifest, kept)
    train_features = features
    if trained_on is not None:
        trained_kept = trained_on.clean[trained_on.clean.status == "kept"].sample_index
        if set(trained_kept) != set(kept):
            raise ValueError("the runs' training data kept other images than the evaluation data; a stain shift "
                             "needs the same tissue (the same synthetic seed and sizes)")
        train_features = colour_features(trained_on.manifest, kept)
    for k, fold in enumerate(fold_preps(prep, next(iter(runs.values())))):
        plain, augmented = {}, {}
        for name in names:
            fold_dir = Path(runs[name]) / f"fold_{k}"
            tp, s = _timed(ensemble_probabilities, fold_dir, fold.tiles, fold.manifest, ("val",))
            p, numbers, weights, table = tp.probabilities, tp.image_numbers, tp.weights, tp.table
            plain[name] = (p, s)
            add(f"{name}", voting.vote(p, numbers, weights, len(table), rule), s)
            if tta:
                tp_tta, s_tta = _timed(ensemble_probabilities, fold_dir, fold.tiles, fold.manifest, ("val",),
                                       tta=True)
                augmented[name] = (tp_tta.probabilities, s_tta)
                add(f"{name} + TTA", voting.vote(tp_tta.probabilities, numbers, weights, len(table), rule), s_tta)
        if len(names) > 1 and ensembles:
            mean = sum(plain[n][0] for n in names) / len(names)
            add("ensemble of " + " + ".join(names), voting.vote(mean, numbers, weights, len(table), rule),
                sum(plain[n][1] for n in names))
            if tta:
                mean_tta = sum(augmented[n][0] for n in names) / len(names)
                add("ensemble + TTA", voting.vote(mean_tta, numbers, weights, len(table), rule),
                    sum(augmented[n][1] for n in names))
        if with_mil:
            name = names[0]
            start = time.perf_counter()
            fold_dir = Path(runs[name]) / f"fold_{k}"
            encoder = encoders.run_encoder(fold_dir)
            config = artifacts.read_json(fold_dir / "config.json")
            stain = run_stain([fold_dir], [config])
            kw = dict(tile_size=int(encoder.input_shape[1]), stride=config["tiling"]["stride"], stain=stain)
            encoder = embed.encode_fn(encoder)  # traced once for the fold's train and val tiles
            emb, num, tab = embed.features(encoder, fold.tiles, fold.manifest, ("train", "select"), **kw)
            val_start = time.perf_counter()
            emb_v, num_v, tab_v = embed.features(encoder, fold.tiles, fold.manifest, ("val",), **kw)
            embed_val_seconds = time.perf_counter() - val_start
            # the attention-MIL head of ``heads``: early stopping on the fold's selection split (its own training
            # images), never on the held-out images it is scored on
            attention_mil = HEAD_CLASSES["attention_mil"]
            head = attention_mil.fit(emb, tab.label_index.to_numpy()[num], num, len(tab), seed, len(prep.classes),
                                     select=(tab.split == "select").to_numpy())
            (probabilities, attention_k, m_val), s = _timed(attention_mil.attention, head, emb_v, num_v, len(tab_v))
            add(f"attention-MIL on {name} embeddings", probabilities.argmax(1), embed_val_seconds + s)
            attention = {"table": tab_v, "attention": attention_k, "mask": m_val, "fold": k,
                         "tiles": fold.tiles[fold.tiles.split == "val"], "train_seconds": time.perf_counter() - start}
        baseline = baseline_predictions(fold.manifest, fold.split, train_features, features).set_index("sample_index")
        baseline = baseline.loc[table.sample_index]
        add(COLOUR, baseline.colour_histogram.to_numpy(), feature_seconds * len(table) / len(kept))
        add(MAJORITY, baseline.majority.to_numpy(), 0.0)
        truth.append(table.label_index.to_numpy())
        images.append(table.sample_index.to_numpy())
        n_images_total += len(table)
    y_true = np.concatenate(truth)
    predicted = {v: np.concatenate(p) for v, p in preds.items()}
    rows = metrics.compared(y_true, predicted, seed, len(prep.classes), majority=predicted[MAJORITY],
                            colour=predicted[COLOUR], baselines=BASELINE_ROWS)
    for row in rows:
        row["ms_per_image"] = round(1000 * cost[row["variant"]] / n_images_total, 1)
    details = {"y_true": y_true, "images": np.concatenate(images),
               "predictions": {v: np.concatenate(p) for v, p in preds.items()}, "attention": attention}
    return pd.DataFrame(rows), details


def compare_runs(prep: Prepared, runs: dict, seed: int = 0) -> pd.DataFrame:
    """Out-of-fold scores of finished runs of any family on the same folds (``{name: (run, rule)}``, a run a
    ``runs.Run`` or its folder) beside the colour-histogram and majority baselines of the same folds, each with
    its bootstrap interval, its gain over the first row with a paired-bootstrap interval, ``learned``,
    ``beats_colour`` and a verdict (``metrics.compared``)."""
    from anndl.engine.runs import Run, open_run

    opened = {name: (r if isinstance(r, Run) else open_run(r), rule) for name, (r, rule) in runs.items()}
    if len({run.folds_file().read_text() for run, _ in opened.values()}) != 1:
        raise ValueError("the runs were trained on different folds; use the same --folds and seed")
    classes = tuple(prep.classes)
    tables = {name: run.predictions().set_index("sample_index") for name, (run, _) in opened.items()}
    images = next(iter(tables.values())).index
    for name, table in tables.items():
        if set(table.index) != set(images):
            raise ValueError(f"{name}: {opened[name][0].folder} scored other images than the first run")
    preds = {name: tables[name].loc[images, f"pred_{rule}"].map(classes.index).to_numpy()
             for name, (_, rule) in opened.items()}
    kept = prep.clean[prep.clean.status == "kept"].sample_index
    features = colour_features(prep.manifest, kept)
    first = next(iter(opened.values()))[0].folder
    base = pd.concat([baseline_predictions(f.manifest, f.split, features)
                      for f in fold_preps(prep, first)]).set_index("sample_index").loc[images]
    preds[COLOUR] = base.colour_histogram.to_numpy()
    preds[MAJORITY] = base.majority.to_numpy()
    y_true = next(iter(tables.values())).loc[images].label.map(classes.index).to_numpy()
    return pd.DataFrame(metrics.compared(y_true, preds, seed, len(classes), majority=preds[MAJORITY],
                                         colour=preds[COLOUR], baselines=BASELINE_ROWS))


# ------------------------------------------------------------------------------------ named comparisons

@dataclass(frozen=True)
class Variant:
    """A model and the overrides of its settings (``experiment.train_run``'s ``overrides``: ``loss``,
    ``focal_gamma``, ``augment``, ``oversample``, ``filters``, ``stain_augment``, ``seed``, ``patience``,
    ``learning_rate``), the stain normalisation of its tiles, and which of its out-of-fold predictions is
    scored: the voting ``rule`` and, for a two-phase model, the ``phase`` (None: the final model)."""

    model: str = "scratch_resnet"
    settings: dict = field(default_factory=dict)
    rule: str = "hard"
    phase: int | None = None
    stain_normalize: str | None = None

    def training(self) -> dict:
        """What decides its K-fold run (variants that differ only in rule or phase share one run)."""
        return {"model": self.model, "settings": dict(sorted(self.settings.items())),
                "stain_normalize": self.stain_normalize}

    def column(self) -> str:
        """Its column in the K-fold run's ``oof_predictions.csv``."""
        return f"pred_{self.rule}" + (f"_phase{self.phase}" if self.phase else "")


FOCAL_GAMMA = 2.0
VARIANTS: dict[str, Variant] = {
    # the report's scratch ResNet as the profile has it: the reference of the scratch comparisons
    "cross-entropy": Variant(),
    "class-weighted cross-entropy": Variant(settings={"loss": "weighted_crossentropy"}),
    f"focal (γ={FOCAL_GAMMA:g})": Variant(settings={"loss": "focal", "focal_gamma": FOCAL_GAMMA}),
    "no augmentation": Variant(),
    "geometric (flips, rotations, crops)": Variant(settings={"augment": "geometric"}),
    "photometric (colour jitter)": Variant(settings={"augment": "photometric"}),
    "Triple negative ×2, both augmented": Variant(settings={"augment": "both", "oversample": "Triple negative"}),
    "hard voting": Variant(rule="hard"),
    "mask-weighted soft voting": Variant(rule="soft"),
    "16 filters": Variant(settings={"filters": 16}),
    "32 filters": Variant(settings={"filters": 32}),
    "scratch ResNet": Variant(),
    "ConvNeXt": Variant("convnext"),
    "ViT": Variant("vit"),
    "ConvNeXt, phase 1 (head only)": Variant("convnext", phase=1),
    "ConvNeXt, phase 2 (fine-tuned)": Variant("convnext", phase=2),
    "ViT, phase 1 (head only)": Variant("vit", phase=1),
    "ViT, phase 2 (fine-tuned)": Variant("vit", phase=2),
    # beyond the report
    "no stain handling": Variant(),
    "HED augmentation (light)": Variant(settings={"stain_augment": "light"}),
    "HED augmentation (strong)": Variant(settings={"stain_augment": "strong"}),
    "Macenko normalisation": Variant(stain_normalize="macenko"),
    "seed 42": Variant(),
    "seed 7": Variant(settings={"seed": 7}),
    "no early stopping": Variant(settings={"patience": 1000}),
}
BOOTSTRAP_SEED = 0  # resampling of the intervals (metrics.image_scores' default), apart from the training seed
GATE = ("learned: a real paired gain over the majority class of the same folds and a macro F1 above the 95th "
        "percentile of 1,000 label permutations; a verdict only between variants that both learned")
SOURCE = "docs/dataset_facts.md, “The report's experiments”"  # where each report finding below is cited from


@dataclass(frozen=True)
class Comparison:
    """Variants compared on the same folds (the first is the reference), what the report found (each finding
    cited from ``SOURCE``), and the report's own numbers where it printed some (its real test set: a
    reference column, not these runs)."""

    variants: tuple[str, ...]
    question: str
    report: str | None = None
    report_numbers: dict = field(default_factory=dict)


COMPARISONS: dict[str, Comparison] = {
    "table1": Comparison(("scratch ResNet", "ConvNeXt", "ViT"),
                         "the report's three models (Table 1)",
                         "Table 1: scratch ResNet 34.36, ConvNeXt Large 36.65, ViT 40.71 test macro F1",
                         {"scratch ResNet": 0.3436, "ConvNeXt": 0.3665, "ViT": 0.4071}),
    "losses": Comparison(("cross-entropy", "class-weighted cross-entropy", f"focal (γ={FOCAL_GAMMA:g})"),
                         "the loss against class imbalance",
                         "§3: class weights and focal loss both degraded the test score"),
    "augmentation": Comparison(("no augmentation", "geometric (flips, rotations, crops)", "photometric (colour jitter)",
                                "Triple negative ×2, both augmented"),
                               "data augmentation and oversampling of the smallest class",
                               "§6: every augmentation scheme degraded validation and test scores"),
    "voting": Comparison(("hard voting", "mask-weighted soft voting"),
                         "how tile predictions become an image's label (the same runs, paired)",
                         "§4: hard voting 0.7 points better than mask-weighted soft voting on the test set"),
    "fine_tuning_convnext": Comparison(("ConvNeXt, phase 1 (head only)", "ConvNeXt, phase 2 (fine-tuned)"),
                                       "what fine-tuning the last stage adds to a trained head (the same runs)",
                                       "§4.2.1: ConvNeXt Large fine-tuned to 36.65 test macro F1 (no phase-1 score given)"),
    "fine_tuning_vit": Comparison(("ViT, phase 1 (head only)", "ViT, phase 2 (fine-tuned)"),
                                  "what fine-tuning the last transformer block adds to a trained head (the same runs)",
                                  "§4.2.2: fine-tuning gained 1.46 points, to 40.71 test macro F1"),
    "width": Comparison(("16 filters", "32 filters"), "the scratch ResNet's starting width",
                        "§4.1: 32 starting filters chosen over 16 for tiles (no score given)"),
    "stain": Comparison(("no stain handling", "HED augmentation (strong)", "Macenko normalisation"),
                        "stain handling (beyond the report)"),
    "seeds": Comparison(("seed 42", "seed 7"), "another seed of the same model (the run-to-run spread)"),
}


def parse_settings(pairs: list[str] | tuple[str, ...]) -> dict:
    """``["loss=focal", "focal_gamma=3"]`` -> ``{"loss": "focal", "focal_gamma": 3.0}`` (numbers, booleans and
    ``none`` parsed; anything else kept as text)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value, got {pair!r}")
        text = value.strip()
        parsed = {"true": True, "false": False, "none": None}.get(text.lower(), text)
        if parsed is text:
            try:
                parsed = int(text)
            except ValueError:
                try:
                    parsed = float(text)
                except ValueError:
                    pass
        out[key.strip()] = parsed
    return out


def custom_variant(base: str, pairs) -> tuple[str, Variant]:
    """A variant made from the named ``base`` and ``--set`` overrides; named by them."""
    if base not in VARIANTS:
        raise ValueError(f"unknown variant {base!r}; choose from {list(VARIANTS)}")
    changes = parse_settings(pairs)
    label = ", ".join(f"{k}={v}" for k, v in changes.items())
    variant = VARIANTS[base]
    for key in ("rule", "phase", "model", "stain_normalize"):
        if key in changes:
            variant = dataclasses.replace(variant, **{key: changes.pop(key)})
    variant = dataclasses.replace(variant, settings={**variant.settings, **changes})
    return label, variant


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
        from anndl.core.env import data_label

        p = self.provenance
        epochs = f"at most {p['epochs']} epochs" if p["epochs"] else "the profile's epochs"
        return (f"{self.name}: {p['profile']} profile, {p['folds']} folds, {epochs}, seed {p['seed']}, "
                f"{p['precision'] or 'float32'}; data: {data_label(p['data'])} [fingerprint "
                f"{p['data_fingerprint']}]; trained on {p['machine']}; code {p['commit']}")


def binding_cap(variant: Variant, profile: str, epochs: int | None) -> int | None:
    """``epochs`` where it caps one of the variant's phases in ``profile``, else None: a cap that binds no phase
    trains the same models, so the runs with and without it are one run (the notebooks' budget and a CLI
    comparison without ``--epochs`` share their runs)."""
    from anndl.models.registry import profile_phases

    if epochs is None:
        return None
    phases = profile_phases(variant.model, profile)
    longest = int(dict(variant.settings).get("epochs", max(p.epochs for p in phases)))
    return int(epochs) if int(epochs) < longest else None


GPU_RUN = "bench/results/gpu_full_scratch.json"  # a full-profile scratch ResNet run on a lent GPU (Keras/JAX, bf16)


def budget(names, n_images: int, profile: str, folds: int, epochs: int | None = None) -> str:
    """What the comparisons ``names`` train on ``n_images`` cleaned images: their distinct K-fold runs (variants
    that differ only in scoring share one) × ``folds`` × each run's epochs at most, and for the scratch ResNet
    the GPU time that implies at the rate of ``GPU_RUN`` (seconds per epoch per training image; that run's own
    early stop gives the typical figure). Other models' GPU rates are not measured here, and the line says so."""
    from anndl.core.config import REPO_ROOT
    from anndl.data.stages import VAL_FRACTION
    from anndl.data.tiling import SELECT_FRACTION
    from anndl.models.registry import profile_phases

    runs = {json.dumps(VARIANTS[v].training(), sort_keys=True): VARIANTS[v] for n in names
            for v in COMPARISONS[n].variants}
    per_image = (folds - 1) / folds * (1 - SELECT_FRACTION) * n_images  # training images of a fold
    parts, hours, typical = [], 0.0, 0.0
    measured = json.loads((REPO_ROOT / GPU_RUN).read_text())
    train_images = measured["validation"]["hard"]["images"] * (1 - VAL_FRACTION) / VAL_FRACTION
    seconds = measured["seconds"]["training"] / (measured["epochs_run"] * train_images)  # per epoch and image
    for model in dict.fromkeys(v.model for v in runs.values()):
        group = [v for v in runs.values() if v.model == model]
        most = [binding_cap(v, profile, epochs) or sum(c.epochs for c in profile_phases(model, profile))
                for v in group]
        parts.append(f"{model}: {len(group)} K-fold run{'s' * (len(group) > 1)} × {folds} folds × up to "
                     f"{max(most)} epochs")
        if model == "scratch_resnet":
            hours += sum(most) * folds * per_image * seconds / 3600
            typical += len(group) * min(measured["epochs_run"], max(most)) * folds * per_image * seconds / 3600
    line = (f"The comparisons train {'; '.join(parts)} (~{per_image:.0f} training images per fold; "
            f"{'early stopping ends each run' if epochs is None else f'capped at {epochs} epochs per phase'}).")
    if hours:
        def span(h):
            return f"{h:.1f} h" if h >= 1 else f"{max(h * 60, 1):.0f} min"

        line += (f" The scratch ResNet's runs need at most {span(hours)} of GPU time at the rate measured on a lent "
                 f"GPU ({GPU_RUN}: {measured['epochs_run']} epochs of ~{train_images:.0f} images in "
                 f"{measured['seconds']['training']} s), about {span(typical)} where runs stop as that one did.")
    if any(m != "scratch_resnet" for m in (v.model for v in runs.values())):
        line += " ConvNeXt's and ViT's GPU rates are not measured here: time one epoch before running them all."
    return line


def _run_dir(out: Path, variant: Variant, profile: str, folds: int, epochs: int | None, seed: int,
             weights: str | None) -> Path:
    key = artifacts.fingerprint({**variant.training(), "profile": profile, "folds": folds, "epochs": epochs,
                                 "seed": seed, "weights": weights_identity(weights)})[:10]
    return out / "compare" / "runs" / f"{variant.model}-{key}"


def kfold_run(prep: Prepared, out: Path | str, variant: Variant, *, profile: str = "smoke", folds: int = 3,
              epochs: int | None = None, seed: int = 42, mixed_precision: str | None = None,
              weights: str | None = None, redo: bool = False) -> Path:
    """The variant's K-fold run on ``prep`` (``out/compare/runs/<model>-<key>``, the key a hash of what decides
    it): trained, resumed or reused by ``experiment.train_folds``. ``epochs``: a cap on every phase's epochs
    (the profile's count where it is lower). ``prep`` must have the variant's stain normalisation."""
    from anndl.engine.experiment import train_folds

    if (prep.stain or {}).get("method") != variant.stain_normalize:
        raise ValueError(f"the variant wants stain normalisation {variant.stain_normalize!r}, the tiles have "
                         f"{(prep.stain or {}).get('method')!r}; prepare the data with stain_normalize=…")
    epochs = binding_cap(variant, profile, epochs)
    run_dir = _run_dir(Path(out), variant, profile, folds, epochs, seed, weights)
    train_folds(prep, run_dir, variant.model, profile, folds, seed=seed, redo=redo, mixed_precision=mixed_precision,
                overrides=dict(variant.settings), **({"weights": weights} if weights else {}),
                **({"max_epochs": epochs} if epochs else {}))
    return run_dir


def run_comparison(name: str | None, data_dir: Path | str, out: Path | str, *, variants: dict[str, Variant] | None = None,
                   profile: str = "smoke", folds: int = 3, epochs: int | None = None, seed: int = 42,
                   mixed_precision: str | None = None, weights: dict[str, str] | None = None,
                   redo: bool = False) -> ComparisonResult:
    """Train (or reuse) every variant of the comparison ``name`` (or the ``variants`` given, the first the
    reference) as a K-fold run on the same folds and score them out of fold: ``out/compare/<name>/``.

    ``epochs``: a cap on every phase's epochs (a CPU budget; stated in the provenance). ``weights``: {model:
    a local weights file or preset folder} for the pretrained models; without one, the full profile's
    ImageNet download is tried, and a model whose weights cannot be loaded gets a row that says so and no
    score (never random weights in their place). In the smoke profile the pretrained architectures are tiny
    random stand-ins, and their rows say that."""
    from tqdm.auto import tqdm

    from anndl.core.config import WeightsUnavailable
    from anndl.core.env import commit, hardware
    from anndl.engine.experiment import prepare

    if variants is None:
        if name not in COMPARISONS:
            raise ValueError(f"unknown comparison {name!r}; choose from {list(COMPARISONS)}")
        variants = {v: VARIANTS[v] for v in COMPARISONS[name].variants}
    name = name or "custom"
    if len(variants) < 2:
        raise ValueError("a comparison needs at least two variants (the first is the reference)")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    data_dir, out, weights = Path(data_dir), Path(out), dict(weights or {})
    code = commit()  # the code that trains, taken before anything runs
    runs, preps, refused, prepared = {}, {}, {}, {}
    bar = tqdm(list(variants.items()), desc=f"compare {name}", unit="variant")
    for label, variant in bar:
        bar.set_postfix_str(label)
        if variant.stain_normalize not in prepared:  # the data stages once per stain normalisation
            prepared[variant.stain_normalize] = prepare(data_dir, out, seed=seed, stain_normalize=variant.stain_normalize)
        prep = prepared[variant.stain_normalize]
        try:
            run_dir = kfold_run(prep, out, variant, profile=profile, folds=folds, epochs=epochs, seed=seed,
                                mixed_precision=mixed_precision, weights=weights.get(variant.model), redo=redo)
        except WeightsUnavailable as e:
            refused[label] = " ".join(str(e).split())
            continue
        runs[label], preps[label] = run_dir, prep
    reference = next(iter(variants))
    if reference not in runs:
        raise WeightsUnavailable(f"{reference} (the reference of {name}): {refused[reference]}")
    first = preps[reference]
    provenance = {"comparison": name, "variants": {k: v.training() | {"rule": v.rule, "phase": v.phase}
                                                   for k, v in variants.items()},
                  "profile": profile, "folds": folds, "epochs": epochs, "seed": seed, "precision": mixed_precision,
                  "data": first.data_note, "data_fingerprint": first.data_note.rsplit("fingerprint ", 1)[-1].rstrip("]"),
                  "commit": code, "machine": hardware(), "runs": {k: str(v.relative_to(out)) for k, v in runs.items()},
                  "not_run": refused, "gate": GATE}
    if name in COMPARISONS:
        spec = COMPARISONS[name]
        provenance.update(question=spec.question, report=spec.report, report_numbers=spec.report_numbers,
                          source=SOURCE if spec.report else None)
    folder = out / "compare" / name
    req = artifacts.request("compare", data=first.data_note,
                            inputs={k: artifacts.read_json(v / artifacts.RECORD)["id"] for k, v in runs.items()},
                            settings={k: v for k, v in provenance.items() if k not in ("commit", "machine")})

    def build(staging: Path):
        # the bootstrap's own seed, the one every run's metrics.json used: a variant's interval here is its run's
        rows, predictions = score_runs(variants, runs, first.classes, BOOTSTRAP_SEED, refused,
                                       colour=fold_colour(first, runs[reference]))
        artifacts.write_csv(pd.DataFrame(rows).assign(gain_ci95=lambda t: t.gain_ci95.map(json.dumps)),
                            staging / "table.csv")
        artifacts.write_csv(predictions, staging / "predictions.csv")
        artifacts.write_json(staging / "comparison.json", provenance)
        return ["table.csv", "predictions.csv", "comparison.json"]

    artifacts.ensure(folder, req, build, redo=redo, label=f"comparison {name}", verb="scoring")
    return read_comparison_result(folder)


def read_comparison_result(folder: Path | str) -> ComparisonResult:
    """A recorded comparison (its files verified), as ``run_comparison`` returned it."""
    folder = Path(folder)
    artifacts.load(folder, "compare")
    table = artifacts.read_csv(folder / "table.csv")
    table["gain_ci95"] = table.gain_ci95.map(lambda v: json.loads(v) if isinstance(v, str) and v else None)
    for column in ("learned", "beats_colour"):  # True / False / None (a baseline's row, a row not run)
        if column in table:
            table[column] = table[column].map(metrics.flag)
    for column in ("oof_macro_f1", "ci95_low", "ci95_high", "gain", "null_p95", "ms_per_image", "train_seconds"):
        if column in table:  # an empty cell (a row not run, a baseline's cost) is NaN, not text
            table[column] = pd.to_numeric(table[column], errors="coerce")
    provenance = artifacts.read_json(folder / "comparison.json")
    return ComparisonResult(provenance["comparison"], table, provenance, artifacts.read_csv(folder / "predictions.csv"),
                            folder)


def fold_colour(prep: Prepared, run_dir: Path | str) -> pd.Series:
    """The colour-histogram baseline's class index per image of a K-fold run, each image predicted by the
    baseline trained on its fold's training images (``fold_preps``: the same folds as the run)."""
    kept = prep.clean[prep.clean.status == "kept"].sample_index
    features = colour_features(prep.manifest, kept)
    return pd.concat([baseline_predictions(f.manifest, f.split, features) for f in fold_preps(prep, run_dir)]
                     ).set_index("sample_index").colour_histogram


def score_runs(variants: dict[str, Variant], runs: dict[str, Path], classes, seed: int = 42,
               refused: dict[str, str] | None = None, colour: pd.Series | None = None):
    """The table's rows and the per-image predictions (one column per variant and baseline, the truth in
    ``y_true``) of finished K-fold runs; ``refused``: {variant: why it could not run} (a row without a score).

    Every row says whether it learned (``metrics.compared``) against the majority class of its fold, counted on
    the labels of the other folds' images (that fold's training images; the ``fold`` column of the reference's
    ``oof_predictions.csv``), and, with ``colour`` (class index per sample_index: ``fold_colour``), whether it
    beats the colour-histogram baseline; both baselines get a row of their own after the variants."""
    refused = refused or {}
    oof = {}
    for label, run_dir in runs.items():
        frame = artifacts.read_csv(run_dir / "oof_predictions.csv").set_index("sample_index")
        column = variants[label].column()
        if column not in frame:
            raise ValueError(f"{label}: {run_dir / 'oof_predictions.csv'} has no {column} "
                             f"({variants[label].model} has one training phase)" if variants[label].phase else
                             f"{label}: {run_dir / 'oof_predictions.csv'} has no {column}")
        oof[label] = frame
    reference = next(iter(variants))
    images = oof[reference].index
    for label, frame in oof.items():
        if set(frame.index) != set(images):
            raise ValueError(f"{label} and {reference} were scored on different images; a comparison needs one fold set")
    if "fold" not in oof[reference]:
        raise ValueError(f"{reference}: {runs[reference] / 'oof_predictions.csv'} has no fold column (the fold that "
                         "held each image out); its majority-class baseline cannot be counted")
    y_true = oof[reference].label.map(classes.index).to_numpy()
    predicted = {label: oof[label].loc[images, variants[label].column()].map(classes.index).to_numpy() for label in oof}
    baseline = {MAJORITY: majority_per_fold(y_true, oof[reference].fold.to_numpy(), len(classes))}
    if colour is not None:
        missing = set(images) - set(colour.index)
        if missing:
            raise ValueError(f"the colour baseline predicted other images than {reference}, e.g. {sorted(missing)[0]}")
        baseline = {COLOUR: colour.loc[images].to_numpy().astype(int), **baseline}
    ordered = {reference: predicted[reference], **predicted, **baseline}  # the reference first: the gains are over it
    scored = {row["variant"]: row for row in metrics.compared(
        y_true, ordered, seed, len(classes), "reference", majority=baseline[MAJORITY], colour=baseline.get(COLOUR),
        baselines=BASELINE_ROWS)}
    rows = []
    for label, variant in variants.items():
        if label not in runs:
            rows.append({"variant": label, "model": variant.model, "oof_macro_f1": float("nan"), "ci95_low": float("nan"),
                         "ci95_high": float("nan"), "gain": float("nan"), "gain_ci95": None,
                         "verdict": f"not run: {refused[label]}", "weights": "unavailable", "epochs": 0,
                         "train_seconds": 0.0, "ms_per_image": float("nan"), "images": 0, "learned": None,
                         "beats_colour": None, "null_p95": float("nan")})
            continue
        row = scored[label]
        cost = _fold_costs(runs[label], variant.phase)
        rows.append({"variant": label, "model": variant.model, "oof_macro_f1": row["oof_macro_f1"],
                     "ci95_low": row["ci95_low"], "ci95_high": row["ci95_high"], "gain": row["gain"],
                     "gain_ci95": row["gain_ci95"], "verdict": row["verdict"], "weights": cost["weights"],
                     "epochs": cost["epochs"], "train_seconds": cost["train_seconds"],
                     "ms_per_image": cost["ms_per_image"], "images": row["images"], "learned": row["learned"],
                     "beats_colour": row["beats_colour"], "null_p95": row["null_p95"]})
    for label in baseline:
        row = scored[label]
        rows.append({"variant": label, "model": "baseline", "oof_macro_f1": row["oof_macro_f1"],
                     "ci95_low": row["ci95_low"], "ci95_high": row["ci95_high"], "gain": row["gain"],
                     "gain_ci95": row["gain_ci95"], "verdict": row["verdict"], "weights": "none (no CNN)",
                     "epochs": 0, "train_seconds": 0.0, "ms_per_image": float("nan"), "images": row["images"],
                     "learned": None, "beats_colour": None, "null_p95": float("nan")})
    frame = pd.DataFrame({"sample_index": images, "y_true": oof[reference].label.to_numpy(),
                          **{label: [classes[i] for i in p] for label, p in {**predicted, **baseline}.items()}})
    return rows, frame


def _fold_costs(run_dir: Path, phase: int | None = None) -> dict:
    """A K-fold run's cost summed over its folds (as each fold recorded it), its epochs per fold (mean) and its
    weights note; with ``phase``, the cost of training up to the end of that phase (phase 1's model: phase 1 only)."""
    record = artifacts.read_json(run_dir / artifacts.RECORD)
    train = predict = images = epochs = 0.0
    weights = ""
    for fold in record["fold_runs"]:
        m = artifacts.read_json(run_dir / fold / "metrics.json")
        cost = artifacts.read_json(run_dir / fold / "cost.json")
        seconds = cost.get("phase_seconds")
        train += sum(seconds[:phase]) if phase is not None and seconds else cost.get("train_seconds", 0.0)
        predict += cost.get("predict_seconds", 0.0)
        images += cost.get("validation_images", 0)
        if phase is None:
            epochs += m["epochs_run"]
        else:
            log = artifacts.read_csv(run_dir / fold / "log.csv")
            epochs += int((log.phase <= phase).sum())
        weights = m["weights"]
    return {"train_seconds": round(train, 1), "ms_per_image": round(1000 * predict / max(images, 1), 1),
            "epochs": round(epochs / len(record["fold_runs"]), 1), "weights": weights}
