"""Issue 34's measurement: what a K-fold run's numbers are selected on, before and after nested selection.

Trains one scratch-ResNet K-fold run (recorded, reused) and prints, from its files alone: the out-of-fold macro F1
with its interval, and per fold the score its selected epoch reached on the images it was selected on and the
selected model's score on the fold's held-out images. Before nested selection the two are the same images (the
held-out fold), so the selected score is the maximum over noisy epochs on the images it scores; after, a fold
selects on 15% of its own training images and its held-out images are only scored.

Run it on two trees at the same settings (``ANNDL_TREE``: the tree whose ``anndl`` is imported)::

  git worktree add /tmp/before 8bfd0a8
  ANNDL_TREE=/tmp/before python bench/nested_selection.py --data DIR --out /tmp/m_before
  python bench/nested_selection.py --data DIR --out /tmp/m_after
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("ANNDL_TREE") or str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from anndl.engine import experiment  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--profile", default="full")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--precision", default="mixed_bfloat16")
    args = p.parse_args()
    prep = experiment.prepare(args.data, args.out)
    run = args.out / "kfold"
    result = experiment.train_folds(prep, run, "scratch_resnet", args.profile, args.folds, seed=42,
                                    epochs=args.epochs, learning_rate=args.learning_rate,
                                    mixed_precision=args.precision)
    rows = []
    for k in range(args.folds):
        log = pd.read_csv(run / f"fold_{k}" / "log.csv")
        metrics = json.loads((run / f"fold_{k}" / "metrics.json").read_text())
        rows.append({"fold": k, "selected_on": metrics.get("selected_on", "val (the held-out images)"),
                     "selected_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
                     "selection_score": round(float(log.val_image_macro_f1.max()), 4),
                     "held_out_score": metrics["validation"]["hard"]["macro_f1"]})
    table = pd.DataFrame(rows)
    m = result["metrics"]
    print(table.to_string(index=False))
    print(f"out-of-fold macro F1 {m['oof_macro_f1']:.4f} (95% {m['oof_macro_f1_ci'][0]:.4f}-"
          f"{m['oof_macro_f1_ci'][1]:.4f}); mean selection score {table.selection_score.mean():.4f}, mean held-out "
          f"score of the selected models {table.held_out_score.mean():.4f} "
          f"({args.profile} profile, {args.folds} folds, {args.epochs} epochs, learning rate {args.learning_rate:g}, "
          f"{args.precision}; data {prep.data_note.rsplit('[', 1)[-1].rstrip(']')})")


if __name__ == "__main__":
    main()
