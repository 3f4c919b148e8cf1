"""Write the tiny timm checkpoints and reference embeddings of tests/data/timm/ (run in a throwaway venv with torch
and timm, which never become dependencies of anndl):

    python -m venv /tmp/timmvenv && /tmp/timmvenv/bin/pip install torch timm safetensors
    /tmp/timmvenv/bin/python bench/timm_references.py tests/data/timm

(``phikon_v2``: a transformers DINOv2 checkpoint in Phikon-v2's layout, needs ``pip install transformers`` too.)

Each folder is what ``timm.models._hub.save_for_hf`` writes for a model built with the card's arguments, made tiny
(width 32, 2 blocks, 4 heads) and every weight redrawn (timm's layer scale 1e-5 would make the blocks near-identity
and the check weak). Options a card passes in code (``mlp_layer=SwiGLUPacked, act_layer=SiLU``) are left out of
config.json as on the hub: the reader must find them in the weights. ``reference.npz`` holds timm's embedding of
``tiles()`` normalised with the checkpoint's mean/std (the tile is the model's field of view: no resize or crop)."""

import json
import sys
from pathlib import Path

import numpy as np

TINY = dict(embed_dim=32, depth=2, num_heads=4)
# name: (architecture, the card's model_args, what the card passes in code, pooling, the pretrained_cfg it overrides)
LAYOUTS = {
    "uni": ("vit_large_patch16_224", dict(img_size=224, patch_size=16, init_values=1e-5, num_classes=0,
                                          dynamic_img_size=True), {}, "cls", {}),
    "uni2_h": ("vit_giant_patch14_224", dict(img_size=224, patch_size=14, init_values=1e-5, mlp_ratio=5.33334,
                                             num_classes=0, no_embed_class=True, reg_tokens=8,
                                             dynamic_img_size=True), "swiglu", "cls", {}),
    "virchow2": ("vit_huge_patch14_224", dict(img_size=224, init_values=1e-5, num_classes=0, mlp_ratio=5.3375,
                                              reg_tokens=4, global_pool="", dynamic_img_size=True), "swiglu",
                 "cls+mean", {}),
    "h_optimus_0": ("vit_giant_patch14_reg4_dinov2", dict(img_size=224, init_values=1e-5, num_classes=0,
                                                           global_pool="token", dynamic_img_size=False), {}, "cls",
                    dict(mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517))),
    "prov_gigapath": ("vit_giant_patch14_dinov2", dict(img_size=224, patch_size=16, init_values=1e-5,
                                                       mlp_ratio=5.33334, num_classes=0), {}, "cls", {}),
}


def tiles() -> np.ndarray:
    """Two 224-pixel RGB tiles in [0, 255] (RandomState's stream is frozen across numpy versions)."""
    return np.random.RandomState(0).randint(0, 256, (2, 224, 224, 3)).astype(np.float32)


def main(out: Path) -> None:
    import timm
    import torch
    from timm.layers import SwiGLUPacked
    from timm.models._hub import save_for_hf

    for name, (arch, args, code, pooling, pretrained) in LAYOUTS.items():
        extra = dict(mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU) if code == "swiglu" else {}
        model = timm.create_model(arch, pretrained=False, **args, **TINY, **extra).eval()
        model.pretrained_cfg.update(pretrained)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for key, value in model.state_dict().items():
                scale = 0.3 if key.endswith("gamma") else 0.02 if "token" in key or "pos_embed" in key else 0.15
                value.copy_(torch.randn(value.shape, generator=generator) * scale + (1.0 if "norm" in key and
                                                                                     key.endswith("weight") else 0.0))
        folder = out / name
        replacements = {"mlp_layer": "SwiGLUPacked", "act_layer": "silu"} if code else {}
        save_for_hf(model, str(folder), model_args={**args, **TINY, **replacements},
                    safe_serialization=name != "uni")  # UNI's hub folder holds pytorch_model.bin only
        config = json.loads((folder / "config.json").read_text())
        for key in replacements:  # as on the hub: passed in code, absent from config.json
            config["model_args"].pop(key)
        config["anndl_weights_note"] = f"random initialisation (NOT pretrained): tiny {name} layout written by timm"
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        cfg = model.pretrained_cfg
        x = (tiles() / 255 - np.asarray(cfg["mean"], np.float32)) / np.asarray(cfg["std"], np.float32)
        with torch.no_grad():
            tokens = model.forward_features(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
        skip = model.num_prefix_tokens
        embedding = tokens[:, 0] if pooling == "cls" else np.concatenate([tokens[:, 0], tokens[:, skip:].mean(1)], 1)
        np.savez(folder / "reference.npz", embedding=embedding, pooling=pooling)
        print(name, arch, sorted(p.name for p in folder.iterdir()), embedding.shape)


def phikon_v2(folder: Path) -> None:
    """Phikon-v2's layout (owkin/phikon-v2: a transformers ``Dinov2Model``, patch 16, layer scale, the class token),
    tiny and random, with its BitImageProcessor config and transformers' embedding of ``tiles()``."""
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, patch_size=16, image_size=224,
                          layerscale_value=0.3)
    model = Dinov2Model(config).eval()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            value.add_(torch.randn(value.shape) * 0.1)
    model.save_pretrained(folder)
    processor = BitImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    saved["anndl_weights_note"] = "random initialisation (NOT pretrained): tiny phikon_v2 layout written by transformers"
    (folder / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    x = (tiles() / 255 - np.asarray(processor.image_mean, np.float32)) / np.asarray(processor.image_std, np.float32)
    with torch.no_grad():
        tokens = model(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2)).last_hidden_state.numpy()
    np.savez(folder / "reference.npz", embedding=tokens[:, 0], pooling="cls")
    print("phikon_v2", sorted(p.name for p in folder.iterdir()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    phikon_v2(Path(sys.argv[1]) / "phikon_v2")
