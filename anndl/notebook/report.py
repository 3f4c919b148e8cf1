"""The report's Table 1 from runs: one ranking per data and profile, its Kaggle test score a labelled reference."""

import json
from pathlib import Path

import pandas as pd

from anndl.core import artifacts
from anndl.core.env import data_label
from anndl.core.labels import LABELS
from anndl.engine.runs import STAGES, open_run
from anndl.evaluate.metrics import flag
from anndl.models import specs
from anndl.notebook import interpret
from anndl.notebook.interpret import REPORT_TEST_F1  # report Table 1 (real test set)

REFERENCE = "report test F1 (real data)"


def collect(runs_dir: Path | str) -> pd.DataFrame:
    """A row per (run, voting rule) of finished runs below ``runs_dir``; unverified or non-finite: a line says why."""
    runs_dir = Path(runs_dir)
    rows = []
    for folder in sorted({p.parent for name in (artifacts.RECORD, "metrics.json") for p in runs_dir.rglob(name)}):
        if any(part.startswith("fold_") or part == artifacts.STAGING for part in folder.relative_to(runs_dir).parts):
            continue  # a K-fold run reports its out-of-fold score once, at its top
        try:
            run = open_run(folder)
        except artifacts.ArtifactError as e:
            try:  # another stage's artifact (tiles, embeddings, a comparison) is not a run
                other = (folder / artifacts.RECORD).is_file() and artifacts.read_json(
                    folder / artifacts.RECORD).get("stage") not in STAGES
            except (artifacts.ArtifactError, AttributeError):
                other = False  # an unreadable record: say so rather than skip it
            if not other:
                print(f"not ranked: {e}")
            continue
        m = run.metrics
        if refused := _not_finite(folder, m):
            print(f"not ranked: {refused}")
            continue
        for rule, scores in run.scores.items():
            rows.append({
                "run": str(folder.relative_to(runs_dir)), "model": run.model, "profile": m["profile"],
                "weights": m["weights"], "data": m["data"], "data_fingerprint": artifacts.data_fingerprint(m["data"]),
                "data_label": data_label(m["data"]), "voting": rule,
                "evaluated_on": f"out-of-fold ({run.folds} folds)" if run.folds else "validation split",
                "folds": run.folds, "val_macro_f1": scores["macro_f1"],
                "val_ci95": "{:.3f}-{:.3f}".format(*scores["macro_f1_ci95"]), "val_images": scores["images"],
                REFERENCE: REPORT_TEST_F1.get(run.model) if tuple(m.get("classes", LABELS)) == LABELS else None,
                "written": (folder / artifacts.RECORD).stat().st_mtime,
            })
    if not rows:
        raise FileNotFoundError(f"{runs_dir}: no finished run found below this folder")
    return pd.DataFrame(rows)


def _not_finite(run_dir: Path, m: dict) -> str | None:
    """Why a run cannot be ranked (a non-finite score or weight: a diverged training), or None."""
    try:
        json.dumps({k: m.get(k) for k in ("validation", "oof")}, allow_nan=False)
    except ValueError:
        return f"{run_dir / 'metrics.json'}: a score is not finite (training diverged)"
    for model in filter(Path.is_file, [run_dir / "model.keras", *sorted(run_dir.glob("fold_*/model.keras"))]):
        bad, total = artifacts.nonfinite_weights(model)
        if bad:
            return f"{model}: {bad:,} of {total:,} weights are not finite (training diverged)"
    return None


