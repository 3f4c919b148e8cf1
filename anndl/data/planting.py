"""Challenge-layout folders built from real images, to check the pipeline beyond synthetic tissue.

* :func:`plant_outliers`: any set of (image, mask) files as genuine images, plus sticker copies (with a
  byte-identical copy of the twin's mask) and green-blob versions, to measure outlier detection.
* :func:`bach_challenge`: the BACH ROI samples with their own two labels (``classes.txt``), to run the
  training and out-of-fold comparison on real tissue.

Used by the tests and benchmarks on the real H&E samples in ``../shared/data/he_samples``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from anndl.core.labels import LABELS
from anndl.data import CLASSES_FILE, SOURCE_FILE, read_image, read_mask
from anndl.data.synthetic import draw_green_blob, draw_sticker


def plant_outliers(pairs: list[tuple[Path, Path]], out: Path | str, n_stickers: int, n_green: int,
                   seed: int = 0, sticker_skins=None, n_green_twins: int = 0,
                   sticker_alpha: tuple[float, float] | None = None) -> Path:
    """Write a challenge folder: all ``pairs`` as genuine images (the first ``n_green`` of them with a
    green blob), then ``n_stickers`` sticker copies of the next ones (sticker ``k`` with skin colour
    ``sticker_skins[k % len]``, default the generator's; pasted with an opacity drawn from ``sticker_alpha``
    (low, high), default opaque), then ``n_green_twins`` green-blob copies of the images after those, each
    with a byte copy of its original's mask (green blobs inside identical-mask groups). Writes
    ``planted_outliers.csv``."""
    if n_green + n_stickers + n_green_twins > len(pairs):
        raise ValueError(f"{n_green} green + {n_stickers} sticker twins need more than {len(pairs)} images")
    rng = np.random.default_rng(seed)
    out = Path(out)
    train = out / "train_data"
    test = out / "test_data"
    train.mkdir(parents=True)
    test.mkdir()
    rows, planted = [], []

    def write(number: int, image: np.ndarray, mask_source: Path | None, mask: np.ndarray | None) -> str:
        name = f"img_{number:04d}.png"
        cv2.imwrite(str(train / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if mask_source is not None:
            shutil.copyfile(mask_source, train / f"mask_{number:04d}.png")
        else:
            cv2.imwrite(str(train / f"mask_{number:04d}.png"), mask.astype(np.uint8) * 255)
        rows.append([name, LABELS[rng.integers(len(LABELS))]])
        return name

    for i, (image_path, mask_path) in enumerate(pairs):
        image = read_image(image_path)
        if i < n_green:
            image = draw_green_blob(rng, image, read_mask(mask_path))
            planted.append([write(i, image, None, read_mask(mask_path)), "green", ""])
        else:
            write(i, image, None, read_mask(mask_path))
    for k in range(n_stickers):
        twin = n_green + k
        skin = {} if not sticker_skins else {"skin": list(sticker_skins)[k % len(sticker_skins)]}
        original = read_image(pairs[twin][0])
        image = draw_sticker(rng, original, **skin)
        if sticker_alpha is not None:  # a translucent sticker: the twin's tissue shows through it
            alpha = rng.uniform(*sticker_alpha)
            image = (original * (1 - alpha) + image * alpha).round().astype(np.uint8)
        name = write(len(pairs) + k, image, train / f"mask_{twin:04d}.png", None)
        planted.append([name, "sticker", f"img_{twin:04d}.png"])
    for k in range(n_green_twins):
        twin = n_green + n_stickers + k
        image = draw_green_blob(rng, read_image(pairs[twin][0]), read_mask(pairs[twin][1]))
        name = write(len(pairs) + n_stickers + k, image, train / f"mask_{twin:04d}.png", None)
        planted.append([name, "green", f"img_{twin:04d}.png"])
    # one test pair so the folder is a complete challenge layout
    shutil.copyfile(train / "img_0000.png", test / "img_0000.png")
    shutil.copyfile(train / "mask_0000.png", test / "mask_0000.png")
    with open(out / "train_labels.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["sample_index", "label"], *rows])
    with open(out / "planted_outliers.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["sample_index", "kind", "twin"], *planted])
    return out


def bach_pairs(root: Path | str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of the BACH ROI samples, in ``labels.csv`` order."""
    root = Path(root)
    with open(root / "labels.csv", newline="") as f:
        return [(root / r["image"], root / r["mask"]) for r in csv.DictReader(f)]


def bach_challenge(root: Path | str, out: Path | str) -> Path:
    """The BACH ROI samples (``labels.csv``: image, mask, label) as a challenge folder with their own label
    set (``classes.txt``, sorted) and a ``source.txt``. Every sample goes to ``train_data/``; ``test_data/``
    holds a copy of the first pair, because the layout needs a test folder (it is not used for scoring)."""
    root, out = Path(root), Path(out)
    with open(root / "labels.csv", newline="") as f:
        samples = list(csv.DictReader(f))
    train, test = out / "train_data", out / "test_data"
    train.mkdir(parents=True)
    test.mkdir()
    rows = []
    for i, sample in enumerate(samples):
        shutil.copyfile(root / sample["image"], train / f"img_{i:04d}.png")
        shutil.copyfile(root / sample["mask"], train / f"mask_{i:04d}.png")
        rows.append([f"img_{i:04d}.png", sample["label"]])
    for kind in ("img", "mask"):
        shutil.copyfile(train / f"{kind}_0000.png", test / f"{kind}_0000.png")
    with open(out / "train_labels.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["sample_index", "label"], *rows])
    classes = sorted({label for _, label in rows})
    (out / CLASSES_FILE).write_text("\n".join(classes) + "\n")
    (out / SOURCE_FILE).write_text(f"real H&E: BACH ROI samples ({len(rows)} images, classes {', '.join(classes)})\n")
    return out
