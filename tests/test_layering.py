"""The house rules that keep the code livable, checked on every run.

* Imports only go down, bottom first:
  kubelite (the root: `__version__`) → errors → statefiles → api → core → {sources, store, runtime}
  → prober → agent → kubectl → apiserver → daemon → cli.
  Every module of every package (sub-packages too) and every top-level module is checked, and not
  only its own imports: whatever it reaches through other modules, lazily imported or not.
* No import cycles, neither between modules (lazy imports count; `if TYPE_CHECKING:` imports do not)
  nor in the table of layers itself.
* `kubelite/core` is pure: no clock, no files, no processes.
* The CLI's read path loads neither pydantic nor SQLAlchemy (that is what keeps `get pods` fast).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kubelite"

_BELOW_AGENT = {"api", "core", "sources", "store", "runtime", "prober", "errors", "statefiles", "clock", "layout"}
#: Each layer — a package with its sub-packages, or a top-level module — and the layers it may
#: import, directly or through others: a row lists what the layers it names use too (a test checks),
#: so it reads whole. A layer may always import itself, and every layer may import the package root
#: (it holds `__version__` and imports nothing).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    # where everything lives on disk: pure, standard library and errors only
    "layout": {"errors"},
    "statefiles": {"errors", "layout"},
    "api": {"errors"},
    "core": {"api", "errors"},
    "sources": {"api", "errors", "statefiles", "clock", "layout"},
    "store": {"api", "core", "errors", "statefiles", "clock", "layout"},
    "runtime": {"api", "core", "errors", "statefiles", "clock", "layout"},
    "prober": {"api", "core", "runtime", "errors", "statefiles", "clock", "layout"},
    "agent": _BELOW_AGENT,
    # kubectl's printing rules: pure and standard library only, used by the CLI and the API server
    "kubectl": {"api"},
    # the read-only Kubernetes API: it reads the store and formats with `kubectl`, never the agent
    "apiserver": {"api", "kubectl", "store", "runtime", "errors", "statefiles", "clock", "layout"},
    # the composition root: wires the agent, the sources, the prober, the API server and the sync
    "daemon": _BELOW_AGENT | {"agent", "kubectl", "apiserver"},
    # the entry point: may use anything, lazily
    "cli": _BELOW_AGENT | {"agent", "kubectl", "apiserver", "daemon"},
}
#: The only modules a layer may reach in a layer that is otherwise not below it (and what those
#: modules reach there themselves): pure, standard-library code.
ONLY_MODULES: dict[tuple[str, str], set[str]] = {
    ("apiserver", "store"): {"kubelite.store.reader"},        # it reads, it never writes
    ("apiserver", "runtime"): {"kubelite.runtime.crilog", "kubelite.runtime.view"},
    ("kubectl", "api"): {"kubelite.api.quantity", "kubelite.api.qos"},
    ("apiserver", "api"): {"kubelite.api.quantity", "kubelite.api.qos"},    # through kubectl
}
#: Modules of a lower layer may use only the data types of `core`, never its decisions.
CORE_TYPES_ONLY = {"store", "runtime", "prober"}
PURE_STDLIB = {"__future__", "dataclasses", "datetime", "enum", "typing", "fractions", "re", "hashlib", "json",
               "collections", "math", "itertools", "functools"}


# ------------------------------------------------------------------------------ the import graph


class Graph:
    """The modules of a package tree and their imports of each other, read from the syntax trees."""

    def __init__(self, package: Path) -> None:
        self.package = package
        self.root = package.name
        self.paths = {self._name(p): p for p in sorted(package.rglob("*.py"))}
        #: every import, lazy ones and `if TYPE_CHECKING:` ones included
        self.imports: dict[str, set[str]] = {}
        #: what runs when the module is imported or called: `if TYPE_CHECKING:` imports left out
        self.runtime_imports: dict[str, set[str]] = {}
        for name, path in self.paths.items():
            every, typing_only = self._read(path)
            self.imports[name] = every - {name}
            self.runtime_imports[name] = every - typing_only - {name}

    def _name(self, path: Path) -> str:
        parts = list(path.relative_to(self.package.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def _resolve(self, module: str, names: list[str]) -> set[str]:
        """`from module import a, b`: the submodules named, else the module itself; and the packages
        above each, which Python runs first."""
        found = {f"{module}.{n}" for n in names if f"{module}.{n}" in self.paths} or {module}
        if len(found) < len(names):
            found.add(module)
        for target in list(found):
            parts = target.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts))}
        return found

    def _read(self, path: Path) -> tuple[set[str], set[str]]:
        """What the module imports: everything, and what it imports only `if TYPE_CHECKING:`."""
        running: set[str] = set()
        typing: set[str] = set()

        def visit(node: ast.AST, in_typing: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    visit(child, True)
                    continue
                found: set[str] = set()
                if isinstance(child, ast.ImportFrom) and child.module and child.level == 0 \
                        and child.module.split(".")[0] == self.root:
                    found = self._resolve(child.module, [a.name for a in child.names])
                elif isinstance(child, ast.Import):
                    for alias in child.names:
                        if alias.name.split(".")[0] == self.root:
                            found |= self._resolve(alias.name, [])
                (typing if in_typing else running).update(found)
                visit(child, in_typing)

        visit(ast.parse(path.read_text()), False)
        return running | typing, typing - running

    def layer(self, module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else ""    # "": the package root

    def reach(self, module: str) -> set[str]:
        """Every module `module` imports, directly or through others (lazy imports included)."""
        seen: set[str] = set()
        todo = [module]
        while todo:
            for target in self.imports.get(todo.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen - {module}

    def cycles(self) -> list[list[str]]:
        """The import cycles between modules (Tarjan's strongly connected components)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        found: list[list[str]] = []

        def connect(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            for w in self.runtime_imports.get(v, ()):
                if w not in self.paths or self.layer(w) == "" or w in _parents(v):
                    continue   # a package above runs first; it is no cycle
                if w not in index:
                    connect(w)
                    low[v] = min(low[v], low[w])
                elif w in stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        for v in sorted(self.paths):
            if v not in index:
                connect(v)
        return found


def _parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def layering_violations(graph: Graph, allowed: Mapping[str, set[str]],
                        only_modules: Mapping[tuple[str, str], set[str]], core_types_only: set[str]) -> list[str]:
    """Every import, direct or through other modules, that goes up or sideways."""
    problems = []
    for module in sorted(graph.paths):
        layer = graph.layer(module)
        if layer == "":
            problems += [f"{module} (the package root) imports {t}" for t in sorted(graph.imports[module])]
            continue
        if layer not in allowed:
            problems.append(f"{module}: the layer {layer!r} is not in the table of layers")
            continue
        for target in sorted(graph.reach(module)):
            to = graph.layer(target)
            via = "" if target in graph.imports[module] else " (through other modules)"
            if to in ("", layer):
                continue
            if to not in allowed[layer]:
                problems.append(f"{module} imports {target}{via}: {layer} may not use {to}")
            elif (layer, to) in only_modules:
                permitted = set(only_modules[layer, to])
                for name in only_modules[layer, to]:
                    permitted |= graph.reach(name) | _parents(name)
                if target not in permitted:
                    problems.append(f"{module} imports {target}{via}: {layer} may use only "
                                    f"{', '.join(sorted(only_modules[layer, to]))} of {to}")
            if layer in core_types_only and to == "core" and target not in (f"{graph.root}.core.types",
                                                                            f"{graph.root}.core"):
                problems.append(f"{module} imports {target}{via}: {layer} may use only the data types of core")
    return problems


def table_cycles(allowed: Mapping[str, set[str]]) -> list[str]:
    """The layers that sit in a cycle of the table itself (a layer allowed to import one above it)."""
    remaining = {layer: set(uses) - {layer} for layer, uses in allowed.items()}
    while True:
        bottom = [layer for layer, uses in remaining.items() if not uses & remaining.keys()]
        if not bottom:
            return sorted(remaining)
        for layer in bottom:
            del remaining[layer]


# ----------------------------------------------------------------------------------- the rules


def test_every_layer_is_in_the_table_and_has_modules():
    graph = Graph(PACKAGE)
    layers = {graph.layer(m) for m in graph.paths} - {""}
    assert layers == set(ALLOWED), "every package and top-level module of kubelite needs a row in ALLOWED"
    for (layer, to), names in ONLY_MODULES.items():
        assert to in ALLOWED[layer]
        assert {n for n in names if n in graph.paths}, f"none of {names} exists"


def test_imports_only_go_down():
    assert layering_violations(Graph(PACKAGE), ALLOWED, ONLY_MODULES, CORE_TYPES_ONLY) == []


def test_no_import_cycles():
    assert Graph(PACKAGE).cycles() == []
    assert table_cycles(ALLOWED) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "kubelite" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'"""{name}"""\n{text}')
    return root / "kubelite"


def test_a_wrong_import_fails_the_check(tmp_path):
    """A deliberately wrong import is caught: directly, through another module, lazily, and in a cycle."""
    package = _tree(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "core/__init__.py": "",
        "core/plan.py": "from kubelite.errors import x\n",
        "core/types.py": "",
        "runtime/__init__.py": "",
        "runtime/oci.py": "from kubelite.core.types import ContainerState\n",
        "agent/__init__.py": "",
        "agent/agent.py": "from kubelite.runtime import oci\n",
    })
    allowed = {"errors": set(), "core": {"errors"}, "runtime": {"core", "errors"},
               "agent": {"core", "runtime", "errors"}}
    assert layering_violations(Graph(package), allowed, {}, {"runtime"}) == []
    assert Graph(package).cycles() == []

    # a pure decision that reaches up into the agent, lazily
    (package / "core" / "plan.py").write_text('"""plan"""\ndef plan():\n    from kubelite.agent import agent\n')
    problems = layering_violations(Graph(package), allowed, {}, {"runtime"})
    assert "kubelite.core.plan imports kubelite.agent.agent: core may not use agent" in problems
    # ...and the runtime, which only imports core.types, now reaches the agent through it
    (package / "core" / "types.py").write_text('"""types"""\nfrom kubelite.core import plan\n')
    problems = layering_violations(Graph(package), allowed, {}, {"runtime"})
    assert "kubelite.runtime.oci imports kubelite.agent.agent (through other modules): runtime may not use agent" \
        in problems
    assert "kubelite.runtime.oci imports kubelite.core.plan (through other modules): runtime may use only the " \
        "data types of core" in problems
    assert ["kubelite.agent.agent", "kubelite.core.plan", "kubelite.core.types", "kubelite.runtime.oci"] \
        in Graph(package).cycles()


