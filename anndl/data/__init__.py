"""Read and validate a challenge folder into a manifest (a row per image, none skipped); faults: DataError. Layout::

    DIR/train_data/img_0000.png, mask_0000.png, ...   (test_data/ alike; split + sample_index is the key)
    DIR/train_labels.csv    header ``sample_index,label``; sample_index is ``img_0000.png``
    DIR/classes.txt         optional: another label set, one per line in output order (default: the four subtypes)
    DIR/source.txt          optional: one line saying where the data comes from"""

import csv
import io
import hashlib
import os
import re
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import pandas as pd

from anndl.core import artifacts
from anndl.core.env import portable
from anndl.core.labels import LABELS

PAIR_RE = re.compile(r"^(img|mask)_(\d+)\.png$")
SPLIT_DIRS = {"train": "train_data", "test": "test_data"}
LABELS_FILE = "train_labels.csv"
CLASSES_FILE = "classes.txt"
SOURCE_FILE = "source.txt"
MANIFEST_COLUMNS = ["split", "sample_index", "image_path", "mask_path", "label", "label_index",
                    "height", "width", "mask_pixels", "image_mode", "content_hash"]


class DataError(ValueError):
    """A fault in the challenge folder; the message starts with the file it concerns."""

    def __init__(self, path: Path | str, fault: str):
        super().__init__(f"{path}: {fault}")


def decode_budget(pixels: int | None = None) -> int:
    """Pixels decoded at once across threads: ``pixels``, else ``ANNDL_DECODE_PIXELS``, else 256 megapixels (~2 GB)."""
    return int(os.environ.get("ANNDL_DECODE_PIXELS", 256_000_000)) if pixels is None else pixels


