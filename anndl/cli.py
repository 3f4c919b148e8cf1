"""Command line: ``python -m anndl <command>``; each command is one pipeline stage.

A fault in the challenge folder, a bad argument, an unreadable record, a locked output folder or a failed
write (full disk, read-only folder) ends the command with exit status 2 and one line naming the path and
the fault, no traceback; any other fault is one line naming the command (status 1). ``--debug`` (or
ANNDL_DEBUG=1) shows the traceback. Ctrl-C ends a command with one line (status 130), and so does SIGTERM, how
hosted sessions end a process (status 143).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from anndl.core.artifacts import ArtifactError
from anndl.core.config import OUTPUTS, ModelSettings, WeightsUnavailable
from anndl.data import DataError
from anndl.data.stages import VAL_FRACTION as _VAL_FRACTION
from anndl.data.tiling import TilingConfig
from anndl.notebook.hosted import SetupError

_TILING, _MODEL = TilingConfig(), ModelSettings()  # the CLI's defaults are the dataclasses' defaults
from anndl.models import specs


def cmd_synth(args: argparse.Namespace) -> None:
    from anndl.data import synthetic

    out = synthetic.generate(args.out, n_train=args.n_train, n_test=args.n_test, scale=args.scale,
                             seed=args.seed, n_stickers=args.n_stickers, n_green=args.n_green,
                             workers=args.workers, force=args.force, stain_sites=args.stain_sites,
                             site_class_correlation=args.site_class_correlation)
    print(f"wrote synthetic challenge folder {out} ({args.n_train} train, {args.n_test} test, "
          f"scale {args.scale}, seed {args.seed})")


def cmd_validate(args: argparse.Namespace) -> None:
    from anndl.data import read_challenge

    manifest = read_challenge(args.data)
    if args.out:
        from anndl.core import artifacts

        artifacts.write_csv(manifest, args.out)
    counts = manifest.groupby("split").size().to_dict()
    print(f"{args.data}: valid challenge folder, {counts}")
    train = manifest[manifest.split == "train"]
    print(train.label.value_counts().to_string())
    from anndl.data import read_classes
    from anndl.data.stages import absent_classes

    missing = absent_classes(train, read_classes(args.data))
    if missing:
        print(f"warning: no training image of class {', '.join(map(repr, missing))}: train refuses this label set; "
              "list the classes the folder has in classes.txt (data/README.md)")


def cmd_clean(args: argparse.Namespace) -> None:
    from anndl.data import read_challenge
    from anndl.data import stages

    manifest = read_challenge(args.data)
    stages.clean_stage(manifest, stages.data_note(args.data, manifest), args.out, args.embedder,
                           redo=args.redo)
    info = _read_json(args.out / "clean_summary.json")
    print(f"{stages.shown(args.out / 'clean_manifest.csv')} (embedder: {info['embedder']})")
    print(f"status: {info['status_counts']}; identical-mask groups: {info['identical_mask_groups']}")
    table = {"before": info["class_counts_before"], "after": info["class_counts_after"]}
    print(__import__("pandas").DataFrame(table).to_string())


def cmd_tile(args: argparse.Namespace) -> None:
    from anndl.data import read_challenge
    from anndl.data import stages, tiling

    manifest = read_challenge(args.data)
    clean_folder = args.clean.parent if args.clean.suffix == ".csv" else args.clean
    config = tiling.TilingConfig(args.tile_size, args.stride or args.tile_size, args.min_mask_pixels)
    stages.tiles_stage(manifest, stages.data_note(args.data, manifest), clean_folder, args.out, config,
                       args.val_fraction, args.seed, redo=args.redo)
    stages.test_tiles_stage(manifest, stages.data_note(args.data, manifest, ("test",)), args.out / "test", config,
                            redo=args.redo)
    import pandas as pd

    tiles = pd.concat([pd.read_csv(args.out / "tiles.csv", keep_default_na=False),
                       pd.read_csv(args.out / "test" / "tiles.csv", keep_default_na=False)])
    print(tiles.groupby("split").agg(images=("sample_index", "nunique"), tiles=("x", "size")).to_string())


def _read_json(path: Path) -> dict:
    from anndl.core import artifacts

    return artifacts.read_json(path)


def _prepare(args: argparse.Namespace, work_dir: Path):
    from anndl.data import stages, tiling

    config = tiling.TilingConfig(args.tile_size, args.tile_size, args.min_mask_pixels)
    return stages.prepare(args.data, work_dir, embedder=args.embedder, tiling_config=config,
                          seed=args.seed, redo=args.redo, stain_normalize=getattr(args, "stain_normalize", None))


def cmd_embed(args: argparse.Namespace) -> None:
    from anndl.engine import embed

    prep = _prepare(args, args.work or args.out.parent)
    emb = embed.embed(prep, args.encoder, args.out, pooling=args.pooling, batch_size=args.batch_size,
                      mixed_precision=args.mixed_precision, redo=args.redo)
    print(f"{emb.folder / embed.FILE}: {emb.embeddings.shape[0]} tiles x {emb.embeddings.shape[1]} features "
          f"(weights: {emb.encoder['weights']})")


def _embeddings(args: argparse.Namespace, prep):
    """The embedding cache a head reads (``--encoder``), made or reused."""
    from anndl.engine import embed

    if not args.encoder:
        raise ValueError(f"--model {args.model} needs --encoder SRC (a Hugging Face folder or hf:// handle, "
                         "a KerasHub preset, a .keras model or a run folder)")
    folder = args.embeddings or embed.folder_for(args.work or args.out.parent, args.encoder, args.pooling)
    return embed.embed(prep, args.encoder, folder, pooling=args.pooling, mixed_precision=args.mixed_precision)


def _train(args: argparse.Namespace, prep, name: str, run_dir: Path, weights):
    """``runs.fit`` of ``name`` with the command's settings (a head: its embedding cache; a network: the
    training options)."""
    from anndl.engine import runs

    if specs.SPEC[name].consumes == "embeddings":
        return runs.fit(prep, run_dir, name, folds=args.folds, embeddings=_embeddings(args, prep), seed=args.seed,
                        redo=args.redo)
    kwargs = dict(profile=args.profile, epochs=args.epochs, mixed_precision=args.mixed_precision,
                  strategy=args.strategy, weights=weights,
                  overrides={"stain_augment": args.stain_augment} if args.stain_augment else None)
    if args.learning_rate is not None:  # passed only when given: earlier K-fold records stay valid
        kwargs["learning_rate"] = args.learning_rate
    return runs.fit(prep, run_dir, name, folds=args.folds, seed=args.seed, redo=args.redo, **kwargs)


def cmd_train(args: argparse.Namespace) -> None:
    if specs.SPEC[args.model].consumes == "embeddings" and (args.stain_augment or args.stain_normalize):
        raise ValueError(f"--model {args.model} is a head on cached embeddings of the raw tiles: "
                         "--stain-augment and --stain-normalize do not apply to it (use them with a network "
                         f"trained on tiles: {', '.join(specs.names(consumes='tiles'))})")
    if specs.SPEC[args.model].consumes == "embeddings" and args.learning_rate is not None:
        raise ValueError(f"--model {args.model} is a head on cached embeddings: --learning-rate applies to networks "
                         f"trained on tiles ({', '.join(specs.names(consumes='tiles'))})")
    work_dir = args.work or args.out.parent
    prep = _prepare(args, work_dir)
    if args.model == "encoder" and args.encoder and not args.weights:
        args.weights = args.encoder  # --encoder SRC names the encoder to fine-tune, as --weights SRC does
    print(json.dumps(_train(args, prep, args.model, args.out, args.weights).metrics, indent=2))


def cmd_predict(args: argparse.Namespace) -> None:
    from anndl.engine import runs

    opened = [runs.open_run(r) for r in args.run]
    path = runs.predict(opened, args.data, args.out, args.voting, tta=args.tta)
    note = json.loads(Path(path).with_suffix(".json").read_text())
    print(f"wrote {path} ({note['voting']} voting{', 8-view TTA' if args.tta else ''}, "
          f"{len(note['runs'])} model(s))")


def cmd_run(args: argparse.Namespace) -> None:
    from anndl.data.stages import shown
    from anndl.engine import runs

    out = args.out
    prep = _prepare(args, out)
    models = specs.names(in_all=True) if args.model == "all" else (args.model,)
    for name in models:
        run = _train(args, prep, name, out / "runs" / name, args.weights if len(models) == 1 else None)
        submission = out / ("submission.csv" if len(models) == 1 else f"submission_{name}.csv")
        runs.predict(run, args.data, submission, args.voting, tta=args.tta)
        print(f"wrote {shown(submission)}")


def cmd_compare(args: argparse.Namespace) -> None:
    from anndl.engine import compare
    from anndl.notebook import interpret, report
    from anndl.notebook.report import markdown_table

    if args.list:
        for name, spec in compare.COMPARISONS.items():
            print(f"{name}: {spec.question}\n    variants: {' | '.join(spec.variants)}")
        return
    jobs = [(name, None) for name in args.comparison]
    if args.variant or args.set:
        names = args.variant or ["cross-entropy"]
        variants = {name: compare.VARIANTS[name] if name in compare.VARIANTS else _unknown_variant(name)
                    for name in names}
        if args.set:
            label, variant = compare.custom_variant(names[0], args.set)
            variants[label] = variant
        jobs.append((args.name, variants))
    if not jobs:
        raise ValueError("name a comparison (--list shows them), or --variant NAME … and/or --set key=value")
    data = _default_data(args.data)
    weights = dict(w.split("=", 1) for w in args.weights) if args.weights else {}
    for name, variants in jobs:
        result = compare.run_comparison(name, data, args.out, variants=variants, profile=args.profile,
                                        folds=args.folds, epochs=args.epochs, seed=args.seed,
                                        mixed_precision=args.mixed_precision, weights=weights, redo=args.redo)
        print(f"\n## {result.provenance_line()}\n")
        print(markdown_table(report.comparison_table(result)))
        print("\n" + interpret.comparison(result))
        print(f"\nwrote {result.folder / 'table.csv'}")


def _unknown_variant(name: str):
    from anndl.engine import compare

    raise ValueError(f"unknown variant {name!r}; choose from {list(compare.VARIANTS)}")


def _default_data(data: Path | None) -> Path:
    """``data`` when given (a challenge folder), else data/ (the challenge folder there, else the synthetic default)."""
    from anndl.core.config import DATA_ROOT, SYNTHETIC_DEFAULT
    from anndl.data import resolve_data_dir

    return resolve_data_dir(data) if data else resolve_data_dir(DATA_ROOT, SYNTHETIC_DEFAULT)


def cmd_report(args: argparse.Namespace) -> None:
    from anndl.notebook.report import markdown, write_report

    table = write_report(args.runs)
    print(markdown(table))
    print(f"wrote {args.runs / 'results.csv'} and {args.runs / 'results.md'}")


def cmd_doctor(args: argparse.Namespace) -> None:
    from anndl.notebook import hosted

    print("\n".join(hosted.doctor(hosted.places(args.data, args.out, args.drive))))


def cmd_publish(args: argparse.Namespace) -> None:
    from anndl.notebook import hosted

    changed = hosted.publish(args.repository)
    print(f"wrote {args.repository} into {len(changed)} files: {', '.join(p.name for p in changed) or 'none changed'}")


class _Parser(argparse.ArgumentParser):
    """argparse whose refusal is one line (``error: anndl train: argument --epochs: must be at least 1, got 0``,
    status 2) instead of the usage block; ``--help`` still shows the usage."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (--help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    from anndl.data import synthetic

    parser = _Parser(prog="anndl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic challenge folder (same layout as the real one)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n-train", type=_at_least(1), default=synthetic.REAL_N_TRAIN)
    p.add_argument("--n-test", type=_at_least(1), default=synthetic.REAL_N_TEST)
    p.add_argument("--scale", type=float, default=1.0, help="image size factor (1.0: shorter side 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-stickers", type=int, default=None, help="default: 60/691 of --n-train")
    p.add_argument("--n-green", type=int, default=None, help="default: 50/691 of --n-train")
    p.add_argument("--workers", type=_at_least(1), default=2)
    p.add_argument("--stain-sites", type=int, default=5,
                   help="stain each image like one of N sites, independent of class (0: the earlier generator)")
    p.add_argument("--site-class-correlation", type=float, default=0.0,
                   help="in [0, 1]: how often an image takes its class's own site (a colour shortcut on purpose)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty folder that `anndl synth` did not create")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("validate", help="check a challenge folder and print its manifest summary")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, default=None, help="write the manifest CSV here")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("clean", help="flag sticker and green-artifact train images -> clean_manifest.csv")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--embedder", default="offline",
                   help="offline (no weights), resnet50 (ImageNet download), resnet50:WEIGHTS.h5, or MODEL.keras")
    p.add_argument("--redo", action="store_true", help="clean again even when a matching result exists")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("tile", help="image-level split + mask-filtered tile coordinates -> tiles.csv")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--clean", required=True, type=Path, help="the folder `anndl clean` wrote (or its clean_manifest.csv)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tile-size", type=int, default=_TILING.tile_size)
    p.add_argument("--stride", type=int, default=None, help="default: tile size")
    p.add_argument("--min-mask-pixels", type=int, default=_TILING.min_mask_pixels)
    p.add_argument("--val-fraction", type=float, default=_VAL_FRACTION)
    p.add_argument("--seed", type=int, default=_MODEL.seed, help="seeds the image-level split")
    p.add_argument("--redo", action="store_true", help="tile again even when a matching result exists")
    p.set_defaults(func=cmd_tile)

    def training_options(p, model_choices):
        p.add_argument("--data", required=True, type=Path)
        p.add_argument("--model", default="scratch_resnet", choices=model_choices)
        p.add_argument("--profile", default="smoke", choices=["smoke", "full"])
        p.add_argument("--epochs", type=_at_least(1), default=None, help="override the profile's epoch count")
        p.add_argument("--learning-rate", type=float, default=None,
                       help="phase 1's learning rate instead of the profile's (recorded with the run's settings)")
        p.add_argument("--mixed-precision", default=None, help="e.g. mixed_bfloat16 (CPU/TPU), mixed_float16 (GPU)")
        p.add_argument("--strategy", default=None, choices=["default", "mirrored", "data_parallel", "tpu"],
                       help="several devices: mirrored (all GPUs, TensorFlow), data_parallel (KERAS_BACKEND=jax), tpu")
        p.add_argument("--voting", default="hard", choices=["hard", "soft"])
        p.add_argument("--stain-augment", default=None, choices=["light", "strong"],
                       help="HED stain jitter on training tiles (Tellez et al., 2019)")
        p.add_argument("--stain-normalize", default=None, choices=["macenko", "reinhard"],
                       help="normalise every tile's stain (train, validation and test) to a reference fitted on the "
                            "train images (Macenko et al., 2009; Reinhard et al., 2001)")
        p.add_argument("--embedder", default="offline")
        p.add_argument("--tile-size", type=int, default=_TILING.tile_size)
        p.add_argument("--min-mask-pixels", type=int, default=_TILING.min_mask_pixels)
        p.add_argument("--seed", type=int, default=_MODEL.seed,
                       help="seeds the split, the folds, the initial weights, each epoch's shuffling and dropout")
        p.add_argument("--redo", action="store_true",
                       help="recompute every step, even those with a matching finished result (no resuming)")
        p.add_argument("--folds", type=_at_least(2), default=None, help="K-fold cross-validation by image (K models)")
        p.add_argument("--tta", action="store_true", help="predict with 8-view test-time augmentation")
        p.add_argument("--weights", default=None,
                       help="pretrained weights: a local .h5 file (convnext) or KerasHub preset folder (vit)")
        p.add_argument("--encoder", default=None,
                       help="encoder SRC for --model encoder|linear_probe|attention_mil: hf://org/name, a Hugging "
                            "Face or KerasHub preset folder, a KerasHub preset name, a .keras model, a run folder")
        p.add_argument("--pooling", default="cls", choices=["cls", "cls+mean"],
                       help="encoder feature: class token, or class token + mean of patch tokens")

    p = sub.add_parser("train", help="clean + tile (or reuse) and train one model into a run folder")
    training_options(p, specs.names())
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--work", type=Path, default=None, help="where clean/ and tiles/ live (default: beside --out)")
    p.add_argument("--embeddings", type=Path, default=None,
                   help="heads: the embedding cache folder (default: WORK/embeddings/<encoder>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", help="a frozen encoder's embedding of every tile -> embeddings.npz (cached)")
    p.add_argument("--encoder", required=True,
                   help="hf://org/name, a Hugging Face or KerasHub preset folder, a KerasHub preset name, "
                        "a .keras model or a run folder")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="the embedding folder (embeddings.npz + record.json)")
    p.add_argument("--work", type=Path, default=None, help="where clean/ and tiles/ live (default: beside --out)")
    p.add_argument("--pooling", default="cls", choices=["cls", "cls+mean"])
    p.add_argument("--batch-size", type=_at_least(1), default=32)
    p.add_argument("--mixed-precision", default=None, help="e.g. mixed_bfloat16 (CPU/TPU), mixed_float16 (GPU)")
    p.add_argument("--embedder", default="offline", help="the cleaning step's embedder (see clean)")
    p.add_argument("--tile-size", type=int, default=_TILING.tile_size)
    p.add_argument("--min-mask-pixels", type=int, default=_TILING.min_mask_pixels)
    p.add_argument("--seed", type=int, default=_MODEL.seed)
    p.add_argument("--redo", action="store_true", help="embed again even when the cache matches")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("predict", help="write a Kaggle submission from a run (or an ensemble of runs)")
    p.add_argument("--run", required=True, type=Path, nargs="+",
                   help="one or more run folders; several (or a K-fold run) average their tile probabilities")
    p.add_argument("--tta", action="store_true", help="average over the 8 dihedral views of each tile")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--voting", default="hard", choices=["hard", "soft"])
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("run", help="clean -> tile -> train -> predict; reuses finished steps of the same request, "
                                   "resumes interrupted training")
    training_options(p, (*specs.names(consumes="tiles"), "all"))
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("doctor", help="what this runtime is and can do: versions, GPUs and their precision, the data, "
                                      "where outputs go and whether they outlive the session")
    p.add_argument("--data", type=Path, default=None, help="default: as the notebooks find it on this runtime")
    p.add_argument("--out", type=Path, default=None, help="default: as the notebooks choose it on this runtime")
    p.add_argument("--drive", default=None, help="Colab: the Google Drive folder the notebooks' DRIVE names")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("publish", help="write the repository's address into pyproject.toml, badges and setup cells")
    p.add_argument("repository", help="https://github.com/<owner>/<name>")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("compare", help="variants out of fold on the same K folds, with paired intervals: the "
                                       "report's experiments by name (--list), or --variant/--set")
    p.add_argument("comparison", nargs="*", help="named comparisons (see --list), run in turn")
    p.add_argument("--list", action="store_true", help="print the named comparisons and their variants")
    p.add_argument("--variant", action="append", default=[], help="a named variant (repeat; the first is the reference)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a further variant: the first --variant with these overrides (repeat), e.g. loss=focal")
    p.add_argument("--name", default="custom", help="the folder name of a --variant/--set comparison")
    p.add_argument("--data", type=Path, default=None, help="default: data/ (else the synthetic default)")
    p.add_argument("--out", type=Path, default=OUTPUTS, help="where clean/, tiles/ and compare/ live")
    p.add_argument("--profile", default="smoke", choices=["smoke", "full"])
    p.add_argument("--folds", type=_at_least(2), default=3)
    p.add_argument("--epochs", type=_at_least(1), default=None, help="a cap on every phase's epochs (a CPU budget)")
    p.add_argument("--seed", type=int, default=_MODEL.seed, help="the folds' seed (and the initial weights')")
    p.add_argument("--mixed-precision", default=None)
    p.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                   help="local pretrained weights for a model, e.g. vit=weights/vit_preset (repeat)")
    p.add_argument("--redo", action="store_true", help="train and score every variant again")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="the report's Table 1 from the runs' metrics.json (CSV and Markdown)")
    p.add_argument("--runs", required=True, type=Path)
    p.set_defaults(func=cmd_report)
    return parser


