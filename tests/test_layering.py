"""The house rules that keep the code livable, checked on every run.

* Imports only go down, bottom first:
  kubelite (the root: `__version__`) → errors → statefiles → api → core → {sources, store, runtime}
  → prober → agent → kubectl → apiserver → daemon → cli → __main__.
  Every module of every package (sub-packages too) and every top-level module is checked, and not
  only its own imports: whatever it reaches through other modules, lazily imported or not.
  Relative imports count as the absolute ones they stand for. A module a row allows in a layer
  otherwise not below does not open the rest of that layer: what it reaches there is checked too.
* Only the node state, the agent that hands the store to it, the composition root and `sync` import
  the store's writer (`kubelite.store.store`); everyone else reads through `kubelite.store.reader`.
* No import cycles, neither between modules (lazy imports count; the body of `if TYPE_CHECKING:`
  does not, its `else:` and `if not TYPE_CHECKING:` do) nor in the table of layers itself.
* `kubelite/core` is pure: no clock (under whatever name it is imported), no files, no processes.
* The CLI's read path loads neither pydantic nor SQLAlchemy (that is what keeps `get pods` fast).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Mapping


PACKAGE = Path(__file__).resolve().parent.parent / "kubelite"

_BELOW_AGENT = {"api", "core", "sources", "store", "runtime", "prober", "errors", "statefiles", "clock", "layout",
                "children"}
#: Each layer — a package with its sub-packages, or a top-level module — and the layers it may
#: import, directly or through others: a row lists what the layers it names use too (a test checks),
#: so it reads whole. A layer may always import itself, and every layer may import the package root
#: (it holds `__version__` and imports nothing).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    # short-lived helper programs run with bounds (standard library only)
    "children": set(),
    # the service manager's side: sd_notify, the log formats, the unit file (standard library only)
    "service": set(),
    # where everything lives on disk: pure, standard library and errors only
    "layout": {"errors"},
    "statefiles": {"errors", "layout"},
    "api": {"errors"},
    "core": {"api", "errors"},
    "sources": {"api", "errors", "statefiles", "clock", "layout", "children"},
    "store": {"api", "core", "errors", "statefiles", "clock", "layout"},
    "runtime": {"api", "core", "errors", "statefiles", "clock", "layout", "children"},
    "prober": {"api", "core", "runtime", "errors", "statefiles", "clock", "layout", "children"},
    "agent": _BELOW_AGENT,
    # kubectl's printing rules: pure and standard library only, used by the CLI and the API server
    "kubectl": {"api"},
    # the read-only Kubernetes API: it reads the store and formats with `kubectl`, never the agent
    "apiserver": {"api", "kubectl", "store", "runtime", "errors", "statefiles", "clock", "layout", "children"},
    # the composition root: wires the agent, the sources, the prober, the API server and the sync
    "daemon": _BELOW_AGENT | {"agent", "kubectl", "apiserver", "service"},
    # the entry point: may use anything, lazily
    "cli": _BELOW_AGENT | {"agent", "kubectl", "apiserver", "daemon", "service"},
    # `python -m kubelite`: the CLI's entry point
    "__main__": _BELOW_AGENT | {"agent", "kubectl", "apiserver", "daemon", "cli", "service"},
}
#: The only modules a layer may reach in a layer that is otherwise not below it (and what those
#: modules reach there themselves): pure, standard-library code.
ONLY_MODULES: dict[tuple[str, str], set[str]] = {
    ("apiserver", "store"): {"kubelite.store.reader"},        # it reads, it never writes
    ("apiserver", "runtime"): {"kubelite.runtime.crilog", "kubelite.runtime.view",
                               "kubelite.runtime.stats", "kubelite.runtime.usage",   # the metrics API
                               # port-forward: a pod's namespace (`view`, `linux`'s PID check), the dial
                               "kubelite.runtime.netns", "kubelite.runtime.linux",
                               "kubelite.runtime.streaming",   # the exec session's type
                               "kubelite.runtime.attach",
                               "kubelite.runtime.targets"},   # which pod and container a session reaches
    ("kubectl", "api"): {"kubelite.api.quantity", "kubelite.api.qos"},
    ("apiserver", "api"): {"kubelite.api.quantity", "kubelite.api.qos"},    # through kubectl
    # the CLI reads the store; it opens the store itself only where OPENED_BY allows (`sync --once`)
    ("cli", "store"): {"kubelite.store.reader", "kubelite.store.store", "kubelite.store.schema",
                       "kubelite.store.serial"},
    # containers only through the runtime's view and the CRI log format; the image commands; the
    # bridge's defaults and the host address `serve` reads from `cni` (and what `cni` uses: `linux`,
    # `protocol`). A package listed here is listed with its modules.
    ("cli", "runtime"): {"kubelite.runtime.view", "kubelite.runtime.streaming", "kubelite.runtime.crilog",
                         "kubelite.runtime.images",
                         "kubelite.runtime.registry", "kubelite.runtime.reference", "kubelite.runtime.cni",
                         "kubelite.runtime.linux", "kubelite.runtime.protocol", "kubelite.runtime.netns",
                         "kubelite.runtime.stats", "kubelite.runtime.usage",   # `top`
                         "kubelite.runtime.attach", "kubelite.runtime.targets"},
}
#: Modules only the modules listed may import (their own package aside). The store's writer: the
#: node state writes it, the composition root opens it, the agent holds it to hand to the node state
#: (and to reopen a replaced database), and `sync` opens it when no daemon runs (`--once`) to hand
#: its result to a node state of its own.
OPENED_BY: dict[str, set[str]] = {
    "kubelite.store.store": {"kubelite.agent.nodestate", "kubelite.agent.agent", "kubelite.daemon",
                             "kubelite.cli.sync"},
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
        here = self._name(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]

        def visit(nodes: list[ast.AST], in_typing: bool) -> None:
            for child in nodes:
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    visit(child.body, True)          # only the body is for the type checker
                    visit(child.orelse, in_typing)   # the `else:` runs
                    continue
                found: set[str] = set()
                if isinstance(child, ast.ImportFrom):
                    module = _absolute(child, package)
                    if module and module.split(".")[0] == self.root:
                        found = self._resolve(module, [a.name for a in child.names])
                elif isinstance(child, ast.Import):
                    for alias in child.names:
                        if alias.name.split(".")[0] == self.root:
                            found |= self._resolve(alias.name, [])
                (typing if in_typing else running).update(found)
                visit(list(ast.iter_child_nodes(child)), in_typing)

        visit([ast.parse(path.read_text())], False)
        return running | typing, typing - running

    def layer(self, module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else ""    # "": the package root

    def reach(self, module: str, through: set[str] | None = None) -> set[str]:
        """Every module `module` imports, directly or through others (lazy imports included); with
        `through`, only through modules of those layers."""
        seen: set[str] = set()
        todo = [module]
        while todo:
            for target in self.imports.get(todo.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    if through is None or self.layer(target) in through:
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


def _is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING`, and nothing else (`not TYPE_CHECKING` runs)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING" and ast.unparse(test.value) == "typing")


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The module a `from ... import` names, relative ones resolved against the importing package."""
    if node.level == 0:
        return node.module
    parts = package.split(".")
    if node.level - 1 >= len(parts):
        return None   # beyond the top: Python refuses it too
    base = ".".join(parts[:len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


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
            elif (layer, to) in only_modules and target in graph.reach(module, through={layer, to}):
                # what it reaches itself or through the modules it may use there; what it reaches
                # through a third layer is checked on that layer's row
                names = only_modules[layer, to]
                if not any(target == n or target.startswith(f"{n}.") or target in _parents(n) for n in names):
                    problems.append(f"{module} imports {target}{via}: {layer} may use only "
                                    f"{', '.join(sorted(names))} of {to}")
            if layer in core_types_only and to == "core" and target not in (f"{graph.root}.core.types",
                                                                            f"{graph.root}.core"):
                problems.append(f"{module} imports {target}{via}: {layer} may use only the data types of core")
    return problems


def private_imports(graph: Graph, opened_by: Mapping[str, set[str]]) -> list[str]:
    """Imports of a module of OPENED_BY by a module it does not list (its own package aside)."""
    problems = []
    for module in sorted(graph.paths):
        for target in sorted(graph.runtime_imports[module] & opened_by.keys()):
            if module not in opened_by[target] and graph.layer(module) != graph.layer(target):
                problems.append(f"{module} imports {target}: only {', '.join(sorted(opened_by[target]))} may")
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


def test_only_the_writer_and_its_openers_import_the_store():
    assert private_imports(Graph(PACKAGE), OPENED_BY) == []


def test_a_second_writer_fails_the_check(tmp_path):
    """Whatever the receiver is called (`db = Store(root)`, `Store(root).set_meta`, `getattr`), a
    module that may not open the store cannot import it, in any form."""
    package = _tree(tmp_path, {
        "__init__.py": "", "store/__init__.py": "", "store/store.py": "", "store/reader.py": "",
        "agent/__init__.py": "", "agent/nodestate.py": "from kubelite.store.store import Store\n",
        "agent/rogue.py": "from kubelite.store.store import Store\ndef f(root, entry):\n    db = Store(root)\n"
                          "    db.put_backoff(entry)\n    getattr(db, 'delete_pod')('uid')\n",
        "cli/__init__.py": "", "cli/get.py": "def f():\n    from kubelite.store import store\n",
        "cli/show.py": "from kubelite.store.reader import Reader\n", "cli/sync.py": "from ..store import store\n",
        "prober/__init__.py": "import kubelite.store.store as db\n",
    })
    opened_by = {"kubelite.store.store": {"kubelite.agent.nodestate", "kubelite.cli.sync"}}
    assert private_imports(Graph(package), opened_by) == [
        "kubelite.agent.rogue imports kubelite.store.store: only kubelite.agent.nodestate, kubelite.cli.sync may",
        "kubelite.cli.get imports kubelite.store.store: only kubelite.agent.nodestate, kubelite.cli.sync may",
        "kubelite.prober imports kubelite.store.store: only kubelite.agent.nodestate, kubelite.cli.sync may"]


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


def test_relative_imports_count(tmp_path):
    package = _tree(tmp_path, {"__init__.py": "", "errors.py": "", "core/__init__.py": "from . import plan\n",
                               "core/plan.py": "def f():\n    from ..agent import agent\n",
                               "agent/__init__.py": "", "agent/agent.py": "from kubelite.core import plan\n"})
    allowed = {"errors": set(), "core": {"errors"}, "agent": {"core", "errors"}}
    problems = layering_violations(Graph(package), allowed, {}, set())
    assert "kubelite.core.plan imports kubelite.agent.agent: core may not use agent" in problems
    assert "kubelite.core imports kubelite.agent.agent (through other modules): core may not use agent" in problems
    assert Graph(package).cycles() == [["kubelite.agent.agent", "kubelite.core", "kubelite.core.plan"]]


def test_only_if_type_checking_is_for_the_type_checker(tmp_path):
    """`if not TYPE_CHECKING:` and the `else:` of `if TYPE_CHECKING:` run: a cycle through them is one."""
    package = _tree(tmp_path, {
        "__init__.py": "", "agent/__init__.py": "", "agent/a.py": "from kubelite.agent import b, c, d\n",
        "agent/b.py": "from typing import TYPE_CHECKING\nif not TYPE_CHECKING:\n    from kubelite.agent import a\n",
        "agent/c.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    from kubelite.agent import a\n",
        "agent/d.py": "import typing\nif typing.TYPE_CHECKING:\n    from kubelite.agent import a\n"})
    graph = Graph(package)
    assert graph.cycles() == [["kubelite.agent.a", "kubelite.agent.b", "kubelite.agent.c"]]
    assert graph.runtime_imports["kubelite.agent.d"] == set() and "kubelite.agent.a" in graph.imports["kubelite.agent.d"]


def test_only_modules_hold_for_what_they_reach(tmp_path):
    """A module a row allows does not open the rest of its layer: what it reaches there must be allowed
    too; what a layer reaches through a third layer is checked on that layer's row."""
    package = _tree(tmp_path, {
        "__init__.py": "", "store/__init__.py": "", "store/store.py": "", "store/schema.py": "",
        "store/reader.py": "from kubelite.store import schema\n",
        "apiserver/__init__.py": "", "apiserver/x.py": "from kubelite.store import reader\n",
        "agent/__init__.py": "", "agent/a.py": "from kubelite.store import store\n",
        "cli/__init__.py": "", "cli/serve.py": "from kubelite.agent import a\n",
        "cli/get.py": "from kubelite.store import reader\n"})
    allowed = {"store": set(), "agent": {"store"}, "apiserver": {"store"}, "cli": {"store", "agent"}}
    only = {("apiserver", "store"): {"kubelite.store.reader"}, ("cli", "store"): {"kubelite.store.reader"}}
    assert layering_violations(Graph(package), allowed, only, set()) == [
        "kubelite.apiserver.x imports kubelite.store.schema (through other modules): apiserver may use only "
        "kubelite.store.reader of store",
        "kubelite.cli.get imports kubelite.store.schema (through other modules): cli may use only "
        "kubelite.store.reader of store"]   # cli.serve reaches store.store through the agent: its business
    only = {k: v | {"kubelite.store.schema"} for k, v in only.items()}
    assert layering_violations(Graph(package), allowed, only, set()) == []


def test_the_cli_reaches_containers_only_through_the_runtimes_view(tmp_path):
    package = _tree(tmp_path, {
        "__init__.py": "", "runtime/__init__.py": "", "runtime/view.py": "", "runtime/oci/__init__.py": "",
        "runtime/oci/runtime.py": "", "cli/__init__.py": "", "cli/containers.py": "from kubelite.runtime import view\n"})
    rules = (ALLOWED, {("cli", "runtime"): ONLY_MODULES["cli", "runtime"]}, set())
    allowed = {k: v for k, v in ALLOWED.items() if k in ("runtime", "cli")}
    rules = ({k: v & set(allowed) for k, v in allowed.items()}, rules[1], set())
    assert layering_violations(Graph(package), *rules) == []
    (package / "cli" / "containers.py").write_text('"""containers"""\nfrom kubelite.runtime.oci import runtime\n')
    assert [p.split(":")[0] for p in layering_violations(Graph(package), *rules)] == [
        "kubelite.cli.containers imports kubelite.runtime.oci", "kubelite.cli.containers imports kubelite.runtime.oci.runtime"]


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


_RUNTIMES = ("kubelite.runtime.fake", "kubelite.runtime.oci")
_RUNTIME_NAMES = ("fake", "runc", "FakeRuntime", "OCIRuntime")


def runtime_checks(package: Path) -> list[str]:
    """Places outside RUNTIME_CHOOSERS that ask which runtime they were given."""
    found = []
    graph = Graph(package)
    for path in sorted(package.rglob("*.py")):
        where = str(path.relative_to(package))
        if where.startswith(RUNTIME_CHOOSERS):
            continue
        here = graph._name(path)
        home = here if path.name == "__init__.py" else here.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            modules: list[str] = []
            if isinstance(node, ast.ImportFrom):
                module = _absolute(node, home) or ""
                modules = [module, *(f"{module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                if any(module == r or module.startswith(f"{r}.") for r in _RUNTIMES):
                    found.append(f"{where}:{node.lineno} imports {module}")
                    break
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in _RUNTIME_NAMES
                    for side in [node.left, *node.comparators] for c in ast.walk(side)):
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


def test_every_form_of_asking_which_runtime_is_caught(tmp_path):
    package = _tree(tmp_path, {
        "agent/agent.py": "from kubelite.runtime import fake\nimport kubelite.runtime.oci\n"
                          "from ..runtime.oci import runtime\n"
                          "def f(r):\n    return r.name in ('fake',) or type(r).__name__ == 'FakeRuntime'\n",
        "agent/fine.py": "from kubelite.runtime import protocol\ndef f(r):\n    return r.simulated\n"})
    assert runtime_checks(package) == ["agent/agent.py:2 imports kubelite.runtime.fake",
                                       "agent/agent.py:3 imports kubelite.runtime.oci",
                                       "agent/agent.py:4 imports kubelite.runtime.oci",
                                       "agent/agent.py:6 compares with a runtime's name",    # in ('fake',)
                                       "agent/agent.py:6 compares with a runtime's name"]    # == 'FakeRuntime'


#: The clocks a pure module may not read, by their full names.
CLOCKS = {"datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today",
          "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter",
          "time.perf_counter_ns", "time.localtime", "time.gmtime"}


def impurities(path: Path) -> list[str]:
    """What makes a module impure: imports beyond PURE_STDLIB, a clock read (under any alias), `open`."""
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                top = (name or "").split(".")[0]
                if not (top == "kubelite" or top in PURE_STDLIB or (isinstance(node, ast.ImportFrom) and node.level)):
                    found.append(f"{path.name} imports {name}")
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            head, _, rest = called.partition(".")
            full = ".".join(filter(None, [aliases.get(head, head), rest]))
            if full in CLOCKS or called in ("datetime.now", "datetime.utcnow", "date.today"):
                found.append(f"{path.name} reads a clock ({full})")
        if isinstance(node, ast.Name) and node.id == "open":
            found.append(f"{path.name} opens a file")
    return found


def test_core_is_pure():
    assert [f for path in sorted((PACKAGE / "core").rglob("*.py")) for f in impurities(path)] == []


def test_a_clock_read_in_core_is_caught_under_any_name(tmp_path):
    module = tmp_path / "plan.py"
    module.write_text("import datetime\nimport datetime as dt\nfrom datetime import datetime as D, date\n"
                      "import time as t\nfrom time import monotonic as tick\n"
                      "def f():\n    return (datetime.datetime.now(), dt.datetime.utcnow(), D.now(), date.today(),\n"
                      "            t.time(), tick(), datetime.timedelta(1), D.fromisoformat('x'))\n")
    assert impurities(module) == ["plan.py imports time", "plan.py imports time",
                                  "plan.py reads a clock (datetime.datetime.now)",
                                  "plan.py reads a clock (datetime.datetime.utcnow)",
                                  "plan.py reads a clock (datetime.datetime.now)",
                                  "plan.py reads a clock (datetime.date.today)",
                                  "plan.py reads a clock (time.time)", "plan.py reads a clock (time.monotonic)"]


def homeless_paths(package: Path, homes: Mapping[str, set[str]]) -> list[str]:
    """`<path> / "<name>"` outside the module that owns the name (`homes`: module file → names)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        where = str(path.relative_to(package))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
                for home, names in homes.items():
                    if node.right.value in names and where != home:
                        found.append(f"{where}:{node.lineno} builds {ast.unparse(node)}: the name is {home}'s")
    return found


def _path_homes() -> dict[str, set[str]]:
    from kubelite import layout
    from kubelite.apiserver import auth

    return {"layout.py": {*layout.ROOT_NAMES, *layout.RUN_NAMES, layout.RECORD_NAME, layout.VOLUMES_NAME,
                          layout.VOLUME_SUBPATHS_NAME, layout.GIT_REPO_NAME, layout.GIT_WORKTREES_NAME},
            "apiserver/auth.py": {auth.CA_CERT, auth.CA_KEY, auth.SERVER_CERT, auth.SERVER_KEY}}


def test_paths_come_from_their_home():
    """The names below the state root and the run directory are `layout`'s, the API's certificates
    `apiserver.auth`'s: nobody else spells them (the names inside bundles and the image store's parts
    are their owners', see layout's docstring)."""
    assert homeless_paths(PACKAGE, _path_homes()) == []


def test_a_path_built_by_hand_is_caught(tmp_path):
    package = _tree(tmp_path, {"layout.py": "def f(root):\n    return root / 'images'\n",
                               "sources/gitsync.py": "def f(base, store):\n    return base / 'repo.git', "
                                                     "f\"{store.root / 'images'}\"\n",
                               "cli/kubeconfig.py": "def f(d):\n    return d / 'ca.crt', d / 'config.json'\n"})
    assert homeless_paths(package, _path_homes()) == [
        "cli/kubeconfig.py:3 builds d / 'ca.crt': the name is apiserver/auth.py's",
        "sources/gitsync.py:3 builds base / 'repo.git': the name is layout.py's",
        "sources/gitsync.py:3 builds store.root / 'images': the name is layout.py's"]


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
