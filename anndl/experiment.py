"""The end-to-end steps the commands and notebooks share: prepare (clean + tile), train, predict.

Each step writes files a person can open and is skipped when its output already exists (pass
``redo=True`` to run it again). Every output records the profile, the data and the weights behind it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from anndl import outliers, pipeline, tiling, voting
from anndl.baselines import run_baselines
from anndl.config import MODELS, TrainConfig, scratch_profile, transfer_profile
from anndl.data import describe_data, read_challenge, read_classes
from anndl.labels import LABELS
from anndl.models import scratch_resnet, set_trainable_stage, transfer_model
from anndl.train import config_record, differential_optimizer, fit, precision_policy, write_json



@dataclass
class Prepared:
    """A validated challenge folder with its cleaning, split and tiles."""

    data_dir: Path
    work_dir: Path
    manifest: pd.DataFrame
    clean: pd.DataFrame
    split: pd.DataFrame
    tiles: pd.DataFrame
    tiling: tiling.TilingConfig
    classes: tuple[str, ...] = LABELS  # the label set, in model-output order (data.read_classes)
    baseline_scores: dict | None = field(default=None, repr=False)  # computed once per split, on first use

    @property
    def data_note(self) -> str:
        return describe_data(self.data_dir)


def prepare(data_dir: Path | str, work_dir: Path | str, embedder: str = "offline",
            tiling_config: tiling.TilingConfig = tiling.TilingConfig(), val_fraction: float = 0.1,
            seed: int = 42, redo: bool = False) -> Prepared:
    """Validate the folder, then clean -> ``work_dir/clean``, split + tile -> ``work_dir/tiles``.

    Earlier outputs are reused only when they were made from the same data (a fingerprint of the
    manifest) and the same cleaning and tiling settings; otherwise they are made again.
    """
    data_dir, work_dir = Path(data_dir), Path(work_dir)
    manifest = read_challenge(data_dir)
    note = data_note(data_dir, manifest)
    clean_path = work_dir / "clean" / "clean_manifest.csv"
    config = outliers.OutlierConfig()
    clean_info = clean_path.parent / "clean_summary.json"
    if redo or not _made_from(clean_info, note) or json.loads(clean_info.read_text())["config"] != \
            dataclasses.asdict(config):
        cleaned = outliers.clean(manifest, outliers.make_embedder(embedder, config), config)
        outliers.write_outputs(cleaned, clean_path.parent, config, note)
        redo_tiles = True  # other images kept: the split and tiles follow
    else:
        redo_tiles = redo
        print(f"reusing {clean_path}")
    clean = pd.read_csv(clean_path, keep_default_na=False)
    tiles_path = work_dir / "tiles" / "tiles.csv"
    tiles_info = tiles_path.with_suffix(".json")
    if not redo_tiles and tiles_path.is_file() and _made_from(tiles_info, note) and \
            json.loads(tiles_info.read_text())["config"] == config_record(c=tiling_config)["c"]:
        print(f"reusing {tiles_path}")
        split = pd.read_csv(tiles_path.parent / "split.csv", keep_default_na=False)
        tiles = pd.read_csv(tiles_path, keep_default_na=False)
    else:
        if (redo_tiles or not _made_from(tiles_info, note)) and (tiles_path.parent / "split.csv").is_file():
            (tiles_path.parent / "split.csv").unlink()  # a split of other images is no split of these
        split = tiling.load_or_make_split(clean, tiles_path.parent / "split.csv", val_fraction, seed)
        tiles = tiling.build_tiles(manifest, clean, split, tiling_config)
        tiling.write_tiles(tiles, tiles_path.parent, tiling_config, note)
    return Prepared(data_dir, work_dir, manifest, clean, split, tiles, tiling_config, read_classes(data_dir))


def fingerprint(manifest: pd.DataFrame) -> str:
    """A short hash of what the manifest says about every image (names, sizes, mask pixels)."""
    import hashlib

    columns = ["split", "sample_index", "label", "height", "width", "mask_pixels"]
    return hashlib.sha256(manifest[columns].to_csv(index=False).encode()).hexdigest()[:12]


def data_note(data_dir: Path | str, manifest: pd.DataFrame) -> str:
    """Which data a step's output comes from: the folder, its kind and the manifest's fingerprint."""
    return f"{describe_data(data_dir)} [fingerprint {fingerprint(manifest)}]"


def _made_from(info_path: Path, note: str) -> bool:
    """True when a step's JSON record says it was made from the data described by ``note``."""
    return info_path.is_file() and json.loads(info_path.read_text()).get("data") == note


