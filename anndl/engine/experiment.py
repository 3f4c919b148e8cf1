"""The model stages as recorded artifacts: train run, K-fold run, submission; reused if verified, killed runs resume."""

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anndl.core import artifacts
from anndl.core.config import ModelSettings, config_record
from anndl.core.labels import LABELS
from anndl.data import pipeline, read_challenge, read_classes, tiling
from anndl.data.stain import normalizer_from_settings
from anndl.engine.inference import predict_tiles
from anndl.evaluate import metrics, voting
from anndl.evaluate.baselines import run_baselines
from anndl.evaluate.submission import dominance, write_submission
from anndl.models.layers import load_model
from anndl.models.registry import Built, build_model as _build
from anndl.data.stages import Prepared, clean_stage, data_note, prepare, shown, weights_identity  # noqa: F401
from anndl.core.distribute import precision_policy, strategy_scope
from anndl.core.env import hardware, portable
from anndl.engine.train import (EPOCH_LINES, MONITOR, fit, load_best, load_state, nonfinite, restore_state,
                                save_state, save_weights)


def build_model(name: str, profile: str, tile_size: int, augment: bool = False, seed: int = 42,
                weights: str | None = None, num_classes: int = len(LABELS),
                mixed_precision: str | None = None, stain_augment: str | float | None = None) -> Built:
    """The model ``name`` of ``profile`` (``anndl.models.registry``): seeded, under the dtype policy asked for."""
    return _build(ModelSettings(name, profile, tile_size, augment, seed, weights, num_classes, mixed_precision,
                                stain_augment))


RUN_FILES = ("config.json", "split.csv", "log.csv", "model.keras", "metrics.json", "val_predictions.csv", "cost.json")
_PHASE_FILES = ("log_phase1.csv", "log_phase2.csv", "val_predictions_phase1.csv", "val_predictions_phase2.csv",
                "best_phase1.weights.h5")
_RUN_LEFTOVERS = ("best.weights.h5", "tensorboard", "resume", "folds.csv", "oof_predictions.csv", *_PHASE_FILES)


