"""Tiling: leakage-free split, mask-filtered coordinates, no image lost, byte-identical output."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from anndl.data import read_challenge
from anndl.data import tiling


def test_config_is_validated():
    with pytest.raises(ValueError, match="min_mask_pixels"):
        tiling.TilingConfig(tile_size=16, min_mask_pixels=300)
    with pytest.raises(ValueError, match="min_mask_pixels"):
        tiling.TilingConfig(min_mask_pixels=0.5)
    with pytest.raises(ValueError, match="stride"):
        tiling.TilingConfig(stride=0)


def test_grid_counts_match_a_direct_count():
    rng = np.random.default_rng(0)
    mask = rng.random((70, 100)) < 0.3
    config = tiling.TilingConfig(tile_size=32, stride=16, min_mask_pixels=0)
    grid = tiling.tile_grid(mask, config)
    assert len(grid) == 3 * 5  # edges dropped: y in 0,16,32; x in 0..64
    for row in grid.itertuples():
        assert row.mask_pixels == mask[row.y:row.y + 32, row.x:row.x + 32].sum()


def test_threshold_fallback_and_padding():
    config = tiling.TilingConfig(tile_size=10, stride=10, min_mask_pixels=50)
    mask = np.zeros((30, 30), bool)
    mask[0:10, 0:6] = True      # 60 pixels: kept
    mask[20:23, 20:30] = True   # 30 pixels: dropped
    kept = tiling.select_tiles(mask, config)
    assert kept[["x", "y", "mask_pixels"]].values.tolist() == [[0, 0, 60]]
    assert kept.weight.tolist() == [pytest.approx(60 / 90)]
    sparse = np.zeros((30, 30), bool)
    sparse[25:27, 3:5] = True   # nothing qualifies: the best tile is kept
    assert tiling.select_tiles(sparse, config)[["x", "y"]].values.tolist() == [[0, 20]]
    small = np.ones((4, 7), bool)  # smaller than a tile: padded
    assert tiling.select_tiles(small, config)[["x", "y", "mask_pixels"]].values.tolist() == [[0, 0, 28]]
    empty = np.zeros((20, 20), bool)  # an empty mask still yields a tile
    assert len(tiling.select_tiles(empty, config)) == 1


def _clean(n=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["Luminal A", "Luminal B", "HER2(+)", "Triple negative"], n, p=[.3, .3, .28, .12])
    groups = np.full(n, -1)
    groups[:10] = np.repeat(np.arange(5), 2)  # five identical-mask pairs
    return pd.DataFrame({"sample_index": [f"img_{i:04d}.png" for i in range(n)], "label": labels,
                         "group": groups, "status": "kept"})


def test_split_is_stratified_group_safe_and_reproducible():
    clean = _clean(200)
    split = tiling.split_images(clean, 0.1, seed=42)
    assert set(split.split) == {"train", "val"}
    assert 0.07 < (split.split == "val").mean() < 0.13
    for _, members in split[split.group >= 0].groupby("group"):
        assert members.split.nunique() == 1
    assert split.equals(tiling.split_images(clean, 0.1, seed=42))
    assert not split.split.equals(tiling.split_images(clean, 0.1, seed=1).split)
    val = split[split.split == "val"].label.value_counts(normalize=True)
    assert abs(val.get("Triple negative", 0) - (clean.label == "Triple negative").mean()) < 0.1


def test_the_tile_stages_cover_every_image_once_and_are_byte_identical(tiny_data, tmp_path):
    code = ("import sys; from anndl.data import stages, tiling; "
            "stages.prepare(sys.argv[1], sys.argv[2], tiling_config=tiling.TilingConfig(64, 64))")
    for name in ("a", "b"):
        result = subprocess.run([sys.executable, "-c", code, str(tiny_data), str(tmp_path / name)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    a, b = tmp_path / "a" / "tiles", tmp_path / "b" / "tiles"
    assert (a / "tiles.csv").read_bytes() == (b / "tiles.csv").read_bytes()
    assert (a / "test" / "tiles.csv").read_bytes() == (b / "test" / "tiles.csv").read_bytes()
    tiles = pd.concat([pd.read_csv(a / "tiles.csv", keep_default_na=False),
                       pd.read_csv(a / "test" / "tiles.csv", keep_default_na=False)])
    assert set(pd.read_csv(a / "tiles.csv").split) == {"train", "val"}  # test tiles: their own artifact
    clean = pd.read_csv(tmp_path / "a" / "clean" / "clean_manifest.csv")
    manifest = read_challenge(tiny_data)
    kept = set(clean.sample_index[clean.status == "kept"])
    assert set(tiles.sample_index[tiles.split != "test"]) == kept            # removed images: no tiles
    assert set(tiles.sample_index[tiles.split == "test"]) == set(manifest.sample_index[manifest.split == "test"])
    per_image = tiles[tiles.split != "test"].groupby("sample_index").split.nunique()
    assert (per_image == 1).all()                                           # no image on two sides
    assert (tiles.groupby(["split", "sample_index"]).weight.sum() <= 1 + 1e-6).all()
    assert not tiles.duplicated(["split", "sample_index", "x", "y"]).any()


def test_bad_tiling_parameters_and_a_missing_clean_step_are_refused(tiny_data, tmp_path, capsys):
    from anndl import cli
    from anndl.core import artifacts
    from anndl.data import stages

    bad = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run")]
    assert cli.main([*bad, "--min-mask-pixels", "-3"]) == 2
    assert "min_mask_pixels must be an integer in [0, tile_size**2" in capsys.readouterr().err
    assert cli.main([*bad, "--tile-size", "0"]) == 2
    assert "tile_size must be a positive integer" in capsys.readouterr().err
    manifest = read_challenge(tiny_data)
    with pytest.raises(artifacts.ArtifactError, match=f"{tmp_path / 'none'}: not a finished clean"):
        stages.tiles_stage(manifest, stages.data_note(tiny_data, manifest), tmp_path / "none", tmp_path / "t")


def test_a_changed_test_image_remakes_only_what_reads_the_test_set(data_copy, tmp_path, capsys):
    import cv2

    from anndl.data import stages

    work = tmp_path / "out"
    first = stages.prepare(data_copy, work)
    image = data_copy / "test_data" / "img_0001.png"
    pixels = cv2.imread(str(image))
    pixels[:8, :8] = 255 - pixels[:8, :8]
    cv2.imwrite(str(image), pixels)
    capsys.readouterr()
    again = stages.prepare(data_copy, work)
    out = capsys.readouterr().out
    assert again.tiles_id == first.tiles_id and again.data_note == first.data_note   # training cites the same
    assert again.test_tiles_id != first.test_tiles_id                              # the test tiles are made again
    assert "tiles/test/tiles.csv: made from data" in out and out.count("reusing") == 2  # clean and train tiles