def build_model(name: str, profile: str, tile_size: int, augment: bool = False, seed: int = 42,
                weights: str | None = None, num_classes: int = len(LABELS), mixed_precision: str | None = None):
    """(model, phases, record) for a model name and profile.

    ``phases``: one ``(TrainConfig, stage)`` per training phase (stage: what trains, see
    ``set_trainable_stage``; None: everything). ``record`` says what weights the model starts from and
    how it was built (``train_run(..., built=...)`` checks that against what it is asked to train).
    """
    keras.utils.set_random_seed(seed)  # the same initial weights wherever the model is built
    with precision_policy(mixed_precision):
        model, phases, record = _build(name, profile, tile_size, augment, seed, weights, num_classes)
    record["built_as"] = {"model": name, "profile": profile, "tile_size": tile_size, "augment": augment, "seed": seed,
                          "weights": weights, "num_classes": num_classes, "mixed_precision": mixed_precision}
    return model, phases, record


def _build(name, profile, tile_size, augment, seed, weights, num_classes):
    if name == "scratch_resnet":
        if weights:
            raise ValueError("the scratch ResNet trains from random initialisation; --weights does not apply")
        model_config, train_config = scratch_profile(profile)
        model = scratch_resnet(model_config, tile_size, augment=augment, seed=seed, num_classes=num_classes)
        return model, [(train_config, None)], {"model_config": config_record(c=model_config)["c"],
                                               "weights": "random initialisation (trained from scratch)",
                                               "from_logits": False}
    if name in ("convnext", "vit", "encoder"):
        transfer = transfer_profile(profile)
        model, note = transfer_model(name, profile, tile_size, transfer.head_units, transfer.head_dropout,
                                     weights=weights, augment=augment, seed=seed, num_classes=num_classes)
        return model, [(transfer.phase1, 1), (transfer.phase2, 2)], {
            "model_config": config_record(c=transfer)["c"], "weights": note, "from_logits": True}
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def phase_optimizer(name: str, profile: str, config: TrainConfig, stage):
    """Lion for the scratch model; AdamW for transfer phase 1; for phase 2 a MultiOptimizer with the
    backbone at ``config.learning_rate`` and the head (``head_*`` variables) at the head rate."""
    if stage is None:
        return keras.optimizers.Lion(learning_rate=config.learning_rate)
    if stage == 1:
        return keras.optimizers.AdamW(learning_rate=config.learning_rate)
    transfer = transfer_profile(profile)
    return differential_optimizer(config.learning_rate, transfer.head_learning_rate, transfer.weight_decay)


def _datasets(prep: Prepared, batch_size: int, cache, seed: int):
    t = prep.tiling.tile_size
    kw = dict(tile_size=t, stride=prep.tiling.stride)
    train_ds = pipeline.tile_dataset(prep.tiles, prep.manifest, ("train",), training=True, batch_size=batch_size,
                                     seed=seed, cache=cache, **kw)
    val_ds, val_infer = pipeline.evaluation_datasets(prep.tiles, prep.manifest, ("val",), batch_size=batch_size,
                                                     cache=cache, **kw)
    val_table = pipeline.image_table(prep.tiles, prep.manifest, ("val",))
    return train_ds, val_ds, val_infer, val_table


def evaluate_images(model, dataset, table: pd.DataFrame, from_logits: bool = False,
                    classes: tuple[str, ...] = LABELS) -> dict:
    """Vote a labelled split's tiles with every rule; scores and predictions per rule."""
    probabilities, numbers, weights = voting.predict_tiles(model, dataset, from_logits)
    y_true = table.label_index.to_numpy()
    out = {}
    for rule in voting.VOTING_RULES:
        y_pred = voting.vote(probabilities, numbers, weights, len(table), rule)
        out[rule] = {"scores": voting.image_scores(y_true, y_pred, n_classes=len(classes)), "y_pred": y_pred,
                     "per_class": voting.per_class_table(y_true, y_pred, classes),
                     "confusion": voting.confusion(y_true, y_pred, len(classes))}
    return out


