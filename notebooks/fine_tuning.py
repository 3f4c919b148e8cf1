"""The body notebooks 05 (ConvNeXt) and 06 (ViT) share, one method per cell: a pretrained backbone fine-tuned in
two phases (a new head on the frozen backbone, then its last stage and the head with differential learning rates),
its voting on the validation images, the out-of-fold fine-tuning comparison and the submission."""

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from anndl.core.env import portable
from anndl.engine import compare, experiment
from anndl.notebook import interpret, report
from anndl.notebook.plots import confusion_matrix, save_fig, show, training_curves

NAMES = {"convnext": "ConvNeXt Large", "vit": "Vision Transformer"}


class FineTuning:
    def __init__(self, ctx, model: str, prefix: str, weights=None, mixed_precision=None):
        """Prepare the data (reused from notebooks 02 and 03) and build ``model``; print its weights, phases and size.
        ``prefix``: the notebook's number, which starts its figures' names."""
        self.ctx, self.model, self.prefix = ctx, model, prefix
        self.weights, self.mixed_precision = weights, mixed_precision
        self.prep = experiment.prepare(ctx.data, ctx.output, seed=ctx.seed)
        self.run = ctx.output / "runs" / f"{model}_{ctx.profile}"
        self.built = experiment.build_model(model, ctx.profile, self.prep.tiling.tile_size,
                                            num_classes=len(self.prep.classes), weights=weights,
                                            mixed_precision=mixed_precision)
        print("weights:", self.built.record["weights"])
        for i, phase in enumerate(self.built.phases, start=1):
            print(f"phase {i}: {phase.config}")
        print(interpret.model_line(self.built.model, model, ctx.profile))
        if ctx.profile == "full":
            self.built.model.summary(line_length=110, expand_nested=False)

    def stamp(self, fig):
        interpret.stamp(fig, self.ctx.profile, self.ctx.data, self.ctx.weights_note)

    def train(self, epochs=None, strategy=None) -> None:
        """Both phases, the checkpoint selected on the validation macro F1 across them; prints the run's summary."""
        self.result = experiment.train_run(self.prep, self.run, self.model, self.ctx.profile, epochs=epochs,
                                           weights=self.weights, mixed_precision=self.mixed_precision,
                                           strategy=strategy,  # with a strategy the model is built again in its scope
                                           built=self.built if strategy is None else None)
        self.metrics = self.result["metrics"]
        for key in ("model", "profile", "weights", "selected_by", "best_epoch", "best_phase", "epochs_run"):
            print(f"{key}: {self.metrics[key]}")

    def curves(self):
        """The training curves, a dotted line where phase 2 starts."""
        log = pd.read_csv(self.run / "log.csv")
        name = NAMES[self.model] if self.ctx.profile == "full" else f"tiny stand-in of {NAMES[self.model]}"
        fig = training_curves(log, f"{name} ({self.ctx.profile} profile)", best_epoch=self.metrics["best_epoch"])
        for ax in fig.axes:
            boundary = log[log.phase == 1].epoch.max() + 1.5
            ax.axvline(boundary, ls=":", c="k", lw=1)
            ax.text(boundary, ax.get_ylim()[1], " phase 2", va="top", fontsize=8)
        self.stamp(fig)
        save_fig(fig, f"{self.prefix}_training_curves_{self.ctx.profile}", self.ctx.output / "figures")
        show()

    def voting(self):
        """Hard and soft voting on the validation images: confusion matrices, scores, what they say."""
        results, profile = self.result["results"], self.ctx.profile
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
        for ax, (rule, r) in zip(axes, results.items()):
            s = r["scores"]
            confusion_matrix(r["confusion"], ax=ax, classes=self.prep.classes,
                             title=f"{rule} voting · macro F1 {s['macro_f1']:.3f}")
        fig.tight_layout()
        self.stamp(fig)
        save_fig(fig, f"{self.prefix}_confusion_{profile}", self.ctx.output / "figures")
        show()
        print(f"profile {profile!r}, weights: {self.built.record['weights']}")
        display(Markdown(report.voting_markdown(results)))
        display(Markdown(interpret.voting({rule: r["scores"] for rule, r in results.items()}, profile)))
        display(Markdown(interpret.baselines({self.model: results["hard"]["scores"]},
                                             self.metrics.get("baselines") or {}, profile)))

    def compare(self, run: bool, folds: int, epochs=None):
        """What phase 2 adds, out of fold: the same runs on the same ``folds`` scored after each phase (skipped
        unless ``run``). ``self.budget`` keeps the comparisons' settings for the notebook's later comparisons."""
        name, profile = f"fine_tuning_{self.model}", self.ctx.profile
        self.budget = dict(profile=profile, folds=folds, epochs=epochs, seed=self.ctx.seed,
                           mixed_precision=self.mixed_precision,
                           weights={self.model: self.weights} if self.weights else None)
        if run:
            display(Markdown(report.comparison_markdown(compare.run_comparison(name, self.ctx.data, self.ctx.output,
                                                                               **self.budget))))
        else:
            print("comparisons skipped (COMPARE = False)")

    def submit(self):
        """The submission of the trained run (hard voting); what it predicts."""
        path = self.ctx.output / "submissions" / f"{self.model}_{self.ctx.profile}.csv"
        experiment.predict_run(self.run, self.ctx.data, path, voting_rule="hard")
        submission = pd.read_csv(path)
        tests = (self.prep.manifest.split == "test").sum()
        print(f"{len(submission)} rows for {tests} test images -> {portable(path)}")
        display(Markdown(interpret.submission(submission.label, self.prep.classes)))
