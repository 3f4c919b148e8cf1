"""Model builders: for each network trained on tiles (``anndl.models.specs``), how it is built and trained.

A builder returns the model with its training phases (one for the scratch ResNet; head-only then fine-tuning for
transfer learning), whether it outputs logits, each phase's optimizer and which layers train in it (as KerasHub's
tasks own their parts), so no caller tests ``model.name`` strings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import keras

from anndl.core.config import ModelSettings, TrainConfig, config_record, scratch_profile, transfer_profile
from anndl.core.distribute import precision_policy
from anndl.models import networks
from anndl.models.specs import SPEC, names


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


def _lion(config: TrainConfig):
    return keras.optimizers.Lion(learning_rate=config.learning_rate)


def _adamw(config: TrainConfig):
    return keras.optimizers.AdamW(learning_rate=config.learning_rate)


def differential_optimizer(backbone_rate: float, head_rate: float, weight_decay: float = 0.0):
    """AdamW for the backbone, AdamW at ``head_rate`` for the ``head_*`` variables (regex over
    ``variable.path``; ``keras.optimizers.MultiOptimizer``, Keras >= 3.15)."""
    head = keras.optimizers.AdamW(learning_rate=head_rate, weight_decay=weight_decay)
    backbone = keras.optimizers.AdamW(learning_rate=backbone_rate, weight_decay=weight_decay)
    return keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(backbone, {"head_.*": head}))


def _scratch(s: ModelSettings) -> Built:
    if s.weights:
        raise ValueError("the scratch ResNet trains from random initialisation; --weights does not apply")
    model_config, train_config = scratch_profile(s.profile)
    if s.filters is not None:
        model_config = dataclasses.replace(model_config, filters=int(s.filters))
    model = networks.scratch_resnet(model_config, s.tile_size, augment=s.augment, seed=s.seed,
                                  num_classes=s.num_classes, stain_augment=s.stain_augment)
    record = {"model_config": config_record(c=model_config)["c"],
              "weights": "random initialisation (trained from scratch)", "from_logits": False}
    return Built(model, (Phase(train_config, None, _lion),), record, s)


def _transfer(set_phase2: Callable[[keras.Model], list[str]]):
    def build(s: ModelSettings) -> Built:
        if s.filters is not None:
            raise ValueError(f"filters sets the scratch ResNet's width; {s.model} is a pretrained architecture")
        transfer = transfer_profile(s.profile)
        model, note = networks.transfer_model(s.model, s.profile, s.tile_size, transfer.head_units,
                                            transfer.head_dropout, weights=s.weights, augment=s.augment,
                                            seed=s.seed, num_classes=s.num_classes, stain_augment=s.stain_augment)

        def differential(config: TrainConfig):  # backbone at the phase's rate, head at the head rate
            return differential_optimizer(config.learning_rate, transfer.head_learning_rate, transfer.weight_decay)

        phases = (Phase(transfer.phase1, networks.freeze_backbone, _adamw), Phase(transfer.phase2, set_phase2, differential))
        return Built(model, phases, {"model_config": config_record(c=transfer)["c"], "weights": note,
                                     "from_logits": True}, s)
    return build


def _transfer_phases(profile: str) -> tuple[TrainConfig, ...]:
    transfer = transfer_profile(profile)
    return transfer.phase1, transfer.phase2


PHASES: dict[str, Callable[[str], tuple[TrainConfig, ...]]] = {  # each network's phase settings, by profile
    "scratch_resnet": lambda profile: (scratch_profile(profile)[1],),
    "convnext": _transfer_phases, "vit": _transfer_phases, "encoder": _transfer_phases,
}


def profile_phases(model: str, profile: str) -> tuple[TrainConfig, ...]:
    """The settings of ``model``'s training phases in ``profile`` (what its builder gives), without building it."""
    if model not in PHASES:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(PHASES)}")
    return PHASES[model](profile)


BUILDERS: dict[str, Callable[[ModelSettings], Built]] = {
    "scratch_resnet": _scratch,
    "convnext": _transfer(networks.convnext_last_stage),
    "vit": _transfer(networks.vit_last_block),
    "encoder": _transfer(networks.encoder_last_fifth),
}
if set(BUILDERS) != set(names(consumes="tiles")) or set(PHASES) != set(BUILDERS):  # pragma: no cover - a spec without a builder, or the reverse
    raise ImportError(f"anndl.models.specs and the builders differ: {sorted(set(BUILDERS) ^ set(names('tiles')))}")


def build_model(settings: ModelSettings) -> Built:
    """Build the model ``settings`` name: seeded (the same initial weights wherever it is built), under the
    settings' dtype policy."""
    if settings.model not in BUILDERS:
        heads = " (a head on cached embeddings: anndl.engine.runs.fit)" if settings.model in SPEC else ""
        raise ValueError(f"unknown model {settings.model!r}{heads}; choose from {sorted(BUILDERS)}")
    keras.utils.set_random_seed(settings.seed)
    with precision_policy(settings.mixed_precision):
        return BUILDERS[settings.model](settings)
