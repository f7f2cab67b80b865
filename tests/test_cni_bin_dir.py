"""`serve --cni-bin-dir`: where the CNI plugins are looked for, in order, as the kubelet's flag."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kubelite.daemon as daemon
from kubelite.cli import main, serve
from kubelite.errors import UsageError
from kubelite.runtime import cni


def _plugins(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name in cni.PLUGINS:
        (directory / name).write_text("#!/bin/sh\nexit 0\n")
        os.chmod(directory / name, 0o755)
    return directory


def _served_options(monkeypatch, tmp_path: Path, *flags: str) -> daemon.ServeOptions:
    seen: list[daemon.ServeOptions] = []
    monkeypatch.setattr(daemon, "serve", lambda options: seen.append(options) or 0)
    monkeypatch.setattr(daemon, "configure_logging", lambda *a, **k: None)
    assert main.main(["serve", "--runtime", "fake", "--no-api", "--root", str(tmp_path / "root"),
                      "--run-dir", str(tmp_path / "run"), "--manifests", str(tmp_path / "m"), *flags]) == 0
    return seen[0]


def test_the_default_searches_debians_directory_then_the_kubelets(monkeypatch, tmp_path: Path):
    assert _served_options(monkeypatch, tmp_path).cni_bin_dirs == ("/usr/lib/cni", "/opt/cni/bin")


def test_a_comma_separated_list_is_searched_in_its_order(monkeypatch, tmp_path: Path):
    options = _served_options(monkeypatch, tmp_path, "--cni-bin-dir", "/srv/cni, /opt/cni/bin,")
    assert options.cni_bin_dirs == ("/srv/cni", "/opt/cni/bin")


@pytest.mark.parametrize("value, message", [("", "at least one directory"), ("cni/bin", "full paths: cni/bin"),
                                            ("/opt/cni/bin,bin", "full paths: bin")])
def test_an_empty_or_relative_directory_is_refused(monkeypatch, capsys, tmp_path: Path, value, message):
    monkeypatch.setattr(daemon, "serve", lambda options: pytest.fail("served with a bad --cni-bin-dir"))
    with pytest.raises(UsageError, match=message):
        serve.cni_bin_dir_list(value)
    assert main.main(["serve", "--runtime", "fake", "--no-api", "--root", str(tmp_path / "root"),
                      "--cni-bin-dir", value]) == main.EXIT_ERROR
    assert message in capsys.readouterr().err


def test_the_first_directory_holding_every_plugin_is_used(tmp_path: Path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "bridge").write_text("#!/bin/sh\n")
    os.chmod(partial / "bridge", 0o755)
    full = _plugins(tmp_path / "full")
    assert cni.find_plugin_dir([str(tmp_path / "absent"), str(partial), str(full)]) == full


def test_the_network_is_made_from_the_flags_directories_and_names_them_when_plugins_are_missing(tmp_path: Path):
    agent = daemon.AgentConfig(manifests=tmp_path / "m", root=tmp_path / "root", node_name="n")
    options = daemon.ServeOptions(agent=agent, run_dir=tmp_path / "run", cni_bin_dirs=(str(tmp_path / "none"),))
    with pytest.raises(cni.NetworkError, match=f"in {tmp_path / 'none'}: .*--cni-bin-dir"):
        daemon.make_network(options)
