"""CLI benchmark: `kubelite get pods`, the real console script as a subprocess, start to exit.

Measures (wall clock around `subprocess.run`, output captured through a pipe; figures are
printed, never asserted) `get pods` and `get pods -o json` with 10, 100 and 250 pods. Target:
median <= 100 ms for `get pods` with 100 pods.

The state roots are real: for each size the agent runs in-process on the `FakeRuntime` over
generated manifests (mostly running pods, some crash-looping, some completed), with a manual
clock moved through two and a half simulated minutes until settled; then the store is closed
and `<repo>/.venv/bin/kubelite get pods` runs with `KUBELITE_ROOT` pointing at the root.

Measured in the same run, interleaved (one run of each command per round), for reference:
`python -c pass` with the same interpreter (the floor of any Python CLI), `python -c "import
sqlite3, json"` (the floor of the read path) and `kubectl version --client` when installed.

Bytecode: this machine sets PYTHONDONTWRITEBYTECODE=1, so a Python CLI never caches kubelite's
compiled modules and recompiles them at every start. Both cases are measured, each on its own
copy of the kubelite package (put first on PYTHONPATH, so the repository's own `__pycache__`,
fresh, stale or absent, plays no part): "as is" keeps the environment unchanged; "env -u"
removes the variable, after one untimed run that writes the bytecode.

Run: `bench/run`, or `.venv/bin/python -m bench.bench_cli` from the repository root.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from kubelite.agent.agent import Agent, AgentConfig
from kubelite.runtime.fake import FakeRuntime
from kubelite.store.store import Store

from bench.common import (REPO, ManualClock, Row, Summary, duration, print_table, record_summary, summarize, target,
                          timed)

SIZES = (10, 100, 250)
TARGET_SIZE = 100
TARGET_S = 0.100
RUNS = 20
WARMUPS = 2
CONTAINERS = ("app", "proxy", "logger")
#: Simulated time the agent runs before the CLI reads its state, in steps of STEP_S.
SIMULATED_S = 150
STEP_S = 10
BYTECODE_VAR = "PYTHONDONTWRITEBYTECODE"
KUBELITE = REPO / ".venv" / "bin" / "kubelite"


# ---------------------------------------------------------------------- the state root


def manifest(i: int) -> str:
    """Pod `i`: one in 20 crash-loops (its logger exits 1 after 5 s), one in 20 runs to completion."""
    annotations, policy = "", ""
    if i % 20 == 7:
        annotations = '  annotations:\n    fake.kubelite.io/logger: "exit=1 after=5"\n'
    elif i % 20 == 13:
        annotations = "  annotations:\n" + "".join(f'    fake.kubelite.io/{n}: "exit=0 after=3"\n' for n in CONTAINERS)
        policy = "  restartPolicy: Never\n"
    containers = "".join(f"  - name: {n}\n    image: registry.local/bench/{n}:1.{i % 7}\n"
                         f"    resources:\n      requests: {{cpu: 10m, memory: 16Mi}}\n" for n in CONTAINERS)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i:04d}\n  namespace: default\n"
            f"  labels:\n    app: bench\n{annotations}spec:\n{policy}  containers:\n{containers}")


def _settle(agent: Agent, clock: ManualClock, *, limit: int = 50) -> None:
    for _ in range(limit):
        wake = agent.run_once()
        if wake is None or wake > clock():
            return
    raise RuntimeError(f"the agent did not settle in {limit} passes")


def build_root(workdir: Path, pods: int) -> Path:
    """A state root with `pods` pods, as `kubelite serve --runtime fake` would leave it."""
    manifests, root = workdir / f"manifests-{pods}", workdir / f"root-{pods}"
    manifests.mkdir(parents=True)
    for i in range(pods):
        (manifests / f"pod-{i:04d}.yaml").write_text(manifest(i))
    clock = ManualClock(datetime.now(timezone.utc).replace(microsecond=0))
    clock.advance(-(SIMULATED_S + 60))  # ends a minute before the real now: AGE reads about 3m
    store = Store(root)
    logging.getLogger("kubelite").setLevel(logging.ERROR)  # BackOff warnings: expected, and not measured here
    try:
        agent = Agent(store=store, runtime=FakeRuntime(clock=clock), clock=clock,
                      config=AgentConfig(manifests=manifests, root=root, node_name="bench"))
        for _ in range(SIMULATED_S // STEP_S):
            _settle(agent, clock)
            clock.advance(STEP_S)
        _settle(agent, clock)
    finally:
        store.close()
    return root


# ---------------------------------------------------------------------- the commands


@dataclass
class Command:
    """One command line to time, how to check its output, and its timings."""

    label: str
    argv: list[str]
    env: dict[str, str]
    check: Callable[[str], None] = lambda _out: None
    samples: list[float] = field(default_factory=list)

    def run(self) -> str:
        result = subprocess.run(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{self.label}: exit {result.returncode}: {result.stderr.strip()[:500]}")
        return result.stdout

    def time_once(self) -> None:
        self.samples.append(timed(self.run))


def _expect_table(pods: int) -> Callable[[str], None]:
    def check(out: str) -> None:
        lines = out.splitlines()
        if len(lines) != pods + 1 or not lines[0].startswith("NAME"):
            raise RuntimeError(f"get pods printed {len(lines)} lines, expected a header and {pods} rows")
    return check


def _expect_json(pods: int) -> Callable[[str], None]:
    def check(out: str) -> None:
        items = json.loads(out)["items"]
        if len(items) != pods:
            raise RuntimeError(f"get pods -o json listed {len(items)} pods, expected {pods}")
    return check


def _package_copy(workdir: Path, name: str) -> Path:
    """A copy of the kubelite package without bytecode; returns the directory to put on PYTHONPATH."""
    base = workdir / name
    shutil.copytree(REPO / "kubelite", base / "kubelite", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return base


def _cli_env(package_dir: Path, root: Path | None = None, *, drop_bytecode_var: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_dir), env.get("PYTHONPATH")]))
    if root is not None:
        env["KUBELITE_ROOT"] = str(root)
    if drop_bytecode_var:
        env.pop(BYTECODE_VAR, None)
    return env


def _check_package_used(package_dir: Path, env: dict[str, str]) -> None:
    """The console script must import the copy, not the repository's editable install."""
    probe = "import kubelite.cli.main as m; print(m.__file__)"  # -P: sys.path as the console script has it
    out = subprocess.run([sys.executable, "-P", "-c", probe], env=env, stdout=subprocess.PIPE, text=True,
                         check=True).stdout.strip()
    if not out.startswith(str(package_dir)):
        raise RuntimeError(f"kubelite was imported from {out}, not from the copy in {package_dir}")


