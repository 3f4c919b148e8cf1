"""The end-to-end steps the commands and notebooks share: prepare (clean + tile), train, predict.

Each step writes files a person can open and is skipped when its output already exists (pass
``redo=True`` to run it again). Every output records the profile, the data and the weights behind it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from anndl import outliers, pipeline, tiling, voting
from anndl.baselines import run_baselines
from anndl.config import TrainConfig, scratch_profile, transfer_profile
from anndl.data import describe_data, read_challenge
from anndl.labels import LABELS
from anndl.models import scratch_resnet, set_trainable_stage, transfer_model
from anndl.train import config_record, differential_optimizer, fit, precision_policy, write_json

MODELS = ("scratch_resnet", "convnext", "vit")


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

    @property
    def data_note(self) -> str:
        return describe_data(self.data_dir)


def prepare(data_dir: Path | str, work_dir: Path | str, embedder: str = "offline",
            tiling_config: tiling.TilingConfig = tiling.TilingConfig(), val_fraction: float = 0.1,
            seed: int = 42, redo: bool = False) -> Prepared:
    """Validate the folder, then clean -> ``work_dir/clean``, split + tile -> ``work_dir/tiles``."""
    data_dir, work_dir = Path(data_dir), Path(work_dir)
    manifest = read_challenge(data_dir)
    note = describe_data(data_dir)
    clean_path = work_dir / "clean" / "clean_manifest.csv"
    if redo or not clean_path.is_file():
        config = outliers.OutlierConfig()
        cleaned = outliers.clean(manifest, outliers.make_embedder(embedder, config), config)
        outliers.write_outputs(cleaned, clean_path.parent, config, note)
    else:
        print(f"reusing {clean_path}")
    clean = pd.read_csv(clean_path, keep_default_na=False)
    tiles_path = work_dir / "tiles" / "tiles.csv"
    tiles_info = tiles_path.with_suffix(".json")
    if not redo and tiles_path.is_file() and tiles_info.is_file() and \
            json.loads(tiles_info.read_text())["config"] == config_record(c=tiling_config)["c"]:
        print(f"reusing {tiles_path}")
        split = pd.read_csv(tiles_path.parent / "split.csv", keep_default_na=False)
        tiles = pd.read_csv(tiles_path, keep_default_na=False)
    else:
        split = tiling.load_or_make_split(clean, tiles_path.parent / "split.csv", val_fraction, seed)
        tiles = tiling.build_tiles(manifest, clean, split, tiling_config)
        tiling.write_tiles(tiles, tiles_path.parent, tiling_config, note)
    return Prepared(data_dir, work_dir, manifest, clean, split, tiles, tiling_config)


def build_model(name: str, profile: str, tile_size: int, augment: bool = False, seed: int = 42,
                weights: str | None = None):
    """(model, phases, record) for a model name and profile.

    ``phases``: one ``(TrainConfig, stage)`` per training phase (stage: what trains, see
    ``set_trainable_stage``; None: everything). ``record`` says what weights the model starts from.
    """
    if name == "scratch_resnet":
        if weights:
            raise ValueError("the scratch ResNet trains from random initialisation; --weights does not apply")
        model_config, train_config = scratch_profile(profile)
        model = scratch_resnet(model_config, tile_size, augment=augment, seed=seed)
        return model, [(train_config, None)], {"model_config": config_record(c=model_config)["c"],
                                               "weights": "random initialisation (trained from scratch)",
                                               "from_logits": False}
    if name in ("convnext", "vit"):
        transfer = transfer_profile(profile)
        model, note = transfer_model(name, profile, tile_size, transfer.head_units, transfer.head_dropout,
                                     weights=weights, augment=augment, seed=seed)
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
    val_ds = pipeline.tile_dataset(prep.tiles, prep.manifest, ("val",), batch_size=batch_size, cache=cache, **kw)
    val_infer = pipeline.tile_dataset(prep.tiles, prep.manifest, ("val",), batch_size=batch_size,
                                      with_labels=False, cache=cache, **kw)
    val_table = pipeline.image_table(prep.tiles, prep.manifest, ("val",))
    return train_ds, val_ds, val_infer, val_table


def evaluate_images(model, dataset, table: pd.DataFrame, from_logits: bool = False) -> dict:
    """Vote a labelled split's tiles with every rule; scores and predictions per rule."""
    probabilities, numbers, weights = voting.predict_tiles(model, dataset, from_logits)
    y_true = table.label_index.to_numpy()
    out = {}
    for rule in voting.VOTING_RULES:
        y_pred = voting.vote(probabilities, numbers, weights, len(table), rule)
        out[rule] = {"scores": voting.image_scores(y_true, y_pred), "y_pred": y_pred,
                     "per_class": voting.per_class_table(y_true, y_pred),
                     "confusion": voting.confusion(y_true, y_pred)}
    return out


