"""Colab and Kaggle as a user meets them: committed notebooks whose parameters cell is what runs, one repository
address, the runtime's own stack topped up (never its TensorFlow), and a notebook opened outside the repository
that clones it, finds the attached data and keeps its outputs where they outlive the session (simulated through
the environment variables that name the runtime's folders)."""

import ast
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from anndl.core.config import REPO_ROOT
from anndl.data import read_challenge
from anndl.data.stages import fingerprint
from anndl.notebook import hosted

rendering = SimpleNamespace(**runpy.run_path(str(REPO_ROOT / "notebooks" / "render.py")))  # make notebooks' tool
publishing = SimpleNamespace(**runpy.run_path(str(REPO_ROOT / "notebooks" / "publish.py")))  # make publish's

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("0*.ipynb"))
ADDRESS = re.compile(r'(\$\{ANNDL_REPOSITORY:-)([^}]*)\}')  # the fetch cell's repository address
COMPARED = ("runs/scratch_resnet_smoke/metrics.json", "runs/scratch_resnet_smoke/log.csv",
            "submissions/scratch_resnet_smoke.csv")


def _code(notebook: Path) -> list[dict]:
    return [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]


def _setup_cell(address: str | None = None, kaggle_input: str = "/kaggle/input") -> str:
    """Every notebook's fetch cell (the first code cell after the parameters), ``address`` its repository's, the
    Kaggle input folder ``kaggle_input``."""
    cell = "".join(_code(NOTEBOOKS[0])[1]["source"]).replace("/kaggle/input/", kaggle_input.rstrip("/") + "/")
    return cell if address is None else ADDRESS.sub(lambda m: f"{m[1]}{address}}}", cell)


# ------------------------------------------------------------------------ committed notebooks, parameters

