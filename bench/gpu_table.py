"""The GPU table of docs/measurements.md (Markdown) from a ``bench/gpu.py`` JSON.

    python bench/gpu_table.py bench/results/gpu_nvidia_h200.json                 # print it
    python bench/gpu_table.py bench/results/gpu_nvidia_h200.json --update docs/measurements.md

``--update`` replaces what lies between the lines ``<!-- gpu-table:start -->`` and
``<!-- gpu-table:end -->`` of that file (put them where the table belongs, once).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

START, END = "<!-- gpu-table:start -->", "<!-- gpu-table:end -->"
NAMES = {"scratch_resnet": "scratch ResNet", "convnext_large": "ConvNeXt Large", "vit_b16": "ViT-B/16",
         "vit_l14": "ViT-L/14"}
PRECISION = {"float32": "float32", "mixed_bfloat16": "bf16 mixed", "bfloat16": "bf16", "mixed_float16": "fp16 mixed"}


def _number(value, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table(report: dict, source: str = "") -> str:
    device = report["device"]
    peak = device.get("peak_bf16_flops")
    versions = report.get("versions", {})
    lines = [
        f"{device['kind']} ({device['platform']}), peak dense bf16 "
        f"{_number(peak / 1e12, 0) + ' TFLOP/s' if peak else 'unknown'} ({device.get('peak_source', '')}); "
        f"Keras {versions.get('keras')} / JAX {versions.get('jax')}, XLA, random weights, tiles held on the device"
        + (f"; `{source}`" if source else "") + ("; **tiny configurations: not results**" if report.get("tiny") else ""),
        "",
        "| model | task | precision | batch | tiles/s | GFLOP/tile (XLA) | TFLOP/s | MFU |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        head = (f"| {NAMES.get(row['model'], row['model'])} | {'training' if row['task'] == 'train' else 'embedding'} "
                f"| {PRECISION.get(row['precision'], row['precision'])} ")
        if row.get("status") != "ok":
            lines.append(head + f"| {row.get('batch', '—')} | {row.get('status', '?')[:80]} | | | |")
            continue
        flops = row.get("flops_per_tile")
        mfu = row.get("mfu")
        lines.append(head + f"| {row['batch']} | {_number(row['tiles_per_s'])} "
                     f"| {_number(flops / 1e9 if flops else None, 2)} | {_number(row.get('achieved_tflops'), 1)} "
                     f"| {'n/a' if mfu is None else f'{100 * mfu:.1f}%'} |")
    lines += ["", "MFU: XLA's FLOP count of the compiled step per tile × tiles/s ÷ the peak dense bf16 FLOP/s "
              "(float32 rows against the same peak). Training = one optimizer step (forward, backward, update)."]
    return "\n".join(lines) + "\n"


def update(path: Path, text: str) -> None:
    content = path.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"{path}: add the lines {START} and {END} where the GPU table belongs, then rerun")
    before, rest = content.split(START, 1)
    after = rest.split(END, 1)[1]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{before}{START}\n{text}{END}{after}")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Markdown GPU table from a bench/gpu.py JSON")
    parser.add_argument("json", type=Path)
    parser.add_argument("--update", type=Path, default=None, help="a Markdown file with the gpu-table markers")
    args = parser.parse_args(argv)
    text = table(json.loads(args.json.read_text()), source=args.json.as_posix())
    if args.update:
        update(args.update, text)
        print(f"updated {args.update}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
