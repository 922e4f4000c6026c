"""The tree is the architecture: a layered, acyclic module graph, kept so by this test.

Every import of every module of loupe.indexer, loupe.search and loupe.ui is read from
its source (module level and inside functions alike) and checked against the layer
table below: no cycles, no import up a layer, no ``_private`` name taken from another
module, the apps (CLI and UI) using only the declared public names (``__all__``), and
decode workers never reaching LanceDB.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"loupe.indexer": REPO / "indexer", "loupe.search": REPO / "search",
         "loupe.ui": REPO / "ui"}

# Lower layers never import higher ones. The first pattern a module matches gives its
# layer (REDESIGN.md 4.1). Package surfaces (loupe.indexer, loupe.search) are for apps.
LAYERS: list[tuple[int, str]] = [
    (0, r"loupe\.indexer\.(errors|kinds|fingerprint|scan|lazy|timecode)|loupe\.search\.shards"
        r"|loupe\.indexer\.encoders\.spec|loupe\.search\.(dirs|server_file)"),
    (1, r"loupe\.indexer\.media(\..*)?"),
    (2, r"loupe\.indexer\.encoders(\..*)?|loupe\.search\.explain\.grounding\.(kosmos2|draw)"
        r"|loupe\.indexer\.ocr(\.reader)?"),
    (3, r"loupe\.search\.(store|ann)(\..*)?"),
    (4, r"loupe\.indexer\.decode(\..*)?"),
    (5, r"loupe\.search\.(query|query_parse|client|targets|served|thumbs)"
        r"|loupe\.search\.explain(\..*)?|loupe\.search\.text(\..*)?"),
    (6, r"loupe\.search\.(engine|status)|loupe\.indexer\.pipeline(\..*)?"
        r"|loupe\.indexer\.ocr\.update"),
    (7, r"loupe\.indexer|loupe\.search"),  # the public surfaces, lazily loaded
    (8, r"loupe\.search\.cli(\..*)?|loupe\.ui(\..*)?"),
]
APPS = re.compile(r"loupe\.search\.cli(\..*)?|loupe\.ui(\..*)?")


def layer_of(module: str) -> int:
    for layer, pattern in LAYERS:
        if re.fullmatch(pattern, module):
            return layer
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add it")


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[tuple[str, str | None, int]] = field(default_factory=list)  # (mod, name, line)
    externals: set[str] = field(default_factory=set)
    exports: set[str] = field(default_factory=set)


def _exports(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if isinstance(node.value, (ast.List, ast.Tuple)):
                return {ast.literal_eval(e) for e in node.value.elts}
            if isinstance(node.value, ast.Call):  # __all__ = sorted([*_EXPORTS, ...])
                names = {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant)}
                for n in tree.body:
                    if isinstance(n, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in n.targets):
                        return names | set(ast.literal_eval(n.value))
    return set()


def load_graph() -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join((prefix, *(parts[:-1] if is_package else parts)))
            mods[name] = Module(name, path, is_package)
    for m in mods.values():
        tree = ast.parse(m.path.read_text(), str(m.path))
        m.exports = _exports(tree)
        package = m.name if m.is_package else m.name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("loupe."):
                        m.imports.append((a.name, None, node.lineno))
                    else:
                        m.externals.add(a.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if not base.startswith("loupe."):
                    if node.level == 0:
                        m.externals.add(base.split(".")[0])
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in mods:  # `from package import submodule`
                        m.imports.append((sub, None, node.lineno))
                    else:
                        m.imports.append((base, a.name, node.lineno))
    return mods


GRAPH = load_graph()


def edges() -> dict[str, set[str]]:
    """module -> the modules its imports run: each target, and the ``__init__`` of every
    package above the target that the importer is not itself inside."""
    out: dict[str, set[str]] = {n: set() for n in GRAPH}
    for m in GRAPH.values():
        for target, _, _ in m.imports:
            assert target in GRAPH, f"{m.name} imports {target}, which does not exist"
            out[m.name].add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if not (m.name == parent or m.name.startswith(parent + ".")):
                    out[m.name].add(parent)
    return out


def test_every_module_is_in_a_layer_and_the_wheel():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    for m in GRAPH.values():
        layer_of(m.name)
        if m.is_package:
            assert m.name in listed, f"pyproject.toml's packages list lacks {m.name}"


def test_no_import_cycles():
    graph, index, low, stack, on, cycles = edges(), {}, {}, [], set(), []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_imports_go_down_or_sideways():
    wrong = []
    for m in GRAPH.values():
        for target, _, line in m.imports:
            if target == m.name or m.name.startswith(target + "."):
                continue  # a module's own package (its __init__ runs first anyway)
            if layer_of(target) > layer_of(m.name):
                wrong.append(f"{m.path.relative_to(REPO)}:{line} (layer {layer_of(m.name)}) "
                             f"imports {target} (layer {layer_of(target)})")
    assert wrong == []


def test_no_private_names_across_modules():
    taken = [f"{m.path.relative_to(REPO)}:{line} takes {target}.{name}"
             for m in GRAPH.values() for target, name, line in m.imports
             if name and name.startswith("_") and target != m.name]
    assert taken == []


def test_apps_use_only_public_names():
    """The CLI and the UI import the library's declared public names (``__all__`` of a
    package), or modules of their own app."""
    wrong = []
    for m in GRAPH.values():
        if not APPS.fullmatch(m.name):
            continue
        app = "loupe.ui" if m.name.startswith("loupe.ui") else "loupe.search.cli"
        for target, name, line in m.imports:
            if target == app or target.startswith(app + "."):
                continue
            t = GRAPH[target]
            if name is None:  # `from package import module`: a module the package lists
                package, _, name = target.rpartition(".")
                t = GRAPH[package]
            if not t.is_package or name not in t.exports:
                what = f"{target}.{name}" if name else f"module {target}"
                wrong.append(f"{m.path.relative_to(REPO)}:{line} uses {what}")
    assert wrong == []


def test_decode_workers_never_reach_lancedb():
    graph = edges()
    seen, todo = set(), [n for n in GRAPH if n.startswith("loupe.indexer.decode")]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        parts = n.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))  # parent packages
        todo.extend(graph[n])
    assert not any(n.startswith("loupe.search") for n in seen), sorted(seen)
    reached = set().union(*(GRAPH[n].externals for n in seen))
    # (torch they may load: sound windows become fbank features in the workers)
    assert not reached & {"lancedb", "lance", "faiss"}, sorted(reached)


@pytest.mark.parametrize("package", ["loupe.indexer", "loupe.search"])
def test_public_surfaces_name_what_exists(package):
    import importlib

    mod = importlib.import_module(package)
    assert mod.__all__, package
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_benchmarks_and_scripts_import_what_exists():
    """bench/ is not run by the tests; a module moved by a refactor must not leave it
    importing names that are gone (as the tests' helpers once moved under it)."""
    import importlib

    helpers = {p.stem for p in (REPO / "tests" / "helpers").glob("*.py")}
    missing = []
    for path in sorted((REPO / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                continue
            if node.module in helpers:  # the flat name they had before tests/helpers/
                missing.append(f"{path.name}: {node.module} (now helpers.{node.module})")
                continue
            if node.module.split(".")[0] not in ("loupe", "helpers"):
                continue
            try:
                mod = importlib.import_module(node.module)
            except ImportError as e:
                missing.append(f"{path.name}: {node.module} ({e})")
                continue
            missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                        if not hasattr(mod, a.name)
                        and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert not missing, missing