def test_the_package_root_and_unknown_layers_fail_the_check(tmp_path):
    """`from kubelite import x` is the module x when there is one, never a free pass; the root
    imports nothing; a package missing from the table fails."""
    package = _tree(tmp_path, {"__init__.py": "import kubelite.errors\n", "errors.py": "",
                               "core/__init__.py": "", "core/plan.py": "from kubelite import agent\n",
                               "agent.py": ""})
    problems = layering_violations(Graph(package), {"errors": set(), "core": {"errors"}}, {}, set())
    assert "kubelite (the package root) imports kubelite.errors" in problems
    assert "kubelite.agent: the layer 'agent' is not in the table of layers" in problems
    assert "kubelite.core.plan imports kubelite.agent: core may not use agent" in problems


def test_only_modules_and_type_checking_imports(tmp_path):
    package = _tree(tmp_path, {
        "__init__.py": "", "store/__init__.py": "", "store/reader.py": "", "store/store.py": "",
        "apiserver/__init__.py": "",
        "apiserver/server.py": "from typing import TYPE_CHECKING\nfrom kubelite.store.reader import Reader\n"
                               "from kubelite.apiserver import routes\n",
        "apiserver/routes.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                               "    from kubelite.apiserver.server import ApiServer\n",
    })
    rules = ({"store": set(), "apiserver": {"store"}}, {("apiserver", "store"): {"kubelite.store.reader"}}, set())
    assert layering_violations(Graph(package), *rules) == []
    assert Graph(package).cycles() == []   # a type-only import back is no cycle
    (package / "apiserver" / "routes.py").write_text('"""routes"""\nfrom kubelite.store import store\n')
    assert layering_violations(Graph(package), *rules) == [
        "kubelite.apiserver.routes imports kubelite.store.store: apiserver may use only kubelite.store.reader of store",
        "kubelite.apiserver.server imports kubelite.store.store (through other modules): apiserver may use only "
        "kubelite.store.reader of store"]


