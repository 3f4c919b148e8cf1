"""Configuration: paths and frozen run profiles (``smoke``: a check, ``cpu``: learns on 2 cores, ``full``: report's)."""

from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # anndl/core/config.py -> the repository
DATA_ROOT = REPO_ROOT / "data"
OUTPUTS = REPO_ROOT / "outputs"
SYNTHETIC_DEFAULT = dict(n_train=691, n_test=477, scale=1.0, seed=0, stain_sites=5)  # the real data's counts and sizes
AUGMENTATIONS = ("geometric", "photometric", "both")


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be loaded; the message says how to point at local ones."""


@dataclass(frozen=True)
class ScratchResNetConfig:
    """The report's scratch ResNet (§4.1): 2 stacks of 3 residual blocks, 32 filters doubling, Keras's BN momentum."""

    filters: int = 32
    stacks: int = 2
    blocks_per_stack: int = 3
    dropout: float = 0.5
    bn_momentum: float = 0.99


@dataclass(frozen=True)
class TrainConfig:
    """One training phase (the optimizer: ``anndl.models.registry``; seed, augmentation, precision: ModelSettings)."""

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-5
    loss: str = "crossentropy"
    focal_gamma: float = 2.0
    patience: int = 10
    voting: str = "hard"              # the voting rule whose validation macro F1 selects the checkpoint
    cache: str | None = "memory"      # decoded-tile cache: None, "memory" or a file prefix
    oversample: str | None = None     # a class whose training tiles are seen twice per epoch (§6: Triple negative)

    def __post_init__(self):
        for key, allowed in (("loss", ("crossentropy", "weighted_crossentropy", "focal")), ("voting", ("hard", "soft"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class TransferConfig:
    """Two-phase transfer learning (report §4.2): a new head on the frozen backbone, then fine-tuning."""

    head_units: int = 256
    head_dropout: float = 0.2
    phase1: TrainConfig = TrainConfig(epochs=20, batch_size=32, learning_rate=3e-4, patience=5)
    phase2: TrainConfig = TrainConfig(epochs=20, batch_size=32, learning_rate=1e-5, patience=5)
    head_learning_rate: float = 3e-5   # phase 2: the head's rate; the backbone uses phase2.learning_rate
    weight_decay: float = 1e-4         # phase 2 (the report's L2 1e-4, as decoupled AdamW decay)


@dataclass(frozen=True)
class Profile:
    """``pretrained``: transfer models start pretrained (else tiny random); ``left_out``: variants not trained here."""

    name: str
    scratch: ScratchResNetConfig
    train: TrainConfig
    transfer: TransferConfig
    pretrained: bool
    left_out: tuple[str, ...] = ()


_QUICK = dict(epochs=1, batch_size=16, patience=1)
_TINY_TRANSFER = TransferConfig(phase1=TrainConfig(learning_rate=3e-4, **_QUICK),  # smoke, cpu: tiny random stand-ins
                                phase2=TrainConfig(learning_rate=1e-5, **_QUICK))
PROFILES = {p.name: p for p in (
    Profile("smoke", ScratchResNetConfig(filters=8, blocks_per_stack=1),
            TrainConfig(epochs=2, batch_size=16, learning_rate=1e-4, patience=2), _TINY_TRANSFER, pretrained=False),
    Profile("cpu", ScratchResNetConfig(bn_momentum=0.9),  # Lion 1e-4, BN stats that keep up (docs/measurements.md)
            TrainConfig(epochs=6, batch_size=32, learning_rate=1e-4, patience=2), _TINY_TRANSFER, pretrained=False,
            left_out=("Triple negative ×2, both augmented",)),  # ~600 s: the render stays within 90 minutes
    Profile("full", ScratchResNetConfig(), TrainConfig(), TransferConfig(), pretrained=True),
)}


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {tuple(PROFILES)}, got {profile!r}")
    return profile


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
class ModelSettings:
    """What a model is built from; ``seed``: weights, shuffling, dropout; ``filters``: the scratch ResNet's width."""

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


def config_record(**parts) -> dict:
    """A JSON-ready record of dataclass configs and plain values."""
    return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in parts.items()}
