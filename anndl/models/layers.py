"""anndl's Keras layers a saved model may hold, and the one ``.keras`` loader (not in the builders: encoders use it)."""

from pathlib import Path

import keras
from keras import layers


def load_model(path: Path | str) -> keras.Model:
    """A ``.keras`` model loaded in safe mode (no code in it runs), anndl's layers registered; any fault: ValueError."""
    from anndl.data import stain  # noqa: F401  (registers HEDJitter)
    from anndl.models import mil  # noqa: F401  (registers GatedAttentionPooling)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many kinds for a damaged or foreign file
        raise ValueError(f"{path}: cannot load the model ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e


@keras.saving.register_keras_serializable(package="anndl")
class FusedBatchNormalization(layers.BatchNormalization):
    """``BatchNormalization`` (same variables, config, updates) on TF's fused kernel for 4-D channels-last inputs: it
    takes bfloat16/float16 where Keras upcasts: 2x faster mixed_bfloat16 on avx512_bf16 CPUs (docs/measurements.md)."""

    def call(self, inputs, training=None, mask=None):
        if not (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.center and self.scale and not self.renorm and not self.synchronized):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf
        x = tf.cast(inputs, self.compute_dtype)  # float16/bfloat16 under a mixed policy: the kernel's input type
        if not (training and self.trainable):
            return tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma.value, self.beta.value, mean=self.moving_mean.value,
                variance=self.moving_variance.value, epsilon=self.epsilon, is_training=False)[0]
        y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(x, self.gamma.value, self.beta.value,
                                                             epsilon=self.epsilon, is_training=True)
        shape = tf.shape(x)
        n = tf.cast(shape[0] * shape[1] * shape[2], "float32")
        # the moving variance takes the batch's biased variance, as Keras's (the kernel returns the unbiased one)
        variance = tf.where(n > 1, unbiased * (n - 1) / tf.maximum(n, 1), tf.zeros_like(unbiased))
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return y