@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_runs_what_its_parameters_cell_says(notebook):
    cells = _code(notebook)
    assert not [c for c in cells if rendering.INJECTED in c["metadata"].get("tags", [])], "an injected cell"
    assert "parameters" in cells[0]["metadata"].get("tags", [])
    names = {t.id for node in ast.parse("".join(cells[0]["source"])).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    assert {"DATA_DIR", "PROFILE", "SEED", "OUTPUT_DIR", "DRIVE"} <= names
    values = {t.id: node.value for node in ast.parse("".join(cells[0]["source"])).body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}
    for name in ("DATA_DIR", "OUTPUT_DIR", "DRIVE"):  # a committed rendering carries no machine's folder
        assert isinstance(values[name], ast.Constant) and values[name].value is None, name
    setup = "".join(cells[1]["source"])  # one fetch cell, word for word, the repository's address in it
    assert setup == "".join(_code(NOTEBOOKS[0])[1]["source"]), "the fetch cell differs from 01's"
    assert ADDRESS.search(setup)[2] == hosted.repository()
    code = [line for line in setup.splitlines() if not line.startswith("#")]
    assert len(code) <= 3 and code[0].startswith("![ -d ../anndl ]"), code
    last = "".join(cells[2]["source"]).splitlines()
    assert last[-2:][0] == "import anndl.notebook" and last[-1].startswith("CTX = anndl.notebook.setup(globals()")
    for cell in cells[1:]:  # no later cell sets a parameter again
        for node in ast.parse(re.sub(r"(?m)^(\s*)[%!]", r"\1#", "".join(cell["source"]))).body:  # magics
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for t in ast.walk(target):
                    assert not (isinstance(t, ast.Name) and t.id in names), f"a later cell sets {t.id}"


def test_fold_parameters_writes_the_values_into_the_parameters_cell():
    cell = lambda tags, source, n: {"cell_type": "code", "metadata": {"tags": tags}, "source": source,
                                    "execution_count": n, "outputs": []}
    notebook = {"cells": [cell(["parameters"], ['DATA_DIR = None   # None: data/\n', 'PROFILE = "smoke"\n', 'SEED = 1'], 1),
                          cell(["injected-parameters"], ['# Parameters\n', 'PROFILE = "full"\n', 'SEED = 42\n',
                                                         'EXTRA = [1, 2]\n'], 2),
                          cell([], ["print(PROFILE)"], 3)]}
    folded = rendering.fold_parameters(notebook)
    assert [c["execution_count"] for c in folded["cells"]] == [1, 2]
    assert "".join(folded["cells"][0]["source"]) == ('DATA_DIR = None   # None: data/\nPROFILE = "full"\nSEED = 42\n'
                                                     'EXTRA = [1, 2]\n')
    assert "injected-parameters" not in json.dumps(folded)


def test_a_rendering_keeps_a_progress_bar_as_its_last_line():
    stream = lambda name, text: {"output_type": "stream", "name": name, "text": text}
    outputs = [stream("stderr", "\rtiles:   0%| 0/9"), stream("stderr", ["\rtiles:  50%| 4/9", "\rtiles: 100%| 9/9\n"]),
               stream("stdout", "fold 1/3: done\n"), {"output_type": "display_data", "data": {}, "metadata": {}},
               stream("stdout", "a\r\nb\n")]
    cell = rendering.settle_streams({"cells": [{"cell_type": "code", "outputs": outputs}]})["cells"][0]
    assert [("".join(o["text"]) if "text" in o else o["output_type"]) for o in cell["outputs"]] == [
        "tiles: 100%| 9/9\n", "fold 1/3: done\n", "display_data", "a\nb\n"]


def test_a_rendering_states_one_run_time_its_own():
    header = {"cell_type": "markdown", "metadata": {}, "source": [
        "# 04\n", "**Run time.** This 2-core CPU: ~3.5 min (207 s, this rendering). Colab T4: ~1 min (**estimates**).\n"]}
    footer = {"cell_type": "code", "metadata": {}, "execution_count": 9, "source": ["print(footer(...))"],
              "outputs": [{"output_type": "stream", "name": "stdout",
                           "text": ["wall time: 196 s · hardware: 2 CPU cores (Xeon), 0 GPUs · seed: 42\n"]}]}
    text = "".join(rendering.stamp_run_time({"cells": [header, footer]})["cells"][0]["source"])
    assert "**Run time.** This rendering: 196 s on 2 CPU cores (Xeon), 0 GPUs (the footer's wall time" in text
    assert "207" not in text and "3.5 min" not in text and "Colab T4: ~1 min (**estimates**)" in text


def test_one_rendering_run_names_one_commit(monkeypatch):
    from anndl.core import env

    monkeypatch.setenv("ANNDL_COMMIT", "abc1234")
    assert env.commit() == "abc1234"
    monkeypatch.delenv("ANNDL_COMMIT")
    assert env.commit() != "abc1234"


# --------------------------------------------------------------------------------- repository address

def test_publish_leaves_no_placeholder_in_what_a_user_opens(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "notebooks", tmp_path / "notebooks")
    assert "OWNER" in (tmp_path / "README.md").read_text()
    with pytest.raises(ValueError, match="github.com/<owner>/<name>"):
        publishing.publish("git@github.com:me/anndl", tmp_path)
    changed = publishing.publish("https://github.com/someone/anndl-fork", tmp_path)
    assert len(changed) == 2 + len(NOTEBOOKS)
    for path in [tmp_path / "pyproject.toml", tmp_path / "README.md", *(tmp_path / "notebooks").glob("*.ipynb")]:
        assert "OWNER" not in path.read_text(), path
    assert 'Repository = "https://github.com/someone/anndl-fork"' in (tmp_path / "pyproject.toml").read_text()
    setup = "".join(_code(tmp_path / "notebooks" / "04_scratch_resnet.ipynb")[1]["source"])
    assert setup == _setup_cell("https://github.com/someone/anndl-fork")
    assert not list(tmp_path.rglob("*.part"))


def _run_cells(sources: list[str], cwd: Path, env: dict, timeout: int = 300):
    """Execute code cells in a fresh kernel as Jupyter does; the executed notebook (errors kept in outputs)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def _errors(nb) -> list[dict]:
    return [o for c in nb.cells for o in c.outputs if o.output_type == "error"]


def test_fetch_cell_without_network_shows_why_and_never_runs_the_address(tmp_path):
    """Opened alone without a reachable repository or an attached one: git's and cp's reasons in the cell; an
    address that looks like an option or a shell command is read as an address, never run."""
    working = tmp_path / "working"
    working.mkdir()
    marker = tmp_path / "pwned"
    env = {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "ANNDL_REPOSITORY": f"file://{tmp_path}/nowhere"}
    for address in (f"file://{tmp_path}/nowhere", f"--upload-pack=touch {marker};false", f"$(touch {marker})"):
        nb = _run_cells([_setup_cell(kaggle_input=str(tmp_path / "input"))], working, {**env, "ANNDL_REPOSITORY": address})
        printed = "".join(o.get("text", "") for c in nb.cells for o in c.outputs)
        assert "fatal:" in printed and address.removeprefix("file://") in printed and "cannot stat" in printed, printed
        assert not _errors(nb) and not (working / "anndl").exists()
    assert not marker.exists()


# -------------------------------------------------------------------------------- the runtime's stack

def test_install_plan_tops_up_and_never_touches_the_runtimes_own():
    wanted = ["tensorflow>=2.19", "keras>=3.15", "numpy>=2.0.2", "opencv-python-headless>=4.10.0.84", "jax>=0.5"]
    installed = {"tensorflow": "2.18.0", "keras": "3.10.0", "numpy": "2.4.6", "opencv-python-headless": None,
                 "jax": None}
    install, problems = hosted.install_plan(wanted, installed)
    assert install == ["keras>=3.15", "opencv-python-headless>=4.10.0.84"]
    assert len(problems) == 2 and "tensorflow 2.18.0 (needs tensorflow>=2.19)" in problems[0] and "jax" in problems[1]
    assert hosted.install_plan(wanted, {**installed, "tensorflow": "2.19.0+cuda", "keras": "3.15.0",
                                        "opencv-python-headless": "4.12.0", "jax": "0.5.0"}) == ([], [])


def test_lower_bounds_are_below_the_pins_and_cover_the_imports():
    bounds = [Requirement(r) for r in hosted.requirements()]
    pins = dict(line.split("==") for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    names = {b.name for b in bounds}
    assert {"tensorflow", "keras", "keras-hub", "numpy", "pandas", "scikit-learn", "matplotlib"} <= names
    for bound in bounds:
        assert str(bound.specifier).startswith(">=") and bound.specifier.contains(pins[bound.name]), bound


def test_runtime_constraints_pin_tensorflow_jax_and_cuda(monkeypatch):
    class Dist:
        def __init__(self, name, version):
            self.metadata, self.version = {"Name": name}, version

    fake = [Dist("tensorflow", "2.19.0"), Dist("keras", "3.10.0"), Dist("nvidia-cudnn-cu12", "9.3.0"),
            Dist("jaxlib", "0.4.30")]
    monkeypatch.setattr(hosted.metadata, "distributions", lambda: fake)
    assert hosted.runtime_constraints() == ["jaxlib==0.4.30", "nvidia-cudnn-cu12==9.3.0", "tensorflow==2.19.0"]


@pytest.mark.slow
def test_setup_upgrades_an_older_keras_and_asks_for_one_restart(tmp_path):
    """A throwaway venv with Keras 3.10 and numpy 2.0 (as an older hosted runtime carries): the setup upgrades both
    to their lower bounds and never installs TensorFlow; numpy was already imported, so it stops once asking for a
    restart; after that nothing is installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    got = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "keras==3.10.0",
                          "numpy==2.0.2"], capture_output=True, text=True)
    if got.returncode:
        pytest.skip(f"no package index reachable for the throwaway venv: {got.stderr.strip()[-200:]}")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import numpy; from anndl.notebook import hosted\n"
            "try:\n    hosted.ensure_requirements(['keras>=3.15', 'numpy>=2.1', 'tensorflow>=2.19'])\n"
            "except hosted.SetupError as e:\n    print('SETUP', e)\n"
            "import importlib.metadata as m; print('VERSIONS', m.version('keras'), m.version('numpy'))")
    first = subprocess.run([python, "-c", code, str(REPO_ROOT)], capture_output=True, text=True, timeout=600)
    assert "installing ['keras>=3.15', 'numpy>=2.1']" in first.stdout, first.stdout + first.stderr
    assert "SETUP upgraded ['numpy']" in first.stdout and "restart the runtime" in first.stdout
    assert "WARNING: tensorflow is missing" in first.stdout  # reported, never installed
    keras_version, numpy_version = first.stdout.split("VERSIONS ")[1].split()
    assert Version(keras_version) >= Version("3.15") and Version(numpy_version) >= Version("2.1")
    second = subprocess.run([python, "-c", code, str(REPO_ROOT)], capture_output=True, text=True, timeout=600)
    assert "installing" not in second.stdout and "SETUP" not in second.stdout, second.stdout
    assert subprocess.run([python, "-c", "import tensorflow"], capture_output=True).returncode != 0


