"""Render a notebook as `make notebooks` does: papermill runs it with the given parameters, then the parameters it
injected are written into the notebook's own parameters cell and papermill's ``injected-parameters`` cell is
removed. The committed rendering then shows, in the one cell a user edits, the values it ran with, and a user's
edit of that cell is what runs next time (no later cell resets it)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from pathlib import Path

INJECTED = "injected-parameters"


def fold_parameters(notebook: dict) -> dict:
    """``notebook`` (nbformat JSON) with its injected parameters folded into its ``parameters`` cell (each
    ``NAME = value`` line keeps its comment) and the injected cell removed; execution counts renumbered."""
    cells = notebook["cells"]
    injected = [c for c in cells if INJECTED in c.get("metadata", {}).get("tags", [])]
    params = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if injected and params is not None:
        values = {}
        for cell in injected:
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    values[node.targets[0].id] = ast.get_source_segment("".join(cell["source"]), node.value)
        lines = "".join(params["source"]).splitlines(keepends=True)
        for i, line in enumerate(lines):
            match = re.match(r"^(\w+)(\s*=\s*)(.*?)(\s*#.*)?(\n?)$", line)
            if match and match[1] in values:
                lines[i] = f"{match[1]}{match[2]}{values.pop(match[1])}{match[4] or ''}{match[5]}"
        if values and lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines += [f"{name} = {value}\n" for name, value in values.items()]  # a parameter the cell did not name
        params["source"] = lines
    notebook["cells"] = [c for c in cells if c not in injected]
    count = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and cell.get("execution_count") is not None:
            count += 1
            cell["execution_count"] = count
            for output in cell.get("outputs", []):
                if "execution_count" in output:
                    output["execution_count"] = count
    return notebook


RUN_TIME = re.compile(r"\*\*Run time\.\*\* .*?(?= Colab T4| On Kaggle|$)", re.S)
WALL_TIME = re.compile(r"wall time: (\d+) s · hardware: ([^·\n]+?) · ")


def stamp_run_time(notebook: dict) -> dict:
    """The header's run time set to the one this rendering measured: the footer's wall time (and hardware), so
    that a notebook states one run time, the one of the rendering it shows. Unchanged without a footer."""
    outputs = "".join("".join(o.get("text", "")) for c in notebook["cells"] if c["cell_type"] == "code"
                      for o in c.get("outputs", []))
    found = WALL_TIME.findall(outputs)
    header = notebook["cells"][0] if notebook["cells"] else None
    if not found or header is None or header["cell_type"] != "markdown":
        return notebook
    seconds, hardware = found[-1]
    text = RUN_TIME.sub(f"**Run time.** This rendering: {seconds} s on {hardware.strip()} (the footer's wall time; "
                        "outputs of the notebooks before it reused).", "".join(header["source"]), count=1)
    header["source"] = text.splitlines(keepends=True)
    return notebook


def render(notebook: Path | str, parameters: dict, cwd: Path | str | None = None, output: Path | str | None = None,
           kernel: str = "python3") -> Path:
    """Execute ``notebook`` with ``parameters`` (papermill) and write it, parameters folded, to ``output``
    (default: in place) atomically."""
    import papermill

    notebook = Path(notebook)
    output = Path(output or notebook)
    partial = output.with_name(f".rendering.{output.name}")
    try:
        papermill.execute_notebook(str(notebook), str(partial), parameters=parameters, kernel_name=kernel,
                                   cwd=str(cwd or notebook.parent), progress_bar=False)
    except BaseException:
        partial.unlink(missing_ok=True)  # papermill leaves the failed rendering: show where it stopped
        raise
    folded = stamp_run_time(fold_parameters(json.loads(partial.read_text(encoding="utf-8"))))
    partial.write_text(json.dumps(folded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anndl.notebook.rendering", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--cwd", type=Path)
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter (a number stays a number)")
    args = parser.parse_args(argv)
    parameters = {}
    for name, value in args.p:
        try:
            parameters[name] = int(value)
        except ValueError:
            parameters[name] = value
    render(args.notebook, parameters, args.cwd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
