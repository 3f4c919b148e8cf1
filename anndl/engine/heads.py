"""Small heads trained on an embedding cache (``anndl.engine.embed``) in seconds instead of hours.

* ``linear_probe``: a scikit-learn logistic regression (standardised features) on tile embeddings, voted into
  images (``hard`` / ``soft`` as everywhere in anndl), and a second one on each image's mean tile embedding
  (``mean_pool``); the standard linear evaluation of self-supervised encoders.
* ``attention_mil``: the gated-attention MIL head of ``anndl.models.mil`` (Ilse et al., 2018) on each image's bag of
  tile embeddings; early stopping watches a stratified 15% of the *training* images, never the scored ones.

A head run writes what a trained run writes (``config.json``, ``metrics.json`` with the validation or, with
``folds``, the out-of-fold macro F1 and its bootstrap interval, ``val_predictions.csv`` /
``oof_predictions.csv``) plus its head (``head.npz`` of arrays or ``head.keras``, loaded in Keras's safe mode:
nothing a run folder holds is ever executed); it is an artifact whose record
cites the embeddings it read. Each head is one class (``LinearProbe``, ``AttentionMIL``: its rules, file, fit,
predict, save, load): adding a head is a spec in ``anndl.models.specs`` and a class here. ``predict`` averages the fold heads' probabilities on the test tiles' cached
embeddings and writes the submission.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from anndl.core import artifacts
from anndl.evaluate.metrics import image_scores
from anndl.models import specs

HEADS = specs.names(consumes="embeddings")  # ("linear_probe", "attention_mil"), each a class below
STAGE = "head"


def _labels(emb, classes) -> np.ndarray:
    """Class index per embedding row (-1 for test tiles)."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(label, -1) for label in emb.tiles.label], np.int64)


def _images(emb, rows: np.ndarray):
    """(image keys in first-appearance order, image number per row) for the embedding rows ``rows``."""
    keys = list(zip(emb.tiles.split.to_numpy()[rows], emb.tiles.sample_index.to_numpy()[rows]))
    order = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return list(order), np.array([order[k] for k in keys], np.int64)


def _image_labels(y, numbers, n_images) -> np.ndarray:
    image_y = np.zeros(n_images, np.int64)
    image_y[numbers] = y
    return image_y


def _mean_pool(x, numbers, n_images):
    sums = np.zeros((n_images, x.shape[1]))
    np.add.at(sums, numbers, x)
    return sums / np.bincount(numbers, minlength=n_images)[:, None]


def _full(probabilities: np.ndarray, classes_seen, num_classes: int) -> np.ndarray:
    """Probabilities over all classes (a class absent from a fold's training images gets 0)."""
    if probabilities.shape[1] == num_classes:
        return probabilities
    out = np.zeros((len(probabilities), num_classes))
    out[:, np.asarray(classes_seen)] = probabilities
    return out


