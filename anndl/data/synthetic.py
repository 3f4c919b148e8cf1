"""Synthetic stand-in for the challenge data: the same folder layout, H&E-like tissue, planted outliers.
Classes differ only in morphology, via overlapping per-image parameters (nuclear pixel size fixed at any ``scale``).
Each image is stained (Beer-Lambert) by one of ``stain_sites`` :data:`SITES`, independent of its class but for
``site_class_correlation`` (shortcut learning on purpose). Train outliers: "sticker" images (a genuine image and mask
with a cartoon ogre over it) and "green" ones (a slime blob); ``planted_outliers.csv``, ``sites.csv``: truth, unread."""

import csv
import json
import shutil
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from anndl.core import artifacts
from anndl.core.labels import LABELS

REAL_TRAIN_COUNTS = {"Luminal A": 205, "Luminal B": 220, "HER2(+)": 189, "Triple negative": 77}
REAL_N_TRAIN, REAL_N_TEST = 691, 477
REAL_STICKERS, REAL_GREEN = 60, 50  # planted outliers per REAL_N_TRAIN train images
SITES_FILE = "sites.csv"

# class means: nuclei at lumina, radius (px), size spread, major/minor, nuclei/tumour px, H, lymphocytes/tumour nucleus
Morphology = namedtuple("Morphology", "gland radius pleomorphism aspect density darkness lymphocytes")

CLASS_MORPHOLOGY = {
    "Luminal A": Morphology(0.75, 4.2, 0.12, 1.15, 0.0030, 0.60, 0.04),
    "Luminal B": Morphology(0.45, 5.2, 0.22, 1.25, 0.0036, 0.68, 0.10),
    "HER2(+)": Morphology(0.15, 6.4, 0.32, 1.30, 0.0040, 0.62, 0.08),
    "Triple negative": Morphology(0.02, 6.0, 0.42, 1.55, 0.0044, 0.85, 0.35),
}
OVERLAP = 0.55  # each image mixes in up to this share of another class's look
JITTER = 0.10   # log-normal spread of every parameter per image

# Balanced looks: nuclear darkness, nuclear and pale lumen area per ROI pixel equal across classes.
NUCLEAR_COVERAGE = 0.28   # expected share of ROI pixels covered by nuclei (tumour + lymphocytes)
NUCLEAR_DARKNESS = 0.70   # haematoxylin strength of every nucleus, lymphocytes included
LUMEN_COVERAGE = 0.13     # expected share of ROI pixels that are pale lumen or clear space
LYMPHOCYTE_RADIUS = 2.6


# Each class's look with darkness fixed and density scaled so that nuclei cover NUCLEAR_COVERAGE of the ROI.
BALANCED_MORPHOLOGY = {label: m._replace(density=NUCLEAR_COVERAGE / (np.pi * (
    m.radius ** 2 * np.exp(2 * m.pleomorphism ** 2) + 0.8 * m.lymphocytes * LYMPHOCYTE_RADIUS ** 2)),
    darkness=NUCLEAR_DARKNESS) for label, m in CLASS_MORPHOLOGY.items()}


# One lab's H&E: optical density of each stain (RGB, normalised when rendering), strengths, background (RGB, 0-1).
StainSite = namedtuple("StainSite", "name hematoxylin eosin h_strength e_strength background")
# Ruifrok & Johnston (skimage rgb_from_hed), Macenko, variants; green absorbed ≥ red, so green blobs stay detectable
SITES = (
    StainSite("standard", (0.650, 0.704, 0.286), (0.072, 0.990, 0.105), 1.00, 1.00, (0.96, 0.94, 0.95)),
    StainSite("violet", (0.563, 0.720, 0.406), (0.216, 0.801, 0.558), 1.15, 0.80, (0.94, 0.92, 0.95)),
    StainSite("blue-pale", (0.450, 0.750, 0.480), (0.100, 0.950, 0.300), 0.85, 0.55, (0.97, 0.96, 0.97)),
    StainSite("dark", (0.700, 0.690, 0.220), (0.050, 0.920, 0.380), 1.45, 1.35, (0.92, 0.90, 0.92)),
    StainSite("faded-pink", (0.600, 0.740, 0.300), (0.030, 0.970, 0.220), 0.70, 1.25, (0.97, 0.95, 0.96)),
)
H_CONCENTRATION = 2.5     # haematoxylin concentration of a nucleus of darkness 1 at strength 1
E_CONCENTRATION = 0.65    # eosin concentration of dense stroma at strength 1
SITE_JITTER = 0.03        # per-image spread of each OD vector component (before renormalising)
STRENGTH_JITTER = 0.08    # per-image log-normal spread of each stain strength


