"""The report's Table 1, built from runs (never by hand): one row per run and voting rule.

Scans ``metrics.json`` files under a folder and writes ``results.csv`` and ``results.md``. The report's
published test scores stand in a separate, labelled column for reference: they come from the real
Kaggle test set, not from these runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anndl import artifacts
from anndl.labels import LABELS

REPORT_TEST_F1 = {"scratch_resnet": 0.3436, "convnext": 0.3665, "vit": 0.4071}  # report Table 1 (real test set)


def collect(runs_dir: Path | str) -> pd.DataFrame:
    """One row per (run, voting rule) from every ``metrics.json`` below ``runs_dir``."""
    rows = []
    for path in sorted(Path(runs_dir).rglob("metrics.json")):
        if path.parent.name.startswith("fold_"):
            continue  # a K-fold run reports its out-of-fold score once, at its top
        m = artifacts.read_json(path)  # a broken file: one line naming it
        evaluated = f"out-of-fold ({m['folds']} folds)" if "oof" in m else "validation split"
        for rule, scores in (m["oof"] if "oof" in m else m["validation"]).items():
            test = (m.get("test") or {}).get(rule)
            rows.append({
                "run": str(path.parent.relative_to(runs_dir)), "model": m["model"], "profile": m["profile"],
                "weights": m["weights"], "data": m["data"], "voting": rule, "evaluated_on": evaluated,
                "val_macro_f1": scores["macro_f1"],
                "val_ci95": f"{scores['macro_f1_ci95'][0]:.3f}-{scores['macro_f1_ci95'][1]:.3f}",
                "val_images": scores["images"],
                "test_macro_f1": test["macro_f1"] if test else None,
                "report_test_f1 (real data, for reference)":  # only where the label set is the challenge's
                    REPORT_TEST_F1.get(m["model"]) if tuple(m.get("classes", LABELS)) == LABELS else None,
            })
    if not rows:
        raise FileNotFoundError(f"{runs_dir}: no metrics.json found below this folder")
    return pd.DataFrame(rows)


def write_report(runs_dir: Path | str, out_dir: Path | str | None = None) -> pd.DataFrame:
    """Write ``results.csv`` and ``results.md`` next to the runs (or into ``out_dir``)."""
    table = collect(runs_dir)
    out_dir = Path(out_dir or runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "results.csv", index=False, lineterminator="\n")
    shown = table.drop(columns=["data"]).fillna({"test_macro_f1": "n/a (no test labels)",
                                                 "report_test_f1 (real data, for reference)": "n/a"})
    note = ("Validation scores are image-level macro F1 with a bootstrap 95% interval, on "
            f"{table.data.iloc[0]}. Smoke-profile rows are checks that the code runs, not results. "
            "The last column is the report's published Kaggle test score on the real data.\n\n")
    sections = ["# Results\n\n" + note + markdown_table(shown) + "\n"]
    for path in sorted(Path(runs_dir).glob("compare_*.csv")):  # written by bench/oof_compare.py
        variants = pd.read_csv(path)
        explained = ("Out-of-fold image macro F1 with its bootstrap 95% interval; `gain` is the difference to the "
                     "first row with a paired-bootstrap interval; `ms_per_image` is prediction time per image "
                     f"(`{path.name}`, details in `{path.with_suffix('.md').name}`).")
        sections.append(f"## Variants on the same folds: {path.stem.removeprefix('compare_')}\n\n{explained}\n\n"
                        + markdown_table(variants) + "\n")
    (out_dir / "results.md").write_text("\n".join(sections))
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
