"""No project module imports a module that imports it back, directly or around a longer loop.

Every ``import`` statement counts, including the ones inside functions (a lazy import still ties the two files
together: reading one means reading the other); only ``if TYPE_CHECKING:`` blocks are left out. The graph covers
the four packages of the layout: ``kdbench``, ``baselines``, ``metrics`` and ``reports``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kdbench", "baselines", "metrics", "reports")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the project's packages (``__init__`` as the package)."""
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules ``name`` (at ``path``) imports: ``import a.b``, ``from a import b`` (``a.b`` when it is a
    module, else ``a``), relative imports resolved against the module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
        for t in targets:
            while t and t not in mods:  # `import a.b.c` of a name inside a module: the deepest module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = project_modules(root)
    return {name: imported_modules(name, path, mods) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: a lazy import inside a function closes a loop; a TYPE_CHECKING import does not."""
    pkg = tmp_path / "kdbench"
    pkg.mkdir()
    for p in PACKAGES[1:]:
        (tmp_path / p).mkdir()
        (tmp_path / p / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    (pkg / "d.py").write_text("import kdbench.c\n")
    graph = import_graph(tmp_path)
    assert graph["kdbench.a"] == {"kdbench.b"} and graph["kdbench.b"] == {"kdbench.a"}
    assert graph["kdbench.c"] == set() and graph["kdbench.d"] == {"kdbench.c"}
    assert cycles(graph) == [["kdbench.a", "kdbench.b"]]


def test_no_import_cycles_between_project_modules():
    found = cycles(import_graph())
    assert not found, "modules that import each other (directly or around a loop): " + "; ".join(
        " <-> ".join(c) for c in found)


# Modules that run only inside a baseline's own environment, next to its upstream checkout (they import upstream
# packages such as `src.*` or `inference.*` that exist only there); everything else must import in kdbench's venv.
WORKER_SIDE = ("hooks",)


def test_every_project_module_imports():
    """``python -c 'import m'`` for every module, in one fresh interpreter (catches a cycle that breaks imports at
    run time, and a module that only imported because another had loaded first is caught by the graph test)."""
    names = [n for n in project_modules() if n.rsplit(".", 1)[-1] not in (*WORKER_SIDE, "__main__")]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    r = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("name", ["kdbench.cli", "kdbench.runner", "kdbench.evaluate", "reports.cli"])
def test_core_modules_import_without_torch(name):
    """The core imports without torch (the layout's rule), whatever order modules are loaded in."""
    code = f"import sys, {name}\nassert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
