"""The data stages as recorded artifacts: clean -> ``clean/``, split + tile -> ``tiles/``; no TensorFlow: fast start."""

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from anndl.core import artifacts
from anndl.core.env import portable
from anndl.core.labels import LABELS
from anndl.data import CLASSES_FILE, LABELS_FILE, DataError, describe_data, read_challenge, read_classes
from anndl.data import outliers, tiling

VAL_FRACTION = 0.1  # the report's validation share of the cleaned train images


def shown(path: Path | str) -> str:
    """A path as printed: relative to the working directory below it, else ``portable`` (no machine path shown)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return portable(path.resolve())


def fingerprint(manifest: pd.DataFrame) -> str:
    """A short hash of every image's name, label, size, mask pixels and file bytes (a restained tissue: other data)."""
    columns = ["split", "sample_index", "label", "height", "width", "mask_pixels", "content_hash"]
    return artifacts.fingerprint(manifest[columns].to_csv(index=False))


def data_note(data_dir: Path | str, manifest: pd.DataFrame, splits: tuple[str, ...] = ("train",)) -> str:
    """The data note: folder, kind, ``splits``' fingerprint (train: a changed test image remakes only test readers)."""
    return f"{describe_data(data_dir)} [fingerprint {fingerprint(manifest[manifest.split.isin(splits)])}]"


@dataclass
class Prepared:
    """A validated challenge folder with its cleaning, split and tiles (and the ids of those artifacts)."""

    data_dir: Path
    work_dir: Path
    manifest: pd.DataFrame
    clean: pd.DataFrame
    split: pd.DataFrame
    tiles: pd.DataFrame
    tiling: tiling.TilingConfig
    classes: tuple[str, ...] = LABELS  # the label set, in model-output order (data.read_classes)
    tiles_id: str = ""                 # the train/val tiles artifact this split comes from (runs record it)
    test_tiles_id: str = ""            # the test tiles artifact (what reads the test set records it)
    stain: dict | None = None          # stain normalisation (method, constants, reference) tiles get on decoding
    baseline_scores: dict | None = field(default=None, repr=False)  # computed once per split, on first use

    @property
    def data_note(self) -> str:
        return data_note(self.data_dir, self.manifest)

    def require_every_class(self) -> None:
        """A ``DataError`` for a label set with a class that no kept training image carries."""
        kept = set(self.clean.label[self.clean.status == "kept"])
        if missing := [c for c in self.classes if c not in kept]:
            has_classes = (Path(self.data_dir) / CLASSES_FILE).is_file()
            where = Path(self.data_dir) / (CLASSES_FILE if has_classes else LABELS_FILE)
            raise DataError(where, f"no kept training image of class {', '.join(map(repr, missing))}: a model would "
                                   "never predict it and macro F1 would count it as 0; add its images, or list the "
                                   f"classes the folder has in {CLASSES_FILE} (data/README.md)")


def clean_stage(manifest: pd.DataFrame, note: str, folder: Path | str, embedder: str = "offline",
                config: outliers.OutlierConfig = outliers.OutlierConfig(), redo: bool = False) -> dict:
    """``folder/clean_manifest.csv``: every train image ``kept``, ``sticker`` or ``green`` (reused when recorded)."""
    folder = Path(folder)
    req = artifacts.request("clean", data=note, settings={"embedder": embedder, "config": asdict(config)})

    def build(out):
        cleaned = outliers.clean(manifest, outliers.make_embedder(embedder, config), config)
        artifacts.write_csv(cleaned, out / "clean_manifest.csv")
        summary = {"data": note, "config": asdict(config), **outliers.summary(cleaned)}
        artifacts.write_json(out / "clean_summary.json", summary)
        return ["clean_manifest.csv", "clean_summary.json"]
    return artifacts.ensure(folder, req, build, redo=redo, label=shown(folder / "clean_manifest.csv"), verb="cleaning")


def tiles_stage(manifest: pd.DataFrame, note: str, clean_folder: Path | str, folder: Path | str,
                config: tiling.TilingConfig = tiling.TilingConfig(), seed: int = 42, redo: bool = False) -> dict:
    """``folder/split.csv`` (image-level, stratified, mask groups together) and the train/val ``folder/tiles.csv``."""
    req = artifacts.request("tiles", data=note, inputs={"clean": artifacts.load(clean_folder, "clean")["id"]},
                            settings={"tiling": asdict(config), "val_fraction": VAL_FRACTION, "seed": seed})

    def build(out):
        clean = artifacts.read_csv(Path(clean_folder) / "clean_manifest.csv")
        split = tiling.split_images(clean[clean.status == "kept"], VAL_FRACTION, seed)
        artifacts.write_csv(split, out / "split.csv")
        tiling.write_tiles(tiling.build_tiles(manifest, clean, split, config), out, config, note)
        return ["split.csv", "tiles.csv", "tiles.json"]
    return artifacts.ensure(folder, req, build, redo=redo, label=shown(Path(folder) / "tiles.csv"), verb="tiling")


