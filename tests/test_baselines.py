"""The baselines a model must beat: majority class and a colour-histogram classifier."""

import cv2
import numpy as np
import pandas as pd

from anndl.evaluate.baselines import baseline_predictions, colour_features, majority_per_fold, run_baselines


def _colour_coded(tmp_path, n=24):
    """Images whose class is their colour (red-ish: 0, blue-ish: 1), 16 of class 0 and 8 of class 1."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = int(i % 3 == 0)
        image = np.zeros((32, 32, 3), np.uint8)
        image[..., 2 if label == 0 else 0] = rng.integers(150, 255)   # BGR on disk
        image[..., 1] = rng.integers(0, 100)
        cv2.imwrite(str(tmp_path / f"img_{i:04d}.png"), image)
        cv2.imwrite(str(tmp_path / f"mask_{i:04d}.png"), np.full((32, 32), 255, np.uint8))
        rows.append({"split": "train", "sample_index": f"img_{i:04d}.png", "label_index": label,
                     "image_path": str(tmp_path / f"img_{i:04d}.png"), "mask_path": str(tmp_path / f"mask_{i:04d}.png")})
    manifest = pd.DataFrame(rows)
    split = pd.DataFrame({"sample_index": manifest.sample_index, "split": np.where(np.arange(n) < 16, "train", "val")})
    return manifest, split


def test_colour_baseline_learns_colour_and_majority_predicts_the_commonest_class(tmp_path):
    manifest, split = _colour_coded(tmp_path)
    predicted = baseline_predictions(manifest, split)
    assert list(predicted.sample_index) == list(split[split.split == "val"].sample_index)
    assert (predicted.colour_histogram == predicted.label_index).all()
    assert (predicted.majority == 0).all()
    scores = run_baselines(manifest, split, n_classes=2)
    assert scores["colour_histogram"]["macro_f1"] == 1.0 and scores["majority"]["macro_f1"] < 0.5
    features = colour_features(manifest, manifest.sample_index)   # computed once, reused per fold
    assert baseline_predictions(manifest, split, features).equals(predicted)


def test_baselines_train_on_the_select_images_of_a_nested_split_too(tmp_path):
    """A K-fold fold's training images are its ``train`` and ``select`` images: only ``val`` is held out."""
    manifest, split = _colour_coded(tmp_path)  # 16 train (10 of class 0, 6 of class 1), 8 val
    train = split.index[split.split == "train"]
    class_1 = manifest.index[manifest.label_index == 1]
    nested = split.assign(split=np.where(split.index.isin(train[~train.isin(class_1)][:8]), "select", split.split))
    predicted = baseline_predictions(manifest, nested)
    assert list(predicted.sample_index) == list(split[split.split == "val"].sample_index)
    assert (predicted.majority == 0).all()  # 2 train + 8 select of class 0 against 6 of class 1
    # without the select images the majority would be class 1 (2 of class 0 vs 6): they count as training images
    assert (baseline_predictions(manifest, nested[nested.split != "select"]).majority == 1).all()
    assert (predicted.colour_histogram == predicted.label_index).all()


def test_majority_per_fold_counts_the_other_folds_labels():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    folds = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    # fold 0 trains on fold 1 (all class 1); fold 1 on fold 0 (0, 0, 0, 2): class 0
    assert majority_per_fold(y, folds, 3).tolist() == [1, 1, 1, 0, 0, 0, 0, 1]
    tie = majority_per_fold(np.array([2, 1, 0, 0]), np.array([0, 0, 1, 1]), 3)
    assert tie.tolist() == [0, 0, 1, 1]  # a tie goes to the lowest class index, as baseline_predictions does


def test_colour_features_are_remembered_until_an_image_changes(tmp_path, monkeypatch):
    import anndl.evaluate.baselines as baselines

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # its own cache: no other test process writes it meanwhile
    manifest, _ = _colour_coded(tmp_path)
    first, read, real = colour_features(manifest, manifest.sample_index), [], baselines.read_image
    monkeypatch.setattr(baselines, "read_image", lambda path: read.append(path) or real(path))
    assert colour_features(manifest, manifest.sample_index).equals(first) and read == []  # nothing read again
    path = manifest.image_path[3]
    cv2.imwrite(path, cv2.imread(path)[:, :, ::-1].copy())  # the same image restained
    again = colour_features(manifest, manifest.sample_index)
    assert read == [path] and not again.loc["img_0003.png"].equals(first.loc["img_0003.png"])
    assert again.drop(index="img_0003.png").equals(first.drop(index="img_0003.png"))
