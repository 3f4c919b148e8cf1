"""Command line: ``python -m anndl <command>`` (synth, train, run, predict, compare, doctor).
A fault in the data, an argument, a record, a lock or a write ends a command with one line naming the path (status 2),
any other with one naming the command (status 1; ``--debug``/ANNDL_DEBUG=1: traceback); Ctrl-C 130, SIGTERM 143."""

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from anndl.core import artifacts
from anndl.core.config import DATA_ROOT, OUTPUTS, PROFILES, SYNTHETIC_DEFAULT, ModelSettings, WeightsUnavailable
from anndl.core.distribute import STRATEGIES
from anndl.core.env import PENDING_SIGNALS, Terminated, on_signal as _on_signal, quiet_tensorflow
from anndl.data import DataError, resolve_data_dir, stages, synthetic
from anndl.data.tiling import TilingConfig
from anndl.models import specs
from anndl.notebook import hosted


def cmd_synth(args: argparse.Namespace) -> None:
    out = synthetic.generate(**{k: v for k, v in vars(args).items() if k not in ("command", "func")})
    print(f"wrote synthetic challenge folder {out} ({args.n_train} train, {args.n_test} test, "
          f"scale {args.scale}, seed {args.seed})")


def _prepare(args: argparse.Namespace, work_dir: Path | None = None):  # default: --work, else beside --out
    return stages.prepare(args.data, work_dir or args.work or args.out.parent, embedder=args.embedder,
                          tiling_config=TilingConfig(args.tile_size, args.tile_size, args.min_mask_pixels),
                          seed=args.seed, redo=args.redo, stain_normalize=getattr(args, "stain_normalize", None))


def _train(args: argparse.Namespace, prep, name: str, run_dir: Path, weights):
    """``runs.fit`` of ``name`` with the command's settings (a head: on its embedding cache, made or reused)."""
    from anndl.engine import embed, runs
    if specs.SPEC[name].consumes == "embeddings":
        if not args.encoder:
            raise ValueError(f"--model {args.model} needs --encoder SRC ({_SOURCES})")
        folder = args.embeddings or embed.folder_for(args.work or args.out.parent, args.encoder, args.pooling)
        emb = embed.embed(prep, args.encoder, folder, pooling=args.pooling, mixed_precision=args.mixed_precision)
        return runs.fit(prep, run_dir, name, folds=args.folds, embeddings=emb, seed=args.seed, redo=args.redo)
    # a None setting is train_run's default: the same request as omitted (earlier K-fold records stay valid)
    return runs.fit(prep, run_dir, name, folds=args.folds, seed=args.seed, redo=args.redo, profile=args.profile,
                    epochs=args.epochs, learning_rate=args.learning_rate, mixed_precision=args.mixed_precision,
                    strategy=args.strategy, weights=weights,
                    overrides={"stain_augment": args.stain_augment} if args.stain_augment else None)


def cmd_train(args: argparse.Namespace) -> None:
    given = [f"--{k.replace('_', '-')}" for k in ("stain_augment", "stain_normalize", "learning_rate")
             if getattr(args, k) is not None]
    if specs.SPEC[args.model].consumes == "embeddings" and given:
        raise ValueError(f"--model {args.model} is a head on cached embeddings of the raw tiles: {', '.join(given)} "
                         f"do not apply to it (use them with a network trained on tiles: "
                         f"{', '.join(specs.names(consumes='tiles'))})")
    print(json.dumps(_train(args, _prepare(args), args.model, args.out, args.weights).metrics, indent=2))


def cmd_predict(args: argparse.Namespace) -> None:
    from anndl.engine import runs
    path = runs.predict([runs.open_run(r) for r in args.run], args.data, args.out, args.voting, tta=args.tta)
    note = json.loads(Path(path).with_suffix(".json").read_text())
    print(f"wrote {path} ({note['voting']} voting{', 8-view TTA' if args.tta else ''}, "
          f"{len(note['runs'])} model(s))")


def cmd_run(args: argparse.Namespace) -> None:
    from anndl.engine import runs
    prep = _prepare(args, args.out)
    models = specs.names(consumes="tiles") if args.model == "all" else (args.model,)
    for name in models:
        run = _train(args, prep, name, args.out / "runs" / name, args.weights if len(models) == 1 else None)
        submission = args.out / ("submission.csv" if len(models) == 1 else f"submission_{name}.csv")
        runs.predict(run, args.data, submission, args.voting, tta=args.tta)
        print(f"wrote {stages.shown(submission)}")


