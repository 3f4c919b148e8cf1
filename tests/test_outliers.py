"""Outlier removal: mask hashing, sticker and green detection, on synthetic and on real tissue."""

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from anndl.data import outliers
from anndl.data import read_challenge
from bench.common import STICKER_SKINS, bach_pairs, plant_outliers
from tests.conftest import HE_SAMPLES


def test_mask_hash_depends_on_pixels_not_encoding(tmp_path):
    mask = np.zeros((40, 50), bool)
    mask[5:20, 10:30] = True
    cv2.imwrite(str(tmp_path / "a.png"), mask.astype(np.uint8) * 255)
    cv2.imwrite(str(tmp_path / "b.png"), np.repeat(mask[..., None], 3, 2).astype(np.uint8),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    from anndl.data import read_mask
    a, b = read_mask(tmp_path / "a.png"), read_mask(tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert outliers.mask_hash(a) == outliers.mask_hash(b)
    b[0, 0] = True
    assert outliers.mask_hash(a) != outliers.mask_hash(b)
    assert outliers.mask_hash(a) != outliers.mask_hash(a.reshape(50, 40))


def test_mask_groups_are_numbered_deterministically():
    groups = outliers.mask_groups(pd.Series(["x", "a", "b", "a", "x", "c"]))
    assert groups.tolist() == [0, 1, -1, 1, 0, -1]


def test_farthest_group_member_is_the_sticker_and_classifier_finds_lone_ones():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 5))
    groups = np.full(60, -1)
    for g in range(8):
        groups[[2 * g, 2 * g + 1]] = g
        emb[2 * g] += [15, 0, 0, 0, 0]  # the even member is the corrupted one
    emb[50] += [15, 0, 0, 0, 0]        # a sticker without a twin
    found = outliers.detect_stickers(emb, groups, outliers.OutlierConfig())
    assert set(np.flatnonzero(found.sticker)) == {0, 2, 4, 6, 8, 10, 12, 14, 50}


def test_group_of_coincidentally_identical_masks_flags_nobody():
    rng = np.random.default_rng(1)
    emb = rng.uniform(-1, 1, size=(30, 4))  # all typical: no member is abnormally far
    groups = np.full(30, -1)
    groups[:7] = 0  # seven full-foreground masks, all genuine (as in the BACH samples)
    found = outliers.detect_stickers(emb, groups, outliers.OutlierConfig())
    assert not found.sticker.any()


def test_clean_finds_the_planted_outliers(tiny_data):
    manifest = read_challenge(tiny_data)
    cleaned = outliers.clean(manifest, outliers.ColourTextureEmbedder())
    assert len(cleaned) == (manifest.split == "train").sum()
    assert set(cleaned.status) <= {"kept", "sticker", "green"}
    planted = pd.read_csv(tiny_data / "planted_outliers.csv")
    scores = outliers.score_against_planted(cleaned, planted).set_index("kind")
    assert (scores.precision == 1).all() and (scores.recall == 1).all(), scores
    assert cleaned.embedder.str.contains("offline").all()
    twins = planted[planted.kind == "sticker"]
    for row in twins.itertuples():  # each sticker shares its group with its twin
        g = cleaned.set_index("sample_index").group
        assert g[row.sample_index] == g[row.twin] >= 0


def test_clean_stage_is_deterministic_across_processes(tiny_data, tmp_path):
    import json
    import subprocess
    import sys

    for name in ("a", "b"):
        code = ("import sys; from anndl.data import read_challenge, stages; m = read_challenge(sys.argv[1]); "
                "stages.clean_stage(m, stages.data_note(sys.argv[1], m), sys.argv[2])")
        result = subprocess.run([sys.executable, "-c", code, str(tiny_data), str(tmp_path / name)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "b/clean_summary.json").read_text())
    assert summary["status_counts"]["sticker"] == 2 and summary["status_counts"]["green"] == 2
    assert summary["class_counts_after"]
    assert (tmp_path / "a/clean_manifest.csv").read_bytes() == (tmp_path / "b/clean_manifest.csv").read_bytes()
    planted = pd.read_csv(tiny_data / "planted_outliers.csv")
    flagged = pd.read_csv(tmp_path / "a/clean_manifest.csv").query("status != 'kept'")
    assert sorted(zip(flagged.sample_index, flagged.status)) == sorted(zip(planted.sample_index, planted.kind))