def _unit(v) -> np.ndarray:
    v = np.maximum(np.asarray(v, np.float64), 0.01)
    return v / np.linalg.norm(v)


def site_of_images(rng: np.random.Generator, labels: list[str], n_sites: int, correlation: float) -> list[int]:
    """Site index per image: uniform, or with probability ``correlation`` its class's (class k: site k mod n)."""
    own_site = np.array([LABELS.index(x) for x in labels], int) % n_sites
    uniform = rng.integers(0, n_sites, size=len(labels))
    return np.where(rng.random(len(labels)) < correlation, own_site, uniform).tolist()


def class_counts(n: int) -> dict[str, int]:
    """Split ``n`` images over the classes in the real proportions (largest remainder)."""
    exact = np.array(list(REAL_TRAIN_COUNTS.values())) * n / sum(REAL_TRAIN_COUNTS.values())
    counts = exact.astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1  # largest remainders, ties in order
    return dict(zip(REAL_TRAIN_COUNTS, counts.tolist()))


def _noise_field(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels wide."""
    small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    field = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def _roi_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An irregular ROI blob over a few to ~15% of the image (real data: about six 224-px tiles per image)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    ry, rx = rng.uniform(0.1, 0.2) * h, rng.uniform(0.1, 0.2) * w
    bump = 1.0 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2
    mask = bump + 0.8 * (_noise_field(rng, h, w, max(24, min(h, w) // 5)) - 0.5) > 0
    return mask if mask.sum() >= 0.01 * h * w else bump > 0  # never an (almost) empty ROI


def _image_size(rng: np.random.Generator, scale: float) -> tuple[int, int]:
    short = max(32, int(round(1024 * scale)))
    u = rng.random()
    aspect = rng.uniform(1.0, 1.25) if u < 0.8 else rng.uniform(1.25, 2.5) if u < 0.95 else rng.uniform(2.5, 3.9)
    long = int(round(short * aspect))
    return (short, long) if rng.random() < 0.5 else (long, short)


def _sample_points(rng: np.random.Generator, region: np.ndarray | tuple, n: int) -> np.ndarray:
    """``n`` uniform (x, y) points inside a boolean region (or its precomputed ``np.nonzero``)."""
    ys, xs = np.nonzero(region) if isinstance(region, np.ndarray) else region
    if len(xs) == 0 or n <= 0:
        return np.zeros((0, 2), np.float32)
    pick = rng.integers(0, len(xs), size=n)
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float32) + rng.random((n, 2), dtype=np.float32)


def _draw_nuclei(rng, density_map, points, radius, pleo, aspect, darkness):
    for x, y in points:
        r = max(1.2, radius * float(np.exp(rng.normal(0, pleo))))
        a = max(1.0, aspect * float(np.exp(rng.normal(0, 0.15))))
        axes = (max(1, int(round(r * np.sqrt(a)))), max(1, int(round(r / np.sqrt(a)))))
        value = float(np.clip(darkness * rng.uniform(0.75, 1.1), 0.1, 1.0))
        cv2.ellipse(density_map, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360,
                    value, -1, cv2.LINE_AA)


def _clear_spaces(rng: np.random.Generator, lumen: np.ndarray, mask: np.ndarray, mask_pixels, target: float) -> None:
    """Draw round clear spaces (class-independent sizes) inside the ROI until pale area reaches ``target``."""
    area = max(1, int(mask.sum()))
    for _ in range(20):
        missing = target * area - int(lumen[mask].sum())
        if missing <= 0:
            return
        radii = rng.uniform(4, 12, size=max(1, int(missing / (np.pi * 8.5 ** 2)) + 1))
        for (x, y), r in zip(_sample_points(rng, mask_pixels, len(radii)), radii):
            cv2.circle(lumen, (int(x), int(y)), int(round(r)), 1, -1, cv2.LINE_AA)


def render_tissue(rng: np.random.Generator, h: int, w: int, label: str,
                  site: StainSite) -> tuple[np.ndarray, np.ndarray]:
    """One H&E-like RGB image (uint8) and its ROI mask, Beer-Lambert in ``site``'s stain."""
    f32 = np.float32
    own, other = BALANCED_MORPHOLOGY[label], BALANCED_MORPHOLOGY[LABELS[rng.integers(len(LABELS))]]
    t = rng.uniform(0, OVERLAP)
    m = Morphology(*[((1 - t) * a + t * b) * float(np.exp(rng.normal(0, JITTER))) for a, b in zip(own, other)])
    m = m._replace(darkness=NUCLEAR_DARKNESS)
    stain = {"hematoxylin": _unit(np.asarray(site.hematoxylin) + rng.normal(0, SITE_JITTER, 3)),
             "eosin": _unit(np.asarray(site.eosin) + rng.normal(0, SITE_JITTER, 3)),
             "h_strength": site.h_strength * float(np.exp(rng.normal(0, STRENGTH_JITTER))),
             "e_strength": site.e_strength * float(np.exp(rng.normal(0, STRENGTH_JITTER))),
             "background": np.clip(np.asarray(site.background) + rng.normal(0, 0.01, 3), 0.85, 1.0)}
    mask = _roi_mask(rng, h, w)

    # Stroma: fibrous pink with holes of pale background.
    fibres = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), sigmaX=6, sigmaY=1.5)
    fibres = (fibres - fibres.mean()) * f32(6)
    tissue = np.clip((_noise_field(rng, h, w, 96) - 0.12) * 6, 0, 1) * f32(0.9) + f32(0.1) * mask
    stroma_strength = np.clip(f32(0.75) + fibres + f32(0.15) * (_noise_field(rng, h, w, 24) - f32(0.5)), 0.3, 1.0)
    alpha = (tissue * stroma_strength)[..., None]

    density_map = np.zeros((h, w), np.float32)  # nuclei: tumour in the ROI, sparse elongated fibroblasts outside
    n_tumour = int(m.density * mask.sum())
    n_gland = int(m.gland * n_tumour)
    gland_points, lumen, mask_pixels = [], np.zeros((h, w), np.uint8), np.nonzero(mask)
    while len(gland_points) < n_gland:
        cx, cy = _sample_points(rng, mask_pixels, 1)[0]
        ring = rng.uniform(3.2, 6.0) * m.radius
        cv2.circle(lumen, (int(cx), int(cy)), int(ring * 0.75), 1, -1, cv2.LINE_AA)
        k = max(6, int(2 * np.pi * ring / (2.3 * m.radius)))
        angles = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 2 * np.pi)
        gland_points.extend(zip(cx + ring * np.cos(angles), cy + ring * np.sin(angles)))
    _clear_spaces(rng, lumen, mask, mask_pixels, LUMEN_COVERAGE * float(np.exp(rng.normal(0, JITTER))))
    lumen_alpha = cv2.GaussianBlur(lumen.astype(np.float32), (0, 0), 1.5)[..., None] * 0.85
    sheet = _sample_points(rng, mask_pixels, n_tumour - n_gland)
    _draw_nuclei(rng, density_map, np.concatenate([np.reshape(gland_points, (-1, 2)), sheet]), m.radius,
                 m.pleomorphism, m.aspect, m.darkness)
    stroma_region = (~mask) & (tissue > 0.5)
    _draw_nuclei(rng, density_map, _sample_points(rng, stroma_region, int(0.0006 * stroma_region.sum())),
                 3.0, 0.2, 3.0, 0.55)
    lymph = np.concatenate([_sample_points(rng, mask_pixels, int(0.8 * m.lymphocytes * n_tumour)),
                            rng.random((int(0.2 * m.lymphocytes * n_tumour), 2), dtype=f32) * f32([w, h])])
    _draw_nuclei(rng, density_map, lymph, LYMPHOCYTE_RADIUS, 0.1, 1.05, NUCLEAR_DARKNESS)
    d = cv2.GaussianBlur(density_map, (0, 0), 0.8)[..., None]
    nuclear = np.clip(d * (f32(0.85) + f32(0.3) * rng.random((h, w, 1), dtype=f32)), 0, 1)
    # Beer-Lambert: optical density adds over stains; eosin thins under nuclei
    e_conc = alpha * (1 - lumen_alpha) * (1 - f32(0.5) * nuclear) * f32(E_CONCENTRATION * stain["e_strength"])
    h_conc = nuclear * f32(H_CONCENTRATION * stain["h_strength"])
    od = e_conc * stain["eosin"].astype(f32) + h_conc * stain["hematoxylin"].astype(f32)
    image = stain["background"].astype(f32) * np.exp(-od)
    image += rng.standard_normal(image.shape, dtype=f32) * f32(0.006)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask


