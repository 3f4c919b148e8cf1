"""The challenge's four molecular subtypes, exactly as in `train_labels.csv` and the Kaggle submission, in the order
of the model's softmax outputs: the one place that owns the label strings."""

LABELS: tuple[str, ...] = ("Luminal A", "Luminal B", "HER2(+)", "Triple negative")
NUM_CLASSES = len(LABELS)