def _at_least(low: int):
    """An argparse type: an integer of at least ``low`` (0 or a negative is refused with one line, status 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


class Terminated(KeyboardInterrupt):
    """SIGTERM (how Colab, Kaggle and schedulers end a process), raised where the process is, as Ctrl-C is: the
    same cleanup runs (staging, locks, memory-backed scratch) and the same one line is printed."""


def _on_signal(signum, frame):
    """Ctrl-C or SIGTERM: raised here, and noted (``env.PENDING_SIGNALS``) so that training raises it at its next
    batch if it landed in a ``__del__``, where Python prints and ignores it."""
    import signal

    from anndl.core.env import PENDING_SIGNALS

    kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    PENDING_SIGNALS[:] = [kind]
    raise kind()


def main(argv: list[str] | None = None) -> int:
    import signal
    import traceback

    from anndl.core.artifacts import ArtifactError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("ANNDL_DEBUG"))
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    from anndl.core.env import PENDING_SIGNALS

    PENDING_SIGNALS.clear()
    handled = (signal.SIGTERM, signal.SIGINT) if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else (
        signal.SIGTERM,)  # SIGINT ignored (started in the background): left so
    previous = {s: signal.getsignal(s) for s in handled}
    if threading_main():
        for number in handled:
            signal.signal(number, _on_signal)
    try:
        if _needs_tensorflow(args):
            from anndl.core.env import quiet_tensorflow

            quiet_tensorflow()  # imported once, without its start-up log lines
        args.func(args)
    except KeyboardInterrupt as e:
        PENDING_SIGNALS.clear()
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"{what}: {_AFTER_INTERRUPT.get(args.command, _AFTER_INTERRUPT['default'])}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except (DataError, ValueError, FileNotFoundError, WeightsUnavailable, ArtifactError, OSError, SetupError) as e:
        if debug:  # the full traceback, for developers
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a fault no check named: still one line, naming the command (traceback: --debug)
        if debug:
            raise
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"error: anndl {args.command} failed: {type(e).__name__}: {_one_line(e)} "
              f"(at {Path(where.filename).name}:{where.lineno}; --debug shows the traceback)", file=sys.stderr)
        return 1
    finally:
        if threading_main():
            for number, handler in previous.items():
                signal.signal(number, handler)
    return 0


def threading_main() -> bool:
    """Signal handlers can be set only from the main thread (a notebook kernel's cells run there too)."""
    import threading

    return threading.current_thread() is threading.main_thread()


_AFTER_INTERRUPT = {  # what the same command does when run again, per command (said after Ctrl-C)
    "synth": "the folder is incomplete; the same command writes it again from the start",
    "validate": "nothing was written; the same command checks the folder again",
    "predict": "no submission was written; the same command predicts again",
    "report": "the tables are as before (each is replaced whole or not at all); the same command writes them again",
    "train": "finished steps are kept; the same command reuses them and resumes training from the last saved epoch",
    "run": "finished steps are kept; the same command reuses them and resumes training from the last saved epoch",
    "embed": "finished steps are kept; the same command resumes embedding from the last finished chunk",
    "default": "finished steps are kept; the same command reuses them and makes the rest again",
}


def _needs_tensorflow(args: argparse.Namespace) -> bool:
    """Commands that build or run a model; the data stages (and the offline embedder) start without TensorFlow."""
    if args.func in (cmd_synth, cmd_validate, cmd_tile, cmd_report, cmd_publish) or getattr(args, "list", False):
        return False
    return not (args.func is cmd_clean and getattr(args, "embedder", "offline") == "offline")


def _one_line(e: Exception) -> str:
    """An exception as one line; an ``OSError`` with the path it concerns."""
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return " ".join(str(e).split()) or type(e).__name__