def test_keras_embedder_from_a_locally_saved_model(tiny_data, tmp_path):
    import keras
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model.save(tmp_path / "tiny.keras")
    embedder = outliers.make_embedder(str(tmp_path / "tiny.keras"))
    assert "tiny.keras" in embedder.name
    manifest = read_challenge(tiny_data)
    cleaned = outliers.clean(manifest, embedder)
    assert (cleaned.embedder == embedder.name).all()
    assert (cleaned[cleaned.status == "green"].sample_index.isin(
        pd.read_csv(tiny_data / "planted_outliers.csv").sample_index)).all()


def test_resnet_embedder_refuses_random_or_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="random weights"):
        outliers.resnet50_embedder(None)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        outliers.resnet50_embedder(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match="unknown embedder"):
        outliers.make_embedder("vgg")


@pytest.mark.real
@pytest.mark.skipif(not (HE_SAMPLES / "bach_roi").is_dir(), reason="real H&E samples not present")
def test_detection_on_real_tissue(tmp_path):
    pairs = bach_pairs(HE_SAMPLES / "bach_roi")
    folder = plant_outliers(pairs, tmp_path / "bach", n_stickers=3, n_green=3, seed=3)
    cleaned = outliers.clean(read_challenge(folder), outliers.ColourTextureEmbedder())
    scores = outliers.score_against_planted(cleaned, pd.read_csv(folder / "planted_outliers.csv"))
    print(scores.to_string())
    assert (scores.precision == 1).all() and (scores.recall == 1).all(), scores


