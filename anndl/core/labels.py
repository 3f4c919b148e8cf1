"""The four molecular subtypes of the challenge: the one place that owns the label strings.

The strings are exactly those of `train_labels.csv` and of the Kaggle submission; the index order
is the order of the model's softmax outputs.
"""

LABELS: tuple[str, ...] = ("Luminal A", "Luminal B", "HER2(+)", "Triple negative")
NUM_CLASSES = len(LABELS)
LABEL_TO_INDEX: dict[str, int] = {label: i for i, label in enumerate(LABELS)}


def label_index(label: str) -> int:
    """Index of a label string; raises KeyError naming the known labels."""
    try:
        return LABEL_TO_INDEX[label]
    except KeyError:
        raise KeyError(f"unknown label {label!r}; expected one of {list(LABELS)}") from None


def index_label(index: int) -> str:
    """Label string of a class index."""
    return LABELS[int(index)]
