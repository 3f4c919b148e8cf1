"""The TensorBoard callback of every training run: per-epoch logs under ``RUN/tensorboard/{train,validation}``
(``tensorboard --logdir outputs/runs``; in a notebook ``%load_ext tensorboard`` then ``%tensorboard --logdir``)."""

import importlib.util
from pathlib import Path

import keras

TENSORBOARD_DIR = "tensorboard"


def tensorboard_callback(run_dir: Path | str) -> keras.callbacks.TensorBoard:
    """Epoch logs into ``run_dir/tensorboard``: no profiling, graph or images (small files, the same under the
    TensorFlow and JAX back ends). Put it after ``train.ImageF1``, whose image-level scores it logs. Raises
    ``ImportError`` at once when the ``tensorboard`` package, which TensorFlow 2.21 does not install, is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError("TensorBoard logging needs the tensorboard package (pinned in requirements.txt): "
                          "pip install tensorboard")
    # Keras's defaults otherwise: epoch logs, no histograms, images or profiling
    return keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), write_graph=False)
