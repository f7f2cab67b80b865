"""The house rules that keep the code livable, checked on every run.

* Imports only go down: cli → agent → {sources, store, runtime, prober} → core → api (prober → runtime);
  the API server (started by the agent's daemon) reads the store and uses the CLI's pure printers only.
* `kubelite/core` is pure: no clock, no files, no processes.
* The CLI's read path loads neither pydantic nor SQLAlchemy (that is what keeps `get pods` fast).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kubelite"

ALLOWED = {
    "api": {"api", "errors", "statefiles"},
    "core": {"api", "core", "errors"},
    "sources": {"api", "sources", "errors", "clock", "statefiles"},
    "store": {"api", "core", "store", "errors", "clock", "statefiles"},
    "runtime": {"api", "core", "runtime", "errors", "clock", "statefiles"},
    "prober": {"core", "runtime", "prober", "errors", "clock", "statefiles"},
    "agent": {"api", "core", "sources", "store", "runtime", "prober", "agent", "apiserver", "errors", "clock",
              "statefiles", ""},
    # the read-only Kubernetes API that the daemon serves beside the agent: it reads the store and
    # formats with the CLI's pure printers, never the agent (it must not write)
    "apiserver": {"apiserver", "store", "runtime", "cli", "errors", "clock", "statefiles", ""},
    "cli": None,  # the top: may import anything, lazily
}
#: The only modules a layer may use from a package that is otherwise not below it: pure,
#: standard-library code (kubectl's printers, the CRI log format).
ONLY_MODULES = {("apiserver", "cli"): {"kubelite.cli.printers", "kubelite.cli.storageprinters"},
                ("apiserver", "runtime"): {"kubelite.runtime.crilog"}}
#: Pure, standard-library homes of facts that every layer may use: where everything lives on disk.
EVERYWHERE = {"kubelite.runtime.layout"}
#: Modules of a lower layer may use only the data types of `core`, never its decisions.
CORE_TYPES_ONLY = {"store", "runtime", "prober"}
PURE_STDLIB = {"__future__", "dataclasses", "datetime", "enum", "typing", "fractions", "re", "hashlib", "json",
               "collections", "math", "itertools", "functools"}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def kubelite_imports(path: Path) -> list[str]:
    """The kubelite modules `path` imports: `from kubelite.x import y` counts as `kubelite.x.y` when y
    is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kubelite"):
            modules = [f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")]
            found += modules if len(modules) == len(node.names) else [node.module, *modules]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("kubelite")]
    return found


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).glob("*.py"))


@pytest.mark.parametrize("layer", [k for k, v in ALLOWED.items() if v is not None])
def test_imports_only_go_down(layer):
    assert modules(layer), f"no modules in kubelite/{layer}"
    for path in modules(layer):
        for name in kubelite_imports(path):
            if name in EVERYWHERE:
                continue
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else ""
            assert target in ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {name}"
            if layer in CORE_TYPES_ONLY and target == "core":
                assert name == "kubelite.core.types", f"{path.relative_to(PACKAGE)} imports {name}"
            if (layer, target) in ONLY_MODULES:
                assert name in ONLY_MODULES[layer, target], f"{path.relative_to(PACKAGE)} imports {name}"


def test_core_is_pure():
    for path in modules("core"):
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
    code = ("import sys; import kubelite.cli.main, kubelite.cli.show, kubelite.cli.printers, kubelite.store.reader; "
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