# ----------------------------------------------------------------------------------------- the data

def _zip(folder: Path, archive: Path, top: str) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, f"{top}/{path.relative_to(folder)}")
    return archive


def test_find_challenge_at_depth_and_in_a_zip(tiny_data, tmp_path):
    nested = tmp_path / "input" / "an2dl-dataset" / "an2dl" / "challenge"
    shutil.copytree(tiny_data, nested)
    assert hosted.find_challenge(tmp_path / "input") == nested
    assert hosted.find_challenge(tmp_path / "input", max_depth=2) is None
    _zip(tiny_data, (tmp_path / "drive").mkdir() or tmp_path / "drive" / "an2dl.zip", "an2dl")
    assert hosted.find_challenge(tmp_path / "drive") == tmp_path / "drive" / "an2dl.zip"


def test_stage_data_copies_once_and_again_when_the_source_changes(tiny_data, tmp_path, capsys):
    archive = _zip(tiny_data, tmp_path / "an2dl.zip", "an2dl")
    local = tmp_path / "local"
    staged = hosted.stage_data(archive, local)
    assert staged == local / "an2dl" / "an2dl" and fingerprint(read_challenge(staged)) == \
        fingerprint(read_challenge(tiny_data))
    assert "copying an2dl.zip" in capsys.readouterr().out
    assert hosted.stage_data(archive, local) == staged and "reusing" in capsys.readouterr().out
    changed = Path(shutil.copytree(tiny_data, tmp_path / "changed"))
    (changed / "train_labels.csv").write_text((changed / "train_labels.csv").read_text().replace("Luminal A", "Luminal B", 1))
    _zip(changed, archive, "an2dl")
    assert hosted.stage_data(archive, local) == staged and "copying" in capsys.readouterr().out
    assert fingerprint(read_challenge(staged)) == fingerprint(read_challenge(changed))
    assert sorted(p.name for p in local.iterdir()) == ["an2dl"]  # no partial copy left beside it
    with pytest.raises(hosted.SetupError, match="no such data"):
        hosted.stage_data(tmp_path / "missing.zip", local)


