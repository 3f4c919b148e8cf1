"""A fork's address everywhere a user clicks or clones (``make publish REPOSITORY=https://github.com/<owner>/<name>``):
``[project.urls] Repository`` of pyproject.toml, the README's and every notebook's badges and every notebook's fetch
cell. Repository tooling beside the notebooks it edits, not part of the ``anndl`` package."""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def publish(url: str, root: Path = ROOT) -> list[Path]:
    """Write ``url`` in place of the current address; returns the files changed (each replaced whole)."""
    if not (match := re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(\.git)?/?", url)):
        raise ValueError(f"REPOSITORY must look like https://github.com/<owner>/<name>, got {url!r}")
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    old = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", pyproject["project"]["urls"]["Repository"])[1]
    new, changed = f"{match[1]}/{match[2]}", []
    for path in [root / "pyproject.toml", root / "README.md", *sorted(root.glob("notebooks/*.ipynb"))]:
        text = path.read_text(encoding="utf-8")
        updated = text.replace(f"github.com/{old}", f"github.com/{new}").replace(f"github/{old}", f"github/{new}")
        if updated != text:
            part = path.with_name(path.name + ".part")
            part.write_text(updated, encoding="utf-8")
            changed.append(part.replace(path))
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python notebooks/publish.py https://github.com/<owner>/<name>")
    try:
        changed = publish(sys.argv[1])
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {sys.argv[1]} into {len(changed)} files: {', '.join(p.name for p in changed) or 'none changed'}")
