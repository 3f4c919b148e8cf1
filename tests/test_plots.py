"""Figures: one palette, Figure 1 outline on the image, Figure 2 legend, integer epochs + selected epoch,
confusion matrix colourbar and counts."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from anndl.notebook import plots  # noqa: E402
from anndl.core.labels import LABELS  # noqa: E402


def _pair(tmp_path, h=900, w=1300):
    image = np.full((h, w, 3), 200, np.uint8)
    mask = np.zeros((h, w, 3), np.uint8)
    mask[100:600, 200:900] = 255
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path / "img.png", tmp_path / "mask.png"


def test_palette_is_one_per_class_in_label_order():
    colours = plots.class_colours(LABELS)
    assert list(colours) == list(LABELS) and len(set(colours.values())) == 4
    ax = plots.class_distribution(pd.Series(["Luminal B", "Luminal A", "Luminal B"]))
    assert [matplotlib.colors.to_hex(b.get_facecolor()) for b in ax.patches] == list(colours.values())
    plt.close("all")


def test_figure_one_and_two(tmp_path):
    image, mask = _pair(tmp_path)
    fig, ax = plt.subplots()
    plots.image_with_outline(image, mask, ax, "x", max_side=256)
    assert ax.images[0].get_array().shape[0] <= 256 and ax.collections  # downscaled, outline drawn
    grid = pd.DataFrame({"x": [0, 224, 448], "y": [0, 0, 224]})
    axes = plots.tile_selection(image, mask, grid, grid.iloc[1:], 224)
    assert axes[1].get_legend() is not None
    assert all(not p.get_fill() for p in axes[0].patches)  # outlines: the tissue stays visible
    assert max(axes[0].images[0].get_array().shape[:2]) <= plots.DISPLAY_SIDE
    plt.close("all")


def test_training_curves_and_confusion():
    log = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1, 0.8, 0.7], "val_loss": [1, 0.9, 0.95],
                        "val_image_f1_hard": [0.2, 0.4, 0.3], "val_image_f1_soft": [0.2, 0.35, 0.3],
                        "val_image_macro_f1": [0.2, 0.4, 0.3]})
    fig = plots.training_curves(log, "t")
    ticks = fig.axes[1].get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # integer epochs
    assert any("selected (epoch 2)" in t.get_text() for t in fig.axes[1].get_legend().get_texts())
    assert any("chance (0.25)" in t.get_text() for t in fig.axes[1].get_legend().get_texts())
    assert any(set(line.get_ydata()) == {0.25} for line in fig.axes[1].lines)  # the chance line itself
    fig, ax = plt.subplots()
    plots.confusion_matrix(np.array([[3, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [0, 0, 0, 4]]), ax=ax)
    assert len(fig.axes) == 2  # the colourbar
    assert "row-normalised" in fig.axes[1].get_ylabel() and "3" in [t.get_text() for t in ax.texts]
    plt.close("all")


def test_attention_colours_by_weight_and_has_a_colour_bar(tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(np.full((64, 96, 3), 200, np.uint8)).save(path)
    tiles = pd.DataFrame({"x": [0, 32, 64], "y": [0, 0, 32]})
    fig = plots.attention_panels([(path, tiles, np.array([0.1, 0.3, 0.6]), "t")], 32, relative=False)
    faces = [patch.get_facecolor() for patch in fig.axes[0].patches]
    assert len(faces) == 3 and faces[0] != faces[2]  # the weights set the colours
    assert len(fig.axes) == 2 and "attention weight" in fig.axes[1].get_ylabel()
    plt.close(fig)


def test_palette_hues_are_clearly_different():
    import colorsys

    hues = [colorsys.rgb_to_hsv(*matplotlib.colors.to_rgb(c))[0] for c in plots.class_colours(LABELS).values()]
    gaps = [min(abs(a - b), 1 - abs(a - b)) for i, a in enumerate(hues) for b in hues[i + 1:]]
    assert min(gaps) > 0.08  # Luminal A and B used to be two close purples


def test_readable_examples_and_strip_crop(tmp_path):
    rows = pd.DataFrame({"width": [3516, 1024, 1300], "height": [1024, 1079, 1024], "name": ["strip", "square", "wide"]})
    assert plots.readable_example(rows)["name"] == "square"
    image, mask = _pair(tmp_path, h=300, w=1200)  # a 4:1 strip
    fig, ax = plt.subplots()
    shown = plots.image_with_outline(image, mask, ax, "t", max_aspect=1.6)
    h, w = ax.images[0].get_array().shape[:2]
    assert w / h <= 1.61 and "ROI-centred 480×300 of 1200×300" in shown and shown in ax.get_title()
    names = plots.readable_attention_examples(["strip", "few", "good"], [20, 2, 8], [4.0, 1.0, 1.2], k=2)
    assert names == ["good", "few"]  # the squarish image with enough tiles first, never the strip before them
    plt.close("all")


def test_identical_mask_pairs_and_tiles_per_image(tmp_path):
    image, mask = _pair(tmp_path)
    fig = plots.identical_mask_pairs([([(image, "a"), (image, "b")], mask)] * 2)
    assert len(fig.axes) == 6 and "shared mask" in fig.axes[2].get_title()
    counts = pd.DataFrame({"split": ["train"] * 5 + ["val"] * 2 + ["test"] * 3, "tiles": [1, 2, 2, 3, 5, 2, 4, 1, 1, 6]})
    axes = plots.tiles_per_image(counts)
    assert [ax.get_title().split(":")[0] for ax in axes] == ["train", "val", "test"]  # one panel per split
    plt.close("all")


def test_attention_panels_share_one_colour_scale(tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(np.full((64, 96, 3), 200, np.uint8)).save(path)
    tiles = pd.DataFrame({"x": [0, 32, 64], "y": [0, 0, 32]})
    fig = plots.attention_panels([(path, tiles, np.array([0.1, 0.3, 0.6]), "a"),
                                  (path, tiles.iloc[:2], np.array([0.5, 0.5]), "b")], 32)
    assert len(fig.axes) == 3  # two panels, one colour bar
    assert "1 = uniform" in fig.axes[2].get_ylabel()
    assert np.isclose(fig.axes[2].get_ylim()[1], 1.8)  # the largest weight × tiles over all panels
    plt.close(fig)


def test_comparison_forest_draws_the_baselines_as_lines_and_no_verdict_rows_hollow():
    from types import SimpleNamespace

    rows = [("cross-entropy", 0.5, 0.0, [0.0, 0.0], True), ("focal", 0.6, 0.1, [0.04, 0.16], True),
            ("weighted", 0.2, -0.3, [-0.36, -0.24], False),
            ("colour-histogram baseline (no CNN)", 0.25, -0.25, [-0.3, -0.2], None),
            ("majority class", 0.12, -0.38, [-0.42, -0.34], None)]
    table = pd.DataFrame([{"variant": v, "oof_macro_f1": f, "gain": g, "gain_ci95": ci, "learned": learned,
                           "images": 120, "verdict": "baseline" if learned is None else "—"}
                          for v, f, g, ci, learned in rows])
    fig = plots.comparison_forest([SimpleNamespace(name="losses", table=table)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["focal", "weighted (did not learn)"]
    vertical = sorted(round(float(line.get_xdata()[0]), 3) for line in ax.lines
                      if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2)
    assert vertical == [-0.38, -0.25, -0.25, 0.0]  # the baselines and chance minus the reference, and 0
    labels = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "majority class (0.120)" in labels and "colour-histogram baseline (0.250)" in labels
    assert "chance (0.25)" in labels
    assert "(learned)" in ax.get_title(loc="left")
    plt.close(fig)