def train_run(prep: Prepared, run_dir: Path | str, model_name: str = "scratch_resnet", profile: str = "smoke",
              epochs: int | None = None, mixed_precision: str | None = None, strategy=None,
              overrides: dict | None = None, weights: str | None = None, with_baselines: bool = True) -> dict:
    """Train one model on ``prep`` (one phase, or two for transfer learning) and write model, config,
    logs and metrics into ``run_dir``.

    ``epochs`` overrides every phase's epoch count; ``overrides`` other ``TrainConfig`` fields.
    ``with_baselines``: also score the majority-class and colour-histogram baselines on the same split
    (recorded in ``metrics.json`` under ``baselines``).
    """
    import dataclasses

    from anndl.train import get_strategy

    run_dir = Path(run_dir)
    baseline_scores = run_baselines(prep.manifest, prep.split) if with_baselines else None
    keras.utils.set_random_seed(42)
    strategy = get_strategy(strategy) if isinstance(strategy, (str, type(None))) else strategy
    changes = dict(overrides or {}, **({"epochs": epochs} if epochs else {}),
                   **({"mixed_precision": mixed_precision} if mixed_precision else {}))
    augment = changes.pop("augment", False)
    with precision_policy(mixed_precision), strategy.scope():
        model, phases, record = build_model(model_name, profile, prep.tiling.tile_size, augment=augment,
                                            weights=weights)
        phases = [(dataclasses.replace(c, augment=augment, **changes), stage) for c, stage in phases]
        first = phases[0][0]
        train_ds, val_ds, val_infer, val_table = _datasets(prep, first.batch_size, first.cache, first.seed)
        train_labels = prep.tiles[prep.tiles.split == "train"].label.map(LABELS.index).to_numpy()
        config = {"model": model_name, "profile": profile, "data": prep.data_note, **record,
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
    results = evaluate_images(model, val_infer, val_table, record["from_logits"])
    best_row = log.loc[log.val_image_macro_f1.idxmax()]
    metrics = {"model": model_name, "profile": profile, "data": prep.data_note, "weights": record["weights"],
               "selected_by": f"image-level validation macro F1 ({first.voting} voting)",
               "best_epoch": int(best_row.epoch) + 1, "best_phase": int(best_row.phase), "epochs_run": int(len(log)),
               "validation": {rule: r["scores"] for rule, r in results.items()},
               "baselines": baseline_scores}
    write_json(run_dir / "metrics.json", metrics)
    pd.DataFrame({"sample_index": val_table.sample_index, "label": val_table.label,
                  **{f"pred_{rule}": [LABELS[i] for i in r["y_pred"]] for rule, r in results.items()}}
                 ).to_csv(run_dir / "val_predictions.csv", index=False, lineterminator="\n")
    return {"metrics": metrics, "results": results, "model": model, "run_dir": run_dir}


def load_run(run_dir: Path | str):
    """(model, config) of a finished run."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    return keras.models.load_model(run_dir / "model.keras", compile=False), config


def predict_run(run_dir: Path | str, data_dir: Path | str, out: Path | str, voting_rule: str = "hard",
                work_dir: Path | str | None = None) -> Path:
    """Predict every test image of ``data_dir`` with a run's model and write the submission CSV."""
    model, config = load_run(run_dir)
    tiling_config = tiling.TilingConfig(**config["tiling"])
    manifest = read_challenge(data_dir)
    test = manifest[manifest.split == "test"]
    tiles = tiling.tile_images(test.assign(label=""), tiling_config)
    dataset = pipeline.tile_dataset(tiles, manifest, ("test",), tile_size=tiling_config.tile_size,
                                    stride=tiling_config.stride, batch_size=config["train_config"]["batch_size"],
                                    with_labels=False)
    table = pipeline.image_table(tiles, manifest, ("test",))
    probabilities, numbers, weights = voting.predict_tiles(model, dataset, config.get("from_logits", False))
    predictions = voting.vote(probabilities, numbers, weights, len(table), voting_rule)
    path = voting.write_submission(table.sample_index, predictions, out, expected=set(test.sample_index))
    note = {"run": str(Path(run_dir).resolve()), "model": config["model"], "profile": config["profile"],
            "weights": config["weights"], "data": describe_data(data_dir), "voting": voting_rule,
            "test_images": int(len(test))}
    write_json(Path(out).with_suffix(".json"), note)
    return path
