"""Model builders: per network, the model, its phases, optimizers, trainable layers and logits flag, all from the
``Profile``, so no caller tests ``model.name`` or profile strings."""

from dataclasses import asdict, dataclass, replace
from typing import Callable

import keras

from anndl.core.config import PROFILES, ModelSettings, Profile, TrainConfig, check_profile
from anndl.core.distribute import precision_policy
from anndl.models import networks
from anndl.models.specs import SPEC


@dataclass(frozen=True)
class Phase:
    """One training phase: its settings, the function that sets what trains (None: everything), its optimizer."""

    config: TrainConfig
    set_trainable: Callable[[keras.Model], list[str]] | None
    optimizer: Callable[[TrainConfig], keras.optimizers.Optimizer]


@dataclass(frozen=True)
class Built:
    """A model ready to train: the model, its phases and the record of how it was built (weights note …)."""

    model: keras.Model
    phases: tuple[Phase, ...]
    record: dict
    settings: ModelSettings


def differential_optimizer(backbone_rate: float, head_rate: float, weight_decay: float = 0.0):
    """AdamW for the backbone, AdamW at ``head_rate`` for ``head_*`` variables (``MultiOptimizer``, Keras >= 3.15)."""
    head = keras.optimizers.AdamW(learning_rate=head_rate, weight_decay=weight_decay)
    backbone = keras.optimizers.AdamW(learning_rate=backbone_rate, weight_decay=weight_decay)
    return keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(backbone, {"head_.*": head}))


def _scratch(s: ModelSettings, profile: Profile) -> tuple[keras.Model, dict]:
    if s.weights:
        raise ValueError("the scratch ResNet trains from random initialisation; --weights does not apply")
    config = profile.scratch if s.filters is None else replace(profile.scratch, filters=int(s.filters))
    model = networks.scratch_resnet(config, s.tile_size, augment=s.augment, seed=s.seed, num_classes=s.num_classes,
                                    stain_augment=s.stain_augment)
    return model, {"model_config": asdict(config), "weights": "random initialisation (trained from scratch)",
                   "from_logits": False}


def _transfer(s: ModelSettings, profile: Profile) -> tuple[keras.Model, dict]:
    if s.filters is not None:
        raise ValueError(f"filters sets the scratch ResNet's width; {s.model} is a pretrained architecture")
    t = profile.transfer
    model, note = networks.transfer_model(s.model, profile.pretrained, s.tile_size, t.head_units, t.head_dropout,
                                          weights=s.weights, augment=s.augment, seed=s.seed,
                                          num_classes=s.num_classes, stain_augment=s.stain_augment)
    return model, {"model_config": asdict(t), "weights": note, "from_logits": True}


PHASE_TWO = {"convnext": networks.convnext_last_stage, "vit": networks.vit_last_block}
BUILDERS = {"scratch_resnet": _scratch} | dict.fromkeys(PHASE_TWO, _transfer)  # one per network spec (test_models)


def _phases(model: str, profile: Profile) -> tuple[Phase, ...]:
    if model not in PHASE_TWO:
        return (Phase(profile.train, None, lambda c: keras.optimizers.Lion(c.learning_rate)),)
    t = profile.transfer
    return (Phase(t.phase1, networks.freeze_backbone, lambda c: keras.optimizers.AdamW(c.learning_rate)),
            Phase(t.phase2, PHASE_TWO[model],
                  lambda c: differential_optimizer(c.learning_rate, t.head_learning_rate, t.weight_decay)))


def profile_phases(model: str, profile: str) -> tuple[TrainConfig, ...]:
    """The settings of ``model``'s training phases in ``profile`` (what its builder gives), without building it."""
    if model not in BUILDERS:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(BUILDERS)}")
    return tuple(phase.config for phase in _phases(model, PROFILES[check_profile(profile)]))


def build_model(settings: ModelSettings) -> Built:
    """Build the model ``settings`` names, seeded (the same initial weights anywhere), under their dtype policy."""
    if settings.model not in BUILDERS:
        heads = " (a head on cached embeddings: anndl.engine.runs.fit)" if settings.model in SPEC else ""
        raise ValueError(f"unknown model {settings.model!r}{heads}; choose from {sorted(BUILDERS)}")
    keras.utils.set_random_seed(settings.seed)
    with precision_policy(settings.mixed_precision):
        profile = PROFILES[settings.profile]
        model, record = BUILDERS[settings.model](settings, profile)
    return Built(model, _phases(settings.model, profile), record, settings)
