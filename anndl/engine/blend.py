"""Blend same-fold K-fold runs: out-of-fold probabilities averaged with weights chosen per fold on the other folds."""

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from anndl.core import artifacts
from anndl.data import read_challenge
from anndl.data.stages import data_note, shown
from anndl.evaluate import metrics, submission
from anndl.evaluate.baselines import score
from anndl.evaluate.voting import probability_columns

STAGE = "blend"
STEP = 0.05  # the weight grid's step


def grid(members: int, step: float = STEP) -> np.ndarray:
    """Every weight vector on the simplex with entries a multiple of ``step``, the equal weights' nearest first."""
    n = round(1 / step)
    points = np.array([c for c in itertools.product(range(n + 1), repeat=members) if sum(c) == n]) / n
    return points[np.argsort(np.abs(points - 1 / members).sum(1), kind="stable")]


def choose(probabilities: np.ndarray, y: np.ndarray, rows: np.ndarray, n_classes: int) -> np.ndarray:
    """Member weights with the best blended macro F1 on ``rows``; ties: lowest log loss, then nearest equal weights."""
    weights = grid(len(probabilities))
    blended = np.einsum("wm,mic->wic", weights, probabilities[:, rows])
    scores = metrics._batched_macro_f1(np.tile(y[rows], (len(weights), 1)), blended.argmax(2), n_classes)
    loss = -np.log(np.take_along_axis(blended, y[rows][None, :, None], 2)[..., 0] + 1e-9).mean(1)
    return weights[np.lexsort((loss, -scores))[0]]


def blend(runs, out: Path | str, seed: int = 42, redo: bool = False) -> dict:
    """Blend K-fold ``runs`` (``runs.Run``, scored on the same folds) into the run folder ``out``; its record."""
    if len(runs) < 2:
        raise ValueError("blend needs at least two runs")
    first, classes, out = runs[0], list(runs[0].metrics["classes"]), Path(out)
    columns = probability_columns(classes)
    frames = []
    for run in runs:
        if not run.folds:
            raise ValueError(f"{run.folder}: a single-split run; blend takes K-fold runs (train with --folds)")
        frame = run.predictions().set_index("sample_index")
        if run.metrics["classes"] != classes or not set(columns) <= set(frame.columns):
            raise ValueError(f"{run.folder / 'oof_predictions.csv'}: no out-of-fold probabilities for the classes "
                             f"{classes} (a run made before they were kept: train it again)")
        frames.append(frame)
    base = frames[0]
    for run, frame in zip(runs[1:], frames[1:]):
        if set(frame.index) != set(base.index) or not frame.loc[base.index, "fold"].equals(base.fold):
            raise ValueError(f"{run.folder} and {first.folder} were not scored on the same folds; a blend needs one "
                             "fold set (the same data, --folds and --seed)")
    base, probabilities = base.reset_index(), np.stack([f.loc[base.index, columns].to_numpy(float) for f in frames])
    names = [f"{i + 1}:{r.model}" for i, r in enumerate(runs)]
    inputs = {n: r.record["id"] for n, r in zip(names, runs)}
    req = artifacts.request(STAGE, data=runs[0].metrics["data"], inputs=inputs, settings={"step": STEP, "seed": seed})

    def build(staging: Path):
        y, folds = base.label.map(classes.index).to_numpy(), base.fold.to_numpy()
        blended, per_fold = np.zeros(probabilities.shape[1:]), {}
        for k in np.unique(folds):
            weights = choose(probabilities, y, folds != k, len(classes))
            blended[folds == k] = np.einsum("m,mic->ic", weights, probabilities[:, folds == k])
            per_fold[f"fold_{k}"] = dict(zip(names, weights.round(4).tolist()))
        predicted = {"blend": blended.argmax(1), **{n: p.argmax(1) for n, p in zip(names, probabilities)}}
        rows, _ = score(y, predicted, folds, None, len(classes), seed)
        table = base[["sample_index", "label", "fold"]].assign(pred_blend=[classes[i] for i in predicted["blend"]])
        artifacts.write_csv(pd.concat([table, pd.DataFrame(blended, columns=probability_columns(classes))], axis=1),
                            staging / "oof_predictions.csv")
        scores = metrics.image_scores(y, predicted["blend"], seed, len(classes))
        final = choose(probabilities, y, np.ones(len(y), bool), len(classes))
        members = [{"name": n, "folder": os.path.relpath(r.folder.resolve(), out.resolve()), "id": r.record["id"],
                    "model": r.model, "oof_macro_f1": r.metrics["oof_macro_f1"]} for n, r in zip(names, runs)]
        about = {"model": "blend", "profile": ", ".join(sorted({str(r.metrics.get("profile")) for r in runs})),
                 "data": runs[0].metrics["data"], "classes": classes,
                 "weights": "; ".join(f"{n}: {r.metrics['weights']}" for n, r in zip(names, runs)),
                 "members": members, "blend_weights": dict(zip(names, final.round(4).tolist()))}
        artifacts.write_json(staging / "metrics.json", about | {
            "folds": len(per_fold), "oof": {"blend": scores}, "oof_macro_f1": scores["macro_f1"],
            "oof_macro_f1_ci": scores["macro_f1_ci95"], "weights_per_fold": per_fold,
            "selected_by": "each fold's weights: macro F1 on the other folds' out-of-fold images", "compared": rows})
        artifacts.write_json(staging / "config.json", about | {"head": False, "step": STEP, "seed": seed})
        return ["oof_predictions.csv", "metrics.json", "config.json"]

    return artifacts.ensure(out, req, build, redo=redo)


def predict(run, members, probabilities, data_dir: Path | str, out: Path | str) -> Path:
    """The blend's submission: its ``members``' test ``probabilities`` ((images, p) each), by ``blend_weights``."""
    config, classes = run.metrics, tuple(run.metrics["classes"])
    total, images = 0, probabilities[0][0]
    for member, recorded, (found, p) in zip(members, config["members"], probabilities):
        if member.record["id"] != recorded["id"]:
            raise ValueError(f"{member.folder}: changed since {run.folder} was blended; blend again")
        if list(found) != list(images):
            raise ValueError(f"{member.folder}: predicts other test images than {members[0].folder}")
        total = total + config["blend_weights"][recorded["name"]] * p
    manifest = read_challenge(data_dir)
    test = manifest.query("split == 'test'")
    path = submission.write_submission(images, total.argmax(1), out, expected=set(test.sample_index), classes=classes)
    artifacts.write_json(Path(out).with_suffix(".json"), {
        "runs": [shown(run.folder)], "run_ids": [run.record["id"]], "members": [shown(m.folder) for m in members],
        "models": ["blend"], "voting": "blend", "blend_weights": config["blend_weights"],
        "weights": [config["weights"]], "data": data_note(data_dir, manifest),
        "test_data": data_note(data_dir, manifest, ("test",)),
        "test_images": int(len(test)), "dominated_by": submission.dominance(total.argmax(1), classes)})
    return path