def cmd_compare(args: argparse.Namespace) -> None:
    from anndl.engine import compare
    from anndl.notebook import interpret, report
    if args.list:
        for name, spec in compare.COMPARISONS.items():
            print(f"{name}: {spec.question}\n    variants: {' | '.join(spec.variants)}")
        return
    if not args.comparison:
        raise ValueError("name a comparison (--list shows them)")
    data = resolve_data_dir(args.data) if args.data else resolve_data_dir(DATA_ROOT, SYNTHETIC_DEFAULT)
    weights = dict(w.split("=", 1) for w in args.weights)
    for name in args.comparison:
        result = compare.run_comparison(name, data, args.out, profile=args.profile, folds=args.folds,
                                        epochs=args.epochs, seed=args.seed, mixed_precision=args.mixed_precision,
                                        weights=weights, redo=args.redo)
        print(f"\n## {result.provenance_line()}\n")
        print(report.markdown_table(report.comparison_table(result)))
        print("\n" + interpret.comparison(result))
        print(f"\nwrote {result.folder / 'table.csv'}")


def cmd_doctor(args: argparse.Namespace) -> None:
    print("\n".join(hosted.doctor(hosted.places(args.data, args.out, args.drive))))


class _Parser(argparse.ArgumentParser):
    """argparse whose refusal is one line (status 2) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (--help lists the options)\n")


def _at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)  # not an integer: argparse's "invalid integer >= 1 value: 'x'"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


_SOURCES = "hf://org/name, a Hugging Face or timm folder, a .keras model or a run folder"
_OPTIONAL = dict(type=Path, default=None)
OPTIONS = {  # every option of every command: flag (``flag:variant`` where commands differ) -> add_argument's keywords
    "--data": dict(required=True, type=Path),
    "--data:doctor": dict(_OPTIONAL, help="default: as the notebooks find it on this runtime"),
    "--data:compare": dict(_OPTIONAL, help="default: data/ (else the synthetic default)"),
    "--out": dict(required=True, type=Path),
    "--out:train": dict(required=True, type=Path, help="run folder"),
    "--out:doctor": dict(_OPTIONAL, help="default: as the notebooks choose it on this runtime"),
    "--out:compare": dict(type=Path, default=OUTPUTS, help="where clean/, tiles/ and compare/ live"),
    "--work": dict(_OPTIONAL, help="where clean/ and tiles/ live (default: beside --out)"),
    "--embedder": dict(default="offline", help="the cleaning step's embedder: offline (no weights), resnet50 "
                                               "(ImageNet download), resnet50:WEIGHTS.h5, or MODEL.keras"),
    "--tile-size": dict(type=int, default=TilingConfig.tile_size),
    "--min-mask-pixels": dict(type=int, default=TilingConfig.min_mask_pixels),
    "--seed": dict(type=int, default=ModelSettings.seed,
                   help="seeds the split, folds, initial weights, shuffling, dropout"),
    "--seed:synth": dict(type=int, default=0),
    "--redo": dict(action="store_true", help="make every step again, even a matching finished one (no resuming)"),
    "--mixed-precision": dict(default=None, help="e.g. mixed_bfloat16 (CPU/TPU), mixed_float16 (GPU)"),
    "--pooling": dict(default="cls", choices=["cls", "cls+mean"], help="class token (+ the patch tokens' mean)"),
    "--voting": dict(default="hard", choices=["hard", "soft"]),
    "--tta": dict(action="store_true", help="8-view test-time augmentation (each tile's dihedral views)"),
    "--profile": dict(default="smoke", choices=list(PROFILES)),
    "--epochs": dict(type=_at_least(1), default=None, help="override the profile's epoch count"),
    "--epochs:compare": dict(type=_at_least(1), default=None, help="a cap on every phase's epochs (a CPU budget)"),
    "--folds": dict(type=_at_least(2), default=None, help="K-fold cross-validation by image (K models)"),
    "--folds:compare": dict(type=_at_least(2), default=3),
    "--n-train": dict(type=_at_least(1), default=synthetic.REAL_N_TRAIN),
    "--n-test": dict(type=_at_least(1), default=synthetic.REAL_N_TEST),
    "--scale": dict(type=float, default=1.0, help="image size factor (1.0: shorter side 1024)"),
    "--stain-sites": dict(type=int, default=5, help="stain images like N sites (1-5), not by class"),
    "--site-class-correlation": dict(type=float, default=0.0, help="[0, 1]: how often an image takes its class's site"),
    "--force": dict(action="store_true", help="write into a non-empty folder that `anndl synth` did not create"),
    "--model:train": dict(default="scratch_resnet", choices=specs.names()),
    "--model:run": dict(default="scratch_resnet", choices=(*specs.names(consumes="tiles"), "all")),
    "--learning-rate": dict(type=float, default=None, help="phase 1's learning rate instead of the profile's"),
    "--strategy": dict(default=None, choices=STRATEGIES, help="several devices: mirrored (all GPUs, TensorFlow), "
                       "data_parallel (KERAS_BACKEND=jax)"),
    "--stain-augment": dict(default=None, choices=["light", "strong"], help="HED stain jitter on training tiles"),
    "--stain-normalize": dict(default=None, choices=["macenko", "reinhard"], help="normalise every tile's stain to "
                              "a reference fitted on the train images (Macenko et al., 2009; Reinhard et al., 2001)"),
    "--weights": dict(default=None, help="pretrained weights: a local .h5 file (convnext) or preset folder (vit)"),
    "--encoder": dict(default=None, help=f"encoder for --model linear_probe|attention_mil: {_SOURCES}"),
    "--embeddings": dict(_OPTIONAL, help="heads: the embedding cache folder (default: WORK/embeddings/<encoder>)"),
    "--run": dict(required=True, type=Path, nargs="+", help="run folders; several average their tile probabilities"),
    "--drive": dict(default=None, help="Colab: the Google Drive folder the notebooks' DRIVE names"),
    "comparison": dict(nargs="*", help="named comparisons (see --list), run in turn"),
    "--list": dict(action="store_true", help="print the named comparisons and their variants"),
    "--weights:compare": dict(action="append", default=[], metavar="MODEL=PATH",
                              help="local pretrained weights for a model, e.g. vit=weights/vit_preset (repeat)"),
}
_TRAINING = ("--profile --epochs --learning-rate --mixed-precision --strategy --voting --stain-augment "
             "--stain-normalize --embedder --tile-size --min-mask-pixels --seed --redo --folds --tta --weights")
COMMANDS = {  # command: (function, help, its options: keys of OPTIONS)
    "synth": (cmd_synth, "write a synthetic challenge folder (same layout as the real one)",
              "--out --n-train --n-test --scale --seed:synth --stain-sites --site-class-correlation --force"),
    "train": (cmd_train, "clean + tile (or reuse) and train one model into a run folder",
              f"--data --model:train {_TRAINING} --encoder --pooling --out:train --work --embeddings"),
    "predict": (cmd_predict, "write a Kaggle submission from a run (or an ensemble of runs)",
                "--run --tta --data --out --voting"),
    "run": (cmd_run, "clean -> tile -> train -> predict; reuses finished steps of the same request, resumes "
                     "interrupted training", f"--data --model:run {_TRAINING} --out"),
    "doctor": (cmd_doctor, "what this runtime is and can do: versions, GPUs and their precision, the data, where "
                           "outputs go and whether they outlive the session", "--data:doctor --out:doctor --drive"),
    "compare": (cmd_compare, "variants out of fold on the same K folds, with paired intervals: the report's "
                             "experiments by name (--list)",
                "comparison --list --data:compare --out:compare --profile --folds:compare --epochs:compare --seed "
                "--mixed-precision --weights:compare --redo"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="anndl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, text, keys) in COMMANDS.items():
        p = sub.add_parser(name, help=text)
        p.set_defaults(func=func)
        for key in keys.split():
            p.add_argument(key.split(":")[0], **OPTIONS[key])
    return parser


_RESUMES = "finished steps are kept; the same command reuses them and resumes training from the last saved epoch"
_AFTER_INTERRUPT = {  # what the same command does when run again, per command (said after Ctrl-C)
    "synth": "the folder is incomplete; the same command writes it again from the start",
    "predict": "no submission was written; the same command predicts again",
    "train": _RESUMES, "run": _RESUMES,
    "default": "finished steps are kept; the same command reuses them and makes the rest again",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("ANNDL_DEBUG"))
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    PENDING_SIGNALS.clear()
    # handlers only in the main thread (notebook cells run there); an ignored SIGINT (a background process) stays so
    handled = [s for s in (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread()
               and (s == signal.SIGTERM or signal.getsignal(s) is not signal.SIG_IGN)]
    previous = {s: signal.signal(s, _on_signal) for s in handled}  # each number's handler before
    try:
        if not (args.command == "synth" or getattr(args, "list", False)):  # synth, compare --list: no TensorFlow
            quiet_tensorflow()  # imported once, without its start-up log lines
        args.func(args)
    except KeyboardInterrupt as e:
        PENDING_SIGNALS.clear()
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"{what}: {_AFTER_INTERRUPT.get(args.command, _AFTER_INTERRUPT['default'])}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # one line (the traceback with --debug): the named fault, else one naming the command
        if debug:
            raise
        if isinstance(e, (DataError, ValueError, OSError, WeightsUnavailable, artifacts.ArtifactError,
                          hosted.SetupError)):
            print(f"error: {_one_line(e)}", file=sys.stderr)
            return 2
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"error: anndl {args.command} failed: {type(e).__name__}: {_one_line(e)} "
              f"(at {Path(where.filename).name}:{where.lineno}; --debug shows the traceback)", file=sys.stderr)
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


def _one_line(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return " ".join(str(e).split()) or type(e).__name__
