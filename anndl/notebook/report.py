"""The report's Table 1, built from runs (never by hand), one ranking per data folder and profile.

Scans ``metrics.json`` files under a folder (``collect``: one long row per run and voting rule, with the
run's data fingerprint), then groups them into **sections**: runs made from different data (another
fingerprint) or under another profile are never ranked together. A section has one row per model and voting
rule: the validation macro F1 with its interval (from the model's single-split run), the out-of-fold F1 where a
K-fold run exists, and the report's published Kaggle test score in one labelled reference column (real test
set, not these runs); the best validation score is in bold. ``select`` keeps the sections of one rendering's
data and profile (what the notebooks show). Displayed tables carry no hashes and no machine paths.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from anndl.evaluate.metrics import flag
from anndl.core import artifacts
from anndl.core.env import data_label
from anndl.notebook import interpret
from anndl.notebook.interpret import REPORT_TEST_F1  # report Table 1 (real test set)
from anndl.core.labels import LABELS
from anndl.models import specs

REFERENCE = "report test F1 (real data)"


def data_fingerprint(note: str) -> str:
    """The manifest fingerprint inside a data note (``… [fingerprint a1b2c3]``); the note itself without one."""
    found = re.search(r"\[fingerprint ([0-9a-f]+)\]", str(note))
    return found.group(1) if found else str(note)


def collect(runs_dir: Path | str) -> pd.DataFrame:
    """One row per (run, voting rule) from every finished run below ``runs_dir`` (any family, its record verified:
    ``runs.open_run``), with the run's data fingerprint (``data_fingerprint``), a display label for its data and
    its record's time. A folder whose record does not verify (a kill before the end, an edited file) is not
    ranked, and a line says why."""
    from anndl.engine.runs import open_run

    runs_dir = Path(runs_dir)
    rows = []
    candidates = {p.parent for name in (artifacts.RECORD, "metrics.json") for p in runs_dir.rglob(name)}
    for folder in sorted(candidates):
        if any(part.startswith("fold_") or part == artifacts.STAGING for part in folder.relative_to(runs_dir).parts):
            continue  # a K-fold run reports its out-of-fold score once, at its top
        try:
            run = open_run(folder)
        except artifacts.ArtifactError as e:
            if (folder / artifacts.RECORD).is_file() and not _is_run_record(folder):
                continue  # another stage's artifact (tiles, embeddings, a comparison): not a run
            print(f"not ranked: {e}")
            continue
        m = run.metrics
        refused = _not_finite(folder, m)
        if refused:
            print(f"not ranked: {refused}")
            continue
        evaluated = f"out-of-fold ({run.folds} folds)" if run.folds else "validation split"
        for rule, scores in run.scores.items():
            test = (m.get("test") or {}).get(rule)
            rows.append({
                "run": str(folder.relative_to(runs_dir)), "model": run.model, "profile": m["profile"],
                "weights": m["weights"], "data": m["data"], "data_fingerprint": data_fingerprint(m["data"]),
                "data_label": data_label(m["data"]), "voting": rule, "evaluated_on": evaluated,
                "folds": run.folds, "val_macro_f1": scores["macro_f1"],
                "val_ci95": f"{scores['macro_f1_ci95'][0]:.3f}-{scores['macro_f1_ci95'][1]:.3f}",
                "val_images": scores["images"],
                "test_macro_f1": test["macro_f1"] if test else None,
                REFERENCE:  # only where the label set is the challenge's
                    REPORT_TEST_F1.get(run.model) if tuple(m.get("classes", LABELS)) == LABELS else None,
                "written": (folder / artifacts.RECORD).stat().st_mtime,
            })
    if not rows:
        raise FileNotFoundError(f"{runs_dir}: no finished run found below this folder")
    return pd.DataFrame(rows)


def _is_run_record(folder: Path) -> bool:
    """Whether ``folder``'s record (readable or not) names a run stage."""
    from anndl.engine.runs import STAGES

    try:
        return artifacts.read_json(folder / artifacts.RECORD).get("stage") in STAGES
    except (artifacts.ArtifactError, AttributeError):
        return True  # an unreadable record: say so rather than skip it


