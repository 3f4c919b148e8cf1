"""GPU benchmark against the hardware limit: Keras 3 with the JAX back end, random weights of the real sizes.

Measures, each under XLA (one ``jax.jit`` of Keras's own ``train_step``, the same function ``fit`` runs with
``jit_compile=True``; LossScaleOptimizer included under mixed_float16):

* training tiles/s of the scratch ResNet (``ScratchResNetConfig()``, the report's net), ConvNeXt Large
  (``keras.applications.ConvNeXtLarge``, ImageNet-sized, + a 4-way head) and ViT-B/16 (KerasHub
  ``ViTBackbone``, class token + a 4-way head), in float32, mixed_bfloat16 and (on GPU) mixed_float16;
* embedding (inference) tiles/s of ViT-B/16 and ViT-L/14 (the sizes of Phikon and Phikon-v2), class token,
  in pure bfloat16 (bf16 weights), mixed_bfloat16 and float32;
* for each, the **model FLOPs utilisation**: FLOPs per tile from XLA's cost analysis of the compiled step
  (``jax.jit(f).lower(...).compile().cost_analysis()['flops']`` / batch) x tiles/s / the device's peak dense
  bf16 FLOP/s (table ``PEAK_BF16`` below, or ``--peak-tflops``). float32 rows are divided by the same bf16
  peak (XLA runs float32 matmuls as TF32 on Ampere+ by default; ``matmul_precision`` is recorded). On a CPU
  MFU is n/a.

Timing: the compiled step runs ``warmup`` times untimed, then enough steps for ``--seconds`` (at least
``min_steps``), ended by ``block_until_ready``; tiles stay on the device (the input pipeline is not
measured: the scratch ResNet's input bound is the PNG decode rate of ``bench/bench_pipeline.py``).

Usage, on a GPU machine (no TensorFlow needed)::

    KERAS_BACKEND=jax python bench/gpu.py                 # ~5 min on an H100/H200; give it a 600 s timeout
    python bench/gpu_table.py bench/results/gpu_<device>.json --update docs/measurements.md

Results go to ``bench/results/gpu_<device>.json`` (device name lower-cased, non-alphanumerics as ``_``),
rewritten after every case, so a run cut short keeps what it measured. ``--budget-s`` (default 420) skips
the cases left once the budget is spent (most important first: bf16, then float32, then float16);
XLA compilation dominates (ConvNeXt Large's training step: tens of seconds per precision). A case that
runs out of memory is retried once at half the batch. ``--only vit_b16,scratch_resnet`` runs a subset,
``--batch-scale 0.5`` halves every batch; ``--dry-run`` builds and traces every real-size case (no compile,
no timing) and prints its FLOPs per tile: a check of this script on a CPU before spending GPU time.

``--tiny``: tiny model configurations, tiny batches, 2 steps, on the CPU, in under a minute — run by
``make bench`` (``bench/bench_gpu_tiny.py``) so this script cannot rot; its JSON goes to a temporary
folder (tiny numbers are not results).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Peak dense bf16 tensor-core FLOP/s (no sparsity), from the vendors' data sheets; fp16 where the chip has no
# bf16 (T4, V100, P100). The first key contained in jax's device_kind (upper-cased) wins: order matters.
PEAK_BF16 = [
    ("H200", 989e12), ("H100 PCIE", 756e12), ("H100", 989e12), ("GH200", 989e12),
    ("A100", 312e12), ("A10G", 70e12), ("A10", 125e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("T4", 65e12), ("V100", 125e12), ("P100", 21.2e12),
    ("TPU V5 LITE", 197e12), ("TPU V5E", 197e12), ("TPU V5P", 459e12), ("TPU V4", 275e12),
]

PRECISIONS = ("mixed_bfloat16", "bfloat16", "float32", "mixed_float16")


def peak_flops(kind: str, platform_name: str, override_tflops: float | None) -> tuple[float | None, str]:
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if platform_name == "cpu":
        return None, "n/a on CPU"
    upper = kind.upper()
    for key, value in PEAK_BF16:
        if key in upper:
            return value, f"table ({key})"
    return None, "unknown device: pass --peak-tflops"


def sanitise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "device"


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------

def _head(features):
    import keras

    return keras.layers.Dense(4, activation="softmax", dtype="float32", name="head_softmax")(features)


def build_scratch_resnet(tiny: bool):
    from anndl.core.config import ScratchResNetConfig
    from anndl.models.networks import scratch_resnet

    if tiny:
        return scratch_resnet(ScratchResNetConfig(filters=4, stacks=1, blocks_per_stack=1), 32)
    return scratch_resnet(ScratchResNetConfig(), 224)


def build_convnext_large(tiny: bool):
    import keras

    size = 32 if tiny else 224
    inputs = keras.Input((size, size, 3), name="tile")
    if tiny:
        from keras.src.applications import convnext  # the generic builder behind ConvNeXtTiny...XLarge

        backbone = convnext.ConvNeXt(depths=[1, 1, 1, 1], projection_dims=[8, 16, 32, 64], default_size=size,
                                     name="convnext_tiny_bench", include_top=False, weights=None, pooling="avg",
                                     input_shape=(size, size, 3))
    else:
        backbone = keras.applications.ConvNeXtLarge(weights=None, include_top=False, pooling="avg",
                                                    input_shape=(size, size, 3))
    return keras.Model(inputs, _head(backbone(inputs)), name="convnext_large")


VIT_SIZES = {  # name: (patch, layers, heads, hidden, mlp)
    "vit_b16": (16, 12, 12, 768, 3072),
    "vit_l14": (14, 24, 16, 1024, 4096),
    "vit_l16": (16, 24, 16, 1024, 4096),  # UNI
    "vit_g14": (14, 40, 24, 1536, 6144),  # H-optimus-0 / Prov-GigaPath: the packed SwiGLU's FLOPs as a GELU MLP
    "tiny": (8, 1, 2, 16, 32),
}


def vit_backbone(name: str, tiny: bool):
    import keras_hub

    patch, layers, heads, hidden, mlp = VIT_SIZES["tiny" if tiny else name]
    size = 32 if tiny else 224
    return keras_hub.models.ViTBackbone(image_shape=(size, size, 3), patch_size=patch, num_layers=layers,
                                        num_heads=heads, hidden_dim=hidden, mlp_dim=mlp, name=f"{name}_backbone")


def build_vit_b16(tiny: bool):
    import keras

    backbone = vit_backbone("vit_b16", tiny)
    inputs = keras.Input(backbone.input_shape[1:], name="tile")
    return keras.Model(inputs, _head(backbone(inputs)[:, 0, :]), name="vit_b16")


def build_embedder(name: str):
    def build(tiny: bool):
        import keras

        backbone = vit_backbone(name, tiny)
        inputs = keras.Input(backbone.input_shape[1:], name="tile")
        return keras.Model(inputs, backbone(inputs)[:, 0, :], name=f"{name}_embedder")
    return build


def vit_flops_per_tile(name: str, tiny: bool, training: bool) -> float:
    """Analytic matmul FLOPs of a ViT per tile (2 per multiply-add; backward = 2x forward), a cross-check
    of XLA's count: per layer 2*T*(4*d^2 + 2*d*mlp) + 2*2*T^2*d, plus the patch embedding."""
    patch, layers, _, d, mlp = VIT_SIZES["tiny" if tiny else name]
    size = 32 if tiny else 224
    tokens = (size // patch) ** 2 + 1
    forward = layers * (2 * tokens * (4 * d * d + 2 * d * mlp) + 4 * tokens * tokens * d)
    forward += 2 * (tokens - 1) * patch * patch * 3 * d
    return float(forward * (3 if training else 1))


# (case name, model key, task, builder, optimizer, full batch, tiny batch)
MODELS = {
    "scratch_resnet": dict(build=build_scratch_resnet, optimizer="lion", lr=1e-5, batch=256),
    "convnext_large": dict(build=build_convnext_large, optimizer="adamw", lr=1e-5, batch=128),
    "vit_b16": dict(build=build_vit_b16, optimizer="adamw", lr=1e-5, batch=256),
}
EMBEDDERS = {
    "vit_b16": dict(build=build_embedder("vit_b16"), batch=512),
    "vit_l14": dict(build=build_embedder("vit_l14"), batch=256),
    "vit_l16": dict(build=build_embedder("vit_l16"), batch=256),
    "vit_g14": dict(build=build_embedder("vit_g14"), batch=64),
}
TINY_BATCH = 4


def plan(args, on_gpu: bool) -> list[dict]:
    """Every case, most important first: bf16 (the goals' precision), then float32, then float16.

    Training runs in the mixed policies (float32 weights, bf16/fp16 compute) and float32; embedding also in
    pure ``bfloat16`` (bf16 weights, as a frozen encoder is served), first."""
    train = [dict(model=name, task="train") for name in MODELS]
    embed = [dict(model=name, task="embed") for name in EMBEDDERS]
    order = [(train, "mixed_bfloat16"), (embed, "bfloat16"), (embed, "mixed_bfloat16"), (train, "float32"),
             (embed, "float32"), (train, "mixed_float16")]
    cases = [dict(case, precision=precision) for group, precision in order for case in group]
    if not (on_gpu or args.tiny):
        cases = [c for c in cases if c["precision"] != "mixed_float16"]
    if args.precisions:
        cases = [c for c in cases if c["precision"] in args.precisions.split(",")]
    elif args.tiny:  # every code path once, in under a minute
        cases = [c for c in cases if c["precision"] == "mixed_bfloat16" or c["model"] == "scratch_resnet"
                 or (c["model"], c["precision"]) == ("vit_b16", "bfloat16")]
    only = set(args.only.split(",")) if args.only else None
    return [c for c in cases if only is None or c["model"] in only or f"{c['model']}:{c['task']}" in only]


# ---------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------

def _flops(stage) -> float | None:
    try:
        cost = stage.cost_analysis()
    except Exception:  # NotImplementedError on some back ends
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per device/program
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    value = float(cost["flops"])
    return value if value > 0 else None


def _time(run, state, warmup: int, min_steps: int, seconds: float):
    """Run ``state = run(state)`` warm-up times, then timed; returns (steps, elapsed, state)."""
    import jax

    for _ in range(warmup):
        state = run(state)
    jax.block_until_ready(state)
    steps, elapsed = 0, 0.0
    chunk = min_steps
    while True:
        start = time.perf_counter()
        for _ in range(chunk):
            state = run(state)
        jax.block_until_ready(state)
        elapsed += time.perf_counter() - start
        steps += chunk
        if elapsed >= seconds:
            break
        per_step = elapsed / steps
        chunk = max(1, min(int((seconds - elapsed) / per_step) + 1, 1000))
    return steps, elapsed, state


def measure(case: dict, batch: int, tiny: bool, timing: dict, dry_run: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    keras.backend.clear_session()
    gc.collect()
    keras.config.set_dtype_policy(case["precision"])
    try:
        spec = (MODELS if case["task"] == "train" else EMBEDDERS)[case["model"]]
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        model = spec["build"](tiny)
        built = time.perf_counter() - start
        size = model.input_shape[1]
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.integers(0, 256, (batch, size, size, 3)).astype("float32"))
        row = dict(case, batch=batch, tile_size=int(size), parameters=int(model.count_params()),
                   build_s=round(built, 2))
        if case["task"] == "train":
            optimizer = (keras.optimizers.Lion(spec["lr"]) if spec["optimizer"] == "lion"
                         else keras.optimizers.AdamW(spec["lr"], weight_decay=0.05))
            model.compile(optimizer=optimizer, loss="categorical_crossentropy", jit_compile=True)
            y = jnp.asarray(np.eye(4, dtype="float32")[rng.integers(0, 4, batch)])
            model.optimizer.build(model.trainable_variables)
            state = (
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                [v.value for v in model.optimizer.variables],
                [v.value for v in model.metrics_variables],
            )

            def step(state, x, y):
                logs, state = model.train_step(state, (x, y))
                return state

            jitted = jax.jit(step, donate_argnums=0)
            lowered = jitted.lower(state, x, y)
            run = lambda s: compiled(s, x, y)  # noqa: E731  (the state is donated and replaced each step)
        else:
            weights = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

            def embed(weights, x):
                outputs, _ = model.stateless_call(weights[0], weights[1], x, training=False)
                return outputs

            lowered = jax.jit(embed).lower(weights, x)
            state = (weights, None)
            run = lambda s: (s[0], compiled(s[0], x))  # noqa: E731  (the weights stay; the output is waited on)
        if dry_run:  # the real-size graphs, traced and counted, without compiling or running them
            flops = _flops(lowered)
            row.update(status="ok", dry_run=True, flops_per_tile_unoptimised_hlo=flops / batch if flops else None)
            if case["model"].startswith("vit"):
                row["flops_per_tile_analytic"] = vit_flops_per_tile(case["model"], tiny, case["task"] == "train")
            return row
        start = time.perf_counter()
        compiled = lowered.compile()
        row["compile_s"] = round(time.perf_counter() - start, 2)
        flops, flops_lowered = _flops(compiled), _flops(lowered)
        steps, elapsed, state = _time(run, state, **timing)
        if case["task"] == "train":
            row["weights_finite"] = bool(all(np.isfinite(np.asarray(v, np.float32)).all()
                                             for v in (state[0][0], state[0][-1])))  # first and last layer
        row.update(steps=steps, seconds=round(elapsed, 4), tiles_per_s=round(steps * batch / elapsed, 2),
                   flops_per_tile=flops / batch if flops else None,
                   flops_per_tile_unoptimised_hlo=flops_lowered / batch if flops_lowered else None)
        if case["model"].startswith("vit"):
            row["flops_per_tile_analytic"] = vit_flops_per_tile(case["model"], tiny, case["task"] == "train")
        row["status"] = "ok"
        return row
    finally:
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()
        gc.collect()


def _is_oom(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or "OOM" in text


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configurations on the CPU (< 1 min): a smoke check")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak dense bf16 TFLOP/s")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/gpu_<device>.json; "
                                                     "--tiny: a temporary folder)")
    parser.add_argument("--only", default=None, help="comma-separated models (or model:task) to run")
    parser.add_argument("--precisions", default=None, help=f"comma-separated subset of {','.join(PRECISIONS)}")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip the cases left after this many seconds")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per case (after warm-up)")
    parser.add_argument("--dry-run", action="store_true", help="build and trace every case at batch 2, print the "
                        "unoptimised HLO FLOPs per tile; no compile, no timing (checks the real sizes on a CPU)")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="multiply every batch size")
    args = parser.parse_args(argv)
    began = time.perf_counter()

    if args.tiny:  # the CPU, and XLA's quick compile (compilation dominates a tiny run)
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if "jax" not in sys.modules and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"bench/gpu.py needs KERAS_BACKEND=jax (Keras is using {keras.backend.backend()})")
    if not args.tiny:  # a rerun on the same machine skips XLA compilation
        try:
            jax.config.update("jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "anndl_jax_cache"))
        except Exception:
            pass
    device = jax.devices()[0]
    on_gpu = device.platform != "cpu"
    kind = getattr(device, "device_kind", device.platform)
    peak, peak_source = peak_flops(kind, device.platform, args.peak_tflops)
    name = "tiny_cpu" if args.tiny else sanitise(kind if on_gpu else "cpu")
    out = Path(args.out) if args.out else (
        Path(tempfile.gettempdir()) / "anndl_bench" / f"gpu_{name}.json" if args.tiny
        else ROOT / "bench" / "results" / f"gpu_{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    timing = (dict(warmup=1, min_steps=2, seconds=0.0) if args.tiny
              else dict(warmup=3, min_steps=5, seconds=args.seconds))
    versions = {"python": platform.python_version(), "keras": keras.__version__, "jax": jax.__version__}
    for package in ("jaxlib", "keras_hub"):
        try:
            versions[package] = __import__(package).__version__
        except Exception:
            versions[package] = None
    report = {
        "device": {"kind": kind, "platform": device.platform, "count": jax.device_count(),
                   "peak_bf16_flops": peak, "peak_source": peak_source},
        "tiny": args.tiny, "versions": versions, "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        "timing": timing, "mfu_note": "MFU = flops_per_tile x tiles_per_s / peak dense bf16 FLOP/s (float32 rows too)",
        "results": [],
    }
    if args.dry_run:
        out = Path(tempfile.gettempdir()) / "anndl_bench" / f"gpu_dry_run_{name}.json" if not args.out else out
        out.parent.mkdir(parents=True, exist_ok=True)
    if not on_gpu and not args.tiny and not args.dry_run:
        print("warning: no GPU/TPU visible to jax; measuring the CPU (MFU n/a)", flush=True)
    cases = plan(args, on_gpu)
    print(f"{kind} ({device.platform}); peak bf16 {peak / 1e12 if peak else 'n/a'} TFLOP/s [{peak_source}]; "
          f"{len(cases)} cases -> {out}", flush=True)
    for case in cases:
        spent = time.perf_counter() - began
        if spent > args.budget_s:
            row = dict(case, status=f"skipped: budget of {args.budget_s:.0f} s spent")
        else:
            spec = (MODELS if case["task"] == "train" else EMBEDDERS)[case["model"]]
            batch = TINY_BATCH if args.tiny else 2 if args.dry_run else max(1, int(spec["batch"] * args.batch_scale))
            row = None
            for attempt in range(2):
                try:
                    row = measure(case, batch, args.tiny, timing, args.dry_run)
                    break
                except Exception as error:  # keep going: one failing case must not cost the run
                    if attempt == 0 and _is_oom(error) and batch > 1:
                        batch //= 2
                        print(f"  {case}: out of memory, retrying at batch {batch}", flush=True)
                        continue
                    lines = [line for line in str(error).splitlines() if line.strip()]
                    detail = f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]
                    traceback.print_exception(error, limit=-3)
                    row = dict(case, batch=batch, status=f"error: {detail}")
                    break
        if row.get("dry_run"):
            flops = row.get("flops_per_tile_unoptimised_hlo")
            analytic = row.get("flops_per_tile_analytic")
            print(f"  {row['model']:15s} {row['task']:5s} {row['precision']:15s} {row['parameters']:>12,} parameters, "
                  f"{(flops or 0) / 1e9:8.2f} GFLOP/tile (unoptimised HLO)"
                  + (f", analytic {analytic / 1e9:.2f}" if analytic else "") + f" (build {row['build_s']} s)", flush=True)
        elif row.get("status") == "ok":
            flops = row.get("flops_per_tile")
            achieved = flops * row["tiles_per_s"] if flops else None
            row["achieved_tflops"] = round(achieved / 1e12, 3) if achieved else None
            row["mfu"] = round(achieved / peak, 4) if (achieved and peak) else None
            print(f"  {row['model']:15s} {row['task']:5s} {row['precision']:15s} batch {row['batch']:4d}: "
                  f"{row['tiles_per_s']:10.1f} tiles/s, {(flops or 0) / 1e9:8.3g} GFLOP/tile, "
                  f"MFU {row['mfu'] if row['mfu'] is not None else 'n/a'} (compile {row['compile_s']} s)", flush=True)
        else:
            print(f"  {case['model']} {case['task']} {case['precision']}: {row['status']}", flush=True)
        report["results"].append(row)
        report["wall_s"] = round(time.perf_counter() - began, 1)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, out)  # rewritten after every case: a run cut short keeps what it measured
    failed = [r for r in report["results"] if r["status"].startswith("error")]
    print(f"wrote {out} in {report['wall_s']} s ({len(failed)} failed)", flush=True)
    if failed and args.tiny:
        raise SystemExit(f"{len(failed)} tiny cases failed: " + "; ".join(r["status"] for r in failed))
    return out


if __name__ == "__main__":
    main()