def select(table: pd.DataFrame, data: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """The rows of one data folder (a data note or a fingerprint) and/or one profile."""
    if data is not None:
        table = table[table.data_fingerprint == artifacts.data_fingerprint(data)]
    return table if profile is None else table[table.profile == profile]


def weights_short(note) -> str:
    """A weights note in two or three words (``random weights``, ``trained from scratch``, ``pretrained weights``)."""
    return (interpret.weights_kind(note) or "").lower() or str(note)


def section_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model and voting rule of one section (same data, same profile)."""
    out = []
    for (model, rule), part in rows.groupby(["model", "voting"], sort=False):
        part = part.sort_values("written")
        # the newest single-split run (s) and K-fold run (f), an empty Series where there is none
        s, f = (part[pick].iloc[-1] if pick.any() else pd.Series() for pick in (part.folds.isna(), part.folds.notna()))
        first = s if len(s) else f
        out.append({"model": model, "voting": rule, "weights": weights_short(first.weights),
                    "val_macro_f1": s.get("val_macro_f1"), "val_ci95": s.get("val_ci95"),
                    "val_images": s.get("val_images") and int(s.val_images), "oof_macro_f1": f.get("val_macro_f1"),
                    "oof_ci95": f.get("val_ci95"), "folds": f.get("folds") and int(f.folds),
                    REFERENCE: first[REFERENCE],
                    "runs": ", ".join(sorted({r.run for r in (s, f) if len(r)}))})
    out.sort(key=lambda row: (specs.order(row["model"]), row["model"], row["voting"]))
    return pd.DataFrame(out)


def sections(table: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    """``(data label, profile, data fingerprint, section_table)`` per data folder and profile."""
    versions = table.groupby("data_label").data_fingerprint.unique().to_dict()
    out = []
    for (fp, profile), rows in table.groupby(["data_fingerprint", "profile"], sort=True):
        label = rows.data_label.iloc[0]
        if len(versions[label]) > 1:
            label = f"{label} (data version {sorted(versions[label]).index(fp) + 1} of {len(versions[label])})"
        out.append((label, profile, fp, section_table(rows)))
    return out


def markdown(table: pd.DataFrame, level: str = "##") -> str:
    """``table``'s sections as Markdown: heading, banner, table (best in bold if results) and the ranking."""
    def cells(values, intervals, suffixes, bold):
        best = values.max() if bold and values.notna().any() else None
        return ["n/a" if pd.isna(v) else (f"**{v:.3f}**" if v == best else f"{v:.3f}") + f" ({c}{x})"
                for v, c, x in zip(values, intervals, suffixes)]

    parts = []
    for label, profile, _, rows in sections(table):
        results = not interpret.not_results(profile, label)  # smoke or synthetic: no winner, no real-data reference
        folds = pd.to_numeric(rows.folds, errors="coerce").fillna(0)
        shown = pd.DataFrame({
            "model": rows.model, "voting": rows.voting, "weights": rows.weights,
            "validation macro F1 (95%)": cells(rows.val_macro_f1, rows.val_ci95, [""] * len(rows), results),
            **({"out-of-fold macro F1 (95%)": cells(rows.oof_macro_f1, rows.oof_ci95,
                                                    [f", {int(k)} folds" for k in folds], results)}
               if rows.oof_macro_f1.notna().any() else {}),  # no K-fold run here: no column of n/a
            **({REFERENCE: ["n/a" if pd.isna(v) else f"{v:.3f}" for v in rows[REFERENCE]]} if results else {})})
        scored = rows.assign(val_macro_f1=rows.val_macro_f1.fillna(rows.oof_macro_f1),
                             val_ci95=rows.val_ci95.fillna(rows.oof_ci95), profile=profile)
        parts.append(f"{level} Data: {label} · profile: {profile}\n\n*{interpret.banner(profile, label)}*\n\n"
                     f"{markdown_table(shown)}\n\n{interpret.results_table(scored, profile)}")
    return "\n\n".join(parts) if parts else "No run of this data and profile yet."


def write_report(runs_dir: Path | str, out_dir: Path | str | None = None) -> pd.DataFrame:
    """Write ``results.csv`` (every run) and ``results.md`` (the sections, then ``compare_*.csv`` tables)."""
    table = collect(runs_dir)
    out_dir = Path(out_dir or runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_csv(table.drop(columns=["written"]), out_dir / "results.csv")
    note = ("Image-level macro F1 with a bootstrap 95% interval. Runs of different data folders or profiles are "
            "never ranked together: each has its own section. Smoke-profile rows are checks that the code runs, "
            "not results. The last column is the report's published Kaggle test score on the real data (its "
            "Table 1, as quoted in the repository's docs/dataset_facts.md), a reference only.\n\n")
    parts = ["# Results\n\n" + note + markdown(table) + "\n"]
    for path in sorted(Path(runs_dir).glob("compare_*.csv")):
        explained = ("Out-of-fold image macro F1 with its bootstrap 95% interval; `gain` is the difference to the "
                     "first row with a paired-bootstrap interval; `ms_per_image` is prediction time per image "
                     f"(`{path.name}`, details in `{path.with_suffix('.md').name}`).")
        parts.append(f"## Variants on the same folds: {path.stem.removeprefix('compare_')}\n\n{explained}\n\n"
                     + markdown_table(pd.read_csv(path)) + "\n")
    artifacts.write_text(out_dir / "results.md", "\n".join(parts))
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)])


