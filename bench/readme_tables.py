"""The "report's experiments" tables of docs/measurements.md, printed from the comparisons `make notebooks` recorded
in outputs/.

    python bench/readme_tables.py [outputs]     # after `make notebooks`; paste the output into docs/measurements.md

Each table is read from its comparison's record (``anndl.engine.compare.read_comparison_result``) and formatted as
the notebooks show it (``anndl.notebook.report.comparison_table``); the lines before the tables state the
provenance the records hold (profile, folds, epochs cap, commit, images), so no number is typed by hand.
"""

import sys
from pathlib import Path

from anndl.engine import compare
from anndl.notebook import report

NAMES = ("table1", "losses", "augmentation", "width", "voting", "fine_tuning_convnext", "fine_tuning_vit")


def main(outputs: Path) -> None:
    results = {}
    for name in NAMES:
        try:
            results[name] = compare.read_comparison_result(outputs / "compare" / name)
        except Exception as e:  # noqa: BLE001 (a missing or unfinished comparison: say which, go on)
            print(f"<!-- {name}: not recorded ({type(e).__name__}: {e}) -->\n")
    if not results:
        raise SystemExit(f"{outputs}: no recorded comparison; run `make notebooks` first")
    provenance = {(r.provenance["profile"], r.provenance["folds"], r.provenance["epochs"], r.provenance["seed"],
                   r.provenance["precision"], r.provenance["commit"]) for r in results.values()}
    images = {int(r.table.images.iloc[0]) for r in results.values()}
    print("<!-- provenance (profile, folds, epochs cap, seed, precision, commit):", sorted(provenance, key=str),
          f"images scored per variant: {sorted(images)} -->\n")
    for name, result in results.items():
        print(f"**{name}** ({compare.COMPARISONS[name].question})\n")
        print(report.markdown_table(report.comparison_table(result)) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs"))
