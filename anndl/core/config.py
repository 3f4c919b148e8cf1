"""Configuration: repository paths, data resolution and the run profiles, as frozen dataclasses.

A profile is ``smoke`` (tiny, CPU, minutes; numbers are not results) or ``full`` (the report's
settings). Every run writes its configuration next to its outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # anndl/core/config.py -> the repository
DATA_ROOT = REPO_ROOT / "data"
OUTPUTS = REPO_ROOT / "outputs"
PROFILES = ("smoke", "full")


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be loaded; the message says how to point at local ones."""

# The synthetic default dataset, generated when data/ holds no challenge folder: the real data's
# image counts and sizes (`python -m anndl synth --out data/synthetic`).
SYNTHETIC_DEFAULT = dict(n_train=691, n_test=477, scale=1.0, seed=0, stain_sites=5)


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


def as_dict(config) -> dict:
    """A dataclass config as a JSON-ready dict."""
    return asdict(config)


@dataclass(frozen=True)
class ScratchResNetConfig:
    """The report's from-scratch ResNet (§4.1): two stacks of three residual blocks, 32 filters
    doubling per stack, dropout 0.5 before the softmax."""

    filters: int = 32
    stacks: int = 2
    blocks_per_stack: int = 3
    dropout: float = 0.5


@dataclass(frozen=True)
class ModelSettings:
    """What a model is built from. ``seed`` sets the initial weights, each epoch's shuffling and dropout;
    ``mixed_precision``: a Keras dtype policy such as ``mixed_bfloat16`` (CPU/TPU) or ``mixed_float16`` (GPU);
    ``stain_augment``: ``anndl.data.stain.HEDJitter`` strength (Tellez et al., 2019), active only in training;
    ``augment``: the report's augmentation sets (§6), ``geometric``, ``photometric`` or ``both`` (``True``);
    ``filters``: the scratch ResNet's starting width instead of the profile's (the report: 16 vs 32, §4.1)."""

    model: str = "scratch_resnet"
    profile: str = "smoke"
    tile_size: int = 224
    augment: bool | str = False
    seed: int = 42
    weights: str | None = None
    num_classes: int = 4
    mixed_precision: str | None = None
    stain_augment: str | float | None = None  # HED stain jitter in training: "light", "strong" or a sigma
    filters: int | None = None

    def __post_init__(self):
        check_profile(self.profile)
        object.__setattr__(self, "augment", augment_kind(self.augment) or False)
        if self.filters is not None and (int(self.filters) != self.filters or self.filters < 1):
            raise ValueError(f"filters must be a positive integer, got {self.filters!r}")


AUGMENTATIONS = ("geometric", "photometric", "both")


def augment_kind(augment) -> str | None:
    """``augment`` as one of ``AUGMENTATIONS`` (``True``: both), or None for no augmentation."""
    if augment in (None, False, "none", ""):
        return None
    if augment is True:
        return "both"
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS} (or none), got {augment!r}")
    return augment


@dataclass(frozen=True)
class TrainConfig:
    """One training phase. ``loss``: crossentropy | weighted_crossentropy | focal. The optimizer belongs to
    the model's spec (``anndl.models.registry``); the seed, augmentation and precision to ``ModelSettings``."""

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-5
    loss: str = "crossentropy"
    focal_gamma: float = 2.0
    patience: int = 10
    voting: str = "hard"              # the voting rule whose validation macro F1 selects the checkpoint
    cache: str | None = "memory"      # decoded-tile cache: None, "memory" or a file prefix
    oversample: str | None = None     # a class whose training tiles are seen twice per epoch (report §6: Triple negative)

    def __post_init__(self):
        if self.loss not in ("crossentropy", "weighted_crossentropy", "focal"):
            raise ValueError(f"loss must be crossentropy, weighted_crossentropy or focal, got {self.loss!r}")
        if self.voting not in ("hard", "soft"):
            raise ValueError(f"voting must be hard or soft, got {self.voting!r}")


def scratch_profile(profile: str) -> tuple[ScratchResNetConfig, TrainConfig]:
    """Model and training settings of the scratch ResNet for a profile."""
    if check_profile(profile) == "full":
        return ScratchResNetConfig(), TrainConfig(epochs=100, batch_size=32, learning_rate=1e-5, patience=10)
    return (ScratchResNetConfig(filters=8, stacks=2, blocks_per_stack=1, dropout=0.5),
            TrainConfig(epochs=2, batch_size=16, learning_rate=1e-4, patience=2))


@dataclass(frozen=True)
class TransferConfig:
    """Two-phase transfer learning (report §4.2): a new head on the frozen backbone, then fine-tuning
    of the last stage / transformer block with differential learning rates."""

    head_units: int = 256
    head_dropout: float = 0.2
    phase1: TrainConfig = TrainConfig(epochs=20, batch_size=32, learning_rate=3e-4, patience=5)
    phase2: TrainConfig = TrainConfig(epochs=20, batch_size=32, learning_rate=1e-5, patience=5)
    head_learning_rate: float = 3e-5   # phase 2: the head's rate; the backbone uses phase2.learning_rate
    weight_decay: float = 1e-4         # phase 2 (the report's L2 1e-4, as decoupled AdamW decay)


def transfer_profile(profile: str) -> TransferConfig:
    """Transfer-learning settings for a profile (the smoke profile: one short epoch per phase)."""
    if check_profile(profile) == "full":
        return TransferConfig()
    quick = dict(epochs=1, batch_size=16, patience=1)
    return TransferConfig(phase1=TrainConfig(learning_rate=3e-4, **quick),
                          phase2=TrainConfig(learning_rate=1e-5, **quick))


def config_record(**parts) -> dict:
    """A JSON-ready record of dataclass configs and plain values."""
    return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in parts.items()}