def _remove(folder: Path, names) -> None:
    for path in (folder / name for name in names):
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def evaluate_images(model, dataset, table: pd.DataFrame, from_logits: bool = False,
                    classes: tuple[str, ...] = LABELS) -> dict:
    """Vote a labelled split's tiles by every rule: scores, predictions, soft image probabilities (``blend``'s)."""
    probabilities, numbers, weights = predict_tiles(model, dataset, from_logits)
    results = {rule: _scored(table.label_index.to_numpy(), voting.vote(probabilities, numbers, weights, len(table),
                                                                       rule), classes) for rule in voting.VOTING_RULES}
    results["soft"]["probabilities"] = voting.mask_weighted(probabilities, numbers, weights, len(table))
    return results


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _scored(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    return {"scores": metrics.image_scores(y_true, y_pred, n_classes=len(classes)), "y_pred": y_pred,
            "per_class": metrics.per_class_table(y_true, y_pred, classes),
            "confusion": metrics.confusion(y_true, y_pred, len(classes))}


def _stain_setting(prep: Prepared) -> dict:
    """The stain normalisation a run's tiles get, as a request setting (absent when none, as before it existed)."""
    return {"stain_normalization": prep.stain} if prep.stain else {}


def train_run(prep: Prepared, run_dir: Path | str, model_name: str = "scratch_resnet", profile: str = "smoke",
              epochs: int | None = None, mixed_precision: str | None = None, strategy=None,
              overrides: dict | None = None, weights: str | None = None, with_baselines: bool = True,
              built: Built | None = None, seed: int = 42, redo: bool = False,
              learning_rate: float | None = None, max_epochs: int | None = None) -> dict:
    """Train one model on ``prep`` into ``run_dir`` (``RUN_FILES`` + record): reused if finished for this request,
    resumed if interrupted. ``epochs`` overrides every phase's, ``max_epochs`` caps them; ``overrides``: ``augment``,
    ``stain_augment``, ``filters``, ``seed``; ``learning_rate``: phase 1's; ``built``: ``build_model``'s model."""
    run_dir = Path(run_dir)
    if learning_rate is not None and not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"--learning-rate must be a positive number, got {learning_rate!r}")
    if epochs is not None and (isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1):
        raise ValueError(f"epochs must be an integer of at least 1, got {epochs!r}")
    prep.require_every_class()
    changes = dict(overrides or {}, **({"epochs": epochs} if epochs else {}))
    settings = ModelSettings(model_name, profile, prep.tiling.tile_size, changes.pop("augment", False),
                             changes.pop("seed", seed), weights, len(prep.classes), mixed_precision,
                             changes.pop("stain_augment", None), changes.pop("filters", None))
    if built is not None and built.settings != settings:
        raise ValueError(f"the model passed as built= was built as {built.settings}, but this run asks for {settings}")
    if built is not None and strategy not in (None, "default"):
        raise ValueError("built= takes a model built outside any distribution strategy; leave strategy unset")
    with precision_policy(mixed_precision), strategy_scope(strategy) as replicas, artifacts.lock(run_dir):
        built = _build(settings) if built is None else built
        if max_epochs is not None and int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be at least 1, got {max_epochs!r}")
        phases = []
        for i, p in enumerate(built.phases):  # --learning-rate, the first knob a user turns, sets phase 1's rate
            c = dataclasses.replace(p.config, **changes)
            phases.append(dataclasses.replace(p, config=dataclasses.replace(
                c, epochs=min(c.epochs, int(max_epochs or c.epochs)),
                learning_rate=float(learning_rate) if learning_rate is not None and i == 0 else c.learning_rate)))
        model = dataclasses.asdict(built.settings) | {"weights": weights_identity(built.settings.weights)}
        req = artifacts.request("train", data=prep.data_note, inputs={"tiles": prep.tiles_id},
                                settings={"model": model, "phases": [config_record(c=p.config)["c"] for p in phases],
                                          "classes": list(prep.classes), "with_baselines": with_baselines,
                                          **_stain_setting(prep)})
        reason = "--redo asked for" if redo else artifacts.check(run_dir, req)
        if reason is None:  # read from its files: no model load (``load_run`` gives the model)
            print(f"reusing {shown(run_dir)}")
            predictions, classes = artifacts.read_csv(run_dir / "val_predictions.csv"), prep.classes
            y_true = predictions.label.map(classes.index).to_numpy()
            results = {rule: _scored(y_true, predictions[f"pred_{rule}"].map(classes.index).to_numpy(), classes)
                       for rule in voting.VOTING_RULES}
            return {"metrics": artifacts.read_json(run_dir / "metrics.json"), "results": results, "model": None,
                    "run_dir": run_dir}
        # built in .staging beside a finished run, swapped in only when complete: a kill keeps the old run intact
        beside = (run_dir / artifacts.RECORD).is_file()
        if reason == "not finished (no record)":
            print(f"{shown(run_dir)}: interrupted earlier: resuming where its saved state allows")
        elif reason != "not made yet":
            print(portable(f"{shown(run_dir)}: {reason}: training it again"
                           + (" (the finished run stays until the new one is complete)" if beside else "")))
        return _train(prep, run_dir / artifacts.STAGING if beside else run_dir, built, phases, req, with_baselines,
                      fresh=redo, replicas=replicas, final_dir=run_dir if beside else None)