def train_run(prep: Prepared, run_dir: Path | str, model_name: str = "scratch_resnet", profile: str = "smoke",
              epochs: int | None = None, mixed_precision: str | None = None, strategy=None,
              overrides: dict | None = None, weights: str | None = None, with_baselines: bool = True,
              built: tuple | None = None) -> dict:
    """Train one model on ``prep`` (one phase, or two for transfer learning) and write model, config,
    logs and metrics into ``run_dir``.

    ``epochs`` overrides every phase's epoch count; ``overrides`` other ``TrainConfig`` fields.
    ``with_baselines``: also score the majority-class and colour-histogram baselines on the same split
    (recorded in ``metrics.json`` under ``baselines``). ``built``: what ``build_model`` returned for
    these same settings (e.g. in a notebook that showed the model first), trained instead of a new build.
    """
    from anndl.train import get_strategy

    run_dir = Path(run_dir)
    if with_baselines and prep.baseline_scores is None:  # the same split for every model: compute once
        prep.baseline_scores = run_baselines(prep.manifest, prep.split, n_classes=len(prep.classes))
    baseline_scores = prep.baseline_scores if with_baselines else None
    if built is not None and strategy not in (None, "default"):
        raise ValueError("built= takes a model built outside any distribution strategy; leave strategy unset")
    strategy = get_strategy(strategy) if isinstance(strategy, (str, type(None))) else strategy
    changes = dict(overrides or {}, **({"epochs": epochs} if epochs else {}),
                   **({"mixed_precision": mixed_precision} if mixed_precision else {}))
    augment = changes.pop("augment", False)
    seed = changes.get("seed", TrainConfig.seed)  # one seed for initial weights, shuffling and dropout
    settings = dict(augment=augment, seed=seed, weights=weights, num_classes=len(prep.classes),
                    mixed_precision=mixed_precision)
    if built is not None:
        expected = {"model": model_name, "profile": profile, "tile_size": prep.tiling.tile_size, **settings}
        if built[2].get("built_as") != expected:
            raise ValueError(f"the model passed as built= was built as {built[2].get('built_as')}, "
                             f"but this run asks for {expected}")
        model, phases, record = built
    with precision_policy(mixed_precision), strategy.scope():
        if built is None:
            model, phases, record = build_model(model_name, profile, prep.tiling.tile_size, **settings)
        keras.utils.set_random_seed(seed)  # training (shuffling, dropout) starts from the same state either way
        phases = [(dataclasses.replace(c, augment=augment, **changes), stage) for c, stage in phases]
        first = phases[0][0]
        train_ds, val_ds, val_infer, val_table = _datasets(prep, first.batch_size, first.cache, first.seed)
        train_labels = prep.tiles[prep.tiles.split == "train"].label.map(prep.classes.index).to_numpy()
        config = {"model": model_name, "profile": profile, "data": prep.data_note, "classes": list(prep.classes),
                  **record,
                  "phases": [config_record(c=c)["c"] for c, _ in phases],
                  "train_config": config_record(c=first)["c"],
                  "tiling": config_record(c=prep.tiling)["c"], "parameters": int(model.count_params())}
        write_json(run_dir / "config.json", config)
        print(f"{model_name} ({profile} profile; weights: {record['weights']}): {model.count_params():,} parameters; "
              f"{len(train_labels)} train tiles, {len(val_table)} validation images")
        logs, best = [], None
        for number, (train_config, stage) in enumerate(phases, start=1):
            if stage is not None:
                trained = set_trainable_stage(model, stage)
                print(f"phase {number}: head" + (f" + backbone layers {trained[0]} … {trained[-1]}" if trained else " only"))
            optimizer = phase_optimizer(model_name, profile, train_config, stage)
            log_name = "log.csv" if len(phases) == 1 else f"log_phase{number}.csv"
            done = sum(len(log) for log in logs)
            fit(model, train_ds, val_ds, val_infer, val_table.label_index.to_numpy(), train_config, run_dir,
                optimizer=optimizer, train_labels=train_labels, from_logits=record["from_logits"],
                log_name=log_name, initial_epoch=done, initial_best=best)
            logs.append(pd.read_csv(run_dir / log_name).assign(phase=number))
            best = float(pd.concat(logs).val_image_macro_f1.max())
    log = pd.concat(logs, ignore_index=True)
    log.to_csv(run_dir / "log.csv", index=False)
    model.save(run_dir / "model.keras")
    results = evaluate_images(model, val_infer, val_table, record["from_logits"], prep.classes)
    best_row = log.loc[log.val_image_macro_f1.idxmax()]
    metrics = {"model": model_name, "profile": profile, "data": prep.data_note, "classes": list(prep.classes),
               "weights": record["weights"], "selected_by": f"image-level validation macro F1 ({first.voting} voting)",
               "best_epoch": int(best_row.epoch) + 1, "best_phase": int(best_row.phase), "epochs_run": int(len(log)),
               "validation": {rule: r["scores"] for rule, r in results.items()},
               "baselines": baseline_scores}
    write_json(run_dir / "metrics.json", metrics)
    pd.DataFrame({"sample_index": val_table.sample_index, "label": val_table.label,
                  **{f"pred_{rule}": [prep.classes[i] for i in r["y_pred"]] for rule, r in results.items()}}
                 ).to_csv(run_dir / "val_predictions.csv", index=False, lineterminator="\n")
    return {"metrics": metrics, "results": results, "model": model, "run_dir": run_dir}