def test_tiles_stage(manifest: pd.DataFrame, note: str, folder: Path | str,
                     config: tiling.TilingConfig = tiling.TilingConfig(), redo: bool = False) -> dict:
    """``folder/tiles.csv``: the tiles of every test image (``note``: the test images' data note)."""
    req = artifacts.request("test_tiles", data=note, settings={"tiling": asdict(config)})

    def build(out):
        tiling.write_tiles(tiling.tile_test_images(manifest, config), out, config, note)
        return ["tiles.csv", "tiles.json"]
    return artifacts.ensure(folder, req, build, redo=redo, label=shown(Path(folder) / "tiles.csv"), verb="tiling")


def stain_stage(manifest: pd.DataFrame, note: str, clean_folder: Path | str, folder: Path | str,
                method: str = "macenko", max_images: int = 64, seed: int = 0, redo: bool = False) -> dict:
    """``folder/stain.json``: the stain normaliser a run's tiles go through when decoded (``method``, a reference
    fitted on the ROI tissue of up to ``max_images`` kept train images); prediction applies the same."""
    from anndl.data import stain  # it also holds a Keras layer: imported on use
    if method not in stain.METHODS:
        raise ValueError(f"stain normalisation must be one of {stain.METHODS}, got {method!r}")
    req = artifacts.request("stain", data=note, inputs={"clean": artifacts.load(clean_folder, "clean")["id"]},
                            settings={"method": method, "max_images": max_images, "seed": seed})

    def build(out):
        clean = artifacts.read_csv(Path(clean_folder) / "clean_manifest.csv")
        kept = manifest[manifest.sample_index.isin(clean[clean.status == "kept"].sample_index)
                        & (manifest.split == "train")]
        reference = stain.reference_from_manifest(kept, max_images, seed)
        artifacts.write_json(out / "stain.json", stain.StainNormalizer(reference, method).settings())
        return ["stain.json"]
    return artifacts.ensure(folder, req, build, redo=redo, label=shown(Path(folder) / "stain.json"),
                            verb="fitting the stain reference")


def prepare(data_dir: Path | str, work_dir: Path | str, embedder: str = "offline",
            tiling_config: tiling.TilingConfig = tiling.TilingConfig(), seed: int = 42, redo: bool = False,
            outlier_config: outliers.OutlierConfig = outliers.OutlierConfig(), stain_normalize: str | None = None
            ) -> Prepared:
    """Validate the folder, then clean -> ``work_dir/clean``, split + tile -> ``work_dir/tiles`` and, with
    ``stain_normalize`` (``macenko`` or ``reinhard``), fit a stain reference -> ``work_dir/stain_<method>``."""
    data_dir, work_dir = Path(data_dir), Path(work_dir)
    manifest = read_challenge(data_dir)
    note = data_note(data_dir, manifest)
    clean_stage(manifest, note, work_dir / "clean", embedder, outlier_config, redo=redo)
    record = tiles_stage(manifest, note, work_dir / "clean", work_dir / "tiles", tiling_config, seed, redo=redo)
    test_record = test_tiles_stage(manifest, data_note(data_dir, manifest, ("test",)), work_dir / "tiles" / "test",
                                   tiling_config, redo=redo)
    stain = None
    if stain_normalize:
        folder = work_dir / f"stain_{stain_normalize}"
        stain_stage(manifest, note, work_dir / "clean", folder, stain_normalize, redo=redo)
        stain = artifacts.read_json(folder / "stain.json")
    return Prepared(data_dir, work_dir, manifest, artifacts.read_csv(work_dir / "clean" / "clean_manifest.csv"),
                    artifacts.read_csv(work_dir / "tiles" / "split.csv"),
                    pd.concat([artifacts.read_csv(work_dir / "tiles" / "tiles.csv"),
                               artifacts.read_csv(work_dir / "tiles" / "test" / "tiles.csv")], ignore_index=True),
                    tiling_config, read_classes(data_dir), tiles_id=record["id"], test_tiles_id=test_record["id"],
                    stain=stain)


def weights_identity(weights: str | None) -> dict | None:
    """A ``--weights`` source by its bytes: sha256 of a file or a folder's files (remembered), else its name."""
    if not weights:
        return None
    path = Path(weights)
    if path.is_file():
        return {"sha256": artifacts.content_digest(path)}
    if path.is_dir():
        listing = sorted((p.relative_to(path).as_posix(), artifacts.content_digest(p))
                         for p in path.rglob("*") if p.is_file())
        return {"files_sha256": artifacts.fingerprint(listing)}
    return {"name": weights}  # a name or handle: downloaded by name
