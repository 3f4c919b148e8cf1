"""H&E stain handling: HED colour augmentation (a Keras layer) and Macenko / Reinhard stain normalisation.

* :class:`HEDJitter` — stain augmentation after Tellez et al. (2018, "H&E stain augmentation improves
  generalization of convolutional networks for histopathological mitosis detection"; 2019, "Quantifying
  the effects of data augmentation and stain color normalization in convolutional neural networks for
  computational pathology", Medical Image Analysis 58): colour deconvolution into haematoxylin, eosin and
  DAB concentrations with Ruifrok & Johnston's matrix (2001, "Quantification of histochemical staining
  by color deconvolution", Anal. Quant. Cytol. Histol. 23:291-299; the numbers are scikit-image's
  ``skimage.color.rgb_from_hed``), each channel scaled by ``alpha ~ U(1 - sigma, 1 + sigma)`` and
  shifted by ``beta ~ U(-sigma, sigma)`` per tile, then back to RGB. Presets as in Tellez et al. 2019
  (their code's ``HedColorAugmenter`` ranges): ``"light"`` sigma 0.05, ``"strong"`` sigma 0.2. The
  concentrations here are plain optical densities (``-ln``), as in scikit-image before 0.19 which those
  papers used (newer scikit-image divides them by ``-ln(1e-6)``, which would make the same sigma ~14x
  stronger). Plain tensor ops, so it runs in a ``tf.data`` map or inside the model on any device.
* Stain normalisation in numpy, per decoded image, from the stain estimated on the image's ROI tissue:
  Macenko et al. (2009, "A method for normalizing histology slides for quantitative analysis", ISBI)
  and Reinhard et al. (2001, "Color transfer between images", IEEE CG&A; here in CIE L*a*b*, as
  staintools and torchstain do, rather than the paper's l-alpha-beta). Written by hand: torchstain (the
  maintained implementation) needs torch for its numpy back end's package, scikit-image has no Macenko,
  staintools is unmaintained and needs spams; this follows torchstain's numpy Macenko (Io 240,
  beta 0.15, alpha 1, 99th-percentile maximum concentrations).

A reference (:func:`fit_reference`) is the median stain matrix and maximum concentrations (Macenko) and
the median L*a*b* means and spreads (Reinhard) over the ROI tissue of a set of images (the dataset's train
images, or one chosen image). :class:`StainNormalizer` maps any image to it; an image with too little
tissue in its ROI falls back to its whole-image tissue, then to the reference's own stain matrix, and
every fallback is counted (``counts``) and warned about, never raised.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import keras
import numpy as np

from anndl.core.keras_adapter import data_layer_base, data_layer_seed

# Ruifrok & Johnston (2001) H&E-DAB optical-density vectors (rows: haematoxylin, eosin, DAB; columns R, G, B),
# exactly scikit-image's ``skimage.color.rgb_from_hed`` (skimage/color/colorconv.py).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29],
                         [0.07, 0.99, 0.11],
                         [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)  # scikit-image's ``hed_from_rgb``
HED_PRESETS = {"light": 0.05, "strong": 0.2}  # Tellez et al. 2019: HED-light and HED-strong


def rgb_to_hed(image: np.ndarray) -> np.ndarray:
    """H, E, DAB concentrations (optical-density units) of an RGB image in [0, 255] (any shape ``(..., 3)``)."""
    od = -np.log((np.asarray(image, np.float64) + 1.0) / 256.0)
    return od @ HED_FROM_RGB


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hed`, clipped to [0, 255] (float)."""
    return np.clip(256.0 * np.exp(-(np.asarray(hed, np.float64) @ RGB_FROM_HED)) - 1.0, 0.0, 255.0)


_Base = data_layer_base()  # Keras's tf.data-safe base (TensorFlow ops inside a tf.data map under any backend)


class _KerasOps:
    """The subset of ``self.backend`` the layer uses, from the public API (used when DataLayer is missing)."""

    numpy, random = keras.ops, keras.random
    cast, convert_to_tensor, shape = staticmethod(keras.ops.cast), staticmethod(keras.ops.convert_to_tensor), \
        staticmethod(keras.ops.shape)
    _backend = None


