"""Data layer: reads the challenge layout, converts odd formats, and rejects every bad input by name."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from anndl.data import synthetic

from anndl.core.labels import LABELS
from anndl.data import DataError, describe_data, read_challenge, read_classes, read_image, read_mask, resolve_data_dir
from anndl.data.stages import fingerprint


def test_manifest_of_synthetic_folder(tiny_data):
    manifest = read_challenge(tiny_data)
    train, test = manifest[manifest.split == "train"], manifest[manifest.split == "test"]
    assert len(train) == 24 and len(test) == 6
    assert set(train.label) <= set(LABELS) and test.label.isna().all()
    assert (train.label_index == train.label.map(LABELS.index)).all()
    assert (manifest.mask_pixels > 0).all()
    assert (manifest.image_mode == "RGB").all()
    row = train.iloc[0]
    assert read_mask(row.mask_path).sum() == row.mask_pixels
    assert read_image(row.image_path).shape == (row.height, row.width, 3)


def test_fingerprint_follows_pixel_content_not_the_folder(tiny_data, data_copy):
    """Restained pixels under the same names, sizes and masks are other data; a copy elsewhere is the same."""
    original = read_challenge(tiny_data)
    assert fingerprint(read_challenge(data_copy)) == fingerprint(original)
    path = data_copy / "train_data" / "img_0005.png"
    image = cv2.imread(str(path))
    cv2.imwrite(str(path), image[:, :, ::-1].copy())            # same size and mask, other colours
    changed = read_challenge(data_copy)
    assert (changed.drop(columns=["image_path", "mask_path", "content_hash"])
            .equals(original.drop(columns=["image_path", "mask_path", "content_hash"])))
    assert fingerprint(changed) != fingerprint(original)
    assert (changed.content_hash != original.content_hash).sum() == 1


def test_rgba_grayscale_and_mask_formats_are_converted(data_copy):
    d = data_copy / "train_data"
    bgr = cv2.imread(str(d / "img_0000.png"))
    cv2.imwrite(str(d / "img_0000.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(d / "img_0001.png"), cv2.imread(str(d / "img_0001.png"), cv2.IMREAD_GRAYSCALE))
    mask = cv2.imread(str(d / "mask_0000.png"))[:, :, 0]
    cv2.imwrite(str(d / "mask_0000.png"), (mask > 0).astype(np.uint8))  # 1-channel 0/1
    cv2.imwrite(str(d / "mask_0001.png"), cv2.imread(str(d / "mask_0001.png"))[:, :, 0])
    manifest = read_challenge(data_copy).set_index(["split", "sample_index"])
    assert manifest.loc[("train", "img_0000.png"), "image_mode"] == "RGBA->RGB"
    assert manifest.loc[("train", "img_0001.png"), "image_mode"] == "gray->RGB"
    assert manifest.loc[("train", "img_0000.png"), "mask_pixels"] == (mask > 0).sum()
    assert read_image(d / "img_0000.png").shape[2] == 3
    assert read_image(d / "img_0001.png").shape[2] == 3


def _expect(data_dir, *fragments):
    with pytest.raises(DataError) as info:
        read_challenge(data_dir)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_mask(data_copy):
    (data_copy / "train_data" / "mask_0003.png").unlink()
    _expect(data_copy, "train_data/mask_0003.png", "mask is missing")


def test_missing_image(data_copy):
    (data_copy / "test_data" / "img_0002.png").unlink()
    _expect(data_copy, "test_data/img_0002.png", "image is missing")


def test_truncated_png(data_copy):
    path = data_copy / "train_data" / "img_0005.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _expect(data_copy, "train_data/img_0005.png", "truncated PNG")


def test_unreadable_png(data_copy):
    (data_copy / "train_data" / "mask_0004.png").write_bytes(b"this is not a png")
    _expect(data_copy, "train_data/mask_0004.png", "not a PNG")


def test_size_mismatch(data_copy):
    path = data_copy / "train_data" / "mask_0002.png"
    mask = cv2.imread(str(path))
    cv2.imwrite(str(path), mask[:-3])
    _expect(data_copy, "train_data/mask_0002.png", "img_0002.png", "width x height")


def test_non_binary_mask(data_copy):
    path = data_copy / "train_data" / "mask_0001.png"
    mask = cv2.imread(str(path))
    mask[0, 0] = 128
    cv2.imwrite(str(path), mask)
    _expect(data_copy, "train_data/mask_0001.png", "not binary")


def _rewrite_labels(data_copy, edit):
    path = data_copy / "train_labels.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def test_unknown_label(data_copy):
    _rewrite_labels(data_copy, lambda ls: [ls[0], ls[1].split(",")[0] + ",Triple Negative"] + ls[2:])
    _expect(data_copy, "train_labels.csv", "line 2", "unknown label 'Triple Negative'")


def test_classes_file_sets_another_label_set(data_copy):
    _rewrite_labels(data_copy, lambda ls: [ls[0]] + [l.split(",")[0] + ("," + ("luminal" if "Luminal" in l else "other"))
                                                     for l in ls[1:]])
    (data_copy / "classes.txt").write_text("other\nluminal\n")
    (data_copy / "source.txt").write_text("two-class relabelling of the tiny set\n")
    train = read_challenge(data_copy).query("split == 'train'")
    assert read_classes(data_copy) == ("other", "luminal")
    assert set(train.label) == {"other", "luminal"}
    assert (train.label_index == train.label.map(["other", "luminal"].index)).all()
    assert describe_data(data_copy).startswith("two-class relabelling of the tiny set at ")


def test_classes_file_faults(data_copy):
    (data_copy / "classes.txt").write_text("Luminal A\nLuminal B\n")  # the CSV still has HER2(+) rows
    _expect(data_copy, "train_labels.csv", "unknown label", "expected one of ['Luminal A', 'Luminal B']")
    (data_copy / "classes.txt").write_text("Luminal A\n")
    _expect(data_copy, "classes.txt", "at least two labels")
    (data_copy / "classes.txt").write_text("a\nb\na\n")
    _expect(data_copy, "classes.txt", "lists a label twice")


def test_duplicate_sample_index(data_copy):
    _rewrite_labels(data_copy, lambda ls: ls + [ls[1]])
    _expect(data_copy, "train_labels.csv", "duplicate sample_index 'img_0000.png'")


def test_missing_sample_index(data_copy):
    _rewrite_labels(data_copy, lambda ls: [l for l in ls if not l.startswith("img_0007.png")])
    _expect(data_copy, "train_labels.csv", "'img_0007.png' is missing")


def test_label_row_for_missing_file(data_copy):
    _rewrite_labels(data_copy, lambda ls: ls + ["img_0999.png,Luminal A"])
    _expect(data_copy, "train_labels.csv", "img_0999.png", "does not exist")


def test_bad_header_and_stray_file(data_copy):
    (data_copy / "train_data" / "notes.txt").write_text("x")
    _expect(data_copy, "train_data/notes.txt", "unexpected file")
    (data_copy / "train_data" / "notes.txt").unlink()
    _rewrite_labels(data_copy, lambda ls: ["id,label"] + ls[1:])
    _expect(data_copy, "train_labels.csv", "header")


def test_cli_reports_data_fault_without_traceback(data_copy, tmp_path):
    (data_copy / "train_data" / "mask_0003.png").unlink()
    result = subprocess.run([sys.executable, "-m", "anndl", "train", "--data", str(data_copy), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "mask_0003.png: mask is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_resolve_prefers_real_folder_then_synthetic(tiny_data, tmp_path):
    assert resolve_data_dir(tiny_data) == tiny_data
    empty = tmp_path / "empty"
    empty.mkdir()
    tiny = dict(n_train=8, n_test=1, scale=0.05, progress=False)
    made = resolve_data_dir(empty, tiny)  # no challenge folder: the synthetic default is generated ...
    assert made == empty / "synthetic" and (made / "planted_outliers.csv").is_file()
    assert len(read_challenge(made).query("split == 'train'")) == 8
    stamp = (made / "train_labels.csv").stat().st_mtime_ns
    assert resolve_data_dir(empty, tiny) == made and (made / "train_labels.csv").stat().st_mtime_ns == stamp  # ... once
    # a default made with other settings (an earlier default, or one cut short) is generated again
    assert resolve_data_dir(empty, {**tiny, "stain_sites": 2}) == made
    assert synthetic.settings_of(made)["stain_sites"] == 2
    (made / synthetic.SYNTH_MARKER).write_text("written by anndl synth; this folder may be regenerated in place\n")
    resolve_data_dir(empty, tiny)
    assert synthetic.settings_of(made) == synthetic.default_settings(**tiny)
    # a folder the user put at data/synthetic (no marker) is theirs: used as it is, never overwritten
    (made / synthetic.SYNTH_MARKER).unlink()
    stamp = (made / "train_labels.csv").stat().st_mtime_ns
    assert resolve_data_dir(empty, {**tiny, "stain_sites": 2}) == made
    assert (made / "train_labels.csv").stat().st_mtime_ns == stamp
    (tmp_path / "train_data").mkdir()
    with pytest.raises(DataError, match="incomplete challenge folder"):
        resolve_data_dir(tmp_path)


def test_classes_file_with_a_bom_formula_labels_and_huge_images(data_copy, monkeypatch):
    (data_copy / "classes.txt").write_bytes("\ufeffLuminal A\nLuminal B\nHER2(+)\nTriple negative\n".encode("utf-8"))
    assert read_classes(data_copy)[0] == "Luminal A"  # a BOM is not part of the first label
    (data_copy / "classes.txt").write_text("=cmd\nLuminal A\n")
    with pytest.raises(DataError, match="classes.txt: label '=cmd' starts with one of = \\+ - @"):
        read_classes(data_copy)
    (data_copy / "classes.txt").unlink()
    monkeypatch.setenv("ANNDL_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match="img_0000.png: image is \\d+x\\d+ pixels, above the limit of 1,000"):
        read_challenge(data_copy)


def test_decoding_is_bounded_by_pixels_in_flight(tiny_data, monkeypatch, tmp_path):
    """Sizes come from the PNG headers; two big images (60 of a budget of 100) are never decoded at once,
    while small ones are decoded four at a time."""
    import threading

    import anndl.data as data

    big = {"img_0000.png", "img_0001.png"}  # train; mask_0000.png / mask_0001.png share their sizes
    header = data.png_pixels
    seen = {}

    def fake_pixels(path):
        seen[f"{path.parent.name}/{path.name}"] = header(path)  # the real header is read; a fake size stands in
        return 60 if path.name.replace("mask_", "img_") in big and path.parent.name == "train_data" else 1

    lock, state = threading.Lock(), {"in_flight": 0, "peak": 0, "small": 0}
    four_small, two_big = threading.Event(), threading.Event()
    real = data._inspect_pair

    def fake_inspect(image_path, mask_path):
        size = fake_pixels(image_path)
        with lock:
            state["in_flight"] += size
            state["peak"] = max(state["peak"], state["in_flight"])
            state["small"] += size == 1
            if state["small"] >= 4:
                four_small.set()
            if state["in_flight"] >= 120:
                two_big.set()
        try:
            # a chance for other images to start meanwhile: small ones wait until four are in flight (at once
            # when allowed); a big one gives another big one the time to start, were that allowed
            four_small.wait(10) if size == 1 else two_big.wait(0.5)
            return real(image_path, mask_path)
        finally:
            with lock:
                state["in_flight"] -= size
                state["small"] -= size == 1

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing remembered from earlier tests: every pair decoded
    monkeypatch.setattr(data, "png_pixels", fake_pixels)
    monkeypatch.setattr(data, "_inspect_pair", fake_inspect)
    manifest = data.read_challenge(tiny_data, workers=4, pixel_budget=100)
    assert len(manifest) == 30 and seen["train_data/img_0000.png"] == manifest.height[0] * manifest.width[0]
    assert four_small.is_set() and not two_big.is_set()
    assert state["peak"] <= 100


def test_what_was_inspected_is_remembered_until_a_file_changes(data_copy, tmp_path, monkeypatch):
    import anndl.data as data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # its own cache: no other test process writes it meanwhile
    first, calls, real = read_challenge(data_copy), [], data._inspect_pair
    monkeypatch.setattr(data, "_inspect_pair", lambda image, mask: calls.append(image.name) or real(image, mask))
    assert read_challenge(data_copy).equals(first) and calls == []  # nothing decoded again
    mask = data_copy / "train_data" / "mask_0003.png"
    cv2.imwrite(str(mask), read_mask(mask).astype(np.uint8) * 7)  # the same size, no longer binary
    with pytest.raises(DataError, match="mask_0003.png: mask is not binary"):
        read_challenge(data_copy)
    assert calls == ["img_0003.png"]  # only the changed pair is decoded again


def test_png_pixels_reads_the_header_only(tmp_path):
    from anndl.data import png_pixels

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((30, 70, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"not a png")
    assert png_pixels(tmp_path / "a.png") == 2100
    assert png_pixels(tmp_path / "b.png") == png_pixels(tmp_path / "missing.png") == png_pixels(tmp_path) == 0


def test_bounded_map_keeps_order_and_raises_the_first_failure():
    from anndl.data import bounded_map

    assert bounded_map(lambda x: x * x, range(10), [5] * 10, budget=12, workers=3) == [x * x for x in range(10)]
    assert bounded_map(str, [1, 2], [50, 50], budget=10, workers=2) == ["1", "2"]  # each larger than the budget: alone

    def boom(x):
        if x in (3, 6):
            raise ValueError(f"item {x}")
        return x

    with pytest.raises(ValueError, match="item 3"):
        bounded_map(boom, range(10), [1] * 10, budget=4, workers=2)
