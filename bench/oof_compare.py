"""Issue 7's measurement: every variant (single model, ensemble, TTA, attention-MIL) out-of-fold on the
same K folds, each with its bootstrap 95% interval and its prediction cost per image.

Trains K-fold runs for each family (reused when the run's record matches, resumed when interrupted), compares them
with ``anndl.engine.compare.compare_variants`` and writes the table to ``OUT/runs/compare_<tag>.csv|md`` and a
copy with its settings to ``bench/results/``. The results table (``report.write_report``) then holds the
out-of-fold rows of every run.

Usage:
  python bench/oof_compare.py      # synthetic default, 3 folds, report settings: 12 epochs, its seed-7 twin 8
  python bench/oof_compare.py --tag sites --family "no early stopping:30" --single  # ResNet vs baselines
  python bench/oof_compare.py --bach ../shared/data/he_samples/bach_roi --tag bach --epochs 40 \
      --family "seed 42" "seed 7"
Families (``--family NAME[:EPOCHS]``) are the package's variants (``anndl.engine.compare.VARIANTS``, e.g. ``"seed 42"``,
``"seed 7"``, ``"HED augmentation (light)"``, ``"no early stopping"``, ``ViT``); pretrained ones need weights this
machine cannot download (``--weights``). The report's experiments are ``python -m anndl compare`` (named
comparisons); this script adds what ``compare_variants`` scores on top: TTA, the runs' ensemble, attention-MIL.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anndl.engine import experiment  # noqa: E402
from common import bach_challenge  # noqa: E402
from anndl.engine.compare import VARIANTS, compare_variants, kfold_run  # noqa: E402
from anndl.core.config import DATA_ROOT, OUTPUTS, SYNTHETIC_DEFAULT  # noqa: E402
from anndl.data import resolve_data_dir  # noqa: E402
from anndl.core.env import commit, portable  # noqa: E402
from anndl.notebook.report import markdown_table, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: data/ (else the synthetic default)")
    parser.add_argument("--out", type=Path, default=OUTPUTS / "bench",
                        help="work folder (clean/, tiles/, runs/); never outputs/runs, which the notebooks report")
    parser.add_argument("--bach", type=Path, default=None,
                        help="the BACH ROI samples folder: build a two-class challenge folder from it and use that")
    parser.add_argument("--tag", default="synthetic")
    parser.add_argument("--family", nargs="+", default=["seed 42", "seed 7:8"],
                        help=f"NAME[:EPOCHS] with NAME one of {list(VARIANTS)}")
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
            bach_challenge(args.bach, args.data)
    data = resolve_data_dir(args.data or DATA_ROOT, SYNTHETIC_DEFAULT)
    prep = experiment.prepare(data, work, seed=args.seed)
    runs, timings = {}, {}
    for spec in args.family:
        family, _, epochs = spec.partition(":")
        epochs = int(epochs or args.epochs)
        if family not in VARIANTS:
            parser.error(f"unknown family {family!r}; choose from {list(VARIANTS)}")
        variant = VARIANTS[family]
        start = time.perf_counter()  # reused when the run's record matches; resumed when it was interrupted
        runs[family] = kfold_run(prep, work, variant, profile=args.profile, folds=args.folds, epochs=epochs,
                                 seed=args.seed, mixed_precision=args.mixed_precision,
                                 weights=args.weights if variant.model != "scratch_resnet" else None)
        timings[family] = round(time.perf_counter() - start, 1)
    table, details = compare_variants(prep, runs, seed=args.seed, **(
        dict(tta=False, ensembles=False, with_mil=False) if args.single else {}))
    predictions = pd.DataFrame({"sample_index": details["images"], "y_true": details["y_true"],
                                **details["predictions"]})  # per-image out-of-fold predictions, for pairwise tests
    settings = {"code": code, "data": portable(prep.data_note), "profile": args.profile, "folds": args.folds,
                "epochs_cap": {spec.partition(":")[0]: int(spec.partition(":")[2] or args.epochs) for spec in args.family},
                "mixed_precision": args.mixed_precision, "seed": args.seed, "families": args.family,
                "variants": {f: VARIANTS[f].training() for f in runs},
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
