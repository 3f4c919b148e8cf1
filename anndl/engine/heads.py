"""Small heads on an embedding cache, one class each in ``HEAD_CLASSES`` with ``rules`` (first primary), ``blend_rule``,
``file``, ``selected_by``, ``selects``, ``fit``, ``predict``, ``save``, ``load``; saved files never run code."""

import os
from operator import attrgetter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anndl.core import artifacts
from anndl.data import read_challenge, read_classes, tiling
from anndl.data.stages import data_note, shown
from anndl.engine import embed
from anndl.evaluate import submission
from anndl.evaluate.metrics import image_scores
from anndl.evaluate.voting import mask_weighted, probability_columns, vote
from anndl.models import specs

HEADS = specs.names(consumes="embeddings")
STAGE = "head"


def _images(emb, rows: np.ndarray):
    """(the images' sample_index in first-appearance order, image number per row) of the embedding rows ``rows``."""
    numbers, names = pd.factorize(emb.tiles.sample_index.to_numpy()[rows])
    return list(names), numbers.astype(np.int64)


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
    out = np.zeros((len(probabilities), num_classes))
    out[:, classes_seen] = probabilities
    return out


def _probe():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))


class LinearProbe:
    """Logistic regression on standardised tile embeddings (voted) and on each image's mean one (``mean_pool``)."""

    rules = ("hard", "soft", "mean_pool")
    blend_rule = "soft"  # the image probabilities kept out of fold and blended
    file = "head.npz"
    selected_by = "no selection (linear probe)"
    selects = False  # every training image trains
    _FITTED = ("standardscaler.mean_", "standardscaler.scale_", "standardscaler.var_",  # arrays: no pickle, no code
               "logisticregression.coef_", "logisticregression.intercept_", "logisticregression.classes_")

    def fit(self, x, y, numbers, n_images, seed: int, num_classes: int, select=None):
        return {"tiles": _probe().fit(x, y),
                "mean_pool": _probe().fit(_mean_pool(x, numbers, n_images), _image_labels(y, numbers, n_images))}

    def predict(self, model, x, numbers, n_images, weights, num_classes) -> dict[str, np.ndarray]:
        """Per rule, class probabilities per image (``hard``: the vote one-hot), so that fold heads can be averaged."""
        tiles = _full(model["tiles"].predict_proba(x), model["tiles"].classes_, num_classes)
        pooled = model["mean_pool"].predict_proba(_mean_pool(x, numbers, n_images))
        return {"hard": np.eye(num_classes)[vote(tiles, numbers, weights, n_images, "hard")],
                "soft": mask_weighted(tiles, numbers, weights, n_images),
                "mean_pool": _full(pooled, model["mean_pool"].classes_, num_classes)}

    def save(self, model, folder: Path) -> None:
        arrays = {f"{part}.{key}": attrgetter(key)(pipe.named_steps) for part, pipe in model.items()
                  for key in self._FITTED}
        artifacts.write_bytes(folder / self.file, embed.npz_bytes(**arrays))

    def load(self, folder: Path):
        """The fitted pipelines, rebuilt from the saved arrays (``read_arrays``: object arrays refused)."""
        path = folder / self.file
        arrays = artifacts.read_arrays(path)
        model = {"tiles": _probe(), "mean_pool": _probe()}
        for part, pipe in model.items():
            for key in self._FITTED:
                value = arrays.get(f"{part}.{key}")
                if value is None or value.dtype.kind not in "fiu":
                    raise artifacts.ArtifactError(f"{path}: not a linear-probe head (no numeric {part}.{key})")
                step, name = key.split(".")
                setattr(pipe.named_steps[step], name, value)
                pipe.named_steps[step].n_features_in_ = arrays[f"{part}.standardscaler.mean_"].shape[0]
        return model


class AttentionMIL:
    """Gated-attention MIL (``anndl.models.mil``, Ilse et al., 2018) over each image's bag of tile embeddings."""

    rules = ("attention",)
    blend_rule = "attention"
    file = "head.keras"
    selected_by = "validation loss on the selection split (15% of the training images; early stopping)"
    selects = True

    def fit(self, x, y, numbers, n_images, seed: int, num_classes: int, select=None):
        """Early stopping watches ``select`` (an image mask); None or empty: a stratified 15% of them, drawn here."""
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
        return *mil.predict_mil(model, bags, mask), mask

    def predict(self, model, x, numbers, n_images, weights, num_classes) -> dict[str, np.ndarray]:
        return {"attention": self.attention(model, x, numbers, n_images)[0]}

    def save(self, model, folder: Path) -> None:
        from anndl.engine.train import save_atomically
        save_atomically(model.save, folder / self.file)

    def load(self, folder: Path):
        from anndl.models.layers import load_model
        return load_model(folder / self.file)


