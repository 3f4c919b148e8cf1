"""Foundation-model encoders (issue 13): checkpoints in the exact Hugging Face layouts, built here with numpy
(no torch, no transformers), through embed, both heads with folds, predict and fine-tuning, offline."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anndl import cli
from anndl.core import artifacts
from anndl.core.config import WeightsUnavailable
from anndl.data import tiling
from anndl.engine import embed, experiment
from anndl.models import encoders
from bench.common import write_random_checkpoint

TILE = 32
TINY_CHECKPOINT = dict(image_size=TILE, patch_size=8, hidden_size=16, num_layers=1, num_heads=2)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {"vit_bare": write_random_checkpoint(root / "vit_bare", "vit", **TINY_CHECKPOINT),
            "vit": write_random_checkpoint(root / "vit", "vit", prefixed=True, **TINY_CHECKPOINT),
            "dinov2": write_random_checkpoint(root / "dinov2", "dinov2", seed=1,
                                                       **TINY_CHECKPOINT | {"image_size": 64})}


def tiles(n=3, size=TILE):
    return np.random.default_rng(0).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_bare_and_prefixed_vit_layouts_read_the_same_tensors(checkpoints):
    assert encoders.hf_layout(checkpoints["vit_bare"]) == "vit_bare"
    assert encoders.hf_layout(checkpoints["vit"]) == "vit"
    assert encoders.hf_layout(checkpoints["dinov2"]) == "dinov2"
    bare, prefixed = (encoders.load(checkpoints[k], TILE) for k in ("vit_bare", "vit"))
    np.testing.assert_allclose(np.asarray(bare.model(tiles())), np.asarray(prefixed.model(tiles())), atol=1e-6)
    assert bare.dim == 16 and not bare.identity["pretrained"] and "NOT pretrained" in bare.identity["weights"]
    both = encoders.load(checkpoints["vit_bare"], TILE, pooling="cls+mean")
    features = np.asarray(both.model(tiles()))
    assert features.shape == (3, 32)
    np.testing.assert_allclose(features[:, :16], np.asarray(bare.model(tiles())), atol=1e-6)


def test_dinov2_interpolates_positions_and_tiles_are_resized(checkpoints):
    encoder = encoders.load(checkpoints["dinov2"], TILE)  # checkpoint trained at 64 px: tiles resized to 64
    assert encoder.identity["preprocessing"]["size"] == 64
    assert encoder.model.get_layer("resize") is not None
    out = np.asarray(encoder.model(tiles()))
    assert out.shape == (3, 16) and np.isfinite(out).all()


def test_preprocessor_config_forms_are_normalised(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "image_size": 224}))
    # the old ViTFeatureExtractor layout (Phikon's era): size as an int, no rescale_factor
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "ViTFeatureExtractor", "size": 224, "do_resize": True, "do_normalize": True,
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3}))
    pre = encoders.hf_preprocessing(folder)
    assert pre.size == 224 and pre.rescale == pytest.approx(1 / 255) and pre.interpolation == "bicubic"
    assert pre.mean == (0.485, 0.456, 0.406)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256}, "do_center_crop": True,
         "crop_size": {"height": 224, "width": 224}, "rescale_factor": 0.00392156862745098}))
    pre = encoders.hf_preprocessing(folder)
    assert pre.size == 224 and pre.mean[0] == pytest.approx(0.48145466)  # transformers' default for Bit
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        encoders.hf_preprocessing(folder)


def test_hf_handle_offline_stops_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as info:
        encoders.identify("hf://owkin/not-a-cached-model")
    message = str(info.value)
    assert "\n" not in message and "--encoder DIR" in message and "huggingface-cli download" in message


def test_unknown_sources_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such encoder"):
        encoders.classify(tmp_path / "missing")
    with pytest.raises(ValueError, match="not an encoder folder"):
        encoders.classify(tmp_path)


@pytest.mark.parametrize("option", [["--stain-normalize", "macenko"], ["--stain-augment", "strong"]])
def test_heads_refuse_stain_options_they_would_ignore(tiny_data, tmp_path, capsys, option):
    """A head trains on cached embeddings of raw tiles: a stain option would be silently ignored."""
    args = ["train", "--model", "linear_probe", "--encoder", "unused", "--data", str(tiny_data),
            "--out", str(tmp_path / "run"), *option]
    assert cli.main(args) == 2
    assert "do not apply" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def embedded(tiny_data, checkpoints, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    common = ["--data", str(tiny_data), "--work", str(work), "--tile-size", str(TILE)]
    embed.embed(_prepared(tiny_data, work), str(checkpoints["vit_bare"]), work / "emb")
    return work, common


def _prepared(data, work):
    """The data stages as ``train --tile-size TILE`` makes them."""
    return experiment.prepare(data, work, tiling_config=tiling.TilingConfig(TILE, TILE, 200))


def test_embed_writes_the_cache_with_its_record_and_reuses_it(embedded, checkpoints, tiny_data, capsys):
    work, _ = embedded
    emb = embed.load(work / "emb")
    tiles_csv = pd.concat([pd.read_csv(work / "tiles" / "tiles.csv", keep_default_na=False),
                           pd.read_csv(work / "tiles" / "test" / "tiles.csv", keep_default_na=False)])
    assert len(emb.embeddings) == len(tiles_csv) and emb.embeddings.dtype == np.float32
    assert set(emb.tiles.split) == {"train", "val", "test"}
    merged = emb.tiles.merge(tiles_csv, on=["split", "sample_index", "x", "y"], validate="one_to_one")
    assert len(merged) == len(tiles_csv) and (merged.label_x == merged.label_y).all()
    settings = emb.encoder
    assert settings["layout"] == "vit_bare" and "NOT pretrained" in settings["weights"]
    assert "source" not in emb.record["settings"]["encoder"]  # known by its bytes, not where it lay
    assert settings["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and settings["weights_sha256"]
    embed.embed(_prepared(tiny_data, work), str(checkpoints["vit_bare"]), work / "emb")
    assert "reusing" in capsys.readouterr().out


def test_embed_resumes_from_finished_chunks(embedded, checkpoints, tiny_data):
    work, _ = embedded
    prep = _prepared(tiny_data, work)
    identity = encoders.identify(checkpoints["vit_bare"])
    req = embed.embed_request(prep, identity)
    first = embed.load(work / "emb")
    t = first.tiles
    chunk = 8  # images per chunk: 4 chunks of the tiny folder's images
    first_images = t[["split", "sample_index"]].drop_duplicates().head(chunk)
    n = int(t.merge(first_images).shape[0])  # chunk 0: the tiles of the first 8 images, the first rows
    part = work / "emb2" / artifacts.STAGING / embed.PARTS / artifacts.fingerprint(req) / "part_00000.npy"
    part.parent.mkdir(parents=True)
    np.save(part, np.full((n, 16), 7.0, np.float32))  # as a killed run would have left it
    again = embed.embed(prep, str(checkpoints["vit_bare"]), work / "emb2", chunk_images=chunk, progress=False)
    assert (again.embeddings[:n] == 7).all()
    np.testing.assert_allclose(again.embeddings[n:], first.embeddings[n:], atol=1e-5)
    assert not (work / "emb2" / artifacts.STAGING).exists() and not (work / "emb2" / embed.PARTS).exists()


def test_a_moved_encoder_is_reused_and_one_changed_byte_is_not(embedded, checkpoints, tiny_data, tmp_path, capsys):
    import shutil

    work, _ = embedded
    moved = shutil.copytree(checkpoints["vit_bare"], tmp_path / "elsewhere" / "vit_bare")
    prep = _prepared(tiny_data, work)
    capsys.readouterr()
    embed.embed(prep, str(moved), work / "emb")
    assert "reusing" in capsys.readouterr().out
    assert embed.folder_for(work, str(moved)) == embed.folder_for(work, str(checkpoints["vit_bare"]))
    weights = moved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # the last tensor's values changed at the same size
    weights.write_bytes(bytes(data))
    identity = encoders.identify(moved)
    assert identity["weights_sha256"] != encoders.identify(checkpoints["vit_bare"])["weights_sha256"]
    assert "weights_sha256" in artifacts.check(work / "emb", embed.embed_request(prep, identity))


def test_a_planted_head_file_runs_nothing(embedded, checkpoints, tiny_data, tmp_path, capsys):
    """A run folder is data: a head file replaced by a pickle payload (its record's hash updated, as anyone
    sharing the folder can) is refused with one line; the payload never runs."""
    import io
    import pickle

    work, common = embedded
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "linear_probe", "--encoder", str(checkpoints["vit_bare"]), "--embeddings",
                     str(work / "emb"), "--out", str(run), *common]) == 0
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("head.npz", "head.pkl"):
        buffer = io.BytesIO()
        np.savez(buffer, **{"tiles.logisticregression.coef_": np.array([Payload()], dtype=object)})
        (run / name).write_bytes(pickle.dumps(Payload()) if name == "head.pkl" else buffer.getvalue())
    record = json.loads((run / artifacts.RECORD).read_text())
    record["files"]["head.npz"] = artifacts.file_entry(run / "head.npz")
    (run / artifacts.RECORD).write_text(json.dumps(record))
    capsys.readouterr()
    assert cli.main(["predict", "--run", str(run), "--data", str(tiny_data), "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "head.npz: not an array file" in err and "Traceback" not in err and not marker.exists()


def test_a_head_trains_out_of_fold_and_predicts_from_the_command_line(embedded, checkpoints, tiny_data, tmp_path):
    """The CLI's path (every head's lifecycle through the API: tests/test_runs.py)."""
    work, common = embedded
    head = "linear_probe"
    run = work / f"run_{head}"
    args = ["train", "--model", head, "--encoder", str(checkpoints["vit_bare"]), "--embeddings", str(work / "emb"),
            "--out", str(run), "--folds", "2", *common]
    assert cli.main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds"] == 2 and 0 <= metrics["oof_macro_f1"] <= 1 and len(metrics["oof_macro_f1_ci"]) == 2
    assert "NOT pretrained" in metrics["weights"] and metrics["encoder"]["weights_sha256"]
    oof = pd.read_csv(run / "oof_predictions.csv", keep_default_na=False)
    assert oof.sample_index.is_unique and set(oof.fold) == {0, 1}
    assert artifacts.load(run, "head")["inputs"]["embeddings"] == embed.load(work / "emb").record["id"]
    out = tmp_path / "submission.csv"
    assert cli.main(["predict", "--run", str(run), "--data", str(tiny_data), "--out", str(out)]) == 0
    submission = pd.read_csv(out)
    assert len(submission) == 6 and list(submission.columns) == ["sample_index", "label"]
    assert "NOT pretrained" in json.loads(out.with_suffix(".json").read_text())["weights"][0]


# ------------------------------------------------------- timm checkpoints (issue 37): UNI, UNI2-h, Virchow2, ...

TIMM = Path(__file__).parent / "data" / "timm"  # written by timm (and transformers) itself: bench/timm_references.py


@pytest.mark.parametrize("layout", sorted(p.name for p in TIMM.iterdir()))
def test_timm_checkpoints_give_timms_embedding(layout):
    from bench.timm_references import tiles

    reference = np.load(TIMM / layout / "reference.npz")
    encoder = encoders.load(TIMM / layout, 224, pooling=str(reference["pooling"]))
    got, want = np.asarray(encoder.model(tiles())), reference["embedding"]
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == want.shape and cosine.min() >= 0.9999, cosine
    assert encoder.identity["layout"] == ("dinov2" if layout == "phikon_v2" else "timm")  # phikon_v2: transformers'
    assert not encoder.identity["pretrained"]


def test_a_pytorch_file_that_holds_code_is_refused_without_running_it(tmp_path):
    import pickle
    import zipfile

    folder = tmp_path / "uni"
    folder.mkdir()
    (folder / "config.json").write_text((TIMM / "uni" / "config.json").read_text())
    marker = tmp_path / "ran"
    with zipfile.ZipFile(folder / "pytorch_model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Planted(str(marker))))
    with pytest.raises(pickle.UnpicklingError, match=r"pytorch_model.bin: holds posix.system|holds os.system"):
        encoders.load(folder, 224)
    assert not marker.exists()


class Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)
