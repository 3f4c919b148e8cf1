"""H&E stain augmentation: :class:`HEDJitter`, Tellez et al. (2018; 2019, Medical Image Analysis 58) on Ruifrok &
Johnston's deconvolution (2001), in plain ODs (``-ln``) as the papers' scikit-image (0.19+ divides by ``-ln(1e-6)``:
the same sigma ~14x stronger)."""

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