HEAD_CLASSES = {"linear_probe": LinearProbe(), "attention_mil": AttentionMIL()}  # one per head spec


def train_head(prep, emb, run_dir: Path | str, head: str = "linear_probe", folds: int | None = None,
               seed: int = 42, redo: bool = False) -> None:
    """Train ``head`` on ``emb``: on train scored on val, or per fold out of fold; an artifact citing ``emb``."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {HEADS}")
    prep.require_every_class()
    kind, run_dir, classes = HEAD_CLASSES[head], Path(run_dir), tuple(prep.classes)
    req = artifacts.request(STAGE, data=prep.data_note, inputs={"embeddings": emb.record["id"]},
                            settings={"head": head, "folds": folds, "seed": seed, "classes": list(classes)})
    labels = emb.tiles.label.map({c: i for i, c in enumerate(classes)}).fillna(-1).to_numpy(np.int64)
    sample = emb.tiles.sample_index.to_numpy()
    labelled = np.flatnonzero(emb.tiles.split.isin(["train", "val"]).to_numpy())
    fraction = tiling.SELECT_FRACTION if kind.selects else 0

    def build(out):
        if folds:
            assignment = tiling.assign_folds(prep.clean[prep.clean.status == "kept"], folds, seed=seed)
            artifacts.write_csv(assignment, out / "folds.csv")
            nested = [(tiling.nested_split(assignment, k, fraction, seed), f"fold_{k}/") for k in range(folds)]
        else:  # the single split as a fold: scored on val; a head that selects does so on part of its train images
            as_fold = prep.split.assign(fold=prep.split.split.eq("val").astype(int))
            nested = [(tiling.nested_split(as_fold, 1, fraction, seed), "")]
        files, tables, per_fold = ["folds.csv"] if folds else [], [], []
        for k, (frame, prefix) in enumerate(nested):
            row_split = pd.Series(sample[labelled]).map(frame.set_index("sample_index").split).to_numpy()
            if pd.isna(row_split).any():
                raise ValueError(f"{emb.folder}: embedded images missing from the split; embed again")
            train_rows, val_rows = labelled[row_split != "held_out"], labelled[row_split == "held_out"]

            def fit(folder):
                images, numbers = _images(emb, train_rows)
                select = np.isin(images, sample[labelled[row_split == "select"]])
                kind.save(kind.fit(emb.embeddings[train_rows], labels[train_rows], numbers, len(images), seed + k,
                                   len(classes), select=select), folder)
                return [kind.file]
            artifacts.ensure(out / prefix, req, fit, label=f"{head}: {f'fold {k + 1}' if folds else 'the head'}",
                             verb="fitting", reused="{} reused from the interrupted run")
            model = kind.load(out / prefix)
            artifacts.write_csv(frame, out / prefix / "split.csv")
            files += [prefix + "split.csv", prefix + kind.file]
            images, numbers = _images(emb, val_rows)
            y_true = _image_labels(labels[val_rows], numbers, len(images))
            probs = kind.predict(model, emb.embeddings[val_rows], numbers, len(images),
                                 emb.tiles.weight.to_numpy()[val_rows], len(classes))
            per_fold.append({r: image_scores(y_true, p.argmax(1), n_classes=len(classes)) for r, p in probs.items()})
            table = pd.DataFrame({"sample_index": images, "label": [classes[i] for i in y_true],
                                  **{f"pred_{r}": [classes[i] for i in p.argmax(1)] for r, p in probs.items()},
                                  **dict(zip(probability_columns(classes), probs[kind.blend_rule].T))})
            tables.append(table.assign(fold=k) if folds else table)
        table = pd.concat(tables, ignore_index=True)
        name = "oof_predictions.csv" if folds else "val_predictions.csv"
        artifacts.write_csv(table, out / name)
        y_true = table.label.map(classes.index).to_numpy()
        scores = {r: image_scores(y_true, table[f"pred_{r}"].map(classes.index).to_numpy(), n_classes=len(classes))
                  for r in kind.rules}
        about = {"model": head, "profile": "n/a (a head on cached embeddings)", "data": prep.data_note,
                 "classes": list(classes), "weights": emb.encoder["weights"], "encoder": emb.encoder,
                 # relative to the run folder: an outputs folder moved as a whole still finds its cache
                 "embeddings": {"folder": os.path.relpath(emb.folder.resolve(), run_dir.resolve()),
                                "id": emb.record["id"]}}
        primary = scores[kind.rules[0]]
        artifacts.write_json(out / "metrics.json", about | {"selected_by": kind.selected_by} | (
            {"folds": folds, "oof": scores, "oof_macro_f1": primary["macro_f1"],
             "oof_macro_f1_ci": primary["macro_f1_ci95"], "per_fold_validation": per_fold} if folds
            else {"validation": scores}))
        artifacts.write_json(out / "config.json", {"model": head, "head": True} | about | {
            "folds": folds, "seed": seed, "rules": list(kind.rules), "tiling": emb.record["settings"]["tiling"]})
        return files + [name, "metrics.json", "config.json"]

    artifacts.ensure(run_dir, req, build, redo=redo)


def predict_probabilities(run_dir: Path | str, data_dir: Path | str, rule: str | None = None):
    """(test images, fold-averaged probabilities, rule used, context) of a head run; ``rule``: default its first."""
    run_dir = Path(run_dir)
    record = artifacts.load(run_dir, STAGE)
    config = artifacts.read_json(run_dir / "config.json")
    kind, classes = HEAD_CLASSES[config["model"]], tuple(config["classes"])
    rule = rule if rule in config["rules"] else config["rules"][0]
    if classes != (found := read_classes(data_dir)):
        raise ValueError(f"{run_dir} predicts {list(classes)}, but {data_dir} has the labels {list(found)}")
    emb = embed.load(run_dir / config["embeddings"]["folder"])  # (an absolute folder in older runs)
    if emb.record["id"] != config["embeddings"]["id"]:
        raise ValueError(f"{emb.folder}: the embeddings changed since {run_dir} was trained; train the head again")
    manifest = read_challenge(data_dir)
    test = manifest.query("split == 'test'")
    rows = np.flatnonzero(emb.tiles.split.to_numpy() == "test")
    images, numbers = _images(emb, rows)
    if set(images) != set(test.sample_index):
        raise ValueError(f"{emb.folder}: its test tiles are not those of {data_dir}; embed this folder first")
    folders = [run_dir / f"fold_{k}" for k in range(config["folds"])] if config["folds"] else [run_dir]
    total = sum(kind.predict(kind.load(folder), emb.embeddings[rows], numbers, len(images),
                             emb.tiles.weight.to_numpy()[rows], len(classes))[rule] for folder in folders)
    return images, total / len(folders), rule, (record, config, manifest, test, len(folders))


def predict(run_dir: Path | str, data_dir: Path | str, out: Path | str, rule: str | None = None) -> Path:
    """The submission of a head run: its head(s) on the cached test-tile embeddings (fold heads averaged)."""
    images, total, rule, (record, config, manifest, test, n_heads) = predict_probabilities(run_dir, data_dir, rule)
    classes = tuple(config["classes"])
    path = submission.write_submission(images, total.argmax(1), out, expected=set(test.sample_index), classes=classes)
    artifacts.write_json(Path(out).with_suffix(".json"), {
        "runs": [shown(Path(run_dir))], "run_ids": [record["id"]], "models": [config["model"]],
        "weights": [config["weights"]], "encoder": config["encoder"], "data": data_note(data_dir, manifest),
        "test_data": data_note(data_dir, manifest, ("test",)), "voting": rule, "heads": n_heads,
        "test_images": int(len(test)), "dominated_by": submission.dominance(total.argmax(1), classes)})
    return path


def attention_maps(run_dir: Path | str, emb, fold: int = 0) -> list[tuple[str, pd.DataFrame, np.ndarray]]:
    """(sample_index, its tiles (x, y), attention per tile) for the images an attention head's fold scored."""
    run_dir = Path(run_dir)
    config = artifacts.read_json(run_dir / "config.json")
    kind = HEAD_CLASSES.get(config["model"])
    if not hasattr(kind, "attention"):
        raise ValueError(f"{run_dir}: a {config['model']} run has no attention")
    oof = artifacts.read_csv(run_dir / ("oof_predictions.csv" if config["folds"] else "val_predictions.csv"))
    names = set(oof[oof.fold == fold].sample_index) if config["folds"] else set(oof.sample_index)
    rows = np.flatnonzero(emb.tiles.split.isin(["train", "val"]).to_numpy() & emb.tiles.sample_index.isin(names))
    images, numbers = _images(emb, rows)
    model = kind.load(run_dir / f"fold_{fold}" if config["folds"] else run_dir)
    _, attention, mask = kind.attention(model, emb.embeddings[rows], numbers, len(images))
    tiles = emb.tiles.iloc[rows]
    return [(name, tiles[numbers == i][["x", "y"]], attention[i][: int(mask[i].sum())])
            for i, name in enumerate(images)]