def _score_cells(r: dict, first: bool, delta: str, scored: bool = True) -> dict:
    """A comparison row's first cells, as every comparison table prints them ("—" where there is no score)."""
    return {"variant": r["variant"], "OOF macro F1": f"{r['oof_macro_f1']:.3f}" if scored else "—",
            "95% interval": f"{r['ci95_low']:.3f}–{r['ci95_high']:.3f}" if scored else "—",
            delta: "—" if first or not scored or r.get("gain_ci95") is None else
            "{:+.3f} ({:+.3f} to {:+.3f})".format(r["gain"], *r["gain_ci95"])}


def voting_markdown(results: dict) -> str:
    """A run's validation scores per voting rule ({rule: {"scores": metrics.image_scores}}) as a Markdown table."""
    return markdown_table(pd.DataFrame([
        {"voting": rule, "macro F1": f"{r['scores']['macro_f1']:.3f}",
         "95% interval": "{:.3f}–{:.3f}".format(*r["scores"]["macro_f1_ci95"]),
         "accuracy": f"{r['scores']['accuracy']:.3f}", "images": r["scores"]["images"]}
        for rule, r in results.items()]))


def scores_markdown(table: pd.DataFrame) -> str:
    """A ``compare.compare_variants`` / ``compare_runs`` table as people read it."""
    out = []
    for i, r in enumerate(table.to_dict("records")):
        verdict = r.get("verdict", "—")
        if i == 0 and "reference" not in str(verdict):  # a table compared without the gate: "—"
            verdict = "reference" + {True: ": learned", False: ": did not learn"}.get(flag(r.get("learned")), "")
        elif interpret.is_baseline_row(r):
            verdict = "baseline"
        out.append(_score_cells(r, i == 0, "Δ vs first row (paired 95%)") | {"verdict": verdict})
    return markdown_table(pd.DataFrame(out))


def comparison_table(result) -> pd.DataFrame:
    """A ``ComparisonResult``'s table for people, with the report's own (real test set) numbers where printed."""
    rows = []
    numbers = result.provenance.get("report_numbers") or {}
    for i, r in enumerate(result.table.to_dict("records")):
        scored = r["gain_ci95"] is not None and r["images"]
        model = scored and not interpret.is_baseline_row(r)
        row = _score_cells(r, i == 0, "Δ vs reference (paired 95%)", scored) | {
            "learned": {None: "—", True: "yes", False: "no — did not learn"}[flag(r.get("learned"))],
            "verdict": r["verdict"], "weights": weights_short(r["weights"]) if model else "—",
            "epochs/fold": r["epochs"] if model else "—",
            "train s (all folds)": f"{r['train_seconds']:.0f}" if model else "—",
            "predict ms/image": f"{r['ms_per_image']:.1f}" if model else "—"}
        if numbers:
            row["report: test F1 (real data)"] = f"{numbers[r['variant']]:.4f}" if r["variant"] in numbers else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_markdown(result, heading: str = "####") -> str:
    """A comparison as a notebook shows it: question, provenance line, table, ``interpret.comparison``."""
    p = result.provenance
    not_run = f" Not run: {', '.join(p['not_run'])}." if p.get("not_run") else ""
    return (f"{heading} {result.name}: {p.get('question') or ', '.join(result.table.variant)}\n\n"
            f"*{result.provenance_line()}.*{not_run}\n\n"
            f"{markdown_table(comparison_table(result))}\n\n{interpret.comparison(result)}")