def _train(prep: Prepared, run_dir: Path, built: Built, phases, req: dict, with_baselines: bool, fresh: bool,
           replicas, final_dir: Path | None = None) -> dict:
    """Train/resume, evaluate, write the files, then the record; ``final_dir``: the finished run this one replaces."""
    request_id = artifacts.fingerprint(req)
    state = None if fresh else load_state(run_dir, request_id)
    artifacts.invalidate(run_dir)
    if state is None:  # what an earlier run left
        _remove(run_dir, (*RUN_FILES, *_RUN_LEFTOVERS, *(p.name for p in run_dir.glob("fold_*"))))
    model, record, classes = built.model, built.record, prep.classes
    if with_baselines and prep.baseline_scores is None:  # the same split for every model: compute once
        prep.baseline_scores = run_baselines(prep.manifest, prep.split, n_classes=len(classes))
    first = phases[0].config
    config = {"model": built.settings.model, "profile": built.settings.profile, "data": prep.data_note,
              "classes": list(classes), **record, "settings": req["settings"], "tiles": prep.tiles_id,
              "phases": [config_record(c=p.config)["c"] for p in phases],
              "tiling": config_record(c=prep.tiling)["c"], "parameters": int(model.count_params()),
              "distribution": replicas.record(),  # how it ran, not what it is: not part of the request
              "stain_normalization": prep.stain}
    artifacts.write_json(run_dir / "config.json", config)
    val_table = pipeline.image_table(prep.tiles, prep.manifest, ("val",))
    # a fold selects epoch/phase on ``select`` (15% of its train images), only scores ``val``; one split: ``val`` both
    nested = bool((prep.tiles.split == "select").any())
    select_table = pipeline.image_table(prep.tiles, prep.manifest, ("select",)) if nested else val_table
    artifacts.write_csv(prep.split[["sample_index", "split"]].replace({"split": {"val": "held_out"} if nested else {}}),
                        run_dir / "split.csv")
    print(f"{built.settings.model} ({built.settings.profile} profile; weights: {record['weights']}): "
          f"{model.count_params():,} parameters; {int((prep.tiles.split == 'train').sum())} train tiles; "
          + (f"selected on {len(select_table)} images of its own training split, scored on {len(val_table)} held-out "
             "images" if nested else f"{len(val_table)} validation images, selected and scored on the same images "
             "(the report's setup: the score is optimistic)"))
    train_labels = prep.tiles[prep.tiles.split == "train"].label.map(classes.index).to_numpy()
    kw = dict(tile_size=prep.tiling.tile_size, stride=prep.tiling.stride, cache=first.cache,
              stain=normalizer_from_settings(prep.stain))
    if prep.stain:
        print(f"tiles stain-normalised on decoding: {prep.stain['method']} to {prep.stain['reference']['source']}")
    oversample = None
    if first.oversample is not None:
        if first.oversample not in classes:
            raise ValueError(f"oversample: {first.oversample!r} is not a class of this data ({', '.join(classes)})")
        oversample = classes.index(first.oversample)
        print(f"{first.oversample}: training tiles seen twice per epoch (oversampled)")
    started = time.perf_counter()
    train_pairs, n_train_tiles = pipeline.training_tiles(prep.tiles, prep.manifest, ("train",), oversample=oversample,
                                                         **kw)
    infer = dict(kw, batch_size=first.batch_size, with_labels=False)
    val_infer = pipeline.tile_dataset(prep.tiles, prep.manifest, ("val",), **infer)
    select_infer = pipeline.tile_dataset(prep.tiles, prep.manifest, ("select",), **infer) if nested else val_infer
    log, phase_seconds = _train_phases(model, phases, state, run_dir, train_pairs, n_train_tiles, train_labels,
                                       (select_infer, select_table.label_index.to_numpy()), (val_infer, val_table),
                                       classes, replicas, built.settings.seed, record["from_logits"], request_id)
    artifacts.write_csv(log, run_dir / "log.csv")
    chosen = int(log.groupby("phase")[MONITOR].max().idxmax())  # the best phase on the selection images
    if chosen < len(phases):
        load_best(model, run_dir / f"best_phase{chosen}.weights.h5")
    save_weights(model, run_dir / "model.keras")
    train_seconds = time.perf_counter() - started
    results, predict_seconds = timed(evaluate_images, model, val_infer, val_table, record["from_logits"], classes)
    best_row = log.loc[log[MONITOR].idxmax()]
    run_metrics = {"model": built.settings.model, "profile": built.settings.profile, "data": prep.data_note,
                   "classes": list(classes), "weights": record["weights"],
                   "selected_by": (f"image-level macro F1 ({first.voting} voting) on {len(select_table)} selection "
                                   "images of this fold's training split; the held-out images are only scored"
                                   if nested else f"image-level validation macro F1 ({first.voting} voting) on the "
                                   "images it scores (the report's setup: optimistic)"),
                   "selected_on": "select" if nested else "val", "selection_macro_f1": round(float(best_row[MONITOR]), 4),
                   "best_epoch": int(best_row.epoch) + 1, "best_phase": int(best_row.phase), "epochs_run": int(len(log)),
                   "validation": {rule: r["scores"] for rule, r in results.items()},
                   "baselines": prep.baseline_scores if with_baselines else None}
    artifacts.write_json(run_dir / "metrics.json", run_metrics)
    # cost (training since the last resume) outside metrics.json: a resumed run's results match an uninterrupted one
    artifacts.write_json(run_dir / "cost.json", {"train_seconds": round(train_seconds, 1),
                                                 "phase_seconds": phase_seconds,
                                                 "predict_seconds": round(predict_seconds, 2),
                                                 "train_tiles": n_train_tiles, "validation_images": int(len(val_table)),
                                                 "machine": hardware()})
    _write_predictions(run_dir / "val_predictions.csv", val_table, classes, results,
                       [run_dir / f"val_predictions_phase{n}.csv" for n in range(1, len(phases) + 1)]
                       if len(phases) > 1 else [])
    record = artifacts.complete(run_dir, req, RUN_FILES)
    shutil.rmtree(run_dir / "resume", ignore_errors=True)
    if final_dir is not None:  # the new run is complete: only now does it replace the old one
        _remove(final_dir, ("best.weights.h5", "resume", *_PHASE_FILES))
        artifacts.swap_in(run_dir, final_dir, record, extra=("best.weights.h5", "tensorboard", *_PHASE_FILES))
        run_dir = final_dir
    return {"metrics": run_metrics, "results": results, "model": model, "run_dir": run_dir}