class LinearProbe:
    """Logistic regression on standardised tile embeddings (voted ``hard`` / ``soft``) and on each image's mean
    tile embedding (``mean_pool``)."""

    rules = ("hard", "soft", "mean_pool")
    file = "head.npz"
    selected_by = "no selection (linear probe)"
    selects = False  # nothing is chosen on held-back images: every training image trains

    def fit(self, x, y, numbers, n_images, seed: int, num_classes: int, select=None):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def probe():
            return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))

        return {"tiles": probe().fit(x, y),
                "mean_pool": probe().fit(_mean_pool(x, numbers, n_images), _image_labels(y, numbers, n_images))}

    def predict(self, model, x, numbers, n_images, weights, num_classes) -> dict[str, np.ndarray]:
        """Class probabilities per image for every rule (hard: the vote as a one-hot row; soft: the mask-weighted
        mean tile probability; both can be averaged over fold heads)."""
        from anndl.evaluate import voting

        tiles = _full(model["tiles"].predict_proba(x), model["tiles"].classes_, num_classes)
        pooled = model["mean_pool"].predict_proba(_mean_pool(x, numbers, n_images))
        return {"hard": np.eye(num_classes)[voting.vote(tiles, numbers, weights, n_images, "hard")],
                "soft": voting.mask_weighted(tiles, numbers, weights, n_images),
                "mean_pool": _full(pooled, model["mean_pool"].classes_, num_classes)}

    # what a fitted scaler + logistic regression is, as arrays (no pickle: a shared run folder runs no code)
    _FITTED = {"standardscaler": ("mean_", "scale_", "var_"), "logisticregression": ("coef_", "intercept_", "classes_")}

    def save(self, model, folder: Path) -> None:
        import io

        arrays = {f"{part}.{step}.{name}": getattr(pipe.named_steps[step], name)
                  for part, pipe in model.items() for step, names in self._FITTED.items() for name in names}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        artifacts.write_bytes(folder / self.file, buffer.getvalue())

    def load(self, folder: Path):
        """The fitted pipelines, rebuilt from the saved arrays (``read_arrays``: object arrays refused)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        path = folder / self.file
        arrays = artifacts.read_arrays(path)
        model = {}
        for part in ("tiles", "mean_pool"):
            pipe = make_pipeline(StandardScaler(), LogisticRegression())
            for step, names in self._FITTED.items():
                for name in names:
                    key = f"{part}.{step}.{name}"
                    if key not in arrays or arrays[key].dtype.kind not in "fiu":
                        raise artifacts.ArtifactError(f"{path}: not a linear-probe head (no numeric {key})")
                    setattr(pipe.named_steps[step], name, arrays[key])
            pipe.named_steps["standardscaler"].n_features_in_ = arrays[f"{part}.standardscaler.mean_"].shape[0]
            pipe.named_steps["logisticregression"].n_features_in_ = arrays[f"{part}.logisticregression.coef_"].shape[1]
            model[part] = pipe
        return model


class AttentionMIL:
    """Gated-attention MIL (``anndl.models.mil``) over each image's bag of tile embeddings; early stopping on a
    stratified 15% of the training images."""

    rules = ("attention",)
    file = "head.keras"
    selected_by = "validation loss on the selection split (15% of the training images; early stopping)"
    selects = True

    def fit(self, x, y, numbers, n_images, seed: int, num_classes: int, select=None):
        """``select``: which of the ``n_images`` early stopping watches (the run's selection split); None: a
        stratified 15% of them, drawn here."""
        from sklearn.model_selection import train_test_split

        from anndl.models import mil

        image_y = _image_labels(y, numbers, n_images)
        bags, mask = mil.bags(x, numbers, n_images)
        if select is not None and np.any(select) and not np.all(select):
            inner_train, inner_val = np.flatnonzero(~select), np.flatnonzero(select)
        else:
            counts = np.bincount(image_y, minlength=num_classes)
            n_val = max(int(round(0.15 * n_images)), 1)
            stratify = image_y if counts[counts > 0].min() >= 2 and n_val >= (counts > 0).sum() else None
            inner_train, inner_val = train_test_split(np.arange(n_images), test_size=n_val, random_state=seed,
                                                      stratify=stratify)
        return mil.train_mil(bags[inner_train], mask[inner_train], image_y[inner_train], bags[inner_val],
                             mask[inner_val], image_y[inner_val], seed=seed, num_classes=num_classes)

    def attention(self, model, x, numbers, n_images):
        """(class probabilities per image, attention per tile slot, the bags' mask)."""
        from anndl.models import mil

        bags, mask = mil.bags(x, numbers, n_images)
        probabilities, attention = mil.predict_mil(model, bags, mask)
        return probabilities, attention, mask

    def predict(self, model, x, numbers, n_images, weights, num_classes) -> dict[str, np.ndarray]:
        return {"attention": self.attention(model, x, numbers, n_images)[0]}

    def save(self, model, folder: Path) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # Keras writes the file itself; then moved atomically
            model.save(Path(tmp) / self.file)
            artifacts.write_bytes(folder / self.file, (Path(tmp) / self.file).read_bytes())

    def load(self, folder: Path):
        import keras

        from anndl.models import mil  # noqa: F401  (registers GatedAttentionPooling)

        return keras.models.load_model(folder / self.file, compile=False, safe_mode=True)


HEAD_CLASSES = {"linear_probe": LinearProbe(), "attention_mil": AttentionMIL()}  # one per head spec
FINISHED = "head_finished.json"  # beside a fold's head in the staging folder: the request it was fitted for


def train_head(prep, emb, run_dir: Path | str, head: str = "linear_probe", folds: int | None = None,
               seed: int = 42, redo: bool = False) -> dict:
    """Train ``head`` on the embedding cache ``emb`` (``anndl.engine.embed.Embeddings``) for the images of ``prep``:
    on its train split scored on val, or with ``folds`` one head per fold scored out of fold."""
    from anndl.data import tiling

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {HEADS}")
    prep.require_every_class()
    kind = HEAD_CLASSES[head]
    run_dir = Path(run_dir)
    classes = tuple(prep.classes)
    req = artifacts.request(STAGE, data=prep.data_note, inputs={"embeddings": emb.record["id"]},
                            settings={"head": head, "folds": folds, "seed": seed, "classes": list(classes)})
    result = {}

    def build(out):
        labels = _labels(emb, classes)
        labelled = np.flatnonzero(emb.tiles.split.isin(["train", "val"]).to_numpy())
        sample = emb.tiles.sample_index.to_numpy()
        fraction = tiling.SELECT_FRACTION if kind.selects else 0
        if folds:  # the same nested selection as the tile networks' K-fold runs (``tiling.nested_split``)
            kept = prep.clean[prep.clean.status == "kept"]
            assignment = tiling.assign_folds(kept, folds, seed=seed)
            artifacts.write_csv(assignment, out / "folds.csv")
            nested = [(tiling.nested_split(assignment, k, fraction, seed), f"fold_{k}/") for k in range(folds)]
        else:  # the single split as a fold: scored on val; a head that selects does so on part of its train images
            as_fold = prep.split.assign(fold=prep.split.split.eq("val").astype(int))
            nested = [(tiling.nested_split(as_fold, 1, fraction, seed), "")]
        splits = []
        for frame, prefix in nested:
            row_split = pd.Series(sample[labelled]).map(frame.set_index("sample_index").split).to_numpy()
            if pd.isna(row_split).any():
                raise ValueError(f"{emb.folder}: embedded images missing from the split; embed again")
            artifacts.write_csv(frame, out / prefix / "split.csv")
            splits.append((labelled[row_split != "held_out"], labelled[row_split == "select"],
                           labelled[row_split == "held_out"], prefix))
        files, predictions, per_fold = ["folds.csv"] if folds else [], [], []
        files += [prefix + "split.csv" for _, prefix in nested]
        request_id = artifacts.fingerprint(req)
        for k, (train_rows, select_rows, val_rows, prefix) in enumerate(splits):
            done = out / prefix / FINISHED
            if done.is_file() and artifacts.read_json(done) == {"request": request_id}:
                # a fold head an interrupted run of this request finished (kept in the staging folder): reused
                model = kind.load(out / prefix)
                print(f"{head}: fold {k + 1} reused from the interrupted run" if folds else f"{head}: reused "
                      "the head the interrupted run finished")
            else:
                keys, numbers = _images(emb, train_rows)
                select = np.isin([s for _, s in keys], emb.tiles.sample_index.to_numpy()[select_rows])
                model = kind.fit(emb.embeddings[train_rows], labels[train_rows], numbers, len(keys), seed + k,
                                 len(classes), select=select)
                kind.save(model, out / prefix)
                artifacts.write_json(done, {"request": request_id})  # after the head: a kill between is a refit
            files.append(prefix + kind.file)
            val_keys, val_numbers = _images(emb, val_rows)
            y_true = np.zeros(len(val_keys), np.int64)
            y_true[val_numbers] = labels[val_rows]
            probs = kind.predict(model, emb.embeddings[val_rows], val_numbers, len(val_keys),
                                 emb.tiles.weight.to_numpy()[val_rows], len(classes))
            frame = pd.DataFrame({"sample_index": [s for _, s in val_keys], "label": [classes[i] for i in y_true],
                                  **{f"pred_{r}": [classes[i] for i in p.argmax(1)] for r, p in probs.items()}})
            per_fold.append({r: image_scores(y_true, p.argmax(1), n_classes=len(classes))
                             for r, p in probs.items()})
            predictions.append(frame.assign(fold=k) if folds else frame)
        table = pd.concat(predictions, ignore_index=True)
        name = "oof_predictions.csv" if folds else "val_predictions.csv"
        artifacts.write_csv(table, out / name)
        y_true = table.label.map(classes.index).to_numpy()
        scores = {r: image_scores(y_true, table[f"pred_{r}"].map(classes.index).to_numpy(),
                                  n_classes=len(classes)) for r in kind.rules}
        encoder = emb.encoder
        metrics = {"model": head, "profile": "n/a (a head on cached embeddings)", "data": prep.data_note,
                   "classes": list(classes), "weights": encoder["weights"], "encoder": encoder,
                   # relative to the run folder: an outputs folder moved as a whole still finds its cache
                   "embeddings": {"folder": os.path.relpath(emb.folder.resolve(), run_dir.resolve()),
                                  "id": emb.record["id"]},
                   "selected_by": kind.selected_by}
        primary = kind.rules[0]
        if folds:
            metrics |= {"folds": folds, "oof": scores, "oof_macro_f1": scores[primary]["macro_f1"],
                        "oof_macro_f1_ci": scores[primary]["macro_f1_ci95"], "per_fold_validation": per_fold}
        else:
            metrics["validation"] = scores
        config = {"model": head, "head": True, "profile": metrics["profile"], "data": prep.data_note,
                  "classes": list(classes), "weights": encoder["weights"], "encoder": encoder,
                  "embeddings": metrics["embeddings"], "folds": folds, "seed": seed,
                  "rules": list(kind.rules), "tiling": emb.record["settings"]["tiling"]}
        artifacts.write_json(out / "metrics.json", metrics)
        artifacts.write_json(out / "config.json", config)
        result["metrics"] = metrics
        return files + [name, "metrics.json", "config.json"]

    artifacts.ensure(run_dir, req, build, redo=redo, label=str(run_dir))
    if not result:
        result["metrics"] = artifacts.read_json(run_dir / "metrics.json")
    return {"metrics": result["metrics"], "run_dir": run_dir}


def predict(run_dir: Path | str, data_dir: Path | str, out: Path | str, rule: str | None = None) -> Path:
    """The submission of a head run: its head(s) on the cached test-tile embeddings (fold heads averaged)."""
    from anndl.data import read_challenge, read_classes
    from anndl.data.stages import data_note, shown
    from anndl.engine import embed
    from anndl.evaluate import submission

    run_dir = Path(run_dir)
    record = artifacts.load(run_dir, STAGE)
    config = artifacts.read_json(run_dir / "config.json")
    head, classes = config["model"], tuple(config["classes"])
    rule = rule if rule in config["rules"] else config["rules"][0]
    if classes != read_classes(data_dir):
        raise ValueError(f"{run_dir} predicts {list(classes)}, but {data_dir} has the labels {list(read_classes(data_dir))}")
    emb = embed.load(run_dir / config["embeddings"]["folder"])  # (an absolute folder in older runs)
    if emb.record["id"] != config["embeddings"]["id"]:
        raise ValueError(f"{emb.folder}: the embeddings changed since {run_dir} was trained; train the head again")
    manifest = read_challenge(data_dir)
    test = manifest.query("split == 'test'")
    rows = np.flatnonzero(emb.tiles.split.to_numpy() == "test")
    keys, numbers = _images(emb, rows)
    if {s for _, s in keys} != set(test.sample_index):
        raise ValueError(f"{emb.folder}: its test tiles are not those of {data_dir}; embed this folder first")
    folders = [run_dir / f"fold_{k}" for k in range(config["folds"])] if config["folds"] else [run_dir]
    kind, total = HEAD_CLASSES[head], 0
    for folder in folders:
        total = total + kind.predict(kind.load(folder), emb.embeddings[rows], numbers, len(keys),
                                     emb.tiles.weight.to_numpy()[rows], len(classes))[rule]
    path = submission.write_submission([s for _, s in keys], total.argmax(1), out, expected=set(test.sample_index),
                                   classes=classes)
    artifacts.write_json(Path(out).with_suffix(".json"), {
        "runs": [shown(run_dir)], "run_ids": [record["id"]], "models": [head], "weights": [config["weights"]],
        "encoder": config["encoder"], "data": data_note(data_dir, manifest),
        "test_data": data_note(data_dir, manifest, ("test",)), "voting": rule, "heads": len(folders),
        "test_images": int(len(test)),
        "dominated_by": submission.dominance(total.argmax(1), classes)})
    return path


def attention_maps(run_dir: Path | str, emb, fold: int = 0) -> list[tuple[str, pd.DataFrame, np.ndarray]]:
    """(sample_index, its tiles (x, y), attention per tile) for the images an attention-MIL fold head scored."""
    run_dir = Path(run_dir)
    config = artifacts.read_json(run_dir / "config.json")
    if config["model"] != "attention_mil":
        raise ValueError(f"{run_dir}: a {config['model']} run has no attention")
    folder = run_dir / f"fold_{fold}" if config["folds"] else run_dir
    oof = pd.read_csv(run_dir / ("oof_predictions.csv" if config["folds"] else "val_predictions.csv"),
                      keep_default_na=False)
    names = set(oof[oof.fold == fold].sample_index) if config["folds"] else set(oof.sample_index)
    rows = np.flatnonzero(emb.tiles.split.isin(["train", "val"]).to_numpy() & emb.tiles.sample_index.isin(names))
    keys, numbers = _images(emb, rows)
    mil = HEAD_CLASSES["attention_mil"]
    _, attention, mask = mil.attention(mil.load(folder), emb.embeddings[rows], numbers, len(keys))
    tiles = emb.tiles.iloc[rows]
    return [(name, tiles[numbers == i][["x", "y"]], attention[i][: int(mask[i].sum())])
            for i, (_, name) in enumerate(keys)]
