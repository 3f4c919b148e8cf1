"""Voting rules, the metric with its interval, and the submission format."""

import numpy as np
import pandas as pd
import pytest

from anndl.evaluate import metrics, submission, voting


def test_hard_voting_majority_and_tie_break():
    p = np.array([[.6, .4, 0, 0], [.7, .3, 0, 0], [.1, .9, 0, 0],   # image 0: A, A, B -> A
                  [.55, .45, 0, 0], [.0, 1., 0, 0]])                  # image 1: tie A/B, B has more mass
    numbers = np.array([0, 0, 0, 1, 1])
    assert voting.vote(p, numbers, np.ones(5), 2, "hard").tolist() == [0, 1]


def test_soft_voting_uses_mask_weights():
    p = np.array([[.9, .1, 0, 0], [.2, .8, 0, 0], [.3, .7, 0, 0]])
    numbers = np.zeros(3, int)
    assert voting.vote(p, numbers, np.array([.8, .1, .1]), 1, "soft").tolist() == [0]
    assert voting.vote(p, numbers, np.array([.1, .45, .45]), 1, "soft").tolist() == [1]
    assert voting.vote(p, numbers, np.ones(3), 1, "hard").tolist() == [1]


def test_an_image_without_tiles_is_an_error():
    with pytest.raises(ValueError, match="no tile prediction"):
        voting.vote(np.ones((2, 4)) / 4, np.array([0, 0]), np.ones(2), 2)


def test_macro_f1_and_bootstrap_interval():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3] * 5)
    assert metrics.macro_f1(y, y) == 1.0
    noisy = y.copy()
    noisy[::4] = (noisy[::4] + 1) % 4
    score = metrics.macro_f1(noisy, y)
    low, high = metrics.bootstrap_ci(y, noisy, n_boot=300)
    assert low < score < high and high - low > 0.05


def test_two_class_label_set_scores_and_submits_its_own_labels(tmp_path):
    y_true, y_pred = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    assert metrics.macro_f1(y_true, y_pred, n_classes=2) == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx((0.8 + 2 / 3) / 4)  # 4 classes: two absent ones count 0
    p = np.array([[.9, .1], [.2, .8], [.3, .7]])
    assert voting.vote(p, np.array([0, 1, 1]), np.ones(3), 2).tolist() == [0, 1]
    classes = ("in_situ", "invasive")
    path = submission.write_submission(["img_0001.png", "img_0000.png"], [1, 0], tmp_path / "s.csv", classes=classes)
    assert path.read_text().splitlines() == ["sample_index,label", "img_0000.png,in_situ", "img_0001.png,invasive"]
    with pytest.raises(ValueError, match="unknown labels"):
        submission.validate_submission(pd.DataFrame({"sample_index": ["img_0000.png"], "label": ["Luminal A"]}),
                                   classes=classes)


def test_submission_has_every_test_image_once(tmp_path):
    names = [f"img_{i:04d}.png" for i in range(5)]
    path = submission.write_submission(names[::-1], [0, 1, 2, 3, 0], tmp_path / "s.csv", expected=set(names))
    frame = pd.read_csv(path)
    assert frame.columns.tolist() == ["sample_index", "label"]
    assert frame.sample_index.tolist() == names
    assert path.read_text().splitlines()[1] == "img_0000.png,Luminal A"
    assert set(frame.label) <= {"Luminal A", "Luminal B", "HER2(+)", "Triple negative"}
    with pytest.raises(ValueError, match="misses 1 test images"):
        submission.write_submission(names[:4], [0, 0, 0, 0], tmp_path / "t.csv", expected=set(names))


def test_paired_difference_sees_a_consistent_gain_that_separate_intervals_miss():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120)
    a = np.where(rng.random(120) < 0.55, y, rng.integers(0, 4, 120))
    b = a.copy()
    fix = np.flatnonzero(a != y)[:10]                 # b = a with ten errors corrected, nothing else changed
    b[fix] = y[fix]
    result = metrics.paired_difference(y, a, b)
    assert result["gain"] == pytest.approx(metrics.macro_f1(y, b) - metrics.macro_f1(y, a), abs=1e-4)
    assert result["gain_ci95"][0] > 0 and result["real_difference"]
    low_b, _ = metrics.bootstrap_ci(y, b)
    _, high_a = metrics.bootstrap_ci(y, a)
    assert low_b < high_a                              # the two intervals overlap nonetheless
    same = metrics.paired_difference(y, a, a)
    assert same["gain"] == 0 and not same["real_difference"]


def test_vectorised_bootstrap_matches_sklearn_on_every_resample():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 4, 40), rng.integers(0, 4, 40)
    p[:3] = 3  # class imbalance; some resamples miss a class entirely
    rows = rng.integers(0, 40, (200, 40))
    expected = [metrics.macro_f1(y[r], p[r]) for r in rows]
    np.testing.assert_allclose(metrics._batched_macro_f1(y[rows], p[rows], 4), expected, atol=1e-12)


def test_a_submission_dominated_by_one_class_says_so(tmp_path, capsys):
    names = [f"img_{i:04d}.png" for i in range(477)]
    predictions = [1] * 413 + [0] * 64
    assert submission.dominance(predictions) == {"class": "Luminal B", "count": 413, "share": 0.8658, "images": 477}
    assert submission.dominance(["HER2(+)"] * 8 + ["Luminal A"] * 2) is None  # 80% is not more than 80%
    assert submission.dominance([0, 1, 2, 3] * 10) is None
    assert submission.dominance([1, 1, 0], classes=("a", "b"), threshold=0.5)["class"] == "b"
    submission.write_submission(names, predictions, tmp_path / "s.csv", expected=set(names))
    assert capsys.readouterr().out.strip() == ("warning: 413 of 477 test images (87%) are predicted Luminal B: a model "
                                               "that learned little predicts one class")
    submission.write_submission(names[:4], [0, 1, 2, 3], tmp_path / "t.csv")
    assert "warning" not in capsys.readouterr().out
