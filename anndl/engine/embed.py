"""The ``embed`` stage: frozen-encoder tile features cached in ``embeddings.npz`` (encoder by bytes); resumable."""

import dataclasses
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anndl.core import artifacts
from anndl.models import encoders

FILE = "embeddings.npz"
ENCODER = "encoder.json"  # the encoder's whole identity, its source and weights note included
STAGE = "embed"
PARTS = ".parts"


@dataclass
class Embeddings:
    """The arrays of an ``embeddings.npz`` and the record of what made them."""

    embeddings: np.ndarray
    tiles: pd.DataFrame  # sample_index, x, y, split, label, weight (one row per embedding)
    record: dict
    folder: Path
    encoder: dict  # ``encoders.identify``: source, weights note, hash, preprocessing, pooling


def folder_for(work_dir: Path | str, source: str, pooling: str = "cls") -> Path:
    """Where ``train --model linear_probe|attention_mil`` keeps an encoder's cache: ``work_dir/embeddings/<slug>``."""
    source = str(source)
    name = source.removeprefix(encoders.HF_SCHEME) if source.startswith(encoders.HF_SCHEME) else Path(source).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.")[-40:]  # a name, never a machine path
    slug += "_" + encoders.identify(source, pooling)["weights_sha256"][:6]  # by the bytes: a moved copy is reused
    return Path(work_dir) / "embeddings" / (slug + ("" if pooling == "cls" else "_" + pooling.replace("+", "_")))


def embed_request(prep, identity: dict, mixed_precision: str | None = None) -> dict:
    """The request: the encoder by bytes, architecture, preprocessing, pooling (a moved copy is the same request)."""
    encoder = {k: v for k, v in identity.items() if k not in ("source", "weights")}
    inputs = {"tiles": prep.tiles_id, "test_tiles": prep.test_tiles_id}
    return artifacts.request(STAGE, data=prep.data_note, inputs=inputs,
                             settings={"encoder": encoder, "tiling": dataclasses.asdict(prep.tiling),
                                       "mixed_precision": mixed_precision})


def npz_bytes(*arrays, **named) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays, **named)
    return buffer.getvalue()


def encode_fn(model):
    """The encoder ``model`` as one traced inference function (build it once, call it for every batch)."""
    import tensorflow as tf
    return tf.function(lambda x: model(tf.cast(x, "float32"), training=False), reduce_retracing=True)


def features(run, tiles: pd.DataFrame, manifest: pd.DataFrame, splits: tuple[str, ...], *, tile_size: int,
             stride: int | None = None, batch_size: int = 32, stain=None, on_batch=None):
    """(float32 embeddings, image number per tile, image table) of ``splits``' tiles through ``run`` (``encode_fn``)."""
    from anndl.data import pipeline
    dataset = pipeline.tile_dataset(tiles, manifest, splits, tile_size=tile_size, stride=stride,
                                    batch_size=batch_size, with_labels=False, stain=stain)
    out, numbers = [], []
    for batch, image_numbers, _ in dataset:
        out.append(np.asarray(run(batch), np.float32))
        numbers.append(image_numbers.numpy())
        if on_batch is not None:
            on_batch(len(out[-1]))
    return np.concatenate(out), np.concatenate(numbers), pipeline.image_table(tiles, manifest, splits)


def embed(prep, source: str, out_dir: Path | str, *, pooling: str = "cls", batch_size: int = 32,
          mixed_precision: str | None = None, chunk_images: int = 64, redo: bool = False,
          progress: bool = True) -> Embeddings:
    """Embed every tile of ``prep`` with the encoder ``source`` into ``out_dir`` (reused when its record matches)."""
    out_dir = Path(out_dir)
    identity = encoders.identify(source, pooling)
    req = embed_request(prep, identity, mixed_precision)
    table = prep.tiles.assign(_o=prep.tiles.split.map({"train": 0, "val": 1, "test": 2}))  # as features embeds them
    table = table.sort_values(["_o", "sample_index"], kind="stable").drop(columns="_o").reset_index(drop=True)
    image = table.groupby(["split", "sample_index"], sort=False).ngroup().to_numpy()

    def build(out):
        from tqdm.auto import tqdm
        parts, encoder, outputs = out / PARTS / artifacts.fingerprint(req), None, []
        with tqdm(total=len(table), desc=f"embed ({identity['weights'].split(':')[0][:40]})", unit="tile",
                  disable=not progress) as bar:
            for number, tiles in table.groupby(image // chunk_images):
                part = parts / f"part_{number:05d}.npy"
                if part.is_file():  # a chunk an earlier, interrupted run finished
                    bar.update(len(tiles))
                else:
                    if encoder is None:  # loaded and traced once, for every chunk still to embed
                        encoder = encode_fn(encoders.load(source, prep.tiling.tile_size, pooling, mixed_precision,
                                                          identity=identity).model)
                    buffer = io.BytesIO()
                    np.save(buffer, features(encoder, tiles, prep.manifest, ("train", "val", "test"),
                                             tile_size=prep.tiling.tile_size, stride=prep.tiling.stride,
                                             batch_size=batch_size, on_batch=bar.update)[0])
                    artifacts.write_bytes(part, buffer.getvalue())
                outputs.append(artifacts.read_arrays(part)["arr_0"])
        artifacts.write_bytes(out / FILE, npz_bytes(
            embeddings=np.concatenate(outputs).astype(np.float32), sample_index=table.sample_index.to_numpy(str),
            x=table.x.to_numpy(np.int64), y=table.y.to_numpy(np.int64), split=table.split.to_numpy(str),
            label=table.label.fillna("").to_numpy(str), weight=table.weight.to_numpy(np.float32)))
        artifacts.write_json(out / ENCODER, identity)
        shutil.rmtree(out / PARTS, ignore_errors=True)
        return [FILE, ENCODER]

    artifacts.ensure(out_dir, req, build, redo=redo, label=f"{out_dir / FILE}")
    return load(out_dir)


def load(folder: Path | str) -> Embeddings:
    """A finished embedding cache, its files verified against its record."""
    folder = Path(folder)
    record = artifacts.load(folder, STAGE)
    arrays = artifacts.read_arrays(folder / FILE)
    columns = ("sample_index", "x", "y", "split", "label", "weight")
    if missing := {"embeddings", *columns} - set(arrays):
        raise artifacts.ArtifactError(f"{folder / FILE}: not an embedding cache (no {', '.join(sorted(missing))})")
    tiles = pd.DataFrame({k: arrays[k] for k in columns})
    return Embeddings(arrays["embeddings"], tiles, record, folder, artifacts.read_json(folder / ENCODER))