def _mode_label() -> tuple[str, str]:
    value = os.environ.get(BYTECODE_VAR)
    as_is = f"as is: {BYTECODE_VAR}={value}" if value else f"as is: {BYTECODE_VAR} unset"
    return as_is, f"env -u {BYTECODE_VAR}, .pyc cached"


def get_pods_commands(workdir: Path, roots: dict[int, Path]) -> list[Command]:
    """`get pods` at every size and `-o json`, once per bytecode mode."""
    as_is_label, cached_label = _mode_label()
    commands = []
    for tag, label, drop in (("as-is", as_is_label, False), ("cached", cached_label, True)):
        package = _package_copy(workdir, f"pkg-{tag}")
        _check_package_used(package, _cli_env(package, drop_bytecode_var=drop))
        for size in SIZES:
            commands.append(Command(f"get pods, {size} pods [{label}]", [str(KUBELITE), "get", "pods"],
                                    _cli_env(package, roots[size], drop_bytecode_var=drop), _expect_table(size)))
        for size in SIZES:
            commands.append(Command(f"get pods -o json, {size} pods [{label}]",
                                    [str(KUBELITE), "get", "pods", "-o", "json"],
                                    _cli_env(package, roots[size], drop_bytecode_var=drop), _expect_json(size)))
    return commands