def test_green_blob_image_that_shares_a_mask_is_reported_green(data_copy):
    """A green-blob copy of a genuine image with a byte copy of its mask is far from its twin because of the
    blob: it must be reported ``green`` (not ``sticker``), and its twin kept."""
    from anndl.data import read_image, read_mask
    from anndl.data.synthetic import draw_green_blob

    planted = pd.read_csv(data_copy / "planted_outliers.csv")
    train = data_copy / "train_data"
    labels = pd.read_csv(data_copy / "train_labels.csv")
    twin = sorted(set(labels.sample_index) - set(planted.sample_index) - set(planted.twin.dropna()))[0]
    new = f"img_{len(labels):04d}.png"
    image = draw_green_blob(np.random.default_rng(5), read_image(train / twin),
                            read_mask(train / twin.replace("img_", "mask_")))
    cv2.imwrite(str(train / new), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    shutil.copyfile(train / twin.replace("img_", "mask_"), train / new.replace("img_", "mask_"))
    label = labels.set_index("sample_index").label[twin]
    pd.concat([labels, pd.DataFrame({"sample_index": [new], "label": [label]})]).to_csv(
        data_copy / "train_labels.csv", index=False, lineterminator="\n")

    cleaned = outliers.clean(read_challenge(data_copy), outliers.ColourTextureEmbedder()).set_index("sample_index")
    assert cleaned.group[new] == cleaned.group[twin] >= 0
    assert cleaned.status[new] == "green"
    assert cleaned.status[twin] == "kept"
    truth = pd.concat([planted, pd.DataFrame({"sample_index": [new], "kind": ["green"], "twin": [twin]})])
    scores = outliers.score_against_planted(cleaned.reset_index(), truth).set_index("kind")
    assert (scores.precision == 1).all() and (scores.recall == 1).all(), scores


@pytest.mark.parametrize("shade", ["olive", "green", "saturated"])
def test_green_skinned_stickers_in_groups_are_stickers_and_green_blobs_in_groups_green(tiny_data, tmp_path, shade):
    """Stickers in several greens (the saturated one is green-dominant everywhere colour looks) and green blobs
    alone or inside identical-mask groups: each is called what it is, by outline and flat colour, not by hue."""
    planted = pd.read_csv(tiny_data / "planted_outliers.csv")
    bad = set(planted.sample_index) | set(planted.twin.dropna())
    train = tiny_data / "train_data"
    names = sorted(p.name for p in train.glob("img_*.png") if p.name not in bad)
    pairs = [(train / n, train / n.replace("img_", "mask_")) for n in names]
    folder = plant_outliers(pairs, tmp_path / shade, n_stickers=3, n_green=2, n_green_twins=2, seed=1,
                            sticker_skins=[STICKER_SKINS[shade]])
    truth = pd.read_csv(folder / "planted_outliers.csv")
    cleaned = outliers.clean(read_challenge(folder), outliers.ColourTextureEmbedder())
    status = cleaned.set_index("sample_index").status
    in_groups = cleaned.set_index("sample_index").group[truth.sample_index[truth.twin.notna()]]
    assert (in_groups >= 0).all()  # every sticker and twinned green blob shares its mask
    assert (status[truth.sample_index[truth.kind == "sticker"]] == "sticker").all(), cleaned.to_string()
    assert (status[truth.sample_index[truth.kind == "green"]] == "green").all(), cleaned.to_string()
    scores = outliers.score_against_planted(cleaned, truth)
    assert (scores.precision == 1).all() and (scores.recall == 1).all(), scores


def test_translucent_green_stickers_in_groups_are_stickers_by_what_their_twin_lacks(tiny_data, tmp_path):
    """Stickers in a saturated green pasted at opacity 0.45-1 (tissue shows through, so their outline is no longer
    near-black nor their fill flat) on copies of genuine images, and green blobs alone and in identical-mask
    groups: what an image adds to its twin decides (a drawn border: a sticker), not its colour or opacity."""
    planted = pd.read_csv(tiny_data / "planted_outliers.csv")
    bad = set(planted.sample_index) | set(planted.twin.dropna())
    train = tiny_data / "train_data"
    names = sorted(p.name for p in train.glob("img_*.png") if p.name not in bad)
    pairs = [(train / n, train / n.replace("img_", "mask_")) for n in names]
    folder = plant_outliers(pairs, tmp_path / "translucent", n_stickers=6, n_green=2, n_green_twins=2, seed=1,
                            sticker_skins=[STICKER_SKINS["saturated"]], sticker_alpha=(0.45, 1.0))
    truth = pd.read_csv(folder / "planted_outliers.csv")
    cleaned = outliers.clean(read_challenge(folder), outliers.ColourTextureEmbedder())
    scores = outliers.score_against_planted(cleaned, truth)
    assert (scores.precision >= 0.9).all() and (scores.recall >= 0.9).all(), (scores, cleaned.to_string())
    found = cleaned.set_index("sample_index")
    stickers, grouped_green = truth[truth.kind == "sticker"], truth[(truth.kind == "green") & truth.twin.notna()]
    green_stickers = stickers[(found.green_fraction[stickers.sample_index] > 0).to_numpy()]
    assert len(green_stickers) >= 3  # the case at stake: green-dominant stickers
    assert (found.twin[green_stickers.sample_index].to_numpy() == green_stickers.twin.to_numpy()).all()
    assert (found.twin[grouped_green.sample_index].to_numpy() == grouped_green.twin.to_numpy()).all()
    assert (found.twin_ink[grouped_green.sample_index] < 0.05).all()


def test_twin_ink_tells_a_pasted_outline_from_a_pasted_blob():
    rng = np.random.default_rng(0)
    twin = rng.integers(120, 230, (200, 200, 3), dtype=np.uint8)
    from anndl.data.synthetic import draw_green_blob, draw_sticker

    for alpha in (0.45, 0.7, 1.0):
        sticker = (twin * (1 - alpha) + draw_sticker(rng, twin, (70, 215, 40)) * alpha).round().astype(np.uint8)
        changed = outliers.changed_pixels(sticker, twin, 12)
        assert outliers.twin_ink(sticker, twin, changed) > 0.5
        assert outliers.twin_ink(twin, sticker, changed) < 0.05  # the twin is not the one with the overlay
    blob = draw_green_blob(rng, twin, np.ones((200, 200), bool))
    assert outliers.twin_ink(blob, twin, outliers.changed_pixels(blob, twin, 12)) == 0


def test_green_pixels_match_the_signed_formula():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgb = image.astype(int)
    for margin in (-5, 0, 40, 200, 255):
        expected = (rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2])) > margin
        np.testing.assert_array_equal(outliers.green_pixels(image, margin), expected)


def test_scan_batches_are_bounded_by_pixels(tiny_data):
    """Batches for the embedder hold at most the budget's pixels (a larger image alone), and small images
    still go together."""
    train = read_challenge(tiny_data).query("split == 'train'").reset_index(drop=True)
    train.loc[[3, 4, 10], ["height", "width"]] = 1000  # sizes as the manifest says: 1e6 pixels each
    batches = []

    class Recording(outliers.ColourTextureEmbedder):
        def __call__(self, images):
            batches.append(len(images))
            return super().__call__(images)

    budget = 1_500_000
    stats, embeddings, thumbs = outliers.scan_images(train, Recording(), outliers.OutlierConfig(), batch_size=16,
                                                     workers=2, pixel_budget=budget)
    assert len(stats) == len(embeddings) == len(thumbs) == len(train) == sum(batches)
    sizes = (train.height * train.width).tolist()
    start = 0
    for n in batches:
        assert n == 1 or sum(sizes[start:start + n]) <= budget
        start += n
    assert max(batches) > 2 and all(n <= 16 for n in batches)
    assert outliers.pixel_batches([5, 5, 20, 5, 5, 5], 10, 2) == [range(0, 2), range(2, 3), range(3, 5), range(5, 6)]