def test_each_row_of_the_table_reads_whole():
    """A layer's row names what the layers it uses may use (but for those it uses only some modules of)."""
    for layer, uses in ALLOWED.items():
        for used in uses:
            if (layer, used) not in ONLY_MODULES:
                assert ALLOWED[used] <= uses | {layer}, f"{layer} uses {used}, which uses {ALLOWED[used] - uses}"


def test_a_cycle_in_the_table_fails():
    assert table_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c"]
    assert table_cycles(ALLOWED) == []


#: The modules that may know which runtime is which: the runtimes themselves, the composition root
#: that picks one, and the prober that the simulated runtime scripts.
RUNTIME_CHOOSERS = ("runtime/", "daemon.py", "prober/scripted.py")


def runtime_checks(package: Path) -> list[str]:
    """Places outside RUNTIME_CHOOSERS that ask which runtime they were given."""
    found = []
    for path in sorted(package.rglob("*.py")):
        where = str(path.relative_to(package))
        if where.startswith(RUNTIME_CHOOSERS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(("runtime.fake", "runtime.oci")):
                found.append(f"{where}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in ("fake", "runc")
                                                     for c in [node.left, *node.comparators]):
                found.append(f"{where}:{node.lineno} compares with a runtime's name")
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "isinstance" \
                    and any(n in ast.unparse(node) for n in ("FakeRuntime", "OCIRuntime")):
                found.append(f"{where}:{node.lineno} asks the runtime's class")
    return found


def test_only_the_wiring_asks_which_runtime_it_is(tmp_path):
    """Callers ask what a runtime does (`runtime.simulated`), never which one it is."""
    assert runtime_checks(PACKAGE) == []
    package = _tree(tmp_path, {"agent/agent.py": "def f(runtime):\n    return runtime.name != 'fake'\n",
                               "prober/__init__.py": "from kubelite.runtime.fake import FakeRuntime\n"
                                                     "def f(r):\n    return isinstance(r, FakeRuntime)\n"})
    assert runtime_checks(package) == ["agent/agent.py:3 compares with a runtime's name",
                                       "prober/__init__.py:2 imports kubelite.runtime.fake",
                                       "prober/__init__.py:4 asks the runtime's class"]


def test_core_is_pure():
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    top = (name or "").split(".")[0]
                    assert top == "kubelite" or top in PURE_STDLIB, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("datetime", "date", "time") \
                    and node.func.attr in ("now", "utcnow", "today", "time", "monotonic"):
                pytest.fail(f"{path.name} reads a clock ({node.func.value.id}.{node.func.attr})")
            if isinstance(node, ast.Name) and node.id == "open":
                pytest.fail(f"{path.name} opens a file")


def test_the_cli_read_path_loads_neither_pydantic_nor_sqlalchemy():
    code = ("import sys; import kubelite.cli.main, kubelite.cli.show, kubelite.kubectl.pods, kubelite.kubectl.events, "
            "kubelite.kubectl.describe, kubelite.kubectl.configs, kubelite.kubectl.storage, kubelite.store.reader; "
            "print(sorted(m for m in ('pydantic', 'sqlalchemy', 'yaml', 'watchdog') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "[]"


def test_reader_and_schema_agree():
    from kubelite.store import reader, schema, store

    assert reader.SCHEMA_VERSION == schema.SCHEMA_VERSION
    assert reader.DB_NAME == store.DB_NAME
    assert reader.RESOURCE_VERSION_KEY == store.RESOURCE_VERSION_KEY
    assert reader.TOMBSTONE_PREFIX == store.TOMBSTONE_PREFIX


def test_every_module_says_what_it_owns():
    for path in PACKAGE.rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 20, f"{path.relative_to(PACKAGE)} has no module docstring"
