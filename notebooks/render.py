"""``make notebooks``' last step on each notebook papermill executed (``python notebooks/render.py EXECUTED OUTPUT``):
the injected parameters folded into the parameters cell, the header's run time stamped from the footer, progress-bar
streams settled as Jupyter shows them. Build tooling, not part of the ``anndl`` package."""

import ast
import itertools
import json
import re
import sys
from pathlib import Path

INJECTED = "injected-parameters"
RUN_TIME = re.compile(r"\*\*Run time\.\*\* .*?(?= Colab T4| On Kaggle|$)", re.S)
WALL_TIME = re.compile(r"wall time: (\d+) s · hardware: ([^·\n]+?) · ")


def fold_parameters(notebook: dict) -> dict:
    """Injected parameters written into the ``parameters`` cell (comments kept), their cell dropped, renumbered."""
    tagged = [(c, c.get("metadata", {}).get("tags", [])) for c in notebook["cells"]]
    injected = [c for c, tags in tagged if INJECTED in tags]
    params = next((c for c, tags in tagged if "parameters" in tags), None)
    if injected and params is not None:
        text = "".join(params["source"])
        for source in ("".join(c["source"]) for c in injected):
            for node in ast.parse(source).body:
                name, value = node.targets[0].id, ast.get_source_segment(source, node.value)
                text, found = re.subn(rf"^({name}\s*=\s*).*?(\s*#.*)?$", lambda m: m[1] + value + (m[2] or ""), text,
                                      count=1, flags=re.M)
                if not found:
                    text += ("" if text.endswith("\n") else "\n") + f"{name} = {value}\n"
        params["source"] = text.splitlines(keepends=True)
    notebook["cells"] = [c for c in notebook["cells"] if c not in injected]
    counted = [c for c in notebook["cells"] if c["cell_type"] == "code" and c.get("execution_count") is not None]
    for count, cell in enumerate(counted, start=1):
        for item in (cell, *(o for o in cell.get("outputs", []) if "execution_count" in o)):
            item["execution_count"] = count
    return notebook


def stamp_run_time(notebook: dict) -> dict:
    """The header's run time set to the footer's wall time and hardware (one per notebook); no footer: unchanged."""
    outputs = "".join("".join(o.get("text", "")) for c in notebook["cells"] if c["cell_type"] == "code"
                      for o in c.get("outputs", []))
    found = WALL_TIME.findall(outputs)
    if found and (header := notebook["cells"][0])["cell_type"] == "markdown":  # found: there are cells
        seconds, hardware = found[-1]
        text = RUN_TIME.sub(f"**Run time.** This rendering: {seconds} s on {hardware.strip()} (the footer's wall time; "
                            "finished outputs whose records match reused, this notebook's own included).",
                            "".join(header["source"]), count=1)
        header["source"] = text.splitlines(keepends=True)
    return notebook


def settle_streams(notebook: dict) -> dict:
    """Consecutive stream outputs merged, carriage returns applied as Jupyter does (a progress bar: its last line)."""
    for cell in (c for c in notebook["cells"] if "outputs" in c):
        merged = []
        for name, group in itertools.groupby(cell["outputs"], lambda o: o.get("output_type") == "stream" and o["name"]):
            if not name:
                merged += group
                continue
            group = list(group)
            text = "".join("".join(o["text"]) for o in group).replace("\r\n", "\n")
            text = re.sub(r"[^\n]*\r(?=[^\r\n])", "", text).replace("\r", "")  # each line: after its last \r
            merged.append({**group[0], "text": text.splitlines(keepends=True)})
        cell["outputs"] = merged
    return notebook


def main(executed: str, output: str) -> None:
    from anndl.core import artifacts
    notebook = settle_streams(stamp_run_time(fold_parameters(json.loads(Path(executed).read_text(encoding="utf-8")))))
    artifacts.write_text(output, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