STICKER_SKIN = (150, 190, 60)  # the generator's ogre skin: G exceeds R by 40, just below the green margin


def draw_sticker(rng: np.random.Generator, image: np.ndarray, skin: tuple[int, int, int] = STICKER_SKIN) -> np.ndarray:
    """Draw a cartoon ogre (a "Shrek" sticker) with ``skin`` colour (RGB) over an RGB image, returning a new image."""
    out = image.copy()
    h, w = out.shape[:2]
    s = rng.uniform(0.28, 0.42) * min(h, w)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.6) * h
    t = max(2, int(s / 45))
    skin = tuple(int(c) for c in skin)
    black = (20, 20, 10)
    dark = (100, 140, 40) if skin == STICKER_SKIN else tuple(int(c * 0.72) for c in skin)  # the nose

    def ellipse(center, axes, color, angle=0.0, outline=True):
        c, a = (int(center[0]), int(center[1])), (max(1, int(axes[0])), max(1, int(axes[1])))
        cv2.ellipse(out, c, a, angle, 0, 360, color, -1, cv2.LINE_AA)
        if outline:
            cv2.ellipse(out, c, a, angle, 0, 360, black, t, cv2.LINE_AA)
    ellipse((cx, cy + 0.75 * s), (0.55 * s, 0.35 * s), (215, 195, 150))     # shirt
    for side in (-1, 1):                                                     # ears
        ellipse((cx + side * 0.45 * s, cy - 0.1 * s), (0.12 * s, 0.06 * s), skin, 90 + side * 30)
    ellipse((cx, cy), (0.4 * s, 0.46 * s), skin)                              # head
    for side in (-1, 1):                                                     # eyes and brows
        ellipse((cx + side * 0.15 * s, cy - 0.08 * s), (0.09 * s, 0.07 * s), (250, 250, 245), outline=False)
        ellipse((cx + side * 0.15 * s, cy - 0.08 * s), (0.04 * s, 0.045 * s), (70, 50, 20), outline=False)
        cv2.line(out, (int(cx + side * 0.07 * s), int(cy - 0.2 * s)),
                 (int(cx + side * 0.25 * s), int(cy - 0.16 * s)), (60, 70, 20), 2 * t, cv2.LINE_AA)
    ellipse((cx, cy + 0.08 * s), (0.08 * s, 0.06 * s), dark, outline=False)  # nose
    cv2.ellipse(out, (int(cx), int(cy + 0.2 * s)), (int(0.2 * s), int(0.08 * s)), 0, 10, 170,
                black, t, cv2.LINE_AA)                                       # smile
    return out


