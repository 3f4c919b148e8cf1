"""Issue 7's measurement: every variant (single model, ensemble, TTA, attention-MIL) out-of-fold on the
same K folds, each with its bootstrap 95% interval and its prediction cost per image.

Trains K-fold runs for each family (reused when the run's record matches, resumed when interrupted), compares them
with ``anndl.compare.compare_variants`` and writes the table to ``OUT/runs/compare_<tag>.csv|md`` and a
copy with its settings to ``bench/results/``. The results table (``anndl report``) then holds the
out-of-fold rows of every run.

Usage:
  python bench/oof_compare.py      # synthetic default, 3 folds, report settings: 12 epochs, its seed-7 twin 8
  python bench/oof_compare.py --tag sites --family scratch_resnet_no_early_stop:30 --single  # ResNet vs baselines
  python bench/oof_compare.py --bach ../shared/data/he_samples/bach_roi --tag bach --epochs 40 \
      --family scratch_resnet scratch_resnet_seed7
Families (``--family NAME[:EPOCHS]``): ``scratch_resnet`` (the report's settings), ``scratch_resnet_seed7``
(the same, another seed: a seed ensemble) and ``scratch_resnet_aug`` (flip/rotation augmentation); pretrained
families need weights this machine cannot download (``--family convnext`` with ``--weights``).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anndl import experiment, planting  # noqa: E402
from anndl.compare import compare_variants  # noqa: E402
from anndl.config import DATA_ROOT, OUTPUTS, SYNTHETIC_DEFAULT  # noqa: E402
from anndl.data import resolve_data_dir  # noqa: E402
from anndl.env import commit, portable  # noqa: E402
from anndl.report import markdown_table, write_report  # noqa: E402

FAMILIES = {"scratch_resnet": ("scratch_resnet", {}),
            "scratch_resnet_seed7": ("scratch_resnet", {"seed": 7}),          # the same model, another seed
            "scratch_resnet_aug": ("scratch_resnet", {"augment": True}),      # flips/rotations (slow on CPU)
            "scratch_resnet_hed": ("scratch_resnet", {"stain_augment": "light"}),   # HED stain jitter
            "scratch_resnet_hed_strong": ("scratch_resnet", {"stain_augment": "strong"}),
            # the report's settings without early stopping: on the stain-site default the first epochs vote one
            # class for every image, and patience 10 could stop a run before it starts to learn
            "scratch_resnet_no_early_stop": ("scratch_resnet", {"patience": 1000})}
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: data/ (else the synthetic default)")
    parser.add_argument("--out", type=Path, default=OUTPUTS / "bench",
                        help="work folder (clean/, tiles/, runs/); never outputs/runs, which the notebooks report")
    parser.add_argument("--bach", type=Path, default=None,
                        help="the BACH ROI samples folder: build a two-class challenge folder from it and use that")
    parser.add_argument("--tag", default="synthetic")
    parser.add_argument("--family", nargs="+", default=["scratch_resnet", "scratch_resnet_seed7:8"],
                        help=f"NAME[:EPOCHS] with NAME one of {list(FAMILIES)}, convnext, vit")
    parser.add_argument("--profile", default="full", choices=["smoke", "full"])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12, help="cap on the profile's epochs (CPU budget)")
    parser.add_argument("--mixed-precision", default="mixed_bfloat16")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--single", action="store_true",
                        help="score each family alone against the baselines: no TTA, ensemble or attention-MIL rows")
    args = parser.parse_args()
    code = commit()  # the code that trains, taken before anything runs

    work = args.out / args.tag if args.tag != "synthetic" else args.out
    if args.bach:
        args.data = work / "data"
        if not args.data.is_dir():
            planting.bach_challenge(args.bach, args.data)
    data = resolve_data_dir(args.data or DATA_ROOT, SYNTHETIC_DEFAULT)
    prep = experiment.prepare(data, work, seed=args.seed)
    runs, timings = {}, {}
    for spec in args.family:
        family, _, epochs = spec.partition(":")
        epochs = int(epochs or args.epochs)
        model, overrides = FAMILIES.get(family, (family, {}))
        run_dir = work / "runs" / f"{family}_{args.profile}_k{args.folds}_e{epochs}"
        start = time.perf_counter()  # reused when the run's record matches; resumed when it was interrupted
        experiment.train_folds(prep, run_dir, model, args.profile, args.folds, seed=args.seed, epochs=epochs,
                               mixed_precision=args.mixed_precision, overrides=overrides,
                               **({"weights": args.weights} if args.weights and model != "scratch_resnet" else {}))
        timings[family] = round(time.perf_counter() - start, 1)
        runs[family] = run_dir
    table, details = compare_variants(prep, runs, seed=args.seed, **(
        dict(tta=False, ensembles=False, with_mil=False) if args.single else {}))
    predictions = pd.DataFrame({"sample_index": details["images"], "y_true": details["y_true"],
                                **details["predictions"]})  # per-image out-of-fold predictions, for pairwise tests
    settings = {"code": code, "data": portable(prep.data_note), "profile": args.profile, "folds": args.folds,
                "epochs_cap": {spec.partition(":")[0]: int(spec.partition(":")[2] or args.epochs) for spec in args.family},
                "mixed_precision": args.mixed_precision, "seed": args.seed, "families": args.family,
                "overrides": {f: FAMILIES.get(f, (f, {}))[1] for f in runs},
                "runs": {k: portable(v) for k, v in runs.items()}, "train_seconds (0: reused)": timings,
                "ms_per_image": "prediction time on this machine per out-of-fold image (2-core CPU unless noted)"}
    heading = (f"# Out-of-fold comparison ({args.tag})\n\n{json.dumps(settings, indent=1)}\n\n")
    for folder in (work / "runs", RESULTS):
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / f"compare_{args.tag}.csv", index=False, lineterminator="\n")
        predictions.to_csv(folder / f"compare_{args.tag}_predictions.csv", index=False, lineterminator="\n")
        (folder / f"compare_{args.tag}.md").write_text(heading + markdown_table(table) + "\n")
    write_report(work / "runs")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