def fold_preps(prep: Prepared, run_dir: Path | str) -> list[Prepared]:
    """One ``Prepared`` per fold of a K-fold run (its ``folds.csv``): that fold's images are ``val``."""
    assignment = pd.read_csv(Path(run_dir) / "folds.csv", keep_default_na=False)
    fold_of = assignment.set_index("sample_index").fold
    labelled = prep.tiles.split != "test"
    preps = []
    for k in sorted(assignment.fold.unique()):
        split = assignment.assign(split=np.where(assignment.fold == k, "val", "train")).drop(columns="fold")
        tiles = prep.tiles.copy()
        tiles.loc[labelled, "split"] = np.where(tiles.loc[labelled, "sample_index"].map(fold_of) == k, "val", "train")
        preps.append(dataclasses.replace(prep, split=split, tiles=tiles, baseline_scores=None))
    return preps


def train_folds(prep: Prepared, run_dir: Path | str, model_name: str = "scratch_resnet", profile: str = "smoke",
                folds: int = 5, seed: int = 42, **train_kwargs) -> dict:
    """K-fold cross-validation by image: one model per fold (``run_dir/fold_k``), then the out-of-fold
    image-level macro F1 with its bootstrap interval (``metrics.json``: ``oof_macro_f1``, ``oof_macro_f1_ci``),
    the number to compare models by. The fold models together form an ensemble for ``predict``."""
    run_dir = Path(run_dir)
    kept = prep.clean[prep.clean.status == "kept"]
    run_dir.mkdir(parents=True, exist_ok=True)
    tiling.assign_folds(kept, folds, seed=seed).to_csv(run_dir / "folds.csv", index=False, lineterminator="\n")
    oof, per_fold = [], []
    for k, fold_prep in enumerate(fold_preps(prep, run_dir)):
        print(f"== fold {k + 1}/{folds}: {(fold_prep.split.split == 'val').sum()} validation images")
        result = train_run(fold_prep, run_dir / f"fold_{k}", model_name, profile, with_baselines=False, **train_kwargs)
        per_fold.append(result["metrics"]["validation"])
        oof.append(pd.read_csv(run_dir / f"fold_{k}" / "val_predictions.csv").assign(fold=k))
    oof = pd.concat(oof, ignore_index=True)
    oof.to_csv(run_dir / "oof_predictions.csv", index=False, lineterminator="\n")
    y_true = oof.label.map(prep.classes.index).to_numpy()
    scores = {rule: voting.image_scores(y_true, oof[f"pred_{rule}"].map(prep.classes.index).to_numpy(),
                                        n_classes=len(prep.classes))
              for rule in voting.VOTING_RULES}
    first = json.loads((run_dir / "fold_0" / "metrics.json").read_text())
    metrics = {"model": model_name, "profile": profile, "data": prep.data_note, "classes": list(prep.classes),
               "weights": first["weights"],
               "folds": folds, "oof": scores, "oof_macro_f1": scores["hard"]["macro_f1"],
               "oof_macro_f1_ci": scores["hard"]["macro_f1_ci95"], "per_fold_validation": per_fold}
    write_json(run_dir / "metrics.json", metrics)
    return {"metrics": metrics, "oof": oof}


