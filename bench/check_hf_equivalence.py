"""Numerical equivalence of anndl's encoders with the reference implementation (Hugging Face transformers).

transformers itself writes tiny random checkpoints in the published layouts (a bare ``ViTModel`` as
``owkin/phikon``, a prefixed ``ViTForImageClassification``, a ``Dinov2Model`` whose positions are interpolated
from 64 to 32 px as DINOv2's 518 -> 224), plus one bare ViT written by ``bench.common.write_random_checkpoint``
(checking that transformers loads that layout with no missing key). For the same tiles it compares

* the normalised pixels (transformers' image processor with resize/crop off vs anndl's ``normalise`` layer), and
* the CLS embedding (``last_hidden_state[:, 0]`` vs anndl's encoder output): cosine and max |difference|.

torch and transformers are not project dependencies: run this in the project's environment with a second
Python that has them (a throwaway venv), or in one that has everything::

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers safetensors  # CPU torch
    python bench/check_hf_equivalence.py --reference-python /tmp/refvenv/bin/python

Without a reference Python it prints why and exits 0 (skipped). Exit 1 when a cosine is below 0.999.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TILE = 32
CASES = {  # name -> how the reference side makes it
    "vit_bare (ViTModel, Phikon layout)": "ViTModel",
    "vit_prefixed (ViTForImageClassification)": "ViTForImageClassification",
    "dinov2 (Dinov2Model, positions 64->32 px)": "Dinov2Model",
    "vit_bare written by anndl (numpy)": "anndl",
}


def _has_reference() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- reference side (torch)

def reference_make(work: Path) -> None:
    import torch
    from transformers import (BitImageProcessor, Dinov2Config, Dinov2Model, ViTConfig, ViTForImageClassification,
                              ViTImageProcessor, ViTModel)

    torch.manual_seed(0)
    vit = dict(image_size=TILE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, qkv_bias=True)
    imagenet = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    for name, kind in CASES.items():
        folder = work / kind
        if kind == "ViTModel":
            model, processor = ViTModel(ViTConfig(**vit)), ViTImageProcessor(size={"height": TILE, "width": TILE},
                                                                              **imagenet)
        elif kind == "ViTForImageClassification":
            model = ViTForImageClassification(ViTConfig(**vit, num_labels=3))
            processor = ViTImageProcessor(size={"height": TILE, "width": TILE}, **imagenet)
        elif kind == "Dinov2Model":
            model = Dinov2Model(Dinov2Config(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, mlp_ratio=2, layerscale_value=0.5))
            processor = BitImageProcessor(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE},
                                          do_center_crop=True, do_convert_rgb=True, **imagenet)
        else:
            continue
        with torch.no_grad():  # transformers initialises LayerNorms to 1/0: make them informative
            for module in model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.normal_(1.0, 0.2)
                    module.bias.normal_(0.0, 0.2)
        model.save_pretrained(folder, safe_serialization=True)
        processor.save_pretrained(folder)


def reference_embed(work: Path) -> None:
    import torch
    from transformers import AutoImageProcessor, AutoModel

    tiles = np.load(work / "tiles.npy")
    out = {}
    for name, kind in CASES.items():
        folder = work / kind
        processor = AutoImageProcessor.from_pretrained(folder)
        pixels = processor([t for t in tiles], do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]
        model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
        missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
        if missing:
            raise SystemExit(f"{name}: transformers found missing keys {missing[:5]}")
        model.eval()
        with torch.no_grad():
            cls = model(pixel_values=pixels).last_hidden_state[:, 0].numpy()
        out[f"{kind}_pixels"] = pixels.permute(0, 2, 3, 1).numpy()
        out[f"{kind}_cls"] = cls
    np.savez(work / "reference.npz", **out)


# ------------------------------------------------------------------------------------- anndl side

def anndl_embed(work: Path) -> dict:
    import keras

    from anndl.models import encoders
    from bench.common import write_random_checkpoint

    write_random_checkpoint(work / "anndl", "vit", image_size=TILE, patch_size=8, hidden_size=32,
                                     num_layers=2, num_heads=4, intermediate_size=64, seed=3)
    tiles = np.load(work / "tiles.npy").astype("float32")
    out = {}
    for name, kind in CASES.items():
        encoder = encoders.load(work / kind, TILE)
        normalise = keras.Model(encoder.model.input, encoder.model.get_layer("normalise").output)
        out[f"{kind}_pixels"] = np.asarray(normalise(tiles))
        out[f"{kind}_cls"] = np.asarray(encoder.model(tiles))
        out[f"{kind}_layout"] = encoder.identity["layout"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", default=None, help="a Python with torch + transformers")
    parser.add_argument("--reference-step", choices=["make", "embed"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_step:  # the child process, in the reference environment
        {"make": reference_make, "embed": reference_embed}[args.reference_step](args.work)
        return 0
    here = _has_reference()
    if not here and not args.reference_python:
        print("skipped: torch/transformers are not installed here; pass --reference-python PATH (see the docstring)")
        return 0

    def reference(step, work):
        if here:
            (reference_make if step == "make" else reference_embed)(work)
        else:
            subprocess.run([args.reference_python, __file__, "--reference-step", step, "--work", str(work)], check=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        reference("make", work)
        rng = np.random.default_rng(0)
        tiles = rng.integers(0, 256, (8, TILE, TILE, 3)).astype(np.uint8)
        tiles[:4] = np.clip(tiles[:4] // 4 + np.array([180, 90, 170]) - 30, 0, 255)  # 4 pinkish, H&E-like tiles
        np.save(work / "tiles.npy", tiles)
        ours = anndl_embed(work)  # also writes the anndl-made checkpoint the reference then loads
        reference("embed", work)
        ref = dict(np.load(work / "reference.npz"))
    worst, rows = 1.0, []
    for name, kind in CASES.items():
        a, b = ours[f"{kind}_cls"], ref[f"{kind}_cls"]
        cosine = float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
        pixels = float(np.abs(ours[f"{kind}_pixels"] - ref[f"{kind}_pixels"]).max())
        worst = min(worst, cosine)
        rows.append({"checkpoint": name, "anndl layout": ours[f"{kind}_layout"], "tiles": len(a),
                     "min cosine": round(cosine, 7), "max |CLS diff|": float(np.abs(a - b).max()),
                     "max |pixel diff|": pixels})
    print(json.dumps(rows, indent=2))
    print(f"worst cosine {worst:.7f} ({'PASS' if worst >= 0.999 else 'FAIL'}: threshold 0.999)")
    return 0 if worst >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