# --------------------------------------------------------------------------------------------- doctor

def test_doctor_lines_are_computed(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(hosted, "gpus", lambda: [("Tesla T4", "15360 MiB"), ("NVIDIA A100-SXM4-40GB", "40960 MiB")])
    monkeypatch.setattr(hosted.socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError(101, "down")))
    where = hosted.Places("kaggle", tiny_data, tmp_path, "only in a saved version")
    lines = hosted.doctor(where)
    assert lines[0] == "runtime: kaggle"
    import keras
    import tensorflow as tf

    assert f"tensorflow {tf.__version__}" in lines[1] and f"keras {keras.__version__}" in lines[1]
    assert lines[2].startswith("GPU 0: Tesla T4, 15360 MiB: MIXED_PRECISION = 'mixed_float16' (T4: float16")
    assert lines[3].startswith("GPU 1: NVIDIA A100-SXM4-40GB, 40960 MiB: MIXED_PRECISION = 'mixed_bfloat16' (A100")
    manifest = read_challenge(tiny_data)
    assert f"{(manifest.split == 'train').sum()} train and {(manifest.split == 'test').sum()} test images" in lines[4]
    assert lines[4].endswith(f"fingerprint {fingerprint(manifest)}") and "synthetic stand-in" in lines[4]
    assert "only in a saved version" in lines[5]
    free = shutil.disk_usage(tmp_path).free / 2**30
    assert abs(float(lines[6].split()[2]) - free) < 0.5
    assert lines[7].startswith("pretrained weights downloadable: no (huggingface.co")
    monkeypatch.setattr(hosted.socket, "create_connection", lambda *a, **k: type("C", (), {"close": lambda s: None})())
    assert hosted.doctor(where, short=True)[-2] == "pretrained weights downloadable: yes"
    assert "fingerprint" not in hosted.doctor(where, short=True)[4]
    monkeypatch.setattr(hosted, "gpus", lambda: [])
    from anndl.core.distribute import cpu_flags, precision_for

    assert f"MIXED_PRECISION = {precision_for('cpu', cpu_flags=cpu_flags())[0]!r}" in hosted.doctor(where, short=True)[2]


