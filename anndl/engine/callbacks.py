"""Keras callbacks every training run adds beside the image-level selection in ``anndl.engine.train``.

TensorBoard: each run writes its per-epoch logs (loss, tile accuracy, the image-level validation macro F1
of every voting rule, learning rate) under ``RUN/tensorboard/{train,validation}``. Open them with
``tensorboard --logdir outputs/runs`` or, in Colab/Kaggle/Jupyter::

    %load_ext tensorboard
    %tensorboard --logdir ../outputs/runs
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras

TENSORBOARD_DIR = "tensorboard"


def tensorboard_callback(run_dir: Path | str, histogram_freq: int = 0) -> keras.callbacks.TensorBoard:
    """A ``keras.callbacks.TensorBoard`` writing into ``run_dir/tensorboard``, once per epoch.

    No profiling (``profile_batch=0``), no graph or weight images (small event files, and the same
    behaviour under the TensorFlow and JAX back ends; TensorFlow's summary writer is used either way).
    ``histogram_freq``: write weight histograms every that many epochs (0: never).

    Put it **after** ``anndl.engine.train.ImageF1`` in the callback list: callbacks run in order, and the
    image-level scores exist in the epoch's logs only once ImageF1 has run.
    Raises ``ImportError`` at once (not after the first epoch) when the ``tensorboard`` package, which
    writes the summaries, is missing: TensorFlow 2.21 does not install it.
    """
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError("TensorBoard logging needs the tensorboard package (pinned in requirements.txt): "
                          "pip install tensorboard")
    return keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), histogram_freq=histogram_freq,
                                       write_graph=False, write_images=False, write_steps_per_second=False,
                                       update_freq="epoch", profile_batch=0)
