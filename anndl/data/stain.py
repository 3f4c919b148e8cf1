"""H&E stain handling: HED augmentation (:class:`HEDJitter`, Tellez et al. 2018; 2019, Medical Image Analysis 58, on
Ruifrok & Johnston's deconvolution, 2001, in plain ODs (``-ln``) as the papers' scikit-image: 0.19+ divides by
``-ln(1e-6)``, the same sigma ~14x stronger) and per-image Macenko (2009, as torchstain's numpy Macenko) / Reinhard
(2001, CIE L*a*b*) normalisation of the ROI tissue to a reference of medians, by hand (torchstain needs torch)."""

import contextlib
import json
import warnings
from dataclasses import asdict, dataclass, field

import cv2
import keras
import numpy as np

from anndl.core.keras_adapter import data_layer_base, data_layer_seed

RGB_FROM_HED = np.array([[0.65, 0.70, 0.29],  # Ruifrok & Johnston's H, E, DAB OD rows (RGB): skimage's rgb_from_hed
                         [0.07, 0.99, 0.11],
                         [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)  # scikit-image's ``hed_from_rgb``
HED_PRESETS = {"light": 0.05, "strong": 0.2}  # Tellez et al. 2019: HED-light and HED-strong


@keras.saving.register_keras_serializable(package="anndl")
class HEDJitter(data_layer_base()):  # Keras's DataLayer: TensorFlow ops inside a tf.data map under any back end
    """Tellez et al.'s H&E stain augmentation of [0, 255] tiles (batched or not), the identity outside training: float32
    out whatever the dtype policy (bfloat16 logarithms would band colours). ``strength``: a preset name or a sigma."""

    def __init__(self, strength: str | float = "light", seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        sigma = HED_PRESETS.get(strength, strength) if isinstance(strength, str) else float(strength)
        if isinstance(sigma, str) or not 0.0 <= sigma < 1.0:
            raise ValueError(f"strength must be 'light', 'strong' or a sigma in [0, 1), got {strength!r}")
        self.strength, self.sigma, self.seed = strength, float(sigma), seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True):
        if not training or self.sigma == 0.0:
            return inputs
        b = self.backend
        x = b.cast(inputs, "float32")
        rand_shape = (b.shape(x)[0], 1, 1, 3) if len(inputs.shape) == 4 else (1, 1, 3)
        seed = data_layer_seed(self)
        alpha = b.random.uniform(rand_shape, 1.0 - self.sigma, 1.0 + self.sigma, dtype="float32", seed=seed)
        beta = b.random.uniform(rand_shape, -self.sigma, self.sigma, dtype="float32", seed=seed)
        od = -b.numpy.log((x + 1.0) / 256.0)
        hed = b.numpy.tensordot(od, HED_FROM_RGB.astype(np.float32), axes=1) * alpha + beta
        rgb = 256.0 * b.numpy.exp(-b.numpy.tensordot(hed, RGB_FROM_HED.astype(np.float32), axes=1)) - 1.0
        return b.numpy.clip(rgb, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "seed": self.seed}


IO = 240.0            # transmitted light intensity (Macenko implementations' Io)
OD_THRESHOLD = 0.15   # pixels whose OD vector is shorter than this are background (Macenko's beta)
ANGLE_PERCENTILE = 1.0  # robust extreme angles (Macenko's alpha, in percent)
MIN_TISSUE_PIXELS = 500
MAX_FIT_PIXELS = 200_000  # tissue pixels sampled per image for estimation (deterministic stride)


class StainEstimationError(ValueError):
    """Too little tissue (or a degenerate stain) to estimate an image's stain."""


_OD_TABLE = (-np.log((np.arange(256) + 1.0) / IO)).astype(np.float32)  # OD of each uint8 value


def _optical_density(pixels: np.ndarray) -> np.ndarray:
    """(n, 3) float32 optical densities of uint8-range pixels (a table lookup: 256 values per channel)."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    if pixels.dtype == np.uint8:
        return _OD_TABLE[pixels]
    return (-np.log((pixels.astype(np.float64) + 1.0) / IO)).astype(np.float32)


def _is_tissue(od: np.ndarray) -> np.ndarray:
    """Tissue: an OD vector longer than ``OD_THRESHOLD`` (torchstain's any-channel test drops pure eosin)."""
    return np.einsum("ij,ij->i", od, od) > OD_THRESHOLD ** 2


def macenko_stains(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Macenko's estimate from the tissue inside ``mask``: stain matrix (3x2, columns H, E), 99th-percentile maxima."""
    od = _optical_density(image.reshape(-1, 3) if mask is None else image[np.asarray(mask, bool)])
    od = od[_is_tissue(od)]
    od = (od[:: int(np.ceil(len(od) / MAX_FIT_PIXELS))] if len(od) > MAX_FIT_PIXELS else od).astype(np.float64)
    if len(od) < MIN_TISSUE_PIXELS:
        raise StainEstimationError(f"{len(od)} tissue pixels (need {MIN_TISSUE_PIXELS})")
    _, vectors = np.linalg.eigh(np.cov(od.T))
    plane = vectors[:, 1:3]                                    # the two largest eigenvectors
    plane = plane * np.where(plane.sum(0) < 0, -1.0, 1.0)      # point into positive OD
    projected = od @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(phi, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    v1, v2 = (plane @ np.array([np.cos(angle), np.sin(angle)]) for angle in (lo, hi))
    stains = np.stack([v1, v2], 1) if v1[0] > v2[0] else np.stack([v2, v1], 1)  # H absorbs more red
    stains = stains * np.where(stains.sum(0) < 0, -1.0, 1.0)
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    if not np.isfinite(stains).all() or abs(float(stains[:, 0] @ stains[:, 1])) > 0.995:
        raise StainEstimationError("degenerate stain vectors (one stain only?)")
    max_conc = np.percentile(np.linalg.pinv(stains) @ od.T, 99, axis=1)
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
    def from_dict(cls, d: dict) -> "StainReference":
        return cls(**{k: (tuple(map(tuple, v)) if k == "stain_matrix" else tuple(v) if isinstance(v, list) else v)
                      for k, v in d.items()})


def fit_reference(images, masks=None, source: str = "") -> StainReference:
    """Reference stain: element-wise medians of the images' Macenko stain matrices (renormalised), maximum
    concentrations and L*a*b* statistics over each image's tissue inside its mask (``masks``: or None)."""
    images, estimates = list(images), []
    for image, mask in zip(images, [None] * len(images) if masks is None else masks):
        with contextlib.suppress(StainEstimationError):
            estimates.append((*macenko_stains(image, mask), *lab_stats(image, mask)))
    if not estimates:
        raise StainEstimationError(f"no stain estimable in any of {len(images)} reference images")
    if len(estimates) < len(images):
        warnings.warn(f"stain reference: {len(images) - len(estimates)} of {len(images)} images had too "
                      "little tissue and were skipped", stacklevel=2)
    matrices, maxima, means, stds = zip(*estimates)
    matrix = np.median(np.stack(matrices), 0)
    matrix /= np.linalg.norm(matrix, axis=0, keepdims=True)
    as_tuple = lambda a, d: tuple(np.round(a, d).tolist())  # noqa: E731  (plain floats: JSON and repr)
    return StainReference(tuple(map(tuple, np.round(matrix, 6).tolist())), as_tuple(np.median(maxima, 0), 6),
                          as_tuple(np.median(means, 0), 4), as_tuple(np.median(stds, 0), 4), source, len(matrices))


METHODS = ("macenko", "reinhard")


@dataclass
class StainNormalizer:
    """RGB uint8 images normalised to ``reference`` from the ROI's tissue stain, else the whole image's, else the
    reference's (``counts``; a warning each); Reinhard moves tissue only. Use after outlier removal (green blobs)."""

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
        for where, m in ([("roi", mask)] if mask is not None else []) + [("whole_image", None)]:
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
        return (self._macenko if self.method == "macenko" else self._reinhard)(image, mask)

    def _macenko(self, image, mask):
        ref_matrix = np.asarray(self.reference.stain_matrix)
        matrix, scale = ref_matrix, np.ones(2)
        if (estimate := self._estimate(macenko_stains, image, mask)) is not None:
            matrix, scale = estimate[0], np.asarray(self.reference.max_concentrations) / estimate[1]
        # one 3x3 map in OD space: least-squares concentrations, rescaled, re-stained with the reference
        transform = (ref_matrix @ np.diag(scale) @ np.linalg.pinv(matrix)).T.astype(np.float32)
        out = np.float32(IO) * np.exp(-(_optical_density(image) @ transform))
        return np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(image.shape)

    def _reinhard(self, image, mask):
        if (estimate := self._estimate(lab_stats, image, mask)) is None:
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


def normalizer_from_settings(settings: dict | None) -> StainNormalizer | None:
    """The normaliser a run recorded (:meth:`StainNormalizer.settings`), or ``None`` for none. Settings made
    with other constants than this version's are refused: the same record must give the same images."""
    if not settings:
        return None
    normalizer = StainNormalizer(StainReference.from_dict(settings["reference"]), settings["method"])
    if normalizer.settings() != json.loads(json.dumps(settings)):
        raise ValueError(f"stain normalisation recorded with other constants than this version's: {settings}")
    return normalizer


def reference_from_manifest(manifest, max_images: int = 64, seed: int = 0, split: str = "train") -> StainReference:
    """:func:`fit_reference` over up to ``max_images`` images of ``split`` (seeded choice), ROI tissue only."""
    from anndl.data import read_image, read_mask
    rows = manifest[manifest.split == split]
    if len(rows) > max_images:
        rows = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), max_images, replace=False))]
    return fit_reference((read_image(p) for p in rows.image_path), (read_mask(p) for p in rows.mask_path),
                         source=f"median over {len(rows)} {split} images (seed {seed})")