def test_a_kaggle_or_colab_secret_becomes_the_hugging_face_token_never_shown(tiny_data, tmp_path, monkeypatch):
    import types

    monkeypatch.delenv("HF_TOKEN", raising=False)
    where = hosted.Places("kaggle", tiny_data, tmp_path, "only in a saved version")
    assert hosted.doctor(where, short=True)[-1].startswith("Hugging Face token: not set; gated encoders")
    client = types.SimpleNamespace(get_secret={"HF_TOKEN": "hf_x1"}.get)
    secrets = types.SimpleNamespace(UserSecretsClient=lambda: client)
    monkeypatch.setitem(sys.modules, "kaggle_secrets", secrets)
    hosted.read_hf_token()
    assert os.environ["HF_TOKEN"] == "hf_x1"
    assert hosted.doctor(where, short=True)[-1] == "Hugging Face token: set (HF_TOKEN)"
    assert "hf_x1" not in "\n".join(hosted.doctor(where))
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace())  # no such secret: stays unset
    hosted.read_hf_token()
    assert "HF_TOKEN" not in os.environ


# ---------------------------------------------------------------------- simulated Colab and Kaggle sessions

@pytest.fixture(scope="module")
def repository_url(tmp_path_factory) -> str:
    """A git repository of this working tree (tracked and untracked, not ignored), as ``file://``: what a
    published repository would hold if this tree were pushed."""
    snapshot = tmp_path_factory.mktemp("published") / "anndl"
    files = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO_ROOT / name).is_file():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, snapshot / name)
    git = ["git", "-C", str(snapshot), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(snapshot)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], check=True)
    return f"file://{snapshot}"


