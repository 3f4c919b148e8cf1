"""Compare, on the same folds, what goes past the report: single model vs ensemble, with and without
test-time augmentation, voting vs attention-MIL, and the two baselines (majority class, colour histogram)
that any of them must beat. Every variant is scored out-of-fold (each image predicted by the models that
did not train on it) with its bootstrap interval, next to its prediction cost.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from anndl import artifacts, metrics, mil, voting
from anndl.baselines import baseline_predictions, colour_features
from anndl.experiment import Prepared, ensemble_probabilities, fold_preps, run_stain


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
    over the first row (the first run's single model) with its paired-bootstrap interval and a verdict.
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
            encoder = mil.run_encoder(fold_dir)
            stain = run_stain([fold_dir], [artifacts.read_json(fold_dir / "config.json")])
            tile_size = int(encoder.input_shape[1])
            emb, num, tab = mil.tile_embeddings(encoder, fold.tiles, fold.manifest, ("train",), tile_size, stain=stain)
            x_train, m_train = mil.bags(emb, num, len(tab))
            y_train = tab.label_index.to_numpy()
            val_start = time.perf_counter()
            emb_v, num_v, tab_v = mil.tile_embeddings(encoder, fold.tiles, fold.manifest, ("val",), tile_size,
                                                      stain=stain)
            embed_val_seconds = time.perf_counter() - val_start
            x_val, m_val = mil.bags(emb_v, num_v, len(tab_v))
            head = mil.train_mil(x_train, m_train, y_train, x_val, m_val, tab_v.label_index.to_numpy(), seed=seed,
                                 num_classes=len(prep.classes))
            (probabilities, attention_k), s = _timed(mil.predict_mil, head, x_val, m_val)
            add(f"attention-MIL on {name} embeddings", probabilities.argmax(1), embed_val_seconds + s)
            attention = {"table": tab_v, "attention": attention_k, "mask": m_val, "fold": k,
                         "tiles": fold.tiles[fold.tiles.split == "val"], "train_seconds": time.perf_counter() - start}
        baseline = baseline_predictions(fold.manifest, fold.split, train_features, features).set_index("sample_index")
        baseline = baseline.loc[table.sample_index]
        add("colour-histogram baseline (no CNN)", baseline.colour_histogram.to_numpy(),
            feature_seconds * len(table) / len(kept))
        add("majority class", baseline.majority.to_numpy(), 0.0)
        truth.append(table.label_index.to_numpy())
        images.append(table.sample_index.to_numpy())
        n_images_total += len(table)
    y_true = np.concatenate(truth)
    rows = []
    base = np.concatenate(preds[names[0]])
    for variant, parts in preds.items():
        predicted = np.concatenate(parts)
        scores = metrics.image_scores(y_true, predicted, seed, len(prep.classes))
        gain = metrics.paired_difference(y_true, base, predicted, seed=seed, n_classes=len(prep.classes))
        rows.append({"variant": variant, "oof_macro_f1": scores["macro_f1"],
                     "ci95_low": scores["macro_f1_ci95"][0], "ci95_high": scores["macro_f1_ci95"][1],
                     "images": scores["images"], "ms_per_image": round(1000 * cost[variant] / n_images_total, 1),
                     "gain": gain["gain"], "gain_ci95": gain["gain_ci95"],
                     "verdict": "—" if variant == names[0] else
                     ("real difference" if gain["real_difference"] else "no real difference (interval holds 0)")})
    details = {"y_true": y_true, "images": np.concatenate(images),
               "predictions": {v: np.concatenate(p) for v, p in preds.items()}, "attention": attention}
    return pd.DataFrame(rows), details
