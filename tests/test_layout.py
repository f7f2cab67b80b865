"""`layout`: the one home of every path below the state root and the run directory."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kubelite import statefiles
from kubelite.errors import RuntimeError_
from kubelite import layout

REPO = Path(__file__).resolve().parent.parent


def test_a_container_log_is_named_as_the_kubelets():
    path = layout.container_log_path(Path("/var/lib/kubelite"), "default", "web", "u-1", "app", 3)
    assert path == Path("/var/lib/kubelite/logs/default_web_u-1/app/3.log")
    assert path.parent.parent == layout.pod_log_dir(Path("/var/lib/kubelite"), "default", "web", "u-1")


def test_runtime_paths_below_the_run_directory():
    run = Path("/run/kubelite")
    assert layout.runc_root(run) == run / "runc"
    bundle = layout.sandbox_bundle(run, "abc")
    assert layout.record_path(bundle) == run / "sandboxes/abc/record.json"
    assert layout.bundle_config_path(layout.container_bundle(run, "c1")) == run / "containers/c1/config.json"
    assert layout.cni_pending_dir(run) == run / "cni/pending"


def test_pod_directories_hold_layers_volumes_and_subpaths():
    root = Path("/var/lib/kubelite")
    assert layout.container_layer_dir(root, "u1", "c1") == root / "pods/u1/containers/c1"
    assert layout.pod_volumes_dir(root, "u1") == root / "pods/u1/volumes"
    assert layout.pod_volume_subpaths_dir(root, "u1") == root / "pods/u1/volume-subpaths"


@pytest.mark.parametrize("uid", ["", ".", "..", "a/b", "../etc", "-x", "a..b", "x/", " x"])
def test_a_name_that_could_lead_elsewhere_is_refused(uid):
    with pytest.raises(RuntimeError_):
        layout.pod_dir(Path("/var/lib/kubelite"), uid)


def test_statefiles_tightens_exactly_the_names_of_the_layout():
    assert statefiles.ROOT_NAMES == layout.ROOT_NAMES and statefiles.RUN_NAMES == layout.RUN_NAMES
    assert {"kubelite.db", "kubelite.lock", "sync.lock", "api", "logs", "images", "pods", "git", "cni"} \
        <= layout.ROOT_NAMES
    assert layout.RUN_NAMES == {"runc", "exits", "sockets", "sandboxes", "containers", "netns", "cni", "instance"}


def test_the_layout_is_pure():
    tree = ast.parse((REPO / "kubelite/layout.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "re", "pathlib", "kubelite.errors"}
    calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert not calls & {"mkdir", "exists", "open", "read_text", "write_text", "unlink", "iterdir", "stat"}


def test_no_other_module_spells_a_log_path_or_the_runc_root():
    for path in (REPO / "kubelite").rglob("*.py"):
        if path.name == "layout.py":
            continue
        text = path.read_text()
        assert '/ "logs" /' not in text and '/ "runc"' not in text and '/ "pods" /' not in text, path
