"""The runtime's view for other processes: log paths, exec and signals, as the CLI uses them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubelite.errors import RuntimeError_
from kubelite import layout
from kubelite.runtime.view import RuntimeView

REPO = Path(__file__).resolve().parent.parent


def test_a_container_log_is_below_the_pods_log_directory_by_restart_count(tmp_path):
    view = RuntimeView(root=tmp_path / "state", run_dir=tmp_path / "run")
    path = view.log_path(namespace="default", pod="web", uid="u-1", container="app", attempt=2)
    assert path == tmp_path / "state" / "logs" / "default_web_u-1" / "app" / "2.log"
    assert path.parent.parent == layout.pod_log_dir(tmp_path / "state", "default", "web", "u-1")


def test_exec_goes_through_runc_under_this_instances_root(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, path=None: f"/usr/sbin/{name}")
    view = RuntimeView(root=tmp_path / "state", run_dir=tmp_path / "run")
    assert view.exec_argv("runc://abc", ["sh", "-c", "echo hi"], tty=True) == [
        "/usr/sbin/runc", "--root", str(tmp_path / "run" / "runc"), "exec", "--tty", "abc", "sh", "-c", "echo hi"]
    assert layout.runc_root(tmp_path / "run") == tmp_path / "run" / "runc"


def test_a_simulated_container_has_no_process_to_reach(tmp_path):
    view = RuntimeView(root=tmp_path, run_dir=tmp_path)
    with pytest.raises(RuntimeError_, match="simulated runtime: there is no process to reach"):
        view.exec_argv("fake://abc", ["true"])
    with pytest.raises(RuntimeError_, match="simulated runtime"):
        view.signal("fake://abc", "KILL")


def test_without_runc_the_view_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    with pytest.raises(RuntimeError_, match="runc is not installed"):
        RuntimeView(root=tmp_path, run_dir=tmp_path).signal("runc://abc", "TERM")


def _runc_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """A stand-in `runc` that runs `body` (sh), found where the view looks for runc."""
    script = tmp_path / "runc"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name, path=None: str(script))


def test_a_failed_signal_is_one_line_from_runc(tmp_path, monkeypatch):
    _runc_script(tmp_path, monkeypatch, 'echo "container $4 does not exist" >&2\nexit 1')
    with pytest.raises(RuntimeError_, match=r"^kill: container abc does not exist$"):
        RuntimeView(root=tmp_path, run_dir=tmp_path).signal("runc://abc", "SIGTERM")


def test_the_runtime_version_is_runcs_own_or_kubelites_for_the_simulated_runtime(tmp_path, monkeypatch):
    from kubelite import __version__
    from kubelite.runtime.view import runtime_version

    _runc_script(tmp_path, monkeypatch, "echo 'runc version 1.1.12'\necho 'spec: 1.0.2-dev'")
    assert runtime_version("runc") == "runc://1.1.12"
    assert runtime_version("fake") == f"fake://{__version__}"
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    assert runtime_version("runc") == "runc://unknown"


def test_the_view_loads_neither_the_runtime_nor_subprocess():
    code = ("import sys; import kubelite.runtime.view; "
            "print(sorted(m for m in ('kubelite.runtime.oci', 'kubelite.api.models', 'pydantic', 'subprocess') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
