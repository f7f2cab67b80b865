"""Packaging hygiene: the license and metadata, the constraints file every install uses, the lint gate
in front of the tests, and the bootstrap's package lists and its message where apt is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"constraints.txt: {line!r} is not a pin (NAME==VERSION)"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = match.group(2)
    return pins


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    named = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        named += extra
    return [Requirement(text) for text in named]


def test_every_dependency_of_pyproject_has_a_pin_within_its_range():
    pins = _pins()
    missing = [str(r) for r in _requirements() if canonicalize_name(r.name) not in pins]
    assert not missing, (f"constraints.txt has no pin for {', '.join(missing)}: run scripts/constraints "
                         "and commit constraints.txt")
    outside = [f"{r.name}=={pins[canonicalize_name(r.name)]} (wants {r.specifier})" for r in _requirements()
               if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"constraints.txt pins versions pyproject.toml refuses: {outside}; run scripts/constraints"


def test_the_constraints_leave_kubelite_itself_out_and_the_bootstrap_installs_with_them():
    assert "kubelite" not in _pins()
    bootstrap = (REPO / "scripts" / "bootstrap").read_text()
    installs = [line for line in bootstrap.splitlines() if re.search(r"\binstall (-c constraints\.txt )?-e ", line)]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert "[ constraints.txt -nt \"$stamp\" ]" in bootstrap   # a new constraints file reinstalls


def test_the_license_is_apache_2_and_the_metadata_says_so():
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    assert "Version 2.0, January 2004" in (REPO / "LICENSE").read_text()[:300]
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert project["authors"] == [{"name": "kubelite authors"}]
    assert project["keywords"] and project["classifiers"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]   # PEP 639: the expression says it


def test_ruff_runs_before_the_tests_and_its_rules_catch_an_unused_import(tmp_path: Path):
    script = (REPO / "scripts" / "test").read_text()
    assert script.index(".venv/bin/ruff check") < script.index("-m pytest")
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        ruff = Path(shutil.which("ruff") or "ruff")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    found = subprocess.run([str(ruff), "check", "--config", str(REPO / "pyproject.toml"), str(bad)],
                           capture_output=True, text=True, timeout=60)
    assert found.returncode == 1 and "F401" in found.stdout, found.stdout + found.stderr
    clean = subprocess.run([str(ruff), "check", "--config", str(REPO / "pyproject.toml"), "--quiet",
                            str(REPO / "kubelite")], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout


# ---------------------------------------------------------------------- scripts/bootstrap


def _bash_array(text: str, name: str) -> list[str]:
    match = re.search(rf"^{name}=\((.*?)\)", text, flags=re.M | re.S)
    assert match, f"scripts/bootstrap has no {name}"
    return match.group(1).split()


@pytest.mark.parametrize("kind", ["runtime", "test"])
def test_each_package_of_the_bootstrap_is_checked_by_a_command_of_its_own(kind):
    text = (REPO / "scripts" / "bootstrap").read_text()
    packages, commands = _bash_array(text, f"{kind}_packages"), _bash_array(text, f"{kind}_commands")
    assert len(packages) == len(commands), (packages, commands)
    pairs = dict(zip(packages, commands))
    if kind == "runtime":
        assert pairs["git"] == "git"          # sync and serve --sync-repo fetch with it
    else:
        assert pairs["prometheus"] == "/usr/bin/prometheus"


def _fake_bin(tmp_path: Path) -> Path:
    """A PATH without apt-get: bash and the few commands the bootstrap uses, a non-root `id`, and a
    python3 whose venv module is missing."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("bash", "dirname"):
        os.symlink(shutil.which(name), fake / name)
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "python3").write_text("#!/bin/sh\nexit 1\n")
    for name in ("id", "python3"):
        (fake / name).chmod(0o755)
    return fake


def test_without_apt_the_bootstrap_names_the_packages_and_fails(tmp_path: Path):
    fake = _fake_bin(tmp_path)
    result = subprocess.run([str(fake / "bash"), str(REPO / "scripts" / "bootstrap")], env={"PATH": str(fake)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no apt-get" in result.stderr and "python3-venv" in result.stderr, result.stderr