def _not_finite(run_dir: Path, m: dict) -> str | None:
    """Why a run cannot be ranked because of a non-finite number (a score, or a weight of its model or fold
    models: a diverged training), or None."""
    import math

    def numbers(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from numbers(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from numbers(v)
        elif isinstance(value, float):
            yield value

    scores = {k: m.get(k) for k in ("validation", "oof")}
    if any(not math.isfinite(v) for v in numbers(scores)):
        return f"{run_dir / 'metrics.json'}: a score is not finite (training diverged)"
    for model in [run_dir / "model.keras", *sorted(run_dir.glob("fold_*/model.keras"))]:
        if model.is_file():
            bad, total = artifacts.nonfinite_weights(model)
            if bad:
                return f"{model}: {bad:,} of {total:,} weights are not finite (training diverged)"
    return None


def select(table: pd.DataFrame, data: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """The rows of one data folder (a data note or a fingerprint) and/or one profile."""
    keep = pd.Series(True, index=table.index)
    if data is not None:
        keep &= table.data_fingerprint == data_fingerprint(data)
    if profile is not None:
        keep &= table.profile == profile
    return table[keep]


def weights_short(note) -> str:
    """A weights note in two or three words (``random weights``, ``trained from scratch``, ``pretrained weights``)."""
    from anndl.notebook.interpret import weights_kind

    return (weights_kind(note) or "").lower() or str(note)


def section_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model and voting rule of one section (same data, same profile): the newest single-split
    run's validation F1 and interval, the newest K-fold run's out-of-fold F1, the report's test F1."""
    out = []
    for (model, rule), part in rows.groupby(["model", "voting"], sort=False):
        single = part[part.folds.isna()].sort_values("written")
        folded = part[part.folds.notna()].sort_values("written")
        s = single.iloc[-1] if len(single) else None
        f = folded.iloc[-1] if len(folded) else None
        first = s if s is not None else f
        out.append({"model": model, "voting": rule, "weights": weights_short(first.weights),
                    "val_macro_f1": s.val_macro_f1 if s is not None else None,
                    "val_ci95": s.val_ci95 if s is not None else None,
                    "val_images": int(s.val_images) if s is not None else None,
                    "oof_macro_f1": f.val_macro_f1 if f is not None else None,
                    "oof_ci95": f.val_ci95 if f is not None else None,
                    "folds": int(f.folds) if f is not None else None,
                    REFERENCE: first[REFERENCE],
                    "runs": ", ".join(sorted({*([s.run] if s is not None else []), *([f.run] if f is not None else [])}))})
    table = pd.DataFrame(out)
    table["_order"] = table.model.map(specs.order)
    return table.sort_values(["_order", "model", "voting"]).drop(columns="_order").reset_index(drop=True)


def sections(table: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    """``(data label, profile, data fingerprint, one-row-per-model table)`` per data folder and profile; the
    label says "another copy" when two folders of the same name differ."""
    versions = table.groupby("data_label").data_fingerprint.unique().to_dict()
    out = []
    for (fp, profile), rows in table.groupby(["data_fingerprint", "profile"], sort=True):
        label = rows.data_label.iloc[0]
        if len(versions[label]) > 1:  # same folder name and kind, different content
            label = f"{label} (data version {sorted(versions[label]).index(fp) + 1} of {len(versions[label])})"
        out.append((label, profile, fp, section_table(rows)))
    return out


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def section_markdown(label: str, profile: str, rows: pd.DataFrame, level: str = "##") -> str:
    """A section as Markdown: heading (data, profile), the table with the best validation F1 in bold, and
    the generated interpretation."""
    from anndl.notebook.interpret import banner, not_results, results_table

    checks_only = not_results(profile, label)  # smoke or synthetic: no winner in bold, no real-data reference
    best = rows.val_macro_f1.max() if rows.val_macro_f1.notna().any() and not checks_only else None
    best_oof = rows.oof_macro_f1.max() if rows.oof_macro_f1.notna().any() and not checks_only else None
    shown = pd.DataFrame({
        "model": rows.model, "voting": rows.voting, "weights": rows.weights,
        "validation macro F1 (95%)": [
            "n/a" if v is None or v != v else (f"**{v:.3f}**" if v == best else f"{v:.3f}") + f" ({c})"
            for v, c in zip(rows.val_macro_f1, rows.val_ci95)],
        "out-of-fold macro F1 (95%)": [
            "n/a" if v is None or v != v else (f"**{v:.3f}**" if v == best_oof else f"{v:.3f}") + f" ({c}, {int(k)} folds)"
            for v, c, k in zip(rows.oof_macro_f1, rows.oof_ci95, pd.to_numeric(rows.folds, errors="coerce").fillna(0))],
        REFERENCE: [_fmt(v) for v in rows[REFERENCE]],
    })
    if checks_only:
        shown = shown.drop(columns=REFERENCE)
    heading = f"{level} Data: {label} · profile: {profile}"
    scored = rows.assign(val_macro_f1=rows.val_macro_f1.fillna(rows.oof_macro_f1),
                         val_ci95=rows.val_ci95.fillna(rows.oof_ci95), profile=profile)
    return "\n\n".join([heading, f"*{banner(profile, label)}*", markdown_table(shown), results_table(scored, profile)])


def markdown(table: pd.DataFrame, level: str = "##") -> str:
    """Every section of ``table`` (``collect`` or ``select`` output) as Markdown, one ranking per section."""
    parts = [section_markdown(label, profile, rows, level) for label, profile, _, rows in sections(table)]
    return "\n\n".join(parts) if parts else "No run of this data and profile yet."


def write_report(runs_dir: Path | str, out_dir: Path | str | None = None) -> pd.DataFrame:
    """Write ``results.csv`` (every run, long format, with data and fingerprint) and ``results.md`` (one
    section per data folder and profile) next to the runs (or into ``out_dir``)."""
    table = collect(runs_dir)
    out_dir = Path(out_dir or runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_csv(table.drop(columns=["written"]), out_dir / "results.csv")  # whole or not at all
    note = ("Image-level macro F1 with a bootstrap 95% interval. Runs of different data folders or profiles are "
            "never ranked together: each has its own section. Smoke-profile rows are checks that the code runs, "
            "not results. The last column is the report's published Kaggle test score on the real data (its "
            "Table 1, as quoted in the repository's docs/dataset_facts.md), a reference only.\n\n")
    sections_md = ["# Results\n\n" + note + markdown(table) + "\n"]
    for path in sorted(Path(runs_dir).glob("compare_*.csv")):  # written by bench/oof_compare.py
        variants = pd.read_csv(path)
        explained = ("Out-of-fold image macro F1 with its bootstrap 95% interval; `gain` is the difference to the "
                     "first row with a paired-bootstrap interval; `ms_per_image` is prediction time per image "
                     f"(`{path.name}`, details in `{path.with_suffix('.md').name}`).")
        sections_md.append(f"## Variants on the same folds: {path.stem.removeprefix('compare_')}\n\n{explained}\n\n"
                           + markdown_table(variants) + "\n")
    artifacts.write_text(out_dir / "results.md", "\n".join(sections_md))
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def read_comparison(md_path: Path | str) -> tuple[pd.DataFrame, dict]:
    """A comparison a benchmark wrote (``bench/stain_compare.py``: ``NAME.md`` with its settings as a JSON block,
    ``NAME.csv`` beside it) as ``(table, settings)``; ``gain_ci95`` as a list again."""
    import json

    md_path = Path(md_path)
    text = md_path.read_text(encoding="utf-8")
    if "```json\n" not in text:
        raise artifacts.ArtifactError(f"{md_path}: no settings block (```json) above the table")
    settings = json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
    table = artifacts.read_csv(md_path.with_suffix(".csv"))
    table["gain_ci95"] = table.gain_ci95.map(json.loads)
    return table, settings


def comparison_table(result) -> pd.DataFrame:
    """The table as people read it: scores and intervals as text, whether each row learned (``learned``: yes / no —
    did not learn; the baselines' rows and tables scored without the gate: —), the verdict as computed, cost,
    weights, and the report's own number in a labelled column where it printed one (its real test set, not these
    runs). ``result``: a :class:`anndl.engine.compare.ComparisonResult`."""
    rows = []
    numbers = result.provenance.get("report_numbers") or {}
    for i, r in enumerate(result.table.to_dict("records")):
        scored = r["gain_ci95"] is not None and r["images"]
        model = scored and not interpret.is_baseline_row(r)
        learned = flag(r.get("learned"))
        row = {"variant": r["variant"],
               "OOF macro F1": f"{r['oof_macro_f1']:.3f}" if scored else "—",
               "95% interval": f"{r['ci95_low']:.3f}–{r['ci95_high']:.3f}" if scored else "—",
               "Δ vs reference (paired 95%)": "—" if not scored or i == 0 else
               f"{r['gain']:+.3f} ({r['gain_ci95'][0]:+.3f} to {r['gain_ci95'][1]:+.3f})",
               "learned": "—" if learned is None else "yes" if learned else "no — did not learn",
               "verdict": r["verdict"], "weights": weights_short(r["weights"]) if model else "—",
               "epochs/fold": r["epochs"] if model else "—",
               "train s (all folds)": f"{r['train_seconds']:.0f}" if model else "—",
               "predict ms/image": f"{r['ms_per_image']:.1f}" if model else "—"}
        if numbers:
            row["report: test F1 (real data)"] = f"{numbers[r['variant']]:.4f}" if r["variant"] in numbers else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_markdown(result, heading: str = "####") -> str:
    """A comparison as a notebook shows it: its question, the provenance line, the table, and the generated
    "What this shows" (``interpret.comparison``)."""
    p = result.provenance
    title = p.get("question") or ", ".join(result.table.variant)
    not_run = f" Not run: {', '.join(p['not_run'])}." if p.get("not_run") else ""
    return (f"{heading} {result.name}: {title}\n\n*{result.provenance_line()}.*{not_run}\n\n"
            f"{markdown_table(comparison_table(result))}\n\n{interpret.comparison(result)}")