@keras.saving.register_keras_serializable(package="anndl")
class HEDJitter(_Base):
    """Random H&E stain augmentation (Tellez et al.): per tile, each of the H, E and DAB concentrations is
    scaled by ``U(1 - sigma, 1 + sigma)`` and shifted by ``U(-sigma, sigma)``; the identity when
    ``training`` is False or ``strength`` is 0.

    Args:
        strength: ``"light"`` (sigma 0.05), ``"strong"`` (0.2) or a sigma >= 0.
        seed: seed of the layer's ``keras.random.SeedGenerator``.

    Input: tiles in [0, 255], shape ``(batch, h, w, 3)`` or ``(h, w, 3)``; output: float32 tiles in [0, 255].
    Computes in float32 whatever the dtype policy (logarithms in bfloat16 would band the colours).
    """

    def __init__(self, strength: str | float = "light", seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        sigma = HED_PRESETS.get(strength, strength) if isinstance(strength, str) else float(strength)
        if isinstance(sigma, str) or not 0.0 <= sigma < 1.0:
            raise ValueError(f"strength must be 'light', 'strong' or a sigma in [0, 1), got {strength!r}")
        self.strength, self.sigma, self.seed = strength, float(sigma), seed
        self.generator = keras.random.SeedGenerator(seed)
        if not hasattr(self, "backend"):
            self.backend = _KerasOps()

    def _seed(self):
        return data_layer_seed(self, self.generator)

    def call(self, inputs, training=True):
        if not training or self.sigma == 0.0:
            return inputs
        b = self.backend
        x = b.cast(inputs, "float32")
        batched = len(inputs.shape) == 4
        rand_shape = (b.shape(x)[0], 1, 1, 3) if batched else (1, 1, 3)
        seed = self._seed()
        alpha = b.random.uniform(rand_shape, 1.0 - self.sigma, 1.0 + self.sigma, dtype="float32", seed=seed)
        beta = b.random.uniform(rand_shape, -self.sigma, self.sigma, dtype="float32", seed=seed)
        hed_from_rgb = b.convert_to_tensor(HED_FROM_RGB.astype(np.float32))
        rgb_from_hed = b.convert_to_tensor(RGB_FROM_HED.astype(np.float32))
        od = -b.numpy.log((x + 1.0) / 256.0)
        hed = b.numpy.tensordot(od, hed_from_rgb, axes=1) * alpha + beta
        rgb = 256.0 * b.numpy.exp(-b.numpy.tensordot(hed, rgb_from_hed, axes=1)) - 1.0
        return b.numpy.clip(rgb, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "seed": self.seed}


# --------------------------------------------------------------------------------------- normalisation

IO = 240.0            # transmitted light intensity (Macenko implementations' Io)
OD_THRESHOLD = 0.15   # pixels whose OD vector is shorter than this are background (Macenko's beta)
ANGLE_PERCENTILE = 1.0  # robust extreme angles (Macenko's alpha, in percent)
MIN_TISSUE_PIXELS = 500
MAX_FIT_PIXELS = 200_000  # tissue pixels sampled per image for estimation (deterministic stride)


class StainEstimationError(ValueError):
    """Too little tissue (or degenerate stain) to estimate an image's stain."""


_OD_TABLE = (-np.log((np.arange(256) + 1.0) / IO)).astype(np.float32)  # OD of each uint8 value


def _optical_density(pixels: np.ndarray) -> np.ndarray:
    """(n, 3) float32 optical densities of uint8-range pixels (a table lookup: 256 values per channel)."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    if pixels.dtype == np.uint8:
        return _OD_TABLE[pixels]
    return (-np.log((pixels.astype(np.float64) + 1.0) / IO)).astype(np.float32)


def _is_tissue(od: np.ndarray) -> np.ndarray:
    """Tissue = optical-density vector longer than ``OD_THRESHOLD``. (torchstain drops a pixel when *any*
    channel is below it, which also drops pure eosin: Ruifrok's eosin absorbs almost no red.)"""
    return np.einsum("ij,ij->i", od, od) > OD_THRESHOLD ** 2


def _tissue_pixels(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Optical densities of the tissue pixels of ``image`` inside ``mask`` (all of it when None)."""
    pixels = image.reshape(-1, 3) if mask is None else image[np.asarray(mask, bool)]
    od = _optical_density(pixels)
    od = od[_is_tissue(od)]
    if len(od) > MAX_FIT_PIXELS:
        od = od[:: int(np.ceil(len(od) / MAX_FIT_PIXELS))]
    return od


def macenko_stains(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Macenko's estimate from the tissue inside ``mask``: the stain matrix (3x2, columns H then E, unit
    OD vectors) and the 99th-percentile concentrations (2,). Raises :class:`StainEstimationError`."""
    od = _tissue_pixels(image, mask).astype(np.float64)
    if len(od) < MIN_TISSUE_PIXELS:
        raise StainEstimationError(f"{len(od)} tissue pixels (need {MIN_TISSUE_PIXELS})")
    _, vectors = np.linalg.eigh(np.cov(od.T))
    plane = vectors[:, 1:3]                                    # the two largest eigenvectors
    plane = plane * np.where(plane.sum(0) < 0, -1.0, 1.0)      # point into positive OD
    projected = od @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(phi, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    stains = np.stack([v1, v2], 1) if v1[0] > v2[0] else np.stack([v2, v1], 1)  # H absorbs more red
    stains = stains * np.where(stains.sum(0) < 0, -1.0, 1.0)
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    if not np.isfinite(stains).all() or abs(float(stains[:, 0] @ stains[:, 1])) > 0.995:
        raise StainEstimationError("degenerate stain vectors (one stain only?)")
    concentrations = np.linalg.pinv(stains) @ od.T
    max_conc = np.percentile(concentrations, 99, axis=1)
    if not (max_conc > 1e-3).all():
        raise StainEstimationError(f"stain concentrations too low ({max_conc.round(4).tolist()})")
    return stains, max_conc


def lab_stats(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of CIE L*a*b* over the tissue inside ``mask`` (Reinhard's statistics)."""
    lab = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    keep = _is_tissue(_optical_density(image))
    if mask is not None:
        keep &= np.asarray(mask, bool).reshape(-1)
    if keep.sum() < MIN_TISSUE_PIXELS:
        raise StainEstimationError(f"{int(keep.sum())} tissue pixels (need {MIN_TISSUE_PIXELS})")
    lab = lab[keep]
    return lab.mean(0), np.maximum(lab.std(0), 1e-3)


@dataclass(frozen=True)
class StainReference:
    """What images are normalised to (JSON-ready via :meth:`to_dict`, to record in artifacts)."""

    stain_matrix: tuple        # 3x2, columns haematoxylin, eosin (unit OD vectors)
    max_concentrations: tuple  # (2,)
    lab_mean: tuple            # (3,) OpenCV 8-bit L*a*b*
    lab_std: tuple             # (3,)
    source: str = ""
    n_images: int = 0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> StainReference:
        return cls(**{k: (tuple(map(tuple, v)) if k == "stain_matrix" else tuple(v) if isinstance(v, list) else v)
                      for k, v in d.items()})


def fit_reference(images, masks=None, source: str = "") -> StainReference:
    """Reference stain: element-wise median of the images' Macenko stain matrices (renormalised) and maximum
    concentrations, and median L*a*b* statistics, each from the ROI tissue of every image (``masks``:
    matching ROI masks, or None). One image gives that image's stain. Images whose stain cannot be
    estimated are skipped with a warning; none estimable raises :class:`StainEstimationError`."""
    images = list(images)
    masks = [None] * len(images) if masks is None else list(masks)
    matrices, maxima, means, stds = [], [], [], []
    for image, mask in zip(images, masks):
        try:
            m, c = macenko_stains(image, mask)
            mean, std = lab_stats(image, mask)
        except StainEstimationError:
            continue
        matrices.append(m), maxima.append(c), means.append(mean), stds.append(std)
    if not matrices:
        raise StainEstimationError(f"no stain estimable in any of {len(images)} reference images")
    if len(matrices) < len(images):
        warnings.warn(f"stain reference: {len(images) - len(matrices)} of {len(images)} images had too "
                      "little tissue and were skipped", stacklevel=2)
    matrix = np.median(np.stack(matrices), 0)
    matrix /= np.linalg.norm(matrix, axis=0, keepdims=True)
    as_tuple = lambda a, d: tuple(np.round(a, d).tolist())  # noqa: E731  (plain floats: JSON and repr)
    return StainReference(tuple(map(tuple, np.round(matrix, 6).tolist())), as_tuple(np.median(maxima, 0), 6),
                          as_tuple(np.median(means, 0), 4), as_tuple(np.median(stds, 0), 4), source, len(matrices))


METHODS = ("macenko", "reinhard")


@dataclass
class StainNormalizer:
    """Normalise RGB uint8 images (numpy in, numpy out) to ``reference`` with ``method``.

    The image's stain is estimated from the tissue inside its ROI mask; with too little there, from the
    whole image's tissue; with too little there too, the reference's stain itself is assumed (Macenko:
    concentrations from the reference matrix, unscaled; Reinhard: the image is returned unchanged).
    Reinhard moves tissue pixels only (weighted by optical density): background and lumina stay as they are.
    Normalise after outlier removal: colour-based detection (green blobs) expects the scanned colours.
    ``counts`` says how often each happened (``roi``, ``whole_image``, ``reference``)."""

    reference: StainReference
    method: str = "macenko"
    counts: dict = field(default_factory=lambda: {"roi": 0, "whole_image": 0, "reference": 0})

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown stain normalisation {self.method!r}; use one of {METHODS}")

    def settings(self) -> dict:
        """What changes the output: method, constants and the reference (for artifact records)."""
        return {"method": self.method, "io": IO, "od_threshold": OD_THRESHOLD, "angle_percentile": ANGLE_PERCENTILE,
                "min_tissue_pixels": MIN_TISSUE_PIXELS, "reference": self.reference.to_dict()}

    def _estimate(self, estimator, image, mask):
        for where, m in (("roi", mask), ("whole_image", None)):
            if where == "roi" and mask is None:
                continue
            try:
                result = estimator(image, m)
            except StainEstimationError:
                continue
            self.counts[where] += 1
            if where != "roi" and mask is not None:
                warnings.warn("stain normalisation: too little ROI tissue, used the whole image's tissue "
                              "(see StainNormalizer.counts)", stacklevel=3)
            return result
        self.counts["reference"] += 1
        warnings.warn("stain normalisation: too little tissue, assumed the reference stain "
                      "(see StainNormalizer.counts)", stacklevel=3)
        return None

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an RGB image (h, w, 3), got shape {image.shape}")
        if mask is not None and np.asarray(mask).shape[:2] != image.shape[:2]:
            raise ValueError(f"mask shape {np.asarray(mask).shape} does not match image {image.shape}")
        if self.method == "macenko":
            return self._macenko(image, mask)
        return self._reinhard(image, mask)

    def _macenko(self, image, mask):
        ref_matrix = np.asarray(self.reference.stain_matrix)
        ref_max = np.asarray(self.reference.max_concentrations)
        estimate = self._estimate(macenko_stains, image, mask)
        matrix, max_conc = estimate if estimate is not None else (ref_matrix, None)
        # one 3x3 map in OD space: least-squares concentrations, rescaled, re-stained with the reference
        scale = (ref_max / max_conc) if max_conc is not None else np.ones(2)
        transform = (ref_matrix @ np.diag(scale) @ np.linalg.pinv(matrix)).T.astype(np.float32)
        od = _optical_density(image) @ transform
        out = np.float32(IO) * np.exp(-od)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(image.shape)

    def _reinhard(self, image, mask):
        estimate = self._estimate(lab_stats, image, mask)
        if estimate is None:
            return image.astype(np.uint8, copy=True)
        mean, std = estimate
        lab = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float64)
        mapped = (lab - mean) / std * np.asarray(self.reference.lab_std) + np.asarray(self.reference.lab_mean)
        # Tissue only: the statistics are the tissue's, and moving white background and lumina with them
        # tints them (even green); a soft weight on the OD length avoids a seam at the tissue border.
        od = _optical_density(image)
        weight = np.clip(np.sqrt(np.einsum("ij,ij->i", od, od)) / OD_THRESHOLD - 0.5, 0, 1).reshape(*lab.shape[:2], 1)
        lab = weight * mapped + (1 - weight) * lab
        return cv2.cvtColor(np.clip(lab, 0, 255).round().astype(np.uint8), cv2.COLOR_LAB2RGB)


def normalize(image: np.ndarray, mask: np.ndarray | None, reference: StainReference,
              method: str = "macenko") -> np.ndarray:
    """One image normalised to ``reference`` (see :class:`StainNormalizer`; uint8 RGB in and out)."""
    return StainNormalizer(reference, method)(image, mask)


def normalizer_from_settings(settings: dict | None) -> StainNormalizer | None:
    """The normaliser a run recorded (:meth:`StainNormalizer.settings`), or ``None`` for none. Settings made
    with other constants than this version's are refused: the same record must give the same images."""
    if not settings:
        return None
    normalizer = StainNormalizer(StainReference.from_dict(settings["reference"]), settings["method"])
    if normalizer.settings() != json.loads(json.dumps(settings)):
        raise ValueError(f"stain normalisation recorded with other constants than this version's: {settings}")
    return normalizer


def tf_normalize(normalizer: StainNormalizer):
    """A function ``(image uint8 (h, w, 3), mask bool (h, w)) -> uint8 image`` for a ``tf.data`` map, running
    ``normalizer`` through ``tf.numpy_function`` (Python, so it holds the GIL: cache its output)."""
    import tensorflow as tf

    def apply(image, mask):
        out = tf.numpy_function(lambda i, m: normalizer(i, m), [image, mask], tf.uint8, stateful=False)
        return tf.ensure_shape(out, [None, None, 3])

    return apply


def reference_from_manifest(manifest, max_images: int = 64, seed: int = 0, split: str = "train") -> StainReference:
    """:func:`fit_reference` over up to ``max_images`` images of ``split`` (seeded choice), ROI tissue only."""
    from anndl.data import read_image, read_mask

    rows = manifest[manifest.split == split]
    if len(rows) > max_images:
        rows = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), max_images, replace=False))]
    return fit_reference((read_image(p) for p in rows.image_path), (read_mask(p) for p in rows.mask_path),
                         source=f"median over {len(rows)} {split} images (seed {seed})")


def write_normalized_folder(data_dir: Path | str, out_dir: Path | str, method: str = "macenko",
                            reference: StainReference | None = None, max_reference_images: int = 64,
                            seed: int = 0, progress: bool = True) -> Path:
    """A stain-normalised copy of a challenge folder (same layout: masks and label files copied, every image
    normalised), recorded as an artifact (``record.json``: method, constants, reference, fallback counts).

    The rest of the pipeline runs on it unchanged (``--data OUT``). Reused when its record matches."""
    import shutil

    from tqdm.auto import tqdm

    from anndl.core import artifacts
    from anndl.data import CLASSES_FILE, LABELS_FILE, SPLIT_DIRS, read_challenge, read_image, read_mask

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = read_challenge(data_dir)
    if reference is None:
        reference = reference_from_manifest(manifest, max_reference_images, seed)
    normalizer = StainNormalizer(reference, method)
    data_note = f"{data_dir.resolve()} [{artifacts.fingerprint(manifest.drop(columns=['image_path', 'mask_path']).to_dict('list'))}]"
    req = artifacts.request("stain", data=data_note, settings=normalizer.settings())

    def build(staging):
        files = []
        for row in tqdm(list(manifest.itertuples()), desc=f"stain {method}", unit="img", disable=not progress):
            sub = Path(SPLIT_DIRS[row.split])
            image = normalizer(read_image(row.image_path), read_mask(row.mask_path))
            ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            artifacts.write_bytes(staging / sub / Path(row.image_path).name, png.tobytes())
            shutil.copyfile(row.mask_path, staging / sub / Path(row.mask_path).name)
            files += [str(sub / Path(row.image_path).name), str(sub / Path(row.mask_path).name)]
        for name in (LABELS_FILE, CLASSES_FILE, "source.txt", "planted_outliers.csv", "sites.csv"):
            if (data_dir / name).is_file():
                shutil.copyfile(data_dir / name, staging / name)
                files.append(name)
        artifacts.write_json(staging / "stain_counts.json", {"counts": normalizer.counts, "images": len(manifest)})
        return files + ["stain_counts.json"]

    artifacts.ensure(out_dir, req, build, label=f"stain-normalised folder {out_dir}")
    return out_dir
