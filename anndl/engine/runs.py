"""One lifecycle for every model family: ``fit``, ``open_run``, ``predict``; callers hold a ``Run``, not its family."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from anndl.core import artifacts
from anndl.engine import blend as blending, heads
from anndl.models import specs

STAGES = ("train", "kfold", "head", "blend")


@dataclass(frozen=True)
class Run:
    """A finished run of any family, its record verified: its folder, stage, record and ``metrics.json``."""

    folder: Path
    stage: str
    record: dict
    metrics: dict

    @property
    def model(self) -> str:
        return self.metrics["model"]

    @property
    def folds(self) -> int | None:
        """The number of folds of an out-of-fold run; None for a run scored on its validation split."""
        return self.metrics.get("folds") if "oof" in self.metrics else None

    @property
    def scores(self) -> dict:
        """Image-level scores per voting rule: out of fold where the run has folds, else on its validation split."""
        return self.metrics["oof" if self.folds else "validation"]

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.scores)

    def predictions(self) -> pd.DataFrame:
        """One row per scored image (``sample_index``, ``label``, ``pred_<rule>`` …): out of fold or validation."""
        return artifacts.read_csv(self.folder / ("oof_predictions.csv" if self.folds else "val_predictions.csv"))

    def folds_file(self) -> Path:
        """The fold assignment of an out-of-fold run (runs compared image by image must share it)."""
        if not self.folds:
            raise ValueError(f"{self.folder}: a single-split run has no folds; train it with --folds")
        return self.folder / "folds.csv"


def open_run(folder: Path | str) -> Run:
    """The finished run in ``folder`` (any family), its files verified; ``ArtifactError`` naming it otherwise."""
    folder = Path(folder)
    record = artifacts.load(folder)
    if record["stage"] not in STAGES:
        raise artifacts.ArtifactError(f"{folder}: a {record['stage']} artifact, not a run")
    return Run(folder, record["stage"], record, artifacts.read_json(folder / "metrics.json"))


def fit(prep, run_dir: Path | str, model: str = "scratch_resnet", *, folds: int | None = None, embeddings=None,
        seed: int = 42, redo: bool = False, **train) -> Run:
    """Train, resume or reuse ``model`` in ``run_dir``; heads read ``embeddings``, networks take train_run's args."""
    if model not in specs.SPEC:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(specs.names())}")
    if specs.SPEC[model].consumes == "embeddings":
        if embeddings is None:
            raise ValueError(f"{model} is a head on cached tile embeddings: pass embeddings= "
                             "(anndl.engine.embed.embed of an encoder)")
        if train:
            raise ValueError(f"{model} is a head on cached embeddings: {', '.join(sorted(train))} apply to "
                             f"networks trained on tiles ({', '.join(specs.names(consumes='tiles'))})")
        heads.train_head(prep, embeddings, run_dir, model, folds=folds, seed=seed, redo=redo)
    else:
        from anndl.engine import experiment

        if embeddings is not None:
            raise ValueError(f"{model} trains on tiles; embeddings= is for the heads "
                             f"({', '.join(specs.names(consumes='embeddings'))})")
        if folds:
            experiment.train_folds(prep, run_dir, model, folds=folds, seed=seed, redo=redo, **train)
        else:
            experiment.train_run(prep, run_dir, model, seed=seed, redo=redo, **train)
    return open_run(run_dir)


def blend(run_dirs, out: Path | str, seed: int = 42, redo: bool = False) -> Run:
    """Blend finished K-fold runs of any family (``anndl.engine.blend``) into the run folder ``out``."""
    blending.blend([open_run(r) for r in run_dirs], out, seed=seed, redo=redo)
    return open_run(out)


def predict(runs, data_dir: Path | str, out: Path | str, rule: str = "hard", tta: bool = False) -> Path:
    """Submission ``out`` (+ JSON note) from a run or several networks (an ensemble); heads: ``rule`` or their first."""
    from anndl.engine import experiment

    runs = [r if isinstance(r, Run) else open_run(r) for r in ([runs] if isinstance(runs, (str, Path, Run)) else runs)]
    if not runs:
        raise ValueError("predict needs at least one run")
    alone = [r for r in runs if r.stage in ("head", "blend")]
    if alone:
        if len(runs) > 1:
            raise ValueError(f"{alone[0].folder}: a {alone[0].stage} run predicts alone; an ensemble takes network "
                             "runs (blend K-fold runs of any family: runs.blend)")
        if tta:
            raise ValueError(f"{alone[0].folder}: test-time augmentation applies to networks that see tiles, "
                             f"not to a {alone[0].stage} run")
        if runs[0].stage == "head":
            return heads.predict(runs[0].folder, data_dir, out, rule)
        members = [open_run(runs[0].folder / m["folder"]) for m in runs[0].metrics["members"]]
        return blending.predict(runs[0], members, [  # networks: mask-weighted tile means; heads: their blend rule
            heads.predict_probabilities(m.folder, data_dir, heads.HEAD_CLASSES[m.model].blend_rule)[:2]
            if m.stage == "head" else experiment.predict_probabilities(m.folder, data_dir) for m in members],
            data_dir, out)
    return experiment.predict_run([r.folder for r in runs], data_dir, out, rule, tta=tta)
