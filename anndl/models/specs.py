"""The model families, one :class:`ModelSpec` each, in report order: CLI choices, table rows, tests (no Keras here)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """One model family; ``consumes``: 'tiles' (a network, in ``run --model all``) or 'embeddings' (a head, encoder)."""

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
