"""The model families, one :class:`ModelSpec` each, in the order the report and the tables show them: the CLI's
choices, ``run --model all``, the report's row order and the tests' parameters (no Keras import: the CLI reads it
before TensorFlow starts). Networks are built by ``anndl.models.registry``, heads fitted by ``anndl.engine.heads``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One model family. ``consumes``: 'tiles' (a network, built by the registry and trained by ``run --model all``)
    or 'embeddings' (a head on the embedding cache of a given encoder, ``--encoder``)."""

    name: str
    consumes: str = "tiles"


SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("scratch_resnet"),  # the report's ResNet, trained from scratch with Lion
    ModelSpec("convnext"),  # ConvNeXt Large (keras.applications): head, then the last stage fine-tuned
    ModelSpec("vit"),  # ViT (KerasHub): head, then the last transformer block fine-tuned
    ModelSpec("linear_probe", consumes="embeddings"),  # logistic regression
    ModelSpec("attention_mil", consumes="embeddings"),  # gated attention-MIL
)
SPEC = {spec.name: spec for spec in SPECS}


def names(consumes: str | None = None) -> tuple[str, ...]:
    """The registered names, in the report's order; only those consuming ``consumes``."""
    return tuple(s.name for s in SPECS if consumes is None or s.consumes == consumes)


def order(name: str) -> int:
    """A model's place in tables (the registry's order; unknown names last)."""
    return next((i for i, s in enumerate(SPECS) if s.name == name), len(SPECS))