def png_pixels(path: Path | str) -> int:
    """Width x height from a PNG's header, without decoding it; 0 for anything else (decoding then says what)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a fifo or device: reading it could block
            return 0
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return 0
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return 0
    return int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")


def bounded_map(fn: Callable, items: Iterable, sizes: Iterable[int], budget: int, workers: int) -> list:
    """``map(fn, items)`` on threads, in-flight ``sizes`` within ``budget`` (bigger: alone); raises the first fault."""
    lock, state = threading.Condition(), {"in_flight": 0, "failed": False}

    def run(item, size):
        try:
            return fn(item)
        except BaseException:
            state["failed"] = True
            raise
        finally:
            with lock:
                state["in_flight"] -= size
                lock.notify_all()
    futures = []
    with ThreadPoolExecutor(workers) as pool:
        for item, size in zip(items, sizes):
            with lock:
                lock.wait_for(lambda: state["failed"] or not state["in_flight"] or state["in_flight"] + size <= budget)
                if state["failed"]:
                    break
                state["in_flight"] += size
            futures.append(pool.submit(run, item, size))
    return [future.result() for future in futures]


def _regular(path: Path) -> None:
    """A DataError unless ``path`` is a regular file or a link to one (a link to ``/dev/zero`` is read forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        missing = "broken link (its target is missing)" if path.is_symlink() else "file is missing"
        raise DataError(path, missing) from None
    except OSError as e:
        raise DataError(path, f"cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a fifo" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise DataError(path, f"not a regular file: {kind}{' (through a link)' if path.is_symlink() else ''}")


def _decode(path: Path, digest=None) -> np.ndarray:
    """Decode a PNG completely, or raise DataError; ``digest`` (hashlib) is updated with the bytes' blake2b."""
    _regular(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise DataError(path, "file is empty")
    if raw[:8].tobytes() != b"\x89PNG\r\n\x1a\n":
        raise DataError(path, "not a PNG file (bad signature)")
    if raw[-12:].tobytes()[4:8] != b"IEND":
        raise DataError(path, "truncated PNG (no IEND chunk at the end)")
    width, height = (int.from_bytes(raw[i:i + 4].tobytes(), "big") for i in (16, 20))  # the IHDR chunk
    if width * height > (limit := int(os.environ.get("ANNDL_MAX_PIXELS", 20_000 * 20_000))):
        raise DataError(path, f"image is {width}x{height} pixels, above the limit of {limit:,} "
                              "(set ANNDL_MAX_PIXELS to raise it)")
    if digest is not None:
        digest.update(hashlib.blake2b(raw).digest())
    if (array := cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)) is None:
        raise DataError(path, "unreadable PNG (decoder failed)")
    return array


def to_rgb(array: np.ndarray, path: Path | str = "") -> tuple[np.ndarray, str]:
    """Return an RGB uint8 array from a decoded (BGR/BGRA/gray) OpenCV array, and the mode used."""
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[2]
    codes = {1: (cv2.COLOR_GRAY2RGB, "gray->RGB"), 3: (cv2.COLOR_BGR2RGB, "RGB"), 4: (cv2.COLOR_BGRA2RGB, "RGBA->RGB")}
    if channels not in codes:
        raise DataError(path, f"image has {channels} channels; expected 1, 3 or 4")
    return cv2.cvtColor(array, codes[channels][0]), codes[channels][1]


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), converting grayscale / RGBA."""
    return to_rgb(_decode(path := Path(path)), path)[0]


def read_mask(path: Path | str, digest=None) -> np.ndarray:
    """Read a binary ROI mask as bool (H, W). Accepts 1/3/4 channels (channel 0 is used), 0/1 or 0/255."""
    array = _decode(path := Path(path), digest)
    if array.ndim == 3:
        array = array[:, :, 2] if array.shape[2] >= 3 else array[:, :, 0]  # BGR order: RGB channel 0
    values = np.unique(array)
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        raise DataError(path, f"mask is not binary: values {values[:6].tolist()}; expected 0/1 or 0/255")
    return array > 0


def _inspect_pair(image_path: Path, mask_path: Path) -> dict:
    """The manifest's size, mode, mask pixels and ``content_hash`` (of both files' bytes) of an image and its mask."""
    digest = hashlib.blake2b(digest_size=8)
    image = _decode(image_path, digest)
    _, mode = to_rgb(image[:1, :1], image_path)  # the conversion a full read would make
    height, width = image.shape[:2]
    del image  # not held while the mask is decoded
    mask = read_mask(mask_path, digest)
    if mask.shape != (height, width):
        raise DataError(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path.name} is "
                                   f"{width}x{height} (width x height)")
    return {"height": height, "width": width, "mask_pixels": int(np.count_nonzero(mask)), "image_mode": mode,
            "content_hash": digest.hexdigest()}


def _list_pairs(split_dir: Path) -> list[tuple[str, Path, Path]]:
    if not split_dir.is_dir():
        raise DataError(split_dir, "folder is missing")
    images, masks = {}, {}
    for path in sorted(p for p in split_dir.iterdir() if not p.name.startswith(".")):
        if not (m := PAIR_RE.match(path.name)):
            raise DataError(path, "unexpected file; expected img_XXXX.png or mask_XXXX.png")
        (images if m[1] == "img" else masks)[m[2]] = path
    for number in sorted(set(masks) - set(images)):
        raise DataError(split_dir / f"img_{number}.png", f"image is missing for mask {masks[number].name}")
    for number in sorted(set(images) - set(masks)):
        raise DataError(split_dir / f"mask_{number}.png", f"mask is missing for image {images[number].name}")
    if not images:
        raise DataError(split_dir, "folder holds no img_XXXX.png / mask_XXXX.png pairs")
    return [(images[n].name, images[n], masks[n]) for n in sorted(images)]


def _utf8(path: Path) -> str:
    """A regular text file's content, or a ``DataError`` saying where it stops being UTF-8 (Latin-1, UTF-16, …)."""
    _regular(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        kind = "UTF-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8"
        raise DataError(path, f"{kind}: byte 0x{data[e.start]:02x} at position {e.start} is not UTF-8 text; "
                              "save the file as UTF-8") from None


def read_classes(data_dir: Path | str) -> tuple[str, ...]:
    """The folder's label set in model-output order: ``classes.txt`` if present, else the four subtypes."""
    path = Path(data_dir) / CLASSES_FILE
    if not path.exists() and not path.is_symlink():
        return LABELS
    lines = _utf8(path).replace("\r\n", "\n").split("\n")  # lines end at \n only
    for number, line in enumerate(lines, start=1):
        # str.splitlines() would cut a label in two at these; a spreadsheet or editor may too
        if odd := [c for c in line if c in "\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\r"]:
            raise DataError(path, f"line {number}: label {line.strip()!r} contains a line or paragraph separator "
                                  f"(U+{ord(odd[0]):04X}); one label per line, without such characters")
    classes = tuple(line.strip() for line in lines if line.strip())
    if len(classes) < 2:
        raise DataError(path, f"needs at least two labels, one per line; found {list(classes)}")
    if len(set(classes)) != len(classes):
        raise DataError(path, f"lists a label twice: {list(classes)}")
    if risky := [c for c in classes if c[0] in "=+-@"]:  # a spreadsheet would run them as formulas
        raise DataError(path, f"label {risky[0]!r} starts with one of = + - @; rename it")
    return classes


def read_labels(path: Path | str, classes: tuple[str, ...] = LABELS) -> dict[str, str]:
    """Read ``train_labels.csv`` into {sample_index: label}, checking header, labels and duplicates."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_utf8(path), newline=""))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["sample_index", "label"]:
        raise DataError(path, f"header is {header}; expected ['sample_index', 'label']")
    labels: dict[str, str] = {}
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise DataError(path, f"line {line_no}: expected 2 fields, got {len(row)}: {row}")
        sample, label = row[0].strip(), row[1].strip()
        if label not in classes:
            raise DataError(path, f"line {line_no}: unknown label {label!r} for {sample}; "
                                  f"expected one of {list(classes)}")
        if sample in labels:
            raise DataError(path, f"line {line_no}: duplicate sample_index {sample!r}")
        labels[sample] = label
    return labels


def read_challenge(data_dir: Path | str, splits: tuple[str, ...] = ("train", "test"),
                   workers: int = 4, pixel_budget: int | None = None) -> pd.DataFrame:
    """Validate a challenge folder and return its manifest (``label_index`` in :func:`read_classes` order). Every file
    is decoded (``workers`` threads, ≤ ``pixel_budget`` pixels at once), results cached until the file changes."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "challenge folder is missing")
    classes = read_classes(data_dir)
    rows = []
    for split in splits:
        pairs = _list_pairs(data_dir / SPLIT_DIRS[split])
        labels: dict[str, str] = {}
        if split == "train":
            labels = read_labels(path := data_dir / LABELS_FILE, classes)
            names = {name for name, _, _ in pairs}
            for sample in (s for s in labels if s not in names):
                raise DataError(path, f"label row for {sample!r}, but {SPLIT_DIRS[split]}/{sample} does not exist")
            for name, image_path, _ in (p for p in pairs if p[0] not in labels):
                raise DataError(path, f"sample_index {name!r} is missing (image {image_path} has no label row)")
        by_key = {str(p[1].resolve()): (p[1], p[2]) for p in pairs}  # inspected: remembered until a file changes

        def inspect(keys):  # ``_inspect_pair`` of each, on threads within the decode budget
            sizes = [max(map(png_pixels, by_key[k])) for k in keys]
            return bounded_map(lambda k: _inspect_pair(*by_key[k]), keys, sizes, decode_budget(pixel_budget), workers)
        stamps = {key: list(map(artifacts.stamp, files)) for key, files in by_key.items()}
        inspected = artifacts.remembered("inspected", stamps, inspect).values()
        for (name, image_path, mask_path), fields in zip(pairs, inspected):
            label = labels.get(name)
            rows.append({"split": split, "sample_index": name, "image_path": str(image_path),
                         "mask_path": str(mask_path), "label": label,
                         "label_index": classes.index(label) if label else -1, **fields})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def find_data_dir(candidate: Path | str) -> Path | None:
    """Return ``candidate`` if it holds a challenge folder (train_data/ and train_labels.csv), else None."""
    candidate = Path(candidate)
    return candidate if (candidate / SPLIT_DIRS["train"]).is_dir() and (candidate / LABELS_FILE).is_file() else None


def is_synthetic(data_dir: Path | str) -> bool:
    """True for a folder written by ``anndl synth`` (it carries ``planted_outliers.csv``)."""
    return (Path(data_dir) / "planted_outliers.csv").is_file()


def describe_data(data_dir: Path | str) -> str:
    """One line saying which data a result comes from (printed and saved with every output)."""
    source = Path(data_dir) / SOURCE_FILE
    if source.is_file():
        kind = source.read_text(encoding="utf-8").strip().splitlines()[0]
    else:
        kind = "synthetic stand-in (anndl synth)" if is_synthetic(data_dir) else "challenge data"
    return f"{kind} at {Path(data_dir).resolve()}"


def resolve_data_dir(data_dir: Path | str, synthetic_defaults: dict | None = None) -> Path:
    """``data_dir`` if it holds a challenge folder, else ``data_dir/synthetic`` (made with ``synthetic_defaults``)."""
    from anndl.data import synthetic
    data_dir, defaults = Path(data_dir), synthetic_defaults or {}
    if found := find_data_dir(data_dir):
        return found
    synthetic_dir = data_dir / "synthetic"
    wanted = synthetic.default_settings(**defaults)
    if found := find_data_dir(synthetic_dir):
        made = synthetic.settings_of(found)
        if made == wanted or (made is None and not (found / synthetic.SYNTH_MARKER).is_file()):
            return found  # the default, or a folder the user put there (never overwritten)
        why = ("it was cut short or made by an earlier version" if made is None else
               ", ".join(f"{k} {made.get(k)} not {v}" for k, v in wanted.items() if made.get(k) != v))
        print(f"{portable(synthetic_dir)} differs from the synthetic default ({why}): generating it again")
        return synthetic.generate(synthetic_dir, **defaults)
    if (data_dir / SPLIT_DIRS["train"]).exists() or (data_dir / LABELS_FILE).exists():
        raise DataError(data_dir, f"incomplete challenge folder: needs {SPLIT_DIRS['train']}/, "
                                  f"{SPLIT_DIRS['test']}/ and {LABELS_FILE}")
    print(f"{portable(data_dir)} holds no challenge folder: generating the synthetic default into "
          f"{portable(synthetic_dir)}")
    return synthetic.generate(synthetic_dir, **defaults)


def refuse_synthetic(profile: str, data_dir: Path | str, allow_synthetic: bool = False) -> None:
    """The full profile is for real data: on the synthetic stand-in it stops unless ``allow_synthetic``."""
    if profile == "full" and is_synthetic(data_dir) and not allow_synthetic:
        raise RuntimeError(
            f"PROFILE='full' but {portable(data_dir)} is the synthetic stand-in: put the challenge data in data/ "
            "(on Kaggle: attach it with Add data), or set ALLOW_SYNTHETIC = True to train the full settings on "
            "synthetic data anyway (the numbers then say nothing about the challenge).")
