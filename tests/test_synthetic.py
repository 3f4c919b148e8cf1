"""Synthetic generator: real layout, determinism, class proportions, planted outliers."""

import filecmp
import hashlib

import numpy as np
import pandas as pd
import pytest

from anndl.data import read_challenge, read_image, read_mask
from anndl.data import synthetic


def _tree_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_trees(tmp_path):
    args = dict(n_train=12, n_test=3, scale=0.15, seed=3, progress=False)
    a = synthetic.generate(tmp_path / "A", **args)
    b = synthetic.generate(tmp_path / "B", **args)
    assert _tree_digest(a) == _tree_digest(b)
    c = synthetic.generate(tmp_path / "C", **{**args, "seed": 4})
    assert _tree_digest(a) != _tree_digest(c)


def test_class_counts_follow_real_proportions():
    assert synthetic.class_counts(691) == synthetic.REAL_TRAIN_COUNTS
    counts = synthetic.class_counts(100)
    assert sum(counts.values()) == 100 and counts["Triple negative"] == 11


def test_planted_outliers_match_the_real_kind(tiny_data):
    planted = pd.read_csv(tiny_data / "planted_outliers.csv")
    assert sorted(planted.kind) == ["green", "green", "sticker", "sticker"]
    manifest = read_challenge(tiny_data)
    assert set(planted.sample_index) <= set(manifest[manifest.split == "train"].sample_index)
    train = tiny_data / "train_data"
    for row in planted[planted.kind == "sticker"].itertuples():
        twin = row.twin.replace("img_", "mask_")
        assert filecmp.cmp(train / row.sample_index.replace("img_", "mask_"), train / twin, shallow=False)
        # the sticker is drawn over a copy of its twin's tissue
        diff = np.abs(read_image(train / row.sample_index).astype(int) - read_image(train / row.twin)).sum(2)
        assert 0.02 < (diff > 30).mean() < 0.5
    for row in planted[planted.kind == "green"].itertuples():
        rgb = read_image(train / row.sample_index).astype(int)
        greenish = (rgb[..., 1] > rgb[..., 0] + 40) & (rgb[..., 1] > rgb[..., 2] + 40)
        assert greenish.mean() > 0.005
    # clean images carry no green pixels at all: H&E has no green-dominant colour
    clean = manifest[(manifest.split == "train") & ~manifest.sample_index.isin(planted.sample_index)]
    rgb = read_image(clean.iloc[0].image_path).astype(int)
    assert not ((rgb[..., 1] > rgb[..., 0] + 40) & (rgb[..., 1] > rgb[..., 2] + 40)).any()


def test_size_follows_scale(tmp_path):
    out = synthetic.generate(tmp_path / "s", n_train=8, n_test=1, scale=0.2, seed=0, progress=False)
    manifest = read_challenge(out)
    assert (manifest[["height", "width"]].min(axis=1) == round(1024 * 0.2)).all()
    mask = read_mask(manifest.iloc[0].mask_path)
    assert 0.01 < mask.mean() < 0.5


def test_rejects_impossible_arguments(tmp_path):
    with pytest.raises(ValueError, match="need n_train >= 8"):
        synthetic.generate(tmp_path / "x", n_train=7, n_test=1)
    with pytest.raises(ValueError, match="scale must be"):
        synthetic.generate(tmp_path / "x", n_train=8, n_test=1, scale=5)
    assert not (tmp_path / "x").exists()
