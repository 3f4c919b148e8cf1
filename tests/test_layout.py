"""The package's folders are its layers: every import (lazy ones included) goes to the same layer or a lower one,
no module imports itself back through others, and private Keras/KerasHub names live in one adapter module only,
each of them present in the pinned versions."""

import ast
import importlib
from pathlib import Path

import keras
import pytest

from anndl.core import keras_adapter

PACKAGE = Path(__file__).resolve().parents[1] / "anndl"
# bottom to top; a module may import its own layer or any lower one
LAYERS = ("core", "data", "models", "evaluate", "engine", "notebook", "top")
ADAPTER = "anndl.core.keras_adapter"


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # the package's own __init__: its version and nothing else (it imports nothing)
    return parts[1] if parts[1] in LAYERS else "top"


def imports(package: Path) -> dict[str, set[str]]:
    """Every module of ``package`` and the package modules it imports anywhere in its body."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    found = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package.name:
                for alias in node.names:  # `from anndl.core import artifacts` imports the module anndl.core.artifacts
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == package.name}
        found[name] = {t for t in targets if t in modules and t != name}
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, targets in graph.items() for b in targets
                  if LAYERS.index(layer_of(b)) > LAYERS.index(layer_of(a)))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles (strongly connected components of more than one module)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def keras_objects() -> list:
    """A built layer, model, variable and optimizer: their private names include instance attributes."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Lion()
    optimizer.build(model.trainable_variables)
    return [model.layers[0], model, model.weights[0], optimizer]


def keras_private_names() -> set[str]:
    return {n for owner in keras_objects() for n in dir(owner) if n.startswith("_") and not n.startswith("__")}


def private_uses(package: Path) -> list[str]:
    """``keras.src``/``keras_hub.src`` imports and Keras-private attributes outside the adapter."""
    private, found = keras_private_names(), []
    for path in package.rglob("*.py"):
        if module_name(path, package) == ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("keras.src", "keras_hub.src")):
                found.append(f"{where} imports {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{where} imports {a.name}" for a in node.names if a.name.startswith(("keras.src", "keras_hub.src"))]
            elif isinstance(node, ast.Attribute) and node.attr in private:
                found.append(f"{where} uses .{node.attr}")
    return found


def test_every_module_is_in_a_layer_folder():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "cli.py"}, top
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS[:-1])


def test_no_upward_import_and_no_circle():
    graph = imports(PACKAGE)
    assert len(graph) > 30 and graph["anndl"] == set()
    assert upward(graph) == []
    assert cycles(graph) == []


def test_no_private_keras_name_outside_the_adapter():
    assert private_uses(PACKAGE) == []


def test_the_checks_find_what_they_look_for(tmp_path):
    """A planted upward import, circle and private Keras use are each reported (the checks above can fail)."""
    package = tmp_path / "anndl"
    for folder in ("core", "data", "engine"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text("def f():\n    from anndl.engine import b  # lazy, still upward\n")
    (package / "engine" / "b.py").write_text("from anndl.core import a\n")
    (package / "data" / "c.py").write_text("from anndl.data import d\n")
    (package / "data" / "d.py").write_text("import anndl.data.c\nfrom keras.src.layers import Layer\n\n"
                                           "def g(layer):\n    return layer._layers\n")
    graph = imports(package)
    assert upward(graph) == ["anndl.core.a (core) imports anndl.engine.b (engine)"]
    assert sorted(cycles(graph)) == [["anndl.core.a", "anndl.engine.b"], ["anndl.data.c", "anndl.data.d"]]
    assert private_uses(package) == ["anndl/data/d.py:2 imports keras.src.layers", "anndl/data/d.py:5 uses ._layers"]


@pytest.mark.parametrize("owner, name", keras_adapter.PRIVATE_NAMES)
def test_adapter_names_exist_in_the_pinned_versions(owner, name):
    if owner == "keras.layers.Layer":
        assert hasattr(keras_objects()[0], name)
    else:
        module = importlib.import_module(owner)
        assert hasattr(module, name) or importlib.import_module(f"{owner}.{name}")


def test_adapter_functions_work_on_the_pinned_versions():
    assert keras_adapter.data_layer_base() is not keras.layers.Layer  # Keras's DataLayer found

    class Outer(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.first, self.second = keras.layers.Dense(2), keras.layers.Dense(3)

    outer = Outer()
    assert keras_adapter.sublayers(outer) == [outer.first, outer.second]
    tiny = keras_adapter.convnext_builder()(depths=[1, 1, 1, 1], projection_dims=[8, 8, 8, 8], include_top=False,
                                             weights=None, input_shape=(32, 32, 3), pooling="avg")
    assert tiny.output_shape == (None, 8)
    for converter in keras_adapter.hf_converters()[:2]:  # what encoders.hf_backbone calls on each
        assert all(hasattr(converter, a) for a in ("backbone_cls", "convert_backbone_config", "convert_weights"))
