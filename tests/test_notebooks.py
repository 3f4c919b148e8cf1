"""Every notebook runs top-to-bottom in the smoke profile on a tiny synthetic set (as `make test` promises)."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))
EXTRA = {"07_beyond": {"FOLDS": 2}, "08_foundation": {"FOLDS": 2},  # the fewest folds that cross-validate (07 and 08
         # reuse table 1's K-fold runs)
         **{name: {"COMPARE_FOLDS": 2} for name in ("04_scratch_resnet", "05_convnext", "06_vit")}}


@pytest.fixture(scope="module")
def notebook_dirs(tiny_data, shared_outputs, tmp_path_factory):
    """The session's shared outputs, so later notebooks reuse earlier steps as `make notebooks` does (and the
    comparisons tests/test_compare.py ran); the data is a copy under another name, reused by its content."""
    base = tmp_path_factory.mktemp("notebooks")
    data = Path(shutil.copytree(tiny_data, base / "data"))
    return data, shared_outputs, base / "rendered"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(notebook, notebook_dirs, monkeypatch):
    import papermill

    data, outputs, rendered = notebook_dirs
    rendered.mkdir(exist_ok=True)
    # the kernel is the interpreter running the tests
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    table1 = (outputs / "compare" / "table1" / "record.json").is_file()  # tests/test_compare.py ran before
    papermill.execute_notebook(str(notebook), str(rendered / notebook.name), cwd=str(notebook.parent),
                               parameters={"DATA_DIR": str(data), "PROFILE": "smoke", "SEED": 42,
                                           "MIXED_PRECISION": None,  # float32, as the K-fold runs test_compare made
                                           "OUTPUT_DIR": str(outputs), **EXTRA.get(notebook.stem, {})},
                               kernel_name="python3", progress_bar=False)
    made = [p.name for p in (outputs / "figures").glob(f"{notebook.stem[:2]}_*")]
    assert made, f"{notebook.name} saved no figure of its own"  # each notebook draws its own figures
    nb = json.loads((rendered / notebook.name).read_text())
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    reused = [line for line in printed.splitlines() if line.startswith("reusing ") and "compare/runs/" in line]
    # 07's families and 08's scratch ResNet are the comparisons' K-fold runs (table 1's: the same request)
    if notebook.stem == "08_foundation" or (notebook.stem == "07_beyond" and table1):
        expected = ["scratch_resnet"] + (["vit"] if notebook.stem == "07_beyond" else [])
        assert sorted(line.rsplit("/", 1)[1].split("-")[0] for line in reused) == expected, printed[-3000:]
        assert "Epoch 1/" not in printed, printed[-3000:]