def load_run(run_dir: Path | str):
    """(model, config) of a finished run."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    return keras.models.load_model(run_dir / "model.keras", compile=False), config


def model_dirs(run_dirs) -> list[Path]:
    """Run folders holding a model; a K-fold run stands for its fold models (``fold_*/``)."""
    found = []
    for run_dir in map(Path, [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs):
        if (run_dir / "model.keras").is_file():
            found.append(run_dir)
        elif folds := sorted(p.parent for p in run_dir.glob("fold_*/model.keras")):
            found.extend(folds)
        else:
            raise FileNotFoundError(f"{run_dir}: no model.keras (and no fold_*/model.keras) in this run folder")
    return found


def ensemble_probabilities(run_dirs, tiles: pd.DataFrame, manifest: pd.DataFrame, splits: tuple[str, ...],
                           tta: bool = False, batch_size: int = 32):
    """Tile probabilities averaged over every model of ``run_dirs`` (before voting), with image numbers,
    weights and the image table. All runs must share one tiling."""
    dirs = model_dirs(run_dirs)
    configs = [json.loads((d / "config.json").read_text()) for d in dirs]
    tilings = {json.dumps(c["tiling"], sort_keys=True) for c in configs}
    if len(tilings) > 1:
        raise ValueError(f"runs {', '.join(map(str, dirs))} were tiled differently; an ensemble needs one tiling")
    if len({tuple(c.get("classes", LABELS)) for c in configs}) > 1:
        raise ValueError(f"runs {', '.join(map(str, dirs))} predict different label sets; an ensemble needs one")
    tiling_config = tiling.TilingConfig(**configs[0]["tiling"])
    dataset = pipeline.tile_dataset(tiles, manifest, splits, tile_size=tiling_config.tile_size,
                                    stride=tiling_config.stride, batch_size=batch_size, with_labels=False,
                                    cache="memory" if len(dirs) > 1 else None)
    total = None
    for d, config in zip(dirs, configs):
        model = keras.models.load_model(d / "model.keras", compile=False)
        probabilities, numbers, weights = voting.predict_tiles(model, dataset, config.get("from_logits", False), tta)
        total = probabilities if total is None else total + probabilities
    return total / len(dirs), numbers, weights, pipeline.image_table(tiles, manifest, splits), configs


def predict_run(run_dir, data_dir: Path | str, out: Path | str, voting_rule: str = "hard",
                tta: bool = False) -> Path:
    """Predict every test image of ``data_dir`` and write the submission CSV (and a JSON note beside it).

    ``run_dir``: one run folder or several (an ensemble: tile probabilities averaged before voting);
    a K-fold run counts as its fold models. ``tta``: eight dihedral views per tile.
    """
    dirs = model_dirs(run_dir)
    first = json.loads((dirs[0] / "config.json").read_text())
    tiling_config = tiling.TilingConfig(**first["tiling"])
    manifest = read_challenge(data_dir)
    classes = tuple(first.get("classes", LABELS))
    if classes != read_classes(data_dir):
        raise ValueError(f"{dirs[0]} predicts {list(classes)}, but {data_dir} has the labels "
                         f"{list(read_classes(data_dir))}")
    test = manifest[manifest.split == "test"]
    tiles = tiling.tile_images(test.assign(label=""), tiling_config)
    probabilities, numbers, weights, table, configs = ensemble_probabilities(dirs, tiles, manifest, ("test",), tta)
    predictions = voting.vote(probabilities, numbers, weights, len(table), voting_rule)
    path = voting.write_submission(table.sample_index, predictions, out, expected=set(test.sample_index),
                                   classes=classes)
    note = {"runs": [str(d.resolve()) for d in dirs], "models": [c["model"] for c in configs],
            "profiles": sorted({c["profile"] for c in configs}), "weights": sorted({c["weights"] for c in configs}),
            "data": describe_data(data_dir), "voting": voting_rule, "tta": tta, "test_images": int(len(test))}
    write_json(Path(out).with_suffix(".json"), note)
    return path