def _opened_alone(folder: Path, **parameters) -> Path:
    """Notebook 04 as a user downloads it from its badge, its parameters cell edited by hand."""
    folder.mkdir(parents=True)
    nb = json.loads((REPO_ROOT / "notebooks" / "04_scratch_resnet.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(params["source"]).splitlines(keepends=True)
    for name, value in parameters.items():
        lines = [f"{name} = {value!r}  # edited\n" if line.startswith(f"{name} =") else line for line in lines]
    params["source"] = lines
    path = folder / "04_scratch_resnet.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _papermill(notebook: Path, env: dict, cwd: Path) -> subprocess.Popen:
    """Run ``notebook`` as the runtime does: its kernel in ``cwd`` (Colab's /content, Kaggle's /kaggle/working)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "papermill", str(notebook), str(notebook.with_name("out.ipynb")),
                             "--cwd", str(cwd), "-k", "python3", "--no-progress-bar"],
                            env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                                 **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(process: subprocess.Popen, timeout: int = 900) -> str:
    out = process.communicate(timeout=timeout)[0]
    assert process.returncode == 0, out[-3000:]
    return out


def _kill_tree(process: subprocess.Popen) -> None:
    import psutil

    family = [process.pid] + [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.communicate(timeout=60)


def _outputs_of(notebook: Path) -> str:
    nb = json.loads(notebook.with_name("out.ipynb").read_text())
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def kaggle_session(tiny_data, repository_url, tmp_path_factory):
    """Notebook 04 opened alone on simulated Kaggle: the challenge data attached read-only (a dataset that holds
    the zip's top folder), the repository cloned into the working root."""
    base = tmp_path_factory.mktemp("kaggle")
    attached = base / "input" / "an2dl-challenge" / "an2dl"
    shutil.copytree(tiny_data, attached)
    for path in [attached, *attached.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = _listing(base / "input")
    notebook = _opened_alone(base / "downloads", PROFILE="smoke", EPOCHS=3, COMPARE=False)
    env = {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "ANNDL_REPOSITORY": repository_url,
           "ANNDL_KAGGLE_INPUT": str(base / "input"), "ANNDL_KAGGLE_WORKING": str(base / "working")}
    started = time.monotonic()
    _finish(_papermill(notebook, env, base / "working"))
    seconds = time.monotonic() - started
    yield base, notebook, env, before, seconds
    for path in [attached, *attached.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
def test_kaggle_reads_the_attached_data_in_place_and_writes_to_working(kaggle_session, tiny_data):
    base, notebook, env, before, seconds = kaggle_session
    working = base / "working"
    assert (working / "anndl" / "anndl" / "__init__.py").is_file()  # cloned beside the session's files
    assert _listing(base / "input") == before  # nothing written to the input
    record = json.loads((working / "outputs" / "runs" / "scratch_resnet_smoke" / "record.json").read_text())
    manifest = read_challenge(tiny_data)
    assert fingerprint(manifest[manifest.split == "train"]) in json.dumps(record)  # trained on the attached data
    submission = (working / "outputs" / "submissions" / "scratch_resnet_smoke.csv").read_text().splitlines()
    assert len(submission) == 1 + len(list((tiny_data / "test_data").glob("img_*")))
    printed = _outputs_of(notebook)
    assert "runtime: kaggle" in printed and "kept after the session: only in a saved version" in printed
    print(f"Kaggle simulation: {seconds:.0f} s")
    doctor = subprocess.run([sys.executable, "-m", "anndl", "doctor"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env}, cwd=working / "anndl")
    assert doctor.returncode == 0 and "runtime: kaggle" in doctor.stdout, doctor.stderr
    assert f"fingerprint {fingerprint(read_challenge(tiny_data))}" in doctor.stdout


@pytest.mark.slow
def test_kaggle_with_internet_off_uses_the_repository_attached_as_a_dataset(tiny_data, repository_url, tmp_path):
    shutil.copytree(repository_url.removeprefix("file://"), tmp_path / "input" / "anndl-code" / "anndl",
                    ignore=shutil.ignore_patterns(".git"))
    shutil.copytree(tiny_data, tmp_path / "input" / "an2dl")
    env = {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "ANNDL_REPOSITORY": f"file://{tmp_path}/unreachable",
           "ANNDL_KAGGLE_INPUT": str(tmp_path / "input"), "ANNDL_KAGGLE_WORKING": str(tmp_path / "working")}
    (tmp_path / "working").mkdir()
    nb = _run_cells(["PROFILE = 'smoke'", _setup_cell(kaggle_input=str(tmp_path / "input")),
                     "import anndl.notebook\nCTX = anndl.notebook.setup(globals())",
                     "from anndl.core.config import REPO_ROOT\nprint(REPO_ROOT, CTX.data, CTX.output)"],
                    tmp_path / "working", env)
    assert not _errors(nb), _errors(nb)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.outputs)
    assert "runtime: kaggle" in printed
    assert printed.strip().splitlines()[-1] == f"{tmp_path / 'working' / 'anndl'} {tmp_path / 'input' / 'an2dl'} " \
                                              f"{tmp_path / 'working' / 'outputs'}"


@pytest.mark.slow
def test_colab_keeps_outputs_on_drive_and_resumes_after_a_lost_session(kaggle_session, tiny_data, repository_url,
                                                                       tmp_path):
    """Notebook 04 with DRIVE set, the challenge data a zip on Drive: killed mid-training (the session lost),
    then run again from a fresh session: it resumes from Drive and ends with the files of an uninterrupted run."""
    drive = tmp_path / "drive"
    (drive / "anndl").mkdir(parents=True)
    _zip(tiny_data, drive / "anndl" / "an2dl.zip", "an2dl")
    notebook = _opened_alone(tmp_path / "downloads", PROFILE="smoke", EPOCHS=3, DRIVE="anndl", COMPARE=False)
    env = {"COLAB_RELEASE_TAG": "simulated", "ANNDL_REPOSITORY": repository_url,
           "ANNDL_COLAB_ROOT": str(tmp_path / "content"), "ANNDL_DRIVE_ROOT": str(drive)}
    outputs = drive / "anndl" / "outputs"
    state = outputs / "runs" / "scratch_resnet_smoke" / "resume" / "state.json"
    started = time.monotonic()
    first = _papermill(notebook, env, tmp_path / "content")
    end = time.monotonic() + 600
    while not state.exists():
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < end, "training never saved a state"
        time.sleep(0.05)
    _kill_tree(first)  # the session is lost: the kernel and everything on the local disk go
    assert not (outputs / "runs" / "scratch_resnet_smoke" / "record.json").exists()
    shutil.rmtree(tmp_path / "content")
    _finish(_papermill(notebook, env, tmp_path / "content"))
    seconds = time.monotonic() - started
    printed = _outputs_of(notebook)
    assert "resuming from epoch 2" in printed, printed[-3000:]
    assert "runtime: colab" in printed and "kept after the session: yes (Google Drive: anndl/outputs)" in printed
    reference = kaggle_session[0] / "working" / "outputs"
    for name in COMPARED:
        if name.endswith(".json"):  # the same but for the folder the data was read from (Kaggle's input, Colab's copy)
            ours, theirs = (json.loads((folder / name).read_text()) for folder in (outputs, reference))
            assert ours.pop("data").split(" [")[1] == theirs.pop("data").split(" [")[1]  # the same fingerprint
            assert ours == theirs, name
        else:
            assert (outputs / name).read_bytes() == (reference / name).read_bytes(), name
    print(f"Colab simulation (killed, then resumed): {seconds:.0f} s")
    doctor = subprocess.run([sys.executable, "-m", "anndl", "doctor", "--drive", "anndl"], capture_output=True,
                            text=True, timeout=300, env={**os.environ, **env}, cwd=tmp_path / "content" / "anndl")
    assert doctor.returncode == 0 and "runtime: colab" in doctor.stdout, doctor.stderr
    assert "reusing the local copy of an2dl.zip" in doctor.stdout
    assert f"fingerprint {fingerprint(read_challenge(tiny_data))}" in doctor.stdout