def _train_phases(model, phases, state, run_dir: Path, train_pairs, n_train_tiles: int, train_labels, select, val,
                  classes, replicas, seed: int, from_logits: bool, request_id: str) -> tuple[pd.DataFrame, list]:
    """Train the phases (skipping finished ones), each keeping its best epoch (phase 2: fine-tuning's); (log, secs)."""
    logs, epochs_before, phase_seconds = [], 0, []
    finished = 0 if state is None else state["phase"] - (not state["complete"])  # phases the state has finished
    for number, phase in enumerate(phases, start=1):
        phase_started = time.perf_counter()
        log_name = "log.csv" if len(phases) == 1 else f"log_phase{number}.csv"
        if number <= finished:  # trained before the last resume (no seconds now): its log stands
            rows = artifacts.read_csv(run_dir / log_name).to_dict("records")
            if number == finished and state["complete"]:  # the state holds this phase's selected weights
                restore_state(model, state, with_optimizer=False)
        else:
            resume = state if state is not None and state["phase"] == number else None
            trained = phase.set_trainable(model) if phase.set_trainable else None
            if trained is not None:
                print(f"phase {number}: head"
                      + (f" + backbone layers {trained[0]} … {trained[-1]}" if trained else " only"))
            c = phase.config
            done = resume["epochs"] if resume else 0
            replicas.per_replica_batch(c.batch_size)  # the global batch must split evenly across replicas
            train_ds, steps = pipeline.epoch_batches(train_pairs, n_train_tiles, batch_size=c.batch_size, seed=seed,
                                                     first_epoch=epochs_before + done, epochs=c.epochs - done)
            rows = fit(model, replicas.fit_dataset(train_ds), steps, *select, c, run_dir, phase.optimizer(c),
                       phase=number, train_labels=train_labels, from_logits=from_logits, log_name=log_name,
                       initial_epoch=epochs_before, resume=resume, request=request_id)
            if len(phases) > 1:  # each phase's selected model, scored on the held-out images; kept for the choice
                _write_predictions(run_dir / f"val_predictions_phase{number}.csv", val[1], classes,
                                   evaluate_images(model, *val, from_logits, classes))
                if number < len(phases):
                    save_weights(model, run_dir / f"best_phase{number}.weights.h5")
            save_state(model, run_dir, {"phase": number, "complete": True, "epochs": len(rows), "best": None,
                                        "wait": 0, "request": request_id})
        logs.append(pd.DataFrame(rows).assign(phase=number))
        epochs_before += len(rows)
        phase_seconds.append(0.0 if number <= finished else round(time.perf_counter() - phase_started, 1))
    return pd.concat(logs, ignore_index=True), phase_seconds