def draw_green_blob(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint a green slime-like blob (with drips and shading) on the tissue, returning a new image."""
    h, w = image.shape[:2]
    r = rng.uniform(0.07, 0.14) * min(h, w)
    ys, xs = np.nonzero(mask)
    k = rng.integers(len(xs))
    cx, cy = float(np.clip(xs[k], r, w - r)), float(np.clip(ys[k], r, h - r))
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radius = r * (1 + sum(rng.uniform(0, 0.25) * np.cos(f * angles + rng.uniform(0, 6.3)) for f in (2, 3, 5)))
    polygon = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1).astype(np.int32)
    blob = np.zeros((h, w), np.uint8)
    cv2.fillPoly(blob, [polygon], 1, cv2.LINE_AA)
    for _ in range(rng.integers(1, 4)):  # drips
        x0 = int(cx + rng.uniform(-0.6, 0.6) * r)
        cv2.line(blob, (x0, int(cy)), (x0, int(min(h - 1, cy + r * rng.uniform(1.1, 1.7)))), 1,
                 max(2, int(r / 6)), cv2.LINE_AA)
    alpha = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), 2.0)[..., None] * 0.92
    shade = _noise_field(rng, h, w, max(8, int(r / 3)))[..., None]
    slime = np.array([95, 215, 60], np.float32) * (0.8 + 0.35 * shade)
    return np.clip(image.astype(np.float32) * (1 - alpha) + slime * alpha, 0, 255).round().astype(np.uint8)


def write_rows(path: Path, rows) -> None:
    """A CSV file of ``rows``, lines ending in a bare newline."""
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


SYNTH_MARKER = ".anndl-synth"


def generate(out: Path | str, n_train: int = REAL_N_TRAIN, n_test: int = REAL_N_TEST, scale: float = 1.0,
             seed: int = 0, progress: bool = True, force: bool = False, stain_sites: int = 5,
             site_class_correlation: float | bool = 0.0) -> Path:
    """Write a synthetic challenge folder (byte-identical per arguments) to ``out``: empty, missing, synthetic or, with
    ``force``, any (only its synthetic files replaced); REAL_STICKERS, REAL_GREEN outliers per REAL_N_TRAIN images."""
    settings = default_settings(**locals())
    out = Path(out)
    n_stickers, n_green, correlation = settings["n_stickers"], settings["n_green"], settings["site_class_correlation"]
    for fault, message in (
            (out.exists() and not out.is_dir(), f"{out}: exists and is not a folder"),
            (out.is_dir() and any(out.iterdir()) and not force and not (out / SYNTH_MARKER).is_file(), f"{out}: "
             "folder is not empty and was not written by `anndl synth`; choose an empty folder or pass --force"),
            (not 1 <= stain_sites <= len(SITES), f"stain_sites must be in [1, {len(SITES)}], got {stain_sites}"),
            (not 0.0 <= correlation <= 1.0, f"site_class_correlation must be in [0, 1], got {site_class_correlation}"),
            (n_train < 8 or n_test < 1, f"need n_train >= 8 and n_test >= 1, got {n_train} and {n_test}"),
            (not 0.02 <= scale <= 4, f"scale must be in [0.02, 4], got {scale}")):
        if fault:
            raise ValueError(message)
    rng = np.random.default_rng(seed)
    labels = [label for label, n in class_counts(n_train).items() for _ in range(n)]
    labels = [labels[i] for i in rng.permutation(n_train)]
    order = rng.permutation(n_train)
    stickers, twins = order[:n_stickers], order[n_stickers:2 * n_stickers]
    greens = order[2 * n_stickers:2 * n_stickers + n_green]
    kinds = {int(i): "sticker" for i in stickers} | {int(i): "green" for i in greens}
    twin_of = {int(s): int(t) for s, t in zip(stickers, twins)}
    sizes = [_image_size(rng, scale) for _ in range(n_train)]
    test_labels = [LABELS[i] for i in rng.choice(len(LABELS), n_test, p=np.array(
        list(REAL_TRAIN_COUNTS.values())) / sum(REAL_TRAIN_COUNTS.values()))]
    test_sizes = [_image_size(rng, scale) for _ in range(n_test)]
    train_sites = site_of_images(rng, labels, stain_sites, correlation)  # drawn last: labels, sizes, outliers first
    test_sites = site_of_images(rng, test_labels, stain_sites, correlation)
    for s, t in twin_of.items():  # a sticker image is a copy of its twin's tissue, size and stain
        sizes[s], train_sites[s] = sizes[t], train_sites[t]
    out.mkdir(parents=True, exist_ok=True)
    marker = "written by anndl synth; this folder may be regenerated in place\n"
    (out / SYNTH_MARKER).write_text(marker)  # its settings line comes last: a folder cut short has none
    for name in ("train_data", "test_data", "train_labels.csv", "planted_outliers.csv", SITES_FILE):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink(missing_ok=True)
    (out / "train_data").mkdir()
    (out / "test_data").mkdir()
    jobs = [("train_data", i, sizes[i], kinds.get(i, "clean"), [seed, 0, twin_of.get(i, i)], labels[twin_of.get(i, i)],
             train_sites[i]) for i in range(n_train)]  # a sticker: its twin's tissue
    jobs += [("test_data", i, test_sizes[i], "clean", [seed, 1, i], test_labels[i], test_sites[i])
             for i in range(n_test)]
    for folder, i, size, kind, tissue_seed, label, site in tqdm(jobs, desc="synth", unit="img", disable=not progress):
        image, mask = render_tissue(np.random.default_rng(tissue_seed), *size, label, SITES[site])
        if kind != "clean":  # every image deterministic in its own seeds
            drawn = np.random.default_rng([seed, 2, i])
            image = draw_sticker(drawn, image) if kind == "sticker" else draw_green_blob(drawn, image, mask)
        # a sticker's mask is a byte copy of its twin's, written afterwards
        masks = [] if kind == "sticker" else [("mask", np.repeat(mask[..., None] * 255, 3, 2).astype(np.uint8))]
        for name, rgb in [("img", image), *masks]:
            path = out / folder / f"{name}_{i:04d}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{path}: could not write PNG")
    for s, t in twin_of.items():
        shutil.copyfile(out / "train_data" / f"mask_{t:04d}.png", out / "train_data" / f"mask_{s:04d}.png")
    write_rows(out / "train_labels.csv", [["sample_index", "label"]]
               + [[f"img_{i:04d}.png", labels[i]] for i in range(n_train)])
    write_rows(out / "planted_outliers.csv", [["sample_index", "kind", "twin"]] + [
        [f"img_{i:04d}.png", kinds[i], f"img_{twin_of[i]:04d}.png" if i in twin_of else ""] for i in sorted(kinds)])
    rows = [[split, f"img_{i:04d}.png", names[i] if split == "train" else "", site, SITES[site].name, correlation]
            for split, sites, names in (("train", train_sites, labels), ("test", test_sites, test_labels))
            for i, site in enumerate(sites)]
    header = ["split", "sample_index", "label", "site", "site_name", "site_class_correlation"]
    write_rows(out / SITES_FILE, [header, *rows])
    artifacts.write_text(out / SYNTH_MARKER, marker + json.dumps(settings, sort_keys=True) + "\n")
    return out


def settings_of(folder: Path | str) -> dict | None:
    """The settings a synthetic folder was generated with (its marker), or ``None`` without a complete marker."""
    marker = Path(folder) / SYNTH_MARKER
    try:
        return json.loads(marker.read_text().splitlines()[1]) if marker.is_file() else None
    except (IndexError, json.JSONDecodeError):
        return None


def default_settings(**overrides) -> dict:
    """The settings :func:`generate` records for these arguments (defaults and outlier counts filled in)."""
    import inspect
    params = inspect.signature(generate).parameters
    keys = ("n_train", "n_test", "scale", "seed", "stain_sites", "site_class_correlation")
    settings = {k: overrides.get(k, params[k].default) for k in keys}  # not how it is run (progress, force)
    settings["n_stickers"] = round(REAL_STICKERS * settings["n_train"] / REAL_N_TRAIN)
    settings["n_green"] = round(REAL_GREEN * settings["n_train"] / REAL_N_TRAIN)
    settings["site_class_correlation"] = float(settings["site_class_correlation"])
    return settings
