"""The ``embed`` stage: a frozen encoder's feature for every tile, cached once as ``embeddings.npz``.

Running a foundation model over every tile is the whole cost of using it (on a CPU, and for ViT-L even on a
GPU); heads trained on the cache (``anndl.engine.heads``) take seconds, so many of them can be tried on one pass.
``embeddings.npz`` holds ``embeddings`` (float32, one row per tile), ``sample_index``, ``x``, ``y`` (the
tile's top-left pixel in the original image, as in ``tiles.csv``), ``split`` (train / val / test),
``label`` (empty for test) and ``weight`` (the tile's share of its image's mask). Its ``record.json``
(``anndl.core.artifacts``) names the encoder (source, architecture, weights note and hash, preprocessing,
pooling), the tiles it read and the precision, so the cache is reused exactly when nothing changed.

Long runs are resumable: tiles are embedded in chunks of images, each chunk kept under
``.parts/<request>/`` until the whole array is written, so a killed run starts again at its first missing chunk.
"""

from __future__ import annotations

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
STAGE = "embed"
PARTS = ".parts"


@dataclass
class Embeddings:
    """The arrays of an ``embeddings.npz`` and the record of what made them."""

    embeddings: np.ndarray
    tiles: pd.DataFrame  # sample_index, x, y, split, label, weight (one row per embedding)
    record: dict
    folder: Path

    encoder: dict  # what made them (``identify``: source, weights note, hash, preprocessing, pooling)


def folder_for(work_dir: Path | str, source: str, pooling: str = "cls") -> Path:
    """Where ``train --model linear_probe|attention_mil`` keeps an encoder's cache: ``work_dir/embeddings/<slug>``."""
    source = str(source)
    name = source.removeprefix(encoders.HF_SCHEME) if source.startswith(encoders.HF_SCHEME) else Path(source).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.")[-40:]  # a name, never a machine path
    slug += "_" + encoders.identify(source, pooling)["weights_sha256"][:6]  # by the bytes: a moved copy is reused
    return Path(work_dir) / "embeddings" / (slug + ("" if pooling == "cls" else "_" + pooling.replace("+", "_")))


def tiles_id(prep) -> str:
    """The identity of the tiles an embedding reads (``prep.tiles_id`` where the tiling stage records one)."""
    return getattr(prep, "tiles_id", None) or artifacts.fingerprint(prep.tiles.to_csv())


ENCODER = "encoder.json"  # the encoder's whole identity, its source and weights note included


def embed_request(prep, identity: dict, mixed_precision: str | None = None) -> dict:
    """The encoder is known by its bytes, architecture, preprocessing and pooling: a moved copy is the same
    request (where it lay is in ``encoder.json``, for information)."""
    encoder = {k: v for k, v in identity.items() if k not in ("source", "weights")}
    return artifacts.request(STAGE, data=prep.data_note,
                             inputs={"tiles": tiles_id(prep), "test_tiles": getattr(prep, "test_tiles_id", "")},
                             settings={"encoder": encoder, "tiling": dataclasses.asdict(prep.tiling),
                                       "mixed_precision": mixed_precision})


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def encode_fn(model):
    """The encoder ``model`` as one traced inference function (build it once, call it for every batch)."""
    import tensorflow as tf

    return tf.function(lambda x: model(tf.cast(x, "float32"), training=False), reduce_retracing=True)


def features(run, tiles: pd.DataFrame, manifest: pd.DataFrame, splits: tuple[str, ...], *, tile_size: int,
             stride: int | None = None, batch_size: int = 32, stain=None, on_batch=None):
    """(embeddings (n_tiles, D) float32, image number per tile, image table) of the tiles of ``splits`` through
    ``run`` (``encode_fn(model)``), in ``pipeline.tile_dataset``'s order (``stain``: the normaliser the tiles
    need; ``on_batch(n)``: called after each batch, for a progress bar). The one place tiles become embeddings:
    the cache below and the comparisons' attention-MIL both call it."""
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
    """Embed every tile of ``prep`` (train, val and test) with the encoder ``source`` into ``out_dir``;
    reuse ``out_dir`` when its record matches. Returns the loaded ``Embeddings``."""
    out_dir = Path(out_dir)
    identity = encoders.identify(source, pooling)
    req = embed_request(prep, identity, mixed_precision)
    table = prep.tiles.assign(_o=prep.tiles.split.map({"train": 0, "val": 1, "test": 2}))
    table = table.sort_values(["_o", "sample_index"], kind="stable").drop(columns="_o").reset_index(drop=True)

    def build(out):
        from tqdm.auto import tqdm

        from anndl.data import pipeline

        tile_size, stride = prep.tiling.tile_size, prep.tiling.stride
        parts = out / PARTS / artifacts.fingerprint(req)
        images = table[["split", "sample_index"]].drop_duplicates()
        chunks = [images.iloc[i:i + chunk_images] for i in range(0, len(images), chunk_images)]
        encoder = None
        rows, outputs = [], []
        bar = tqdm(total=len(table), desc=f"embed ({identity['weights'][:40]})", unit="tile", disable=not progress)
        for number, chunk in enumerate(chunks):
            keys = set(zip(chunk.split, chunk.sample_index))
            tiles = table[[k in keys for k in zip(table.split, table.sample_index)]]
            image_table = pipeline.image_table(tiles, prep.manifest, ("train", "val", "test"))
            order = pd.DataFrame({"split": np.repeat(image_table.split, image_table.tile_x.map(len)),
                                  "sample_index": np.repeat(image_table.sample_index, image_table.tile_x.map(len)),
                                  "x": np.concatenate(image_table.tile_x.to_list()),
                                  "y": np.concatenate(image_table.tile_y.to_list())})
            rows.append(order.merge(tiles, on=["split", "sample_index", "x", "y"], how="left", validate="one_to_one"))
            part = parts / f"part_{number:05d}.npy"
            if part.is_file():  # a chunk an earlier, interrupted run finished
                outputs.append(artifacts.read_arrays(part)["arr_0"])
                bar.update(len(order))
                continue
            if encoder is None:  # loaded and traced once, for every chunk still to embed
                encoder = encode_fn(encoders.load(source, tile_size, pooling, mixed_precision, identity=identity).model)
            chunk_features, _, _ = features(encoder, tiles, prep.manifest, ("train", "val", "test"),
                                            tile_size=tile_size, stride=stride, batch_size=batch_size,
                                            on_batch=bar.update)
            buffer = io.BytesIO()
            np.save(buffer, chunk_features)
            artifacts.write_bytes(part, buffer.getvalue())
            outputs.append(chunk_features)
        bar.close()
        rows = pd.concat(rows, ignore_index=True)
        artifacts.write_bytes(out / FILE, _npz_bytes(
            embeddings=np.concatenate(outputs).astype(np.float32), sample_index=rows.sample_index.to_numpy(str),
            x=rows.x.to_numpy(np.int64), y=rows.y.to_numpy(np.int64), split=rows.split.to_numpy(str),
            label=rows.label.fillna("").to_numpy(str), weight=rows.weight.to_numpy(np.float32)))
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
    missing = {"embeddings", "sample_index", "x", "y", "split", "label", "weight"} - set(arrays)
    if missing:
        raise artifacts.ArtifactError(f"{folder / FILE}: not an embedding cache (no {', '.join(sorted(missing))})")
    tiles = pd.DataFrame({k: arrays[k] for k in ("sample_index", "x", "y", "split", "label", "weight")})
    return Embeddings(arrays["embeddings"], tiles, record, folder, artifacts.read_json(folder / ENCODER))