def _write_predictions(path: Path, table: pd.DataFrame, classes: tuple[str, ...], results: dict,
                       phase_files: list[Path] = ()) -> None:
    """A row per validation image: label, ``pred_<rule>``, ``prob_<class>``, each phase's ``pred_<rule>_phase<n>``."""
    frame = pd.DataFrame({"sample_index": table.sample_index, "label": table.label,
                          **{f"pred_{rule}": [classes[i] for i in r["y_pred"]] for rule, r in results.items()},
                          **dict(zip(voting.probability_columns(classes),
                                     results["soft"]["probabilities"].round(6).T))})
    for number, phase_file in enumerate(phase_files, start=1):
        phase = artifacts.read_csv(phase_file)
        if list(phase.sample_index) != list(frame.sample_index):
            raise artifacts.ArtifactError(f"{phase_file}: not the validation images of this run")
        for rule in results:
            frame[f"pred_{rule}_phase{number}"] = phase[f"pred_{rule}"].to_numpy()
    artifacts.write_csv(frame, path)


def fold_preps(prep: Prepared, run_dir: Path | str) -> list[Prepared]:
    """A ``Prepared`` per fold of ``folds.csv``: its images ``val``, 15% of the rest ``select`` (``nested_split``)."""
    path = Path(run_dir) / "folds.csv"
    assignment = artifacts.read_csv(path)
    folds_id = artifacts.file_digest(path)[:12]
    labelled = prep.tiles.split != "test"
    preps = []
    for k in sorted(assignment.fold.unique()):
        nested = tiling.nested_split(assignment, k, seed=int(folds_id[:7], 16))
        split_of = nested.set_index("sample_index").split.replace({"held_out": "val"})
        split = assignment.drop(columns="fold").assign(split=split_of.loc[assignment.sample_index].to_numpy())
        tiles = prep.tiles.copy()
        tiles.loc[labelled, "split"] = tiles.loc[labelled, "sample_index"].map(split_of).to_numpy()
        preps.append(dataclasses.replace(prep, split=split, tiles=tiles, baseline_scores=None,
                                         tiles_id=artifacts.fingerprint([prep.tiles_id, folds_id, int(k), "nested"])))
    return preps


def train_folds(prep: Prepared, run_dir: Path | str, model_name: str = "scratch_resnet", profile: str = "smoke",
                folds: int = 5, seed: int = 42, redo: bool = False, **train_kwargs) -> dict:
    """K-fold CV by image: a train run per fold, then ``oof_macro_f1``, ``oof_macro_f1_ci``; done when all folds are."""
    prep.require_every_class()
    run_dir = Path(run_dir)
    train_settings = {k: (weights_identity(v) if k == "weights" else v) for k, v in sorted(train_kwargs.items())
                      if k != "strategy" and v is not None}  # None: train_run's default, the same request as omitted
    req = artifacts.request("kfold", data=prep.data_note, inputs={"tiles": prep.tiles_id},
                            settings={"model": model_name, "profile": profile, "folds": folds, "seed": seed,
                                      "train": train_settings, **_stain_setting(prep)})
    with artifacts.lock(run_dir):
        reason = "--redo asked for" if redo else artifacts.check(run_dir, req)
        if reason is None:
            print(f"reusing {shown(run_dir)}")
            return {"metrics": artifacts.read_json(run_dir / "metrics.json"),
                    "oof": artifacts.read_csv(run_dir / "oof_predictions.csv")}
        if reason not in ("not made yet", "not finished (no record)"):
            # nothing deleted: each fold swaps in when complete, this record last (predict refuses the mix till then)
            print(portable(f"{shown(run_dir)}: {reason}: training it again"))
        kept = prep.clean[prep.clean.status == "kept"]
        artifacts.write_csv(tiling.assign_folds(kept, folds, seed=seed), run_dir / "folds.csv")
        oof, per_fold, fold_ids = [], [], []
        quiet = EPOCH_LINES.set(False)  # a line per fold below, the epochs in each fold's log.csv
        try:
            for k, fold_prep in enumerate(fold_preps(prep, run_dir)):
                result = train_run(fold_prep, run_dir / f"fold_{k}", model_name, profile, with_baselines=False,
                                   seed=seed, redo=redo, **train_kwargs)
                m, held_out = result["metrics"], result["metrics"]["validation"]["hard"]
                print(f"fold {k + 1}/{folds}: best epoch {m['best_epoch']} of {m['epochs_run']}; held-out macro F1 "
                      f"{held_out['macro_f1']:.3f} on {held_out['images']} images")
                per_fold.append(m["validation"])
                oof.append(artifacts.read_csv(run_dir / f"fold_{k}" / "val_predictions.csv").assign(fold=k))
                fold_ids.append(artifacts.read_json(run_dir / f"fold_{k}" / artifacts.RECORD)["id"])
        finally:
            EPOCH_LINES.reset(quiet)
        oof = pd.concat(oof, ignore_index=True)
        artifacts.write_csv(oof, run_dir / "oof_predictions.csv")
        y_true = oof.label.map(prep.classes.index).to_numpy()
        scores = {rule: metrics.image_scores(y_true, oof[f"pred_{rule}"].map(prep.classes.index).to_numpy(),
                                             n_classes=len(prep.classes)) for rule in voting.VOTING_RULES}
        first = artifacts.read_json(run_dir / "fold_0" / "metrics.json")
        run_metrics = {"model": model_name, "profile": profile, "data": prep.data_note, "classes": list(prep.classes),
                       "weights": first["weights"], "folds": folds, "oof": scores,
                       "oof_macro_f1": scores["hard"]["macro_f1"], "oof_macro_f1_ci": scores["hard"]["macro_f1_ci95"],
                       "per_fold_validation": per_fold}
        artifacts.write_json(run_dir / "metrics.json", run_metrics)
        artifacts.complete(run_dir, req, ["folds.csv", "oof_predictions.csv", "metrics.json"],
                           extra={"fold_runs": [f"fold_{k}" for k in range(folds)], "fold_ids": fold_ids})
    return {"metrics": run_metrics, "oof": oof}


