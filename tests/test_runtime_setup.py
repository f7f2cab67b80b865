"""The OCI runtime refuses to start without its parts or without root, with one clear line."""

from __future__ import annotations

import shutil

import pytest

from kubelite.agent.agent import AgentConfig
from kubelite.agent.daemon import ServeOptions, make_runtime
from kubelite.errors import UsageError
from kubelite.runtime import oci


def test_missing_binaries_are_named_with_the_packages_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None if name in ("conmon", "catatonit") else "/x")
    with pytest.raises(oci.MissingDependency) as exc:
        oci.find_binaries()
    assert str(exc.value) == ("the OCI runtime needs conmon, catatonit: run 'apt-get install conmon catatonit' "
                              "(or scripts/run as root)")


def test_the_runc_runtime_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    options = ServeOptions(agent=AgentConfig(manifests=tmp_path, root=tmp_path), run_dir=tmp_path, runtime="runc")
    with pytest.raises(UsageError, match="needs root"):
        make_runtime(options, clock=None)  # type: ignore[arg-type]