def reference_commands() -> tuple[list[Command], bool]:
    """The interpreter floor, the read path's imports, and kubectl if installed (second value)."""
    env = dict(os.environ)
    commands = [Command("python -c pass", [sys.executable, "-c", "pass"], env),
                Command('python -c "import sqlite3, json"', [sys.executable, "-c", "import sqlite3, json"], env)]
    kubectl = shutil.which("kubectl")
    if kubectl:
        commands.append(Command("kubectl version --client", [kubectl, "version", "--client"], env))
    return commands, kubectl is not None


def measure(commands: list[Command]) -> None:
    """Warm-ups (the first checks the output), then RUNS rounds of one run of each command."""
    for command in commands:
        command.check(command.run())
        for _ in range(WARMUPS - 1):
            command.run()
    for _ in range(RUNS):
        for command in commands:
            command.time_once()


# ---------------------------------------------------------------------- report


def rows(references: list[Command], kubectl_installed: bool, get_pods: list[Command]) -> list[Row]:
    floor = summarize(references[0].samples)
    out = [Row.of(references[0].label, floor, "-", f"interpreter floor; n={floor.n}")]
    for command in references[1:]:
        s = summarize(command.samples)
        out.append(Row.of(command.label, s, "-", f"{_over(s, floor)}; n={s.n}"))
    if not kubectl_installed:
        out.append(Row("kubectl version --client", "not installed", "-"))
    for command in get_pods:
        s = summarize(command.samples)
        goal = target(TARGET_S, s.median_s, strict=False) if command.label.startswith(
            f"get pods, {TARGET_SIZE} pods") else "-"
        out.append(Row.of(command.label, s, goal, f"{_over(s, floor)}; n={s.n}"))
    return out


def summary_rows(references: list[Command], kubectl_installed: bool, get_pods: list[Command]) -> list[Row]:
    """The headline figures for `bench/run`'s summary: every size, .pyc cached (a normal installation)."""
    floor = summarize(references[0].samples)
    kubectl = [c for c in references if c.label.startswith("kubectl")]
    ref = "python -c pass " + duration(floor.median_s)
    if kubectl:
        ref += f", kubectl version --client {duration(summarize(kubectl[0].samples).median_s)}"
    elif not kubectl_installed:
        ref += ", kubectl not installed"
    out = []
    for command in get_pods:
        if "[env -u" not in command.label:
            continue
        s = summarize(command.samples)
        goal = target(TARGET_S, s.median_s, strict=False) if command.label.startswith(
            f"get pods, {TARGET_SIZE} pods") else "-"
        name = command.label.split(" [", 1)[0]
        out.append(Row.of(f"5. {name} (.pyc cached)", s, goal,
                          f"{s.median_s / floor.median_s:.1f}x {ref}"))
    return out


def _over(s: Summary, floor: Summary) -> str:
    return f"floor + {duration(max(s.median_s - floor.median_s, 0.0))}"


def main() -> None:
    if not KUBELITE.exists():
        sys.exit(f"{KUBELITE} is missing: run scripts/bootstrap first")
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-cli-") as tmp:
        workdir = Path(tmp)
        roots = {size: build_root(workdir, size) for size in SIZES}
        references, kubectl_installed = reference_commands()
        get_pods = get_pods_commands(workdir, roots)
        measure(references + get_pods)
    print_table(f"bench_cli: {KUBELITE.relative_to(REPO)} get pods, a subprocess from start to exit",
                rows(references, kubectl_installed, get_pods),
                notes=[f"{RUNS} runs each after {WARMUPS} warm-ups, interleaved round by round; wall clock, "
                       "stdout through a pipe",
                       "figures are measured, never asserted",
                       f"[as is]: every start compiles kubelite's modules ({BYTECODE_VAR} stops Python caching "
                       "them); [env -u]: bytecode written by the first warm-up, then reused",
                       "each mode runs its own copy of the kubelite package (first on PYTHONPATH), so the "
                       "repository's __pycache__ does not matter",
                       f"pods: 1 in 20 crash-looping, 1 in 20 completed, the rest running; 3 containers each; "
                       f"{SIMULATED_S} s simulated"])
    record_summary("cli", summary_rows(references, kubectl_installed, get_pods))


if __name__ == "__main__":
    main()