def load_run(run_dir: Path | str):
    """(model, config) of a finished run (its record verified)."""
    run_dir = Path(run_dir)
    artifacts.load(run_dir, "train")
    config = artifacts.read_json(run_dir / "config.json")
    try:
        model = load_model(run_dir / "model.keras")
    except (ValueError, OSError) as e:
        raise artifacts.ArtifactError(str(e)) from e
    bad, total = nonfinite(model)
    if bad:
        raise artifacts.ArtifactError(f"{run_dir / 'model.keras'}: {bad:,} of {total:,} weights are not finite "
                                      "(training diverged); train it again with a lower --learning-rate")
    return model, config


def model_dirs(run_dirs) -> list[Path]:
    """The finished train runs of ``run_dirs`` (a K-fold run's folds); anything else raises ``ArtifactError``."""
    found = []
    for run_dir in map(Path, [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs):
        record = artifacts.load(run_dir)
        if record["stage"] == "train":
            found.append(run_dir)
        elif record["stage"] == "kfold":
            for name, fold_id in zip(record["fold_runs"], record["fold_ids"]):
                if artifacts.load(run_dir / name, "train")["id"] != fold_id:
                    raise artifacts.ArtifactError(f"{run_dir / name}: not the fold model this K-fold run recorded")
                found.append(run_dir / name)
        else:
            raise artifacts.ArtifactError(f"{run_dir}: a {record['stage']} artifact, not a run")
    return found


@dataclass(frozen=True)
class TileProbabilities:
    """Tile probabilities averaged over an ensemble's models (before voting), with what voting needs."""

    probabilities: np.ndarray   # (n_tiles, n_classes)
    image_numbers: np.ndarray   # row of ``table`` each tile belongs to
    weights: np.ndarray         # mask-pixel share of each tile in its image
    table: pd.DataFrame         # one row per image (``pipeline.image_table``)
    configs: tuple[dict, ...]   # each model's config.json

    def vote(self, rule: str = "hard") -> np.ndarray:
        return voting.vote(self.probabilities, self.image_numbers, self.weights, len(self.table), rule)


def run_stain(dirs, configs):
    """The stain normaliser the runs' tiles went through in training (the same for all, or none), which their
    input tiles must go through too."""
    if len({json.dumps(c.get("stain_normalization"), sort_keys=True) for c in configs}) > 1:
        raise ValueError(f"runs {', '.join(map(str, dirs))} were trained on differently stain-normalised tiles; "
                         "an ensemble needs one normalisation")
    return normalizer_from_settings(configs[0].get("stain_normalization"))


def ensemble_probabilities(run_dirs, tiles: pd.DataFrame, manifest: pd.DataFrame, splits: tuple[str, ...],
                           tta: bool = False, batch_size: int = 32) -> TileProbabilities:
    """Tile probabilities averaged over every model of ``run_dirs``. All runs must share one tiling and label set."""
    dirs = model_dirs(run_dirs)
    configs = [artifacts.read_json(d / "config.json") for d in dirs]
    if len({artifacts.fingerprint(c["tiling"]) for c in configs}) > 1:
        raise ValueError(f"runs {', '.join(map(str, dirs))} were tiled differently; an ensemble needs one tiling")
    if len({tuple(c.get("classes", LABELS)) for c in configs}) > 1:
        raise ValueError(f"runs {', '.join(map(str, dirs))} predict different label sets; an ensemble needs one")
    tiling_config = tiling.TilingConfig(**configs[0]["tiling"])
    dataset = pipeline.tile_dataset(tiles, manifest, splits, tile_size=tiling_config.tile_size,
                                    stride=tiling_config.stride, batch_size=batch_size, with_labels=False,
                                    cache="memory" if len(dirs) > 1 else None, stain=run_stain(dirs, configs))
    outputs = [predict_tiles(load_run(d)[0], dataset, c.get("from_logits", False), tta) for d, c in zip(dirs, configs)]
    return TileProbabilities(sum(p for p, _, _ in outputs) / len(dirs), *outputs[-1][1:],
                             pipeline.image_table(tiles, manifest, splits), tuple(configs))


def _predict_tiles_of(run_dir, data_dir: Path | str, tta: bool = False):
    """(models' folders, manifest, test rows, classes, ``TileProbabilities`` of every test tile of ``data_dir``)."""
    dirs = model_dirs(run_dir)
    first = artifacts.read_json(dirs[0] / "config.json")
    manifest = read_challenge(data_dir)
    classes = tuple(first.get("classes", LABELS))
    if classes != (found := read_classes(data_dir)):
        raise ValueError(f"{dirs[0]} predicts {list(classes)}, but {data_dir} has the labels {list(found)}")
    test = manifest[manifest.split == "test"]
    tiles = tiling.tile_test_images(manifest, tiling.TilingConfig(**first["tiling"]))
    return dirs, manifest, test, classes, ensemble_probabilities(dirs, tiles, manifest, ("test",), tta)


def predict_probabilities(run_dir, data_dir: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(test images, the soft rule's image probabilities, its models averaged): what a blend weights."""
    tp = _predict_tiles_of(run_dir, data_dir)[-1]
    return tp.table.sample_index.to_numpy(), voting.mask_weighted(tp.probabilities, tp.image_numbers, tp.weights,
                                                                  len(tp.table))


def predict_run(run_dir, data_dir: Path | str, out: Path | str, voting_rule: str = "hard",
                tta: bool = False) -> Path:
    """The submission CSV (+ JSON note) for ``data_dir`` from a run or an ensemble (mean tile probabilities)."""
    dirs, manifest, test, classes, tp = _predict_tiles_of(run_dir, data_dir, tta)
    predicted = tp.vote(voting_rule)
    path = write_submission(tp.table.sample_index, predicted, out, expected=set(test.sample_index),
                            classes=classes)
    note = {"runs": [shown(d) for d in dirs], "run_ids": [artifacts.read_json(d / artifacts.RECORD)["id"] for d in dirs],
            "models": [c["model"] for c in tp.configs], "profiles": sorted({c["profile"] for c in tp.configs}),
            "weights": sorted({c["weights"] for c in tp.configs}), "data": data_note(data_dir, manifest),
            "test_data": data_note(data_dir, manifest, ("test",)),
            "voting": voting_rule, "tta": tta, "test_images": int(len(test)),
            "dominated_by": dominance(predicted, classes),
            "stain_normalization": tp.configs[0].get("stain_normalization")}
    artifacts.write_json(Path(out).with_suffix(".json"), note)
    return path
