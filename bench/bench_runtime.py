"""Runtime benchmark: real pods on runc + conmon + catatonit, against a running `kubelite serve`.

Measures, in one run (figures are printed, never asserted):

1. Pod start: a one-container busybox pod (`sh -c 'cat /proc/uptime; exec sleep 3600'`), from
   just before its manifest file is written (CLOCK_BOOTTIME, the clock /proc/uptime shows) to the
   container's first act: the /proc/uptime value it printed into its CRI log (`0.log`). Each
   repetition writes the file, measures, deletes the file and waits until kubelite has removed
   the pod. Target: median <= 100 ms. The daemon's INFO log timestamps split the time into
   stages (noticed, sandbox, create, start). References, in the same run: `runc run` of a
   trivial container (the busybox layer as a read-only root, `true` as the process), `unshare
   --net --ipc --uts --pid --fork --mount true` (the namespace floor), the infra sandbox alone:
   `runc create` + `runc start` of a bundle built by kubelite's own `ocispec.build_sandbox_spec`
   (catatonit), waited for once by a blocking waitpid (as kubelite waits) and once by
   `subprocess.run(..., timeout=30)`, which polls with sleeps of 1 ms doubling to 50 ms, and
   `OCIRuntime.run_sandbox()` itself on a second, in-process runtime with its own state root;
   `podman kube play` when podman is installed. One round of references runs while each pod
   waits out its grace period (the daemon idle).
2. Crash -> restarted (first restart, no backoff due): pods whose container prints /proc/uptime,
   sleeps 0.5 s, prints it again and exits 1 (restartPolicy Always); from the second value of
   attempt 0 to the first value of attempt 1. The pods are created one after another, one
   measurement each. Target: median <= 50 ms. The daemon's log splits it into exit noticed,
   create and start. References: `runc create` + `runc start` of the trivial bundle (blocking
   wait, and polled as kubelite waits), and the same created through conmon (kubelite's conmon
   command line and sync-pipe protocol), with the PSS of its runc init and conmon while it waits
   for `runc start` (untimed: what a replacement prepared ahead of a restart would keep per
   container); podman's restart loop when podman is installed.
3. Update: a pod of three containers (app, sidecar, logger), each a shell that prints
   /proc/uptime and leaves at SIGTERM; app's command (a new revision each time) or image (a new
   tag of the same image each time) changed in the file, renamed into place, then the time to the
   first act of the new app container. Interleaved, `UPDATE_RUNS` of each kind. After every update
   the other two must still run with the same container ID and PID (checked in the runtime's
   records, and that kubelite sent them no SIGTERM); the count is printed. Stages from the
   daemon's log: noticed, SIGTERM sent, exit noticed, create, start. Ratio to `runc create` +
   `runc start` of the trivial bundle.
4. Density: the daemon's VmRSS; at 1, 50, 100 and 250 running `sleep 3600` pods: system-wide used
   memory (MemTotal - MemAvailable) after minus before, over the pod count; the RSS and PSS of
   each pod's conmon and catatonit, found by PID (checked with its start time) in the runtime's
   record.json files; kubelite's own growth per pod. Each of these levels is dropped at once (all
   files written in one burst) from zero pods: the time until every container is running gives
   pods per second (the 50-pod burst is part 1's second figure), next to `runc run`.
   Then the scale curve, past the kubelet's default limit of 110 pods: 0, 100, 250 and 500
   running pods (KUBELITE_BENCH_SCALE_LEVELS sets others), built up one level after another by
   adding pods. At each level: the daemon's VmRSS and memory per pod, its idle CPU (utime+stime
   from /proc/<pid>/stat over 20 s, or 60 s with `--long` / KUBELITE_BENCH_LONG=1), `kubelite get
   pods` (bench_cli's method: the console script, bytecode cached) and a new pod's start (part 1's
   method). Targets at 500 pods: the start within 1.5x of its start at 0 pods, idle CPU <= 2 % of
   a core, `get pods` <= 150 ms. The curve is printed as one line per level and rendered as a
   plot to docs/benchmarks-scale.png (matplotlib, bench/requirements.txt; skipped, and said so,
   without it).

The daemon runs with `--network none` and serve's default pool of warm sandboxes (decision 0020),
so a pod of part 1 claims a ready sandbox; `bench_network` part 4 compares with and without it.

Everything runs below one temporary directory in /tmp: state root, run dir, manifests, the
reference bundles and their private `runc --root`. The references' cgroups live below a cgroup
of their own (`/kubelite-bench-<pid>`); the in-process runtime's below its own instance. At the
end every manifest is deleted, kubelite removes every pod, the daemon gets SIGTERM, and the
benchmark verifies that no mount below the directory, no cgroup of the instance or of the
references, no conmon/runc/catatonit process of this run and no runc container remain. Processes
are only ever signalled by PIDs this run created (and only when the orderly cleanup failed).
podman's references, when podman is installed, run on a store, configuration and tag of this run
(bench/podman.py), with `--network none` as the daemon, and remove everything they made.

Needs root, runc, conmon and catatonit (Debian's packages); about eight minutes (eleven with
--long). Run: `bench/run runtime [--long]`, or `.venv/bin/python -m bench.bench_runtime
[--long]` from the repository root.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubelite.runtime import linux, oci, ocispec
from kubelite.runtime.images import ImageStore
from kubelite.runtime.oci import OCIRuntime, find_binaries, instance_name
from kubelite.runtime.protocol import SandboxConfig
from kubelite.sources.watch import ManifestWatcher

from bench import scale
from bench.bench_cli import KUBELITE, Command, _check_package_used, _cli_env, _expect_table, _package_copy
from bench.common import (REPO, Row, Summary, cpu_ns, duration, machine, print_table, record_summary, stop_process,
                          summarize, target)
from bench.podman import Podman

START_RUNS = 12
START_WARMUPS = 1
CRASH_PODS = 12
#: Updates of each kind (command, image), interleaved, after UPDATE_WARMUPS untimed ones.
UPDATE_RUNS = 12
UPDATE_WARMUPS = 1
#: The bursts of part 4: each level's manifests written at once, from zero pods.
MEMORY_LEVELS = (1, 50, 100, 250)
#: Repetitions per memory level: one pod's share of system-wide memory is small next to the noise.
LEVEL_REPS = {1: 3}


def scale_levels() -> tuple[int, ...]:
    """The scale curve's levels (running pods), built up one after another: 0, 100, 250, 500, or
    KUBELITE_BENCH_SCALE_LEVELS (e.g. `0,20,50`: a quick look, or a smaller machine)."""
    raw = os.environ.get("KUBELITE_BENCH_SCALE_LEVELS", "").strip()
    levels = tuple(int(x) for x in raw.split(",") if x.strip()) if raw else (0, 100, 250, 500)
    if list(levels) != sorted(set(levels)) or not levels or levels[0] != 0:
        raise SystemExit(f"KUBELITE_BENCH_SCALE_LEVELS={raw!r}: increasing pod counts, starting with 0")
    return levels


#: Levels at which the daemon's idle CPU, VmRSS, a new pod's start and `get pods` are measured: the scale curve.
CPU_LEVELS = scale_levels()
#: The level the scale targets are set at (a new pod's start within 1.5x of 0 pods, idle CPU, `get pods`).
SCALE_TARGET_PODS = 500
SCALE_START_RATIO = 1.5
SCALE_CPU_TARGET_PERCENT = 2.0
SCALE_GET_TARGET_S = 0.150
#: A new pod's start at each level: timed runs after warm-ups (the method of part 1).
SCALE_START_RUNS = 7
SCALE_START_WARMUPS = 1
#: `kubelite get pods` at each level: timed runs after warm-ups (the first writes the bytecode).
SCALE_GET_RUNS = 9
SCALE_GET_WARMUPS = 2
#: Where the benchmark renders the curve (matplotlib, when installed: bench/requirements.txt).
SCALE_PLOT = REPO / "docs" / "benchmarks-scale.png"
#: The idle-CPU window: 60 s with `--long` or KUBELITE_BENCH_LONG=1, else 20 s: whole multiples of the
#: agent's 20 s relist, so every window holds as many relists (a 10 s window held zero or one).
LONG = "--long" in sys.argv[1:] or os.environ.get("KUBELITE_BENCH_LONG", "") not in ("", "0")
CPU_WINDOW_S = 60.0 if LONG else 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TARGET_S = 0.100
RESTART_TARGET_S = 0.050   # issue 15, goal 6: crash -> running <= 50 ms with pod workers
START_SCRIPT = "cat /proc/uptime; exec sleep 3600"
CRASH_SCRIPT = "cat /proc/uptime; sleep 0.5; cat /proc/uptime; exit 1"
#: The update pod's containers: the shell is PID 1 of its container (no shared PID namespace), so
#: it traps SIGTERM to exit at once; the grace period is not part of an update.
UPDATE_CONTAINERS = ("app", "sidecar", "logger")
UPDATED = "app"
#: At least this long between two writes of the update pod's file: the watcher sends a hint at once
#: only for the first complete change after a quiet period (ManifestWatcher debounce_s, 0.2 s); a
#: rename sooner after the previous hint waits out that period (one update in the first trials).
UPDATE_PAUSE_S = 0.5


def update_script(revision: int | None = None) -> str:
    mark = f": rev-{revision}; " if revision is not None else ""
    return f"trap 'exit 0' TERM; cat /proc/uptime; {mark}sleep 3600 & wait"
#: Pause after the last pod of a level is running, before memory is read.
SETTLE_S = 1.0
#: The pods' terminationGracePeriodSeconds (kubelite's minimum).
GRACE_S = 2
POLL_S = 0.005
IMAGE = "busybox:latest"
NAMESPACE = "default"
CONTAINER = "app"


def boottime() -> float:
    """CLOCK_BOOTTIME: what /proc/uptime prints (in 10 ms steps)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = POLL_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def run_quiet(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """A command with its stdio on /dev/null: a container created by runc inherits runc's stdio."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          **kwargs)


def run_blocking(argv: list[str], *, timeout: float = 30.0, check: bool = True) -> int:
    """`argv` with its stdio on /dev/null, waited for by a blocking waitpid: it returns the moment the
    command exits. (`subprocess.run(..., timeout=...)` instead polls with sleeps that double from
    1 ms to 50 ms, and notices an exit late.) A timer kills the command, by its PID, after `timeout`."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        code = proc.wait()
    finally:
        timer.cancel()
    if check and code != 0:
        raise subprocess.CalledProcessError(code, argv)
    return code


def pod_manifest(name: str, containers: list[tuple[str, str, list[str]]]) -> str:
    """A pod with (name, image, command) containers, `imagePullPolicy: Never`, restartPolicy Always."""
    body = "".join(f"  - name: {c}\n    image: {image}\n    imagePullPolicy: Never\n"
                   f"    command: {json.dumps(command)}\n" for c, image, command in containers)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nspec:\n"
            f"  restartPolicy: Always\n  terminationGracePeriodSeconds: {GRACE_S}\n  containers:\n{body}")


def manifest(name: str, command: list[str]) -> str:
    return pod_manifest(name, [(CONTAINER, IMAGE, command)])


# ---------------------------------------------------------------------- logs


_DAEMON_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z (\w+) (.*)$")
_POD_HEAD = f"pod {NAMESPACE}/"
_CRI_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class CriLine:
    at: float  # when conmon read the line (epoch seconds, realtime)
    stream: str
    text: str


def cri_time(text: str) -> float:
    m = _CRI_TIME.match(text)
    if m is None:
        raise ValueError(f"not a CRI timestamp: {text!r}")
    zone = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(m[1] + zone).timestamp() + (float("0." + m[2]) if m[2] else 0.0)


def cri_lines(path: Path) -> list[CriLine]:
    """Complete lines of a CRI-format log ("TIME STREAM F TEXT"); partial (P) lines are skipped."""
    try:
        raw = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in raw.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # still being written
        parts = line.rstrip("\n").split(" ", 3)
        if len(parts) == 4 and parts[2] == "F":
            out.append(CriLine(cri_time(parts[0]), parts[1], parts[3]))
    return out


def uptime_of(line: CriLine) -> float:
    return float(line.text.split()[0])


@dataclass(frozen=True)
class Entry:
    at: float  # epoch seconds (the daemon logs UTC with millisecond resolution)
    level: str
    text: str


class DaemonLog:
    """The daemon's stdout/stderr, read incrementally and parsed into timestamped lines.

    The lines about a pod (`pod <ns>/<name>: ...`) are indexed by pod name as they are read, so
    that polling for one pod's event, or for hundreds of pods' `Started`, costs the benchmark only
    the new lines: its own CPU would otherwise compete with the daemon's on a small machine.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.entries, self._rest = path, 0, [], b""
        self.by_pod: dict[str, list[Entry]] = {}
        self.removed: set[str] = set()            # pods logged "removed"
        self.started: dict[str, list[Entry]] = {}  # pod → its "Started:" lines

    def poll(self) -> list[Entry]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for raw in lines:
            m = _DAEMON_LINE.match(raw.decode(errors="replace"))
            if m:
                at = datetime.fromisoformat(m[1] + "+00:00").timestamp()
                entry = Entry(at, m[2], m[3])
                self.entries.append(entry)
                if entry.text.startswith(_POD_HEAD):
                    pod, _, rest = entry.text[len(_POD_HEAD):].partition(": ")
                    self.by_pod.setdefault(pod, []).append(entry)
                    if rest == "removed":
                        self.removed.add(pod)
                    elif rest.startswith("Started:"):
                        self.started.setdefault(pod, []).append(entry)
        return self.entries

    def find(self, pod: str, prefix: str, after: float = 0.0) -> Entry | None:
        head = f"pod {NAMESPACE}/{pod}: {prefix}"
        self.poll()
        for entry in self.by_pod.get(pod, ()):
            if entry.at >= after and entry.text.startswith(head):
                return entry
        return None

    def problems(self) -> list[str]:
        return [f"{e.level} {e.text}" for e in self.entries if e.level in ("ERROR", "CRITICAL")]


# ---------------------------------------------------------------------- processes and memory


def status_kib(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def pss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def used_kib(samples: int = 5, interval: float = 0.05) -> int:
    """System-wide used memory, MemTotal - MemAvailable: the median of a few reads."""
    reads = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        values = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0])
        reads.append(values["MemTotal"] - values["MemAvailable"])
    return sorted(reads)[len(reads) // 2]


def cpu_ticks(pid: int, *, children: bool = False) -> int | None:
    """utime + stime of `pid` (every thread, not its children) from /proc/PID/stat, in clock ticks;
    with `children`, cutime + cstime instead: the children it has waited for (runc, for instance)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        first = 13 if children else 11  # fields 14 and 15 (16 and 17) of proc(5); [0] is field 3
        return int(fields[first]) + int(fields[first + 1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class IdleCpu:
    pods: int
    window_s: float
    ticks: int
    rss_kib: int  # VmRSS at the end of the window
    sched_ns: int  # the same window by the threads' schedstat (ns; a thread that ends in it is lost)
    child_ticks: int  # cutime + cstime: children reaped during the window

    @property
    def percent(self) -> float:
        return 100.0 * self.ticks / CLK_TCK / self.window_s


def idle_cpu(pid: int, pods: int) -> IdleCpu:
    """The daemon's CPU over CPU_WINDOW_S while nothing changes, as a share of one core."""
    began, first, first_ns, first_kids = time.monotonic(), cpu_ticks(pid), cpu_ns(pid), cpu_ticks(pid, children=True)
    time.sleep(CPU_WINDOW_S)
    last, last_ns, elapsed = cpu_ticks(pid), cpu_ns(pid), time.monotonic() - began
    last_kids = cpu_ticks(pid, children=True)
    if first is None or last is None or first_kids is None or last_kids is None:
        raise RuntimeError("the daemon exited during the idle-CPU window")
    return IdleCpu(pods, elapsed, last - first, status_kib(pid, "VmRSS") or 0, max(0, last_ns - first_ns),
                   last_kids - first_kids)


def wait_idle(pid: int, *, window: float = 0.05, budget_ns: int = 2_000_000, timeout: float = 1.0) -> None:
    """Until `pid` used less than `budget_ns` of CPU during `window` (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    last = cpu_ns(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_ns(pid)
        if now - last < budget_ns:
            return
        last = now


def mib(kib: float) -> str:
    return f"{kib / 1024:.2f} MiB" if abs(kib) < 10 * 1024 else f"{kib / 1024:.1f} MiB"


# ---------------------------------------------------------------------- the daemon


@dataclass
class Node:
    """`kubelite serve --runtime runc` on a state root, run dir and manifest directory of its own."""

    base: Path
    busybox_tar: Path
    proc: subprocess.Popen[bytes] | None = None
    log: DaemonLog | None = None
    pids_seen: set[tuple[int, int]] = field(default_factory=set)  # (pid, start) of conmon, catatonit, apps
    serve_args: tuple[str, ...] = ("--network", "none", "--api-address", "127.0.0.1:0")   # the networking (and pool) under measurement

    def __post_init__(self) -> None:
        self.manifests, self.root, self.run_dir = self.base / "manifests", self.base / "state", self.base / "run"
        self.manifests.mkdir(parents=True)
        self.instance = instance_name(self.root)
        self.env = {**os.environ, "KUBELITE_ROOT": str(self.root), "KUBELITE_RUN_DIR": str(self.run_dir),
                    "KUBELITE_MANIFESTS": str(self.manifests), "PYTHONPATH": str(REPO)}
        self.log_path = self.base / "serve.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=self.env, capture_output=True,
                              text=True, timeout=60, cwd=REPO)

    def load_image(self) -> None:
        out = self.cli("image", "load", "-i", str(self.busybox_tar))
        if out.returncode != 0:
            raise RuntimeError(f"kubelite image load: {out.stderr.strip()}")

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            # the API on a free loopback port: the default one may be another daemon's on this machine
            self.proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "runc",
                                          *self.serve_args],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        self.log = DaemonLog(self.log_path)
        wait_for(lambda: any(" serving " in e.text for e in self.log.poll()) or self.proc.poll() is not None,
                 timeout=30, what="kubelite serve to start", interval=0.05)
        if self.proc.poll() is not None:
            raise RuntimeError(f"kubelite serve exited with {self.proc.returncode}: {self.log_path.read_text()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code, self.proc = stop_process(self.proc), None
        return code

    # manifests

    def write(self, name: str, command: list[str]) -> None:
        self.write_text(name, manifest(name, command))

    def write_text(self, name: str, text: str) -> None:
        tmp = self.manifests / f".{name}.yaml.tmp"  # dotfiles are never read; the rename is atomic
        tmp.write_text(text)
        os.replace(tmp, self.manifests / f"{name}.yaml")

    def delete(self, name: str) -> None:
        (self.manifests / f"{name}.yaml").unlink()

    def container_log(self, pod: str, attempt: int) -> Path | None:
        found = list((self.root / "logs").glob(f"{NAMESPACE}_{pod}_*/{CONTAINER}/{attempt}.log"))
        return found[0] if found else None

    def containers_of(self, pod: str) -> list[dict[str, Any]]:
        """The runtime's records of `pod`'s containers (every attempt still kept)."""
        return [r for r in self.records("containers") if r.get("pod_name") == pod and r.get("namespace") == NAMESPACE]

    def running_of(self, pod: str) -> dict[str, dict[str, Any]]:
        """container name → the record of its running attempt (process alive, checked by start time)."""
        return {r["name"]: r for r in self.containers_of(pod) if linux.alive(r.get("pid", 0), r.get("pid_start", 0))}

    def wait_lines(self, pod: str, attempt: int, count: int, timeout: float = 30) -> list[CriLine]:
        def ready() -> list[CriLine] | None:
            path = self.container_log(pod, attempt)
            lines = cri_lines(path) if path else []
            return lines if len(lines) >= count else None
        return wait_for(ready, timeout=timeout, what=f"{count} line(s) in {pod}'s {attempt}.log")

    def wait_event(self, pod: str, prefix: str, *, after: float = 0.0, timeout: float = 30) -> Entry:
        assert self.log is not None
        return wait_for(lambda: self.log.find(pod, prefix, after), timeout=timeout,
                        what=f'"{prefix}" of pod {pod} in the daemon log')

    def wait_removed(self, pods: list[str], timeout: float = 60) -> None:
        assert self.log is not None
        log, wanted = self.log, set(pods)

        def removed() -> bool:
            log.poll()
            return wanted <= log.removed
        wait_for(removed, timeout=timeout, what=f"kubelite to remove {len(pods)} pod(s)", interval=0.02)

    # runtime records

    def records(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for path in (self.run_dir / kind).glob("*/record.json"):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass
        return out

    def pod_processes(self) -> dict[str, dict[str, int]]:
        """uid → {"catatonit": pid, "conmon": pid, "app": pid}, each checked alive with its start time."""
        pods: dict[str, dict[str, int]] = {}
        for r in self.records("sandboxes"):
            if not r.get("stopped") and not r.get("warm") and linux.alive(r["pid"], r["pid_start"]):
                pods.setdefault(r["uid"], {})["catatonit"] = r["pid"]
                self.pids_seen.add((r["pid"], r["pid_start"]))
        for r in self.records("containers"):
            for key, pid, start in (("conmon", r["conmon_pid"], r["conmon_start"]), ("app", r["pid"], r["pid_start"])):
                if linux.alive(pid, start):
                    pods.setdefault(r["uid"], {})[key] = pid
                    self.pids_seen.add((pid, start))
        return pods

    def remember_pids(self) -> None:
        self.pod_processes()

    def wait_idle(self) -> None:
        """Until the daemon's pass is over: nothing of it overlaps what is timed next."""
        if self.proc is not None:
            wait_idle(self.proc.pid)


# ---------------------------------------------------------------------- references


#: Short names of the references, for the ratios printed beside a figure.
REF_NAMES = {"runc run": "runc run", "unshare": "unshare", "create+start": "runc create+start",
             "conmon": "conmon create+start"}


@dataclass
class References:
    """Trivial runc/conmon containers and namespaces, timed as subprocesses (wall clock)."""

    base: Path
    layer: Path
    bins: dict[str, str]
    cgroup: str = f"kubelite-bench-{os.getpid()}"
    samples: dict[str, list[float]] = field(default_factory=dict)
    waiting_kib: dict[str, list[float]] = field(default_factory=dict)   # PSS of a created, unstarted container
    counter: int = 0

    def __post_init__(self) -> None:
        self.state = self.base / "runc-root"  # a private `runc --root`: only these containers
        self.exits, self.sockets = self.base / "exits", self.base / "sockets"
        for path in (self.state, self.exits, self.sockets):
            path.mkdir(parents=True)
        self.trivial = self._trivial_bundle()
        self.sandbox = self._sandbox_bundle()
        self.unshare = shutil.which("unshare")
        # kubelite's own runtime, in-process, on a state root and run dir of its own (a second
        # instance: its own runc root and cgroups), for OCIRuntime.run_sandbox() exactly as the agent calls it
        kroot = self.base / "kubelite-root"
        self.runtime = OCIRuntime(root=kroot, run_dir=self.base / "kubelite-run", images=ImageStore(kroot),
                                  binaries=self.bins)

    def _runc(self, *args: str) -> list[str]:
        return [self.bins["runc"], "--root", str(self.state), *args]

    def _trivial_bundle(self) -> Path:
        bundle = self.base / "trivial"
        bundle.mkdir()
        run_quiet([self.bins["runc"], "spec", "--bundle", str(bundle)], check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["true"]
        spec["root"] = {"path": str(self.layer), "readonly": True}
        spec["hostname"] = "trivial"
        spec["linux"]["cgroupsPath"] = f"/{self.cgroup}/trivial"
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def _sandbox_bundle(self) -> Path:
        """The infra container exactly as kubelite builds it (`ocispec.build_sandbox_spec`)."""
        bundle = self.base / "sandbox"
        rootfs = bundle / "rootfs"
        rootfs.mkdir(parents=True)
        (rootfs / "catatonit").touch()
        config = SandboxConfig(uid="bench", name="bench", namespace=NAMESPACE, attempt=0, sandbox_hash="0",
                               hostname="bench")
        spec = ocispec.build_sandbox_spec(config=config, rootfs=str(rootfs), catatonit_host_path=self.bins["catatonit"],
                                          cgroups_path=f"/{self.cgroup}/sandbox", annotations={})
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def ratios(self, value_s: float, *labels: str) -> str:
        """`2.2x runc run (39.9 ms)`: `value_s` over the median of each reference measured in this run."""
        parts = []
        for label in labels:
            values = self.samples.get(label)
            if values:
                median = summarize(values).median_s
                parts.append(f"{value_s / median:.1f}x {REF_NAMES[label]} ({duration(median)})")
        return ", ".join(parts) or "no reference measured"

    def _id(self, kind: str) -> str:
        self.counter += 1
        return f"bench-{kind}-{self.counter}"

    def _add(self, label: str, seconds: float, record: bool) -> None:
        if record:
            self.samples.setdefault(label, []).append(seconds)

    def _delete(self, cid: str) -> None:
        run_quiet(self._runc("delete", "--force", cid), timeout=30)

    def runc_run(self) -> float:
        """`runc run` of the trivial bundle: create, start, wait for `true`, delete — one command,
        timed; it leaves nothing behind."""
        cid = self._id("run")
        start = time.perf_counter()
        code = run_blocking(self._runc("run", "--bundle", str(self.trivial), cid), check=False)
        elapsed = time.perf_counter() - start
        if code != 0:
            self._delete(cid)
            raise RuntimeError(f"runc run of the trivial bundle failed with {code}")
        return elapsed

    def run_round(self, record: bool = True) -> None:
        """One run of every reference; each leaves nothing behind."""
        self._add("runc run", self.runc_run(), record)
        # the namespace floor
        if self.unshare:
            start = time.perf_counter()
            run_blocking([self.unshare, "--net", "--ipc", "--uts", "--pid", "--fork", "--mount", "true"])
            self._add("unshare", time.perf_counter() - start, record)
        # kubelite's infra container: runc create + runc start of its bundle, waited for by a
        # blocking waitpid (as kubelite waits) and by a polling subprocess.run; then OCIRuntime.run_sandbox() itself
        for label, polled in (("sandbox", False), ("sandbox polled", True)):
            cid = self._id("sandbox")
            try:
                start = time.perf_counter()
                for args in (("create", "--bundle", str(self.sandbox), "--pid-file", str(self.base / f"{cid}.pid"),
                              cid), ("start", cid)):
                    if polled:
                        run_quiet(self._runc(*args), check=True, timeout=30)
                    else:
                        run_blocking(self._runc(*args))
                self._add(label, time.perf_counter() - start, record)
            finally:
                run_quiet(self._runc("kill", cid, "KILL"), timeout=30)
                self._delete(cid)
                (self.base / f"{cid}.pid").unlink(missing_ok=True)
        config = SandboxConfig(uid=str(uuid.uuid4()), name="bench", namespace=NAMESPACE, attempt=0,
                               sandbox_hash="0", hostname="bench")
        start = time.perf_counter()
        sandbox_id = self.runtime.run_sandbox(config)
        self._add("run_sandbox", time.perf_counter() - start, record)
        self.runtime.remove_sandbox(sandbox_id)
        # the trivial container, created and started in two commands: waited for by a blocking
        # waitpid (as kubelite waits), and by `subprocess.run(..., timeout=30)`, which polls
        for label, polled in (("create+start", False), ("create+start polled", True)):
            cid = self._id("create")
            try:
                start = time.perf_counter()
                for args in (("create", "--bundle", str(self.trivial), cid), ("start", cid)):
                    if polled:
                        run_quiet(self._runc(*args), check=True, timeout=30)
                    else:
                        run_blocking(self._runc(*args))
                self._add(label, time.perf_counter() - start, record)
            finally:
                self._delete(cid)
        # the same through conmon, with kubelite's conmon command line and sync-pipe protocol
        cid = self._id("conmon")
        try:
            self._add("conmon", self._conmon_create_start(cid), record)
        finally:
            self._delete(cid)
            shutil.rmtree(self.base / cid, ignore_errors=True)
            (self.exits / cid).unlink(missing_ok=True)
            (self.sockets / cid).unlink(missing_ok=True)

    def _conmon_create_start(self, cid: str) -> float:
        work = self.base / cid
        (work / "persist").mkdir(parents=True)
        argv = ocispec.conmon_argv(
            conmon=self.bins["conmon"], runtime=self.bins["runc"], runtime_root=str(self.state), container_id=cid,
            name=cid, bundle=str(self.trivial), pidfile=str(work / "pidfile"), conmon_pidfile=str(work / "conmon.pid"),
            exit_dir=str(self.exits), persist_dir=str(work / "persist"), log_path=str(work / "ctr.log"),
            log_size_max=None, socket_dir=str(self.sockets))
        began = time.perf_counter()
        pid = oci.run_conmon(argv, bundle=work)  # kubelite's own conmon protocol, so the reference matches it
        created = time.perf_counter()
        # untimed: what a container created ahead of its start keeps while it waits (runc's init, conmon),
        # the cost of preparing each container's replacement so that a restart is only `runc start`
        self.waiting_kib.setdefault("runc init", []).append(pss_kib(pid) or 0)
        self.waiting_kib.setdefault("conmon", []).append(pss_kib(int((work / "conmon.pid").read_text() or 0)) or 0)
        resumed = time.perf_counter()
        run_blocking(self._runc("start", cid))
        elapsed = (created - began) + (time.perf_counter() - resumed)
        wait_for(lambda: (self.exits / cid).exists(), timeout=10, what="conmon's exit file")
        return elapsed

    def leftovers(self) -> list[str]:
        found = []
        for state in (self.state, self.runtime.state_dir):
            listed = subprocess.run([self.bins["runc"], "--root", str(state), "list", "-q"], capture_output=True,
                                    text=True).stdout.split()
            found += [f"reference runc container {c}" for c in listed]
        return found

    @property
    def cgroups(self) -> list[str]:
        return [self.cgroup, self.runtime.instance]

    def remove_cgroup(self) -> None:
        for name in self.cgroups:
            linux.remove_cgroup(f"/{name}")


# ---------------------------------------------------------------------- the measurements


@dataclass
class StartResult:
    latency: list[float] = field(default_factory=list)        # uptime: write → first act
    cri: list[float] = field(default_factory=list)            # conmon's timestamp: write → first line read
    noticed: list[float] = field(default_factory=list)        # write → Scheduled
    sandbox: list[float] = field(default_factory=list)        # Scheduled → Pulled
    create: list[float] = field(default_factory=list)         # Pulled → Created
    start: list[float] = field(default_factory=list)          # Created → Started
    warmup: list[float] = field(default_factory=list)
    overlaps: int = 0                                          # reference rounds that outlasted the grace period


def measure_start(node: Node, refs: References) -> StartResult:
    """Write, measure, delete, wait until gone; the references run while the pod's grace period runs."""
    result = StartResult()
    for i in range(START_WARMUPS + START_RUNS):
        name = f"start-{i:02d}"
        node.wait_idle()
        t_real, t_boot = time.time(), boottime()
        node.write(name, ["sh", "-c", START_SCRIPT])
        first = node.wait_lines(name, 0, 1)[0]
        latency = uptime_of(first) - t_boot
        assert node.log is not None
        scheduled = node.wait_event(name, "Scheduled:")
        pulled = node.wait_event(name, "Pulled:")
        created = node.wait_event(name, "Created:")
        started = node.wait_event(name, "Started:")
        node.remember_pids()
        if i < START_WARMUPS:
            result.warmup.append(latency)
        else:
            result.latency.append(latency)
            result.cri.append(first.at - t_real)
            result.noticed.append(scheduled.at - t_real)
            result.sandbox.append(pulled.at - scheduled.at)
            result.create.append(created.at - pulled.at)
            result.start.append(started.at - created.at)
        node.delete(name)
        killing = node.wait_event(name, "Killing:")  # SIGTERM sent: kubelite waits out the 2 s grace period now
        node.wait_idle()
        refs.run_round(record=i >= START_WARMUPS)
        if time.time() > killing.at + GRACE_S:
            result.overlaps += 1  # the round ran into the pass that sends SIGKILL
        node.wait_removed([name])
    return result


@dataclass
class CrashResult:
    latency: list[float] = field(default_factory=list)        # uptime: exit → first act of attempt 1
    cri: list[float] = field(default_factory=list)
    noticed: list[float] = field(default_factory=list)        # last line of attempt 0 → "exited" logged
    create: list[float] = field(default_factory=list)         # exited → Created (attempt 1)
    start: list[float] = field(default_factory=list)          # Created → Started
    restarts: list[str] = field(default_factory=list)


def measure_crash(node: Node) -> CrashResult:
    result = CrashResult()
    for i in range(CRASH_PODS):
        name = f"crash-{i:02d}"
        node.wait_idle()
        node.write(name, ["sh", "-c", CRASH_SCRIPT])
        attempt0 = node.wait_lines(name, 0, 2)  # read before attempt 2 could rotate it away
        attempt1 = node.wait_lines(name, 1, 1)
        exited = node.wait_event(name, f"container {CONTAINER} exited with code 1")
        created = node.wait_event(name, "Created:", after=exited.at)
        started = node.wait_event(name, "Started:", after=created.at)
        node.remember_pids()
        result.latency.append(uptime_of(attempt1[0]) - uptime_of(attempt0[1]))
        result.cri.append(attempt1[0].at - attempt0[1].at)
        result.noticed.append(exited.at - attempt0[1].at)
        result.create.append(created.at - exited.at)
        result.start.append(started.at - created.at)
        node.delete(name)
        node.wait_removed([name])
    return result


@dataclass
class UpdateResult:
    kinds: list[str] = field(default_factory=list)           # "command" or "image", per timed update
    latency: list[float] = field(default_factory=list)        # uptime: write → first act of the new container
    cri: list[float] = field(default_factory=list)            # conmon's timestamp: write → first line read
    noticed: list[float] = field(default_factory=list)        # write → "manifest changed" logged
    kill: list[float] = field(default_factory=list)           # "manifest changed" → Killing (SIGTERM)
    exited: list[float] = field(default_factory=list)         # Killing → "exited" logged
    create: list[float] = field(default_factory=list)         # exited → Created
    start: list[float] = field(default_factory=list)          # Created → Started
    warmup: list[float] = field(default_factory=list)
    updates: int = 0                                          # every update, warm-ups included
    untouched: int = 0                                        # updates after which both others kept ID and PID
    problems: list[str] = field(default_factory=list)
    restart_counts: dict[str, int] = field(default_factory=dict)  # from `kubelite get pods -o json` at the end

    def of(self, kind: str, values: list[float]) -> list[float]:
        return [v for k, v in zip(self.kinds, values) if k == kind]


def update_tags(count: int) -> list[str]:
    return [f"busybox:rev-{r}" for r in range(count)]


def retag(archive: Path, out: Path, tags: list[str]) -> None:
    """A copy of a one-image `docker save` archive whose manifest names the image by every tag in `tags`."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                entries = json.loads(data.read())
                if len(entries) != 1:
                    raise RuntimeError(f"{archive} holds {len(entries)} images, expected one")
                entries[0]["RepoTags"] = tags
                raw = json.dumps(entries).encode()
                member.size = len(raw)
                data = io.BytesIO(raw)
            dst.addfile(member, data)


def measure_update(node: Node) -> UpdateResult:
    """One three-container pod; one container's command or image changed again and again.

    Every update gives the changed container a spec it never had (a new revision in its command,
    or a new tag of the busybox image), so no CrashLoopBackOff entry of an earlier spec applies.
    """
    assert node.log is not None
    result = UpdateResult()
    name = "update-00"
    command, image = ["sh", "-c", update_script()], IMAGE

    def spec() -> str:
        return pod_manifest(name, [(c, image if c == UPDATED else IMAGE, command if c == UPDATED
                                    else ["sh", "-c", update_script()]) for c in UPDATE_CONTAINERS])

    node.wait_idle()
    node.write_text(name, spec())
    wait_for(lambda: len(node.running_of(name)) == len(UPDATE_CONTAINERS), timeout=30,
             what=f"the {len(UPDATE_CONTAINERS)} containers of {name} running")
    for c in UPDATE_CONTAINERS:
        node.wait_event(name, f"Started: Started container {c}")
    kinds = ["command"] * UPDATE_WARMUPS + ["command", "image"] * UPDATE_RUNS
    written = time.monotonic()
    for revision, kind in enumerate(kinds):
        node.wait_idle()
        time.sleep(max(0.0, written + UPDATE_PAUSE_S - time.monotonic()))
        before = node.running_of(name)
        known = {r["id"] for r in node.containers_of(name)}
        if kind == "command":
            command = ["sh", "-c", update_script(revision)]
        else:
            image = f"busybox:rev-{revision}"
        text = spec()
        t_real, t_boot, written = time.time(), boottime(), time.monotonic()
        node.write_text(name, text)

        def new_record() -> dict[str, Any] | None:
            for r in node.containers_of(name):
                if r["name"] == UPDATED and r["id"] not in known:
                    return r
            return None
        record = wait_for(new_record, timeout=30, what=f"a new {UPDATED} container in {name}")
        first = wait_for(lambda: cri_lines(Path(record["log_path"])), timeout=30,
                         what=f"the first line of {name}'s new {UPDATED}")[0]
        after = t_real - 0.002  # the daemon's log has ms resolution
        changed = node.wait_event(name, "manifest changed", after=after)
        killing = node.wait_event(name, f"Killing: Container {UPDATED} definition changed", after=after)
        exited = node.wait_event(name, f"container {UPDATED} exited", after=killing.at)
        created = node.wait_event(name, f"Created: Created container: {UPDATED}", after=exited.at)
        started = node.wait_event(name, f"Started: Started container {UPDATED}", after=created.at)
        node.wait_idle()
        now = node.running_of(name)
        result.updates += 1
        others_ok = True
        for other in UPDATE_CONTAINERS:
            if other == UPDATED:
                continue
            old, new = before.get(other), now.get(other)
            if old is None or new is None or (old["id"], old["pid"], old["pid_start"]) != (
                    new["id"], new["pid"], new["pid_start"]):
                others_ok = False
                result.problems.append(f"update {revision} ({kind}): {other} changed: "
                                       f"{old and old['id'][:12]} -> {new and new['id'][:12]}")
            if node.log.find(name, f"Killing: Container {other}", after=after):
                others_ok = False
                result.problems.append(f"update {revision} ({kind}): {other} was signalled")
        if any(r["name"] != UPDATED for r in node.containers_of(name) if r["id"] not in known):
            others_ok = False
            result.problems.append(f"update {revision} ({kind}): a container other than {UPDATED} was created")
        if now.get(UPDATED, {}).get("id") != record["id"]:
            result.problems.append(f"update {revision} ({kind}): the new {UPDATED} is not the running one")
        result.untouched += others_ok
        node.remember_pids()
        latency = uptime_of(first) - t_boot
        if revision < UPDATE_WARMUPS:
            result.warmup.append(latency)
            continue
        result.kinds.append(kind)
        result.latency.append(latency)
        result.cri.append(first.at - t_real)
        result.noticed.append(changed.at - t_real)
        result.kill.append(killing.at - changed.at)
        result.exited.append(exited.at - killing.at)
        result.create.append(created.at - exited.at)
        result.start.append(started.at - created.at)
    out = node.cli("get", "pods", "-o", "json")
    if out.returncode == 0:
        for item in json.loads(out.stdout)["items"]:
            if item["metadata"]["name"] == name:
                for status in item.get("status", {}).get("containerStatuses", []):
                    result.restart_counts[status["name"]] = status.get("restartCount", 0)
    else:
        result.problems.append(f"kubelite get pods -o json: exit {out.returncode}")
    node.delete(name)
    node.wait_removed([name])
    return result


@dataclass
class Level:
    pods: int
    all_running_s: float
    start_gaps: list[float]
    used_before_kib: int
    used_after_kib: int
    daemon_rss_kib: int
    conmon_rss_kib: list[int]       # one value per pod
    conmon_pss_kib: list[int]
    catatonit_rss_kib: list[int]    # the pod's infra container
    catatonit_pss_kib: list[int]
    app_rss_kib: list[int]
    found: int                      # pods with both processes found alive
    removed_s: float = 0.0          # every manifest deleted -> kubelite logged every pod removed

    @property
    def added_per_pod_kib(self) -> float:
        return (self.used_after_kib - self.used_before_kib) / self.pods


def measure_level(node: Node, pods: int, rep: int) -> Level:
    assert node.proc is not None and node.log is not None
    time.sleep(SETTLE_S)
    node.wait_idle()
    before = used_kib()
    names = [f"mem{pods}-{rep}-{i:03d}" for i in range(pods)]
    t_real = time.time()
    for name in names:
        node.write(name, ["sleep", "3600"])
    log = node.log

    def started() -> list[Entry] | None:
        log.poll()
        if not all(n in log.started for n in names):
            return None
        return [log.started[n][0] for n in names]
    hits = sorted(wait_for(started, timeout=max(180, pods), what=f"{pods} pods running", interval=0.02),
                  key=lambda e: e.at)
    time.sleep(SETTLE_S)
    after = used_kib()
    daemon_rss = status_kib(node.proc.pid, "VmRSS") or 0
    conmon_rss, conmon_pss, cat_rss, cat_pss, app = [], [], [], [], []
    found = 0
    for procs in node.pod_processes().values():
        if "conmon" in procs and "catatonit" in procs:
            found += 1
            conmon_rss.append(status_kib(procs["conmon"], "VmRSS") or 0)
            conmon_pss.append(pss_kib(procs["conmon"]) or 0)
            cat_rss.append(status_kib(procs["catatonit"], "VmRSS") or 0)
            cat_pss.append(pss_kib(procs["catatonit"]) or 0)
        if "app" in procs:
            app.append(status_kib(procs["app"], "VmRSS") or 0)
    began = time.time()
    for name in names:
        node.delete(name)
    node.wait_removed(names, timeout=max(120, pods))
    gaps = [b.at - a.at for a, b in zip(hits, hits[1:])]
    return Level(pods, hits[-1].at - t_real, gaps, before, after, daemon_rss, conmon_rss, conmon_pss, cat_rss,
                 cat_pss, app, found, time.time() - began)


# ---------------------------------------------------------------------- the scale curve


@dataclass
class CurvePoint:
    """One level of the scale curve: `pods` idle pods running, and what was measured beside them."""

    pods: int
    added: int                      # pods written at once to reach this level from the one before
    added_s: float                  # their manifests written -> the last of them Started
    used_kib: int                   # system-wide used memory (MemTotal - MemAvailable)
    rss_kib: int                    # the daemon's VmRSS, before the idle window
    conmon_pss_kib: list[int]       # one value per running pod
    catatonit_pss_kib: list[int]
    app_pss_kib: list[int]
    cpu: IdleCpu
    get_pods: list[float]           # `kubelite get pods` (.pyc cached), start to exit
    floor: list[float]              # `python -c pass`, interleaved with it
    start: list[float]              # a new pod: manifest written -> first act (/proc/uptime)
    start_cri: list[float]          # the same, to conmon's timestamp of that log line
    warmup: list[float]
    stages: dict[str, list[float]]  # the same starts split by the daemon's log (as part 1): STAGES
    runc: list[float] = field(default_factory=list)   # `runc run` of a trivial container at this level


@dataclass
class Curve:
    points: list[CurvePoint] = field(default_factory=list)
    removed_s: float = 0.0          # every manifest of the top level deleted -> all removed


def curve_get_pods(node: Node, workdir: Path, pods: int) -> tuple[list[float], list[float]]:
    """`kubelite get pods` as bench_cli runs it (the console script, a package copy with its bytecode
    cached), interleaved with `python -c pass`; checks that it lists the level's pods."""
    package = workdir / "pkg-cached"
    if not package.exists():
        package = _package_copy(workdir, "pkg-cached")
        _check_package_used(package, _cli_env(package, drop_bytecode_var=True))
    get = Command(f"get pods, {pods} pods", [str(KUBELITE), "get", "pods"],
                  _cli_env(package, node.root, drop_bytecode_var=True), _expect_table(pods) if pods else _expect_none)
    floor = Command("python -c pass", [sys.executable, "-c", "pass"], dict(os.environ))
    for command in (get, floor):
        command.check(command.run())
        for _ in range(SCALE_GET_WARMUPS - 1):
            command.run()
    for _ in range(SCALE_GET_RUNS):
        get.time_once()
        floor.time_once()
    return get.samples, floor.samples


def _expect_none(out: str) -> None:
    if out.strip():
        raise RuntimeError(f"get pods printed rows with no pod running: {out[:200]}")


#: The stages of a new pod's start in the curve, from the daemon's INFO log, as in part 1.
STAGES = ("noticed", "sandbox", "create", "start")


def curve_start(node: Node, pods: int) -> tuple[list[float], list[float], list[float], dict[str, list[float]]]:
    """A new pod's start with `pods` running: part 1's method, a few times; each pod removed before the next.

    The pod's shell leaves at SIGTERM (the update pod's script: its first act is the same `cat
    /proc/uptime`), so its removal waits out no grace period."""
    latency, cri, warmup = [], [], []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    for i in range(SCALE_START_WARMUPS + SCALE_START_RUNS):
        name = f"scale{pods}-new-{i:02d}"
        node.wait_idle()
        t_real, t_boot = time.time(), boottime()
        node.write(name, ["sh", "-c", update_script()])
        first = node.wait_lines(name, 0, 1)[0]
        events = [node.wait_event(name, e) for e in ("Scheduled:", "Pulled:", "Created:", "Started:")]
        node.remember_pids()
        if i < SCALE_START_WARMUPS:
            warmup.append(uptime_of(first) - t_boot)
        else:
            latency.append(uptime_of(first) - t_boot)
            cri.append(first.at - t_real)
            for key, a, b in zip(STAGES, [t_real] + [e.at for e in events], [e.at for e in events]):
                stages[key].append(b - a)
        node.delete(name)
        node.wait_removed([name])
    return latency, cri, warmup, stages


def measure_curve(node: Node, workdir: Path, refs: References) -> Curve:
    """The scale curve: pods added level by level (each level's new manifests written at once), and at
    each level, with those pods running: memory, the daemon's idle CPU, `get pods`, a new pod's start
    and, as its floor at that level, `runc run` of a trivial container (the host's mount table, which
    every new container's mount namespace copies, grows with the pods)."""
    assert node.proc is not None and node.log is not None
    log, curve, names = node.log, Curve(), []
    for pods in CPU_LEVELS:
        new = [f"scale-{i:03d}" for i in range(len(names), pods)]
        time.sleep(SETTLE_S)
        node.wait_idle()
        t_real = time.time()
        for name in new:
            node.write(name, ["sleep", "3600"])
        names += new

        def started(new: list[str] = new) -> list[Entry] | None:
            log.poll()
            return [log.started[n][0] for n in new] if all(n in log.started for n in new) else None
        hits = wait_for(started, timeout=max(180, len(new)), what=f"{pods} pods running", interval=0.02) if new else []
        added_s = max(e.at for e in hits) - t_real if hits else 0.0
        time.sleep(SETTLE_S)
        node.wait_idle()
        used, rss = used_kib(), status_kib(node.proc.pid, "VmRSS") or 0
        conmon, catatonit, app = [], [], []
        for procs in node.pod_processes().values():
            if "conmon" in procs and "catatonit" in procs and "app" in procs:
                conmon.append(pss_kib(procs["conmon"]) or 0)
                catatonit.append(pss_kib(procs["catatonit"]) or 0)
                app.append(pss_kib(procs["app"]) or 0)
        cpu = idle_cpu(node.proc.pid, pods)
        get_pods, floor = curve_get_pods(node, workdir, pods)
        start, cri, warmup, stages = curve_start(node, pods)
        runc = [refs.runc_run() for _ in range(SCALE_START_RUNS)]
        curve.points.append(CurvePoint(pods, len(new), added_s, used, rss, conmon, catatonit, app, cpu, get_pods,
                                       floor, start, cri, warmup, stages, runc))
    began = time.time()
    for name in names:
        node.delete(name)
    node.wait_removed(names, timeout=max(300, 2 * len(names)))
    curve.removed_s = time.time() - began
    return curve


# ---------------------------------------------------------------------- cleanup


def proc_state(pid: str) -> tuple[str, str]:
    """(state letter, parent PID) from /proc/PID/status."""
    state = ppid = "?"
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("PPid:"):
                ppid = line.split()[1]
    except OSError:
        pass
    return state, ppid


def leftovers(node: Node, refs: References | None, base: Path) -> tuple[list[str], list[str]]:
    """Anything of this run still on the machine: mounts, cgroups, processes, runc containers, records.

    Returns (leftovers, zombies): an exited process of this run that its parent has not reaped
    yet is no running process and is listed apart (pod sandboxes are reparented to PID 1).
    """
    found, zombies = [], []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4]
        if mount_point.startswith(str(base)):
            found.append(f"mount {mount_point}")
    cgroups = [node.instance] + (refs.cgroups if refs else [])
    for controller in Path("/sys/fs/cgroup").iterdir():
        for name in cgroups:
            if (controller / name).exists():
                found.append(f"cgroup {controller / name}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            groups = (proc / "cgroup").read_text()
        except OSError:
            continue
        if str(base) in args or any(f"/{name}/" in groups or groups.rstrip().endswith(f"/{name}") for name in cgroups):
            state, ppid = proc_state(proc.name)
            if state == "Z":
                zombies.append(f"{proc.name} (parent {ppid})")
            else:
                found.append(f"process {proc.name} state {state} parent {ppid}: {args}")
    for pid, start in node.pids_seen:
        if linux.alive(pid, start):
            found.append(f"process {pid} (a recorded conmon/catatonit/container) still running")
    runc = shutil.which("runc") or "runc"
    if (node.run_dir / "runc").exists():
        listed = subprocess.run([runc, "--root", str(node.run_dir / "runc"), "list", "-q"], capture_output=True,
                                text=True).stdout.split()
        found += [f"runc container {c}" for c in listed]
    for kind in ("sandboxes", "containers"):
        found += [f"record {p}" for p in (node.run_dir / kind).glob("*/record.json")]
    if refs is not None:
        found += refs.leftovers()
    return sorted(set(found)), zombies


@dataclass
class Check:
    left: list[str]
    zombies: list[str]             # still unreaped at the end
    first_zombies: list[str]       # unreaped at the first look
    waited_s: float


def final_check(node: Node, refs: References | None, base: Path, timeout: float = 10.0) -> Check:
    """`leftovers`, looked at again for a while: exiting processes and their reaping take a moment."""
    began = time.monotonic()
    first: list[str] | None = None
    while True:
        left, zombies = leftovers(node, refs, base)
        first = zombies if first is None else first
        if (not left and not zombies) or time.monotonic() - began > timeout:
            return Check(left, zombies, first, time.monotonic() - began)
        time.sleep(0.1)


def force_cleanup(node: Node) -> None:
    """Only when the orderly cleanup failed: what a reboot would do, to this run's own PIDs, mounts, cgroups."""
    print("bench_runtime: orderly cleanup failed; removing this run's containers by their recorded PIDs",
          file=sys.stderr)
    for kind in ("sandboxes", "containers"):
        for r in node.records(kind):
            for pid, start in ((r.get("pid", 0), r.get("pid_start", 0)),
                               (r.get("conmon_pid", 0), r.get("conmon_start", 0))):
                if linux.alive(pid, start):
                    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    runc = shutil.which("runc") or "runc"
    state = node.run_dir / "runc"
    if state.exists():
        for cid in subprocess.run([runc, "--root", str(state), "list", "-q"], capture_output=True,
                                  text=True).stdout.split():
            run_quiet([runc, "--root", str(state), "delete", "--force", cid])
    for rootfs in node.root.glob("pods/*/containers/*/rootfs"):
        linux.unmount(rootfs)
    linux.remove_cgroup(f"/{node.instance}")


def orderly_cleanup(node: Node) -> int | None:
    """Delete every manifest, wait until kubelite removed every pod, stop it with SIGTERM (which
    tears down the warm sandboxes no pod claimed: the final check finds any it left)."""
    for path in node.manifests.glob("*.yaml"):
        path.unlink()
    if node.proc is not None and node.proc.poll() is None:
        def empty() -> bool:   # the warm pool's unclaimed sandboxes are no pod's: torn down at stop
            return not [r for r in node.records("sandboxes") if not r.get("warm")] and not node.records("containers")
        wait_for(empty, timeout=300, what="kubelite to remove every pod", interval=0.05)
        out = node.cli("get", "pods", "-o", "json")
        if out.returncode != 0 or json.loads(out.stdout)["items"]:
            raise RuntimeError(f"kubelite still lists pods: {out.stdout[:300]} {out.stderr[:300]}")
    return node.stop()


# ---------------------------------------------------------------------- report


def rows(start: StartResult, crash: CrashResult, update: UpdateResult, refs: References,
         levels: dict[int, list[Level]], daemon_rss: dict[str, int], curve: Curve,
         podman: dict[str, Summary | str]) -> list[Row]:
    def ref(label: str, text: str) -> Row:
        values = refs.samples.get(label)
        if not values:
            return Row(text, "n/a", "-")
        summary = summarize(values)
        return Row.of(text, summary, "-", f"n={summary.n}")

    def kib_row(figure: str, values: list[float], reference: str, unit: str = "") -> Row:
        summary = summarize(values)
        return Row(figure, mib(summary.median_s), mib(summary.p95_s) if summary.n > 1 else "-", "-",
                   f"n={summary.n}{unit}{'; ' if reference else ''}{reference}")

    def pods_(count: int) -> str:
        return f"{count} pod" + ("" if count == 1 else "s")

    n = len(start.latency)
    out: list[Row] = [Row("1. pod start", "", "")]
    lat = summarize(start.latency)
    out.append(Row.of("manifest written -> first act (/proc/uptime)", lat,
                      target(START_TARGET_S, lat.median_s, strict=False),
                      f"n={n} after {START_WARMUPS} warm-up ({duration(start.warmup[0])}); uptime has 10 ms steps; "
                      + refs.ratios(lat.median_s, "runc run", "unshare")))
    out.append(Row.of("  same, conmon's CRI log timestamp", summarize(start.cri), "-",
                      f"n={n}; ns clock, line read by conmon; "
                      + refs.ratios(summarize(start.cri).median_s, "runc run")))
    out.append(Row.of("  stage: written -> Scheduled (noticed, parsed)", summarize(start.noticed), "-",
                      f"n={n}; daemon INFO log, ms"))
    out.append(Row.of("  stage: Scheduled -> Pulled (infra sandbox)", summarize(start.sandbox), "-", f"n={n}"))
    out.append(Row.of("  stage: Pulled -> Created (overlay, conmon, runc create)", summarize(start.create), "-",
                      f"n={n}"))
    out.append(Row.of("  stage: Created -> Started (runc start)", summarize(start.start), "-", f"n={n}"))
    for pods, reps in levels.items():
        if pods != 50:
            continue  # the 50-pod burst; the other levels are in part 4
        out.append(drop_row(reps[-1], refs))
    out.append(ref("runc run", "ref: runc run, trivial container (true)"))
    out.append(ref("unshare", "ref: unshare --net --ipc --uts --pid --fork --mount true"))
    out.append(ref("sandbox", "ref: infra sandbox alone, runc create + start (catatonit)"))
    out.append(ref("sandbox polled", "ref: the same, waited for by polling (subprocess.run timeout=30)"))
    out.append(ref("run_sandbox", "ref: the same, kubelite's OCIRuntime.run_sandbox() in-process"))
    out.append(podman_row("ref: podman kube play --network none", podman["play"]))

    m = len(crash.latency)
    out.append(Row("2. crash -> restarted (first restart)", "", ""))
    lat = summarize(crash.latency)
    out.append(Row.of("exit -> first act of attempt 1 (/proc/uptime)", lat,
                      target(RESTART_TARGET_S, lat.median_s, strict=False),
                      f"n={m} pods, one after another; both ends 10 ms steps; "
                      + refs.ratios(lat.median_s, "create+start", "conmon")))
    out.append(Row.of("  same, conmon's CRI log timestamps", summarize(crash.cri), "-",
                      f"n={m}; {refs.ratios(summarize(crash.cri).median_s, 'create+start')}"))
    out.append(Row.of("  stage: last line -> exit logged (exit file, inotify)", summarize(crash.noticed), "-",
                      f"n={m}; CRI ts -> daemon INFO log"))
    out.append(Row.of("  stage: exit logged -> Created (overlay, conmon, runc create)", summarize(crash.create), "-",
                      f"n={m}"))
    out.append(Row.of("  stage: Created -> Started (runc start)", summarize(crash.start), "-", f"n={m}"))
    out.append(ref("create+start", "ref: runc create + runc start, trivial (true)"))
    out.append(ref("create+start polled", "ref: the same, waited for by polling (subprocess.run timeout=30)"))
    out.append(ref("conmon", "ref: conmon (runc create) + runc start, trivial"))
    for proc in ("runc init", "conmon"):
        figure, kib = f"ref: created, not started: {proc}'s PSS", refs.waiting_kib.get(proc)
        out.append(kib_row(figure, kib, "what a replacement created ahead would keep per container") if kib
                   else Row(figure, "n/a", "-"))
    out.append(podman_row("ref: podman restart loop (kube play --network none, restartPolicy Always)",
                          podman["restart"]))

    out.append(Row(f"3. update: one container of a {len(UPDATE_CONTAINERS)}-container pod", "", ""))
    others = ", ".join(c for c in UPDATE_CONTAINERS if c != UPDATED)
    for kind, what in (("command", "command"), ("image", "image (new tag, same layers)")):
        values = update.of(kind, update.latency)
        lat = summarize(values)
        out.append(Row.of(f"{what} changed -> first act of the new {UPDATED}", lat, "-",
                          f"n={lat.n}; {others} untouched: {update.untouched} of {update.updates}; "
                          + refs.ratios(lat.median_s, "create+start")))
    k = len(update.latency)
    out.append(Row.of("  same (both kinds), conmon's CRI log timestamp", summarize(update.cri), "-", f"n={k}"))
    out.append(Row.of("  stage: written -> 'manifest changed' (noticed, parsed)", summarize(update.noticed), "-",
                      f"n={k}; daemon INFO log, ms"))
    out.append(Row.of("  stage: -> Killing (plan, SIGTERM sent)", summarize(update.kill), "-", f"n={k}"))
    out.append(Row.of("  stage: Killing -> exit logged (trap, exit file, inotify)", summarize(update.exited), "-",
                      f"n={k}"))
    out.append(Row.of("  stage: exit logged -> Created (overlay, conmon, runc create)", summarize(update.create), "-",
                      f"n={k}"))
    out.append(Row.of("  stage: Created -> Started (runc start)", summarize(update.start), "-", f"n={k}"))
    counts = ", ".join(f"{c} {update.restart_counts.get(c, '?')}" for c in UPDATE_CONTAINERS)
    out.append(Row(f"  {others}: same container ID and PID after each update",
                   f"{update.untouched} of {update.updates}", "-", "-",
                   f"warm-up included; restartCount at the end (get pods -o json): {counts}"))
    out.append(podman_row("ref: podman (kube play --replace recreates the whole pod)", podman["replace"]))

    out.append(Row("4. density (idle `sleep 3600` pods, each level from zero)", "", ""))
    out.append(Row("kubelite VmRSS, just started", mib(daemon_rss["started"]), "-", "-", "n=1"))
    out.append(Row("kubelite VmRSS, idle after parts 1 to 3 (0 pods)", mib(daemon_rss["idle"]), "-", "-", "n=1"))
    for pods, reps in levels.items():
        last = reps[-1]
        grown = last.daemon_rss_kib - daemon_rss["idle"]
        out.append(Row(f"kubelite VmRSS, {pods_(pods)} running", mib(last.daemon_rss_kib), "-", "-",
                       f"n=1; {grown:+d} KiB over idle = {grown / pods:.1f} KiB per pod (kubelite's own state)"))
    for pods, reps in levels.items():
        span = "; ".join(f"used {mib(r.used_before_kib)} -> {mib(r.used_after_kib)}" for r in reps[:1])
        app = [v for r in reps for v in r.app_rss_kib]
        added = [r.added_per_pod_kib for r in reps]
        out.append(kib_row(f"added memory per pod, system-wide, {pods_(pods)}", added,
                           ("each from zero pods; first: " if len(reps) > 1 else "") + span
                           + (f"; app (sleep) RSS {mib(summarize(app).median_s)}" if app else "")
                           + implausible(summarize(added).median_s, reps),
                           " runs" if len(reps) > 1 else ""))
    for label, rss_of, pss_of in (("conmon", "conmon_rss_kib", "conmon_pss_kib"),
                                  ("catatonit (infra)", "catatonit_rss_kib", "catatonit_pss_kib")):
        for pods, reps in levels.items():
            rss = [v for r in reps for v in getattr(r, rss_of)]
            pss = [v for r in reps for v in getattr(r, pss_of)]
            found = sum(r.found for r in reps)
            if not rss:
                out.append(Row(f"{label} RSS per pod, {pods_(pods)}", "n/a", "-"))
                continue
            out.append(kib_row(f"{label} RSS per pod, {pods_(pods)}", rss,
                               f"PSS median {mib(summarize(pss).median_s)}"
                               + (f"; found {found} of {pods * len(reps)}" if found != pods * len(reps) else ""),
                               " pods"))
    for pods, reps in levels.items():
        if pods > 50:
            out.append(drop_row(reps[-1], refs))
    for pods, reps in levels.items():
        if pods >= 50:
            out.append(Row(f"{pods} manifests deleted -> all removed", duration(reps[-1].removed_s), "-", "-",
                           f"n=1; includes the {GRACE_S} s grace period (`sleep` as PID 1 ignores SIGTERM)"))
    return out + curve_rows(curve, start)


def cpu_text(cpu: IdleCpu) -> str:
    return (f"utime+stime {cpu.ticks} ticks of {1000 / CLK_TCK:g} ms over {cpu.window_s:.1f} s"
            f"{' (--long)' if LONG else ''}, of one core; schedstat {duration(cpu.sched_ns / 1e9)} = "
            f"{100 * cpu.sched_ns / 1e9 / cpu.window_s:.3f} %; children reaped {cpu.child_ticks} ticks")


def curve_levels(curve: Curve) -> list[scale.Level]:
    """The curve's figures per level, in the units of its compact table and plot."""
    zero = curve.points[0]
    out = []
    for p in curve.points:
        start = summarize(p.start)
        out.append(scale.Level(
            p.pods, start.median_s * 1000, start.p95_s * 1000, summarize(p.stages["noticed"]).median_s * 1000,
            p.cpu.percent, p.rss_kib / 1024,
            (p.rss_kib - zero.rss_kib) / p.pods if p.pods else None,
            (p.used_kib - zero.used_kib) / p.pods / 1024 if p.pods else None,
            (summarize([c + k + a for c, k, a in zip(p.conmon_pss_kib, p.catatonit_pss_kib, p.app_pss_kib)]).median_s
             + (p.rss_kib - zero.rss_kib) / p.pods) / 1024 if p.pods and p.app_pss_kib else None,
            summarize(p.get_pods).median_s * 1000,
            summarize(p.runc).median_s * 1000 if p.runc else None))
    return out


def start_target(ratio: float, pods: int) -> str:
    if pods != SCALE_TARGET_PODS:
        return "-"
    return f"<= {SCALE_START_RATIO:g}x of 0 pods ({'met' if ratio <= SCALE_START_RATIO else 'missed'})"


def cpu_target(percent: float, pods: int) -> str:
    if pods != SCALE_TARGET_PODS:
        return "-"
    return f"<= {SCALE_CPU_TARGET_PERCENT:g} % ({'met' if percent <= SCALE_CPU_TARGET_PERCENT else 'missed'})"


def print_curve(curve: Curve) -> None:
    """The curve as one line per level, and its plot rendered to docs/ (when matplotlib is installed)."""
    figures = curve_levels(curve)
    print("== bench_runtime: the scale curve (part 4), medians ==")
    for line in scale.table(figures):
        print(line)
    cpu = dict(machine())["cpu"]
    title = (f"kubelite scale curve ({datetime.now(timezone.utc):%Y-%m-%d}, {cpu}; idle CPU over {CPU_WINDOW_S:g} s; "
             f"targets at {SCALE_TARGET_PODS} pods)")
    note = scale.plot(figures, SCALE_PLOT, title=title, start_ratio=SCALE_START_RATIO,
                      cpu_target=SCALE_CPU_TARGET_PERCENT, get_target_ms=SCALE_GET_TARGET_S * 1000)
    print("  of it noticed: written -> the daemon's Scheduled line (the watcher's hint, the manifest scan); "
          "runc run: a trivial container's `runc run` at that level, the floor of any start there; "
          "own/pod: kubelite's VmRSS growth over 0 pods, per pod; memory/pod: the PSS of a pod's conmon, "
          "catatonit and app (median) + own/pod; system/pod: MemTotal - MemAvailable over 0 pods, per pod "
          "(other work on the machine moves it)")
    print(f"  {note}" + (f": {SCALE_PLOT.relative_to(REPO)}" if note.startswith("plot rendered") else ""))
    print(flush=True)


def curve_rows(curve: Curve, part1: StartResult) -> list[Row]:
    """The scale curve in the table's columns: per level, a new pod's start (and its ratio to 0 pods),
    the daemon's idle CPU, VmRSS and memory per pod, `get pods`; then how the levels were built."""
    zero = curve.points[0]
    basis = summarize(zero.start).median_s
    out = [Row(f"4. scale curve (idle `sleep 3600` pods, built up {' -> '.join(map(str, CPU_LEVELS))})", "", "")]
    for p in curve.points:
        head = f"{p.pods} pods running:"
        s = summarize(p.start)
        ratio = s.median_s / basis
        out.append(Row.of(f"{head} new pod, written -> first act", s, start_target(ratio, p.pods),
                          f"n={s.n} after {SCALE_START_WARMUPS} warm-up; "
                          + (f"the ratios' basis; part 1 (same method): {duration(summarize(part1.latency).median_s)}"
                             if p is zero else f"{ratio:.2f}x of 0 pods ({duration(basis)})")
                          + f"; CRI timestamp {duration(summarize(p.start_cri).median_s)}"))
        if p.runc and zero.runc:
            r = summarize(p.runc)
            floor_ratio = r.median_s / summarize(zero.runc).median_s
            out.append(Row.of(f"{head} ref: runc run, trivial container (the floor here)", r, "-",
                              f"n={r.n}; " + ("the floor's basis" if p is zero else
                                              f"{floor_ratio:.2f}x of its 0-pod figure; the pod's start over it: "
                                              f"{s.median_s / r.median_s:.2f}x (at 0 pods: "
                                              f"{basis / summarize(zero.runc).median_s:.2f}x)")))
        out.append(Row(f"{head}   its stages (medians)", "", "", "-",
                       "; ".join(f"{label} {duration(summarize(p.stages[key]).median_s)}" for key, label in zip(
                           STAGES, ("written -> Scheduled (noticed, scanned)", "-> Pulled (infra sandbox)",
                                    "-> Created (overlay, conmon, runc create)", "-> Started (runc start)")))))
        out.append(Row(f"{head} kubelite CPU idle", f"{p.cpu.percent:.2f} %", "-", cpu_target(p.cpu.percent, p.pods),
                       "n=1; " + cpu_text(p.cpu)))
        grown = p.rss_kib - zero.rss_kib
        out.append(Row(f"{head} kubelite VmRSS", mib(p.rss_kib), "-", "-",
                       "n=1; the basis of 'own state'" if p is zero else
                       f"n=1; {grown:+d} KiB over 0 pods = {grown / p.pods:.1f} KiB per pod (kubelite's own state)"))
        if p.pods:
            added = (p.used_kib - zero.used_kib) / p.pods
            pss = [c + k + a for c, k, a in zip(p.conmon_pss_kib, p.catatonit_pss_kib, p.app_pss_kib)]
            own = (p.rss_kib - zero.rss_kib) / p.pods
            if pss:
                out.append(Row(f"{head} memory per pod, its processes' PSS + kubelite's own",
                               mib(summarize(pss).median_s + own), "-", "-",
                               f"n={len(pss)} pods; conmon {mib(summarize(p.conmon_pss_kib).median_s)} + catatonit "
                               f"{mib(summarize(p.catatonit_pss_kib).median_s)} + app (sleep) "
                               f"{mib(summarize(p.app_pss_kib).median_s)} + kubelite {own:.1f} KiB"
                               + (f"; found {len(pss)} of {p.pods}" if len(pss) != p.pods else "")))
            out.append(Row(f"{head} memory per pod, system-wide", mib(added), "-", "-",
                           f"n=1; used {mib(zero.used_kib)} at 0 pods -> {mib(p.used_kib)}"
                           + ("; DISTURBED: below zero, other work freed memory meanwhile" if added < 0 else "")))
        g, f = summarize(p.get_pods), summarize(p.floor)
        goal = "-" if p.pods != SCALE_TARGET_PODS else target(SCALE_GET_TARGET_S, g.median_s, strict=False)
        out.append(Row.of(f"{head} kubelite get pods (.pyc cached)", g, goal,
                          f"n={g.n}; floor (python -c pass) + {duration(max(g.median_s - f.median_s, 0.0))}"))
    for p in curve.points[1:]:
        out.append(Row(f"{p.added} pods added at once to {p.pods - p.added} running -> all running",
                       duration(p.added_s), "-", "-", f"n=1; {p.added / p.added_s:.1f} pods/s"))
    if curve.points[-1].pods:
        out.append(Row(f"{curve.points[-1].pods} manifests deleted -> all removed", duration(curve.removed_s), "-",
                       "-", f"n=1; includes the {GRACE_S} s grace period (`sleep` as PID 1 ignores SIGTERM)"))
    return out


def summary_rows(start: StartResult, crash: CrashResult, update: UpdateResult, refs: References,
                 levels: dict[int, list[Level]], daemon_rss: dict[str, int], curve: Curve,
                 podman: dict[str, Summary | str]) -> list[Row]:
    """The headline figures of this benchmark, for the summary table of `bench/run`."""
    out: list[Row] = []
    lat = summarize(start.latency)
    out.append(Row.of("1. pod start: manifest written -> first act", lat,
                      target(START_TARGET_S, lat.median_s, strict=False),
                      f"{refs.ratios(lat.median_s, 'runc run', 'unshare')}; "
                      f"podman kube play: {podman_str(podman['play'])}"))
    if 50 in levels:
        level = levels[50][-1]
        out.append(Row("1. 50 pods dropped at once -> all running", duration(level.all_running_s), "-", "-",
                       f"{50 / level.all_running_s:.1f} pods/s; per pod "
                       f"{refs.ratios(level.all_running_s / 50, 'runc run')}"))
    lat = summarize(crash.latency)
    out.append(Row.of("2. crash -> first act of the restart", lat, target(RESTART_TARGET_S, lat.median_s, strict=False),
                      f"{refs.ratios(lat.median_s, 'create+start')}; "
                      f"podman restart loop: {podman_str(podman['restart'])}"))
    for kind in ("command", "image"):
        lat = summarize(update.of(kind, update.latency))
        out.append(Row.of(f"3. update, {kind} of 1 of 3 containers -> first act", lat, "-",
                          f"other 2 same ID+PID in {update.untouched} of {update.updates} updates; "
                          f"{refs.ratios(lat.median_s, 'create+start')}"))
    window = f"{CPU_WINDOW_S:g} s" + (" (--long)" if LONG else "")
    zero = curve.points[0]
    basis = summarize(zero.start).median_s
    for p in curve.points:
        st = summarize(p.start)
        ratio = st.median_s / basis
        out.append(Row.of(f"4. new pod start, {p.pods} pods running", st, start_target(ratio, p.pods),
                          f"{ratio:.2f}x of 0 pods; levels built up one after another"))
    for p in curve.points:
        grown = p.rss_kib - zero.rss_kib
        out.append(Row(f"4. kubelite idle CPU, {p.pods} pods", f"{p.cpu.percent:.2f} %", "-",
                       cpu_target(p.cpu.percent, p.pods),
                       f"over {window}; VmRSS {mib(p.rss_kib)}"
                       + (f", own state {grown / p.pods:.1f} KiB per pod" if p.pods else "")))
    for p in curve.points:
        if p.pods == SCALE_TARGET_PODS or p is curve.points[-1]:
            g = summarize(p.get_pods)
            goal = "-" if p.pods != SCALE_TARGET_PODS else target(SCALE_GET_TARGET_S, g.median_s, strict=False)
            out.append(Row.of(f"4. get pods, {p.pods} pods running (.pyc cached)", g, goal,
                              f"python -c pass {duration(summarize(p.floor).median_s)}"))
    for pods, reps in levels.items():
        if pods > 50:
            level = reps[-1]
            out.append(Row(f"4. {pods} pods dropped at once -> all running", duration(level.all_running_s), "-", "-",
                           f"{pods / level.all_running_s:.1f} pods/s; per pod "
                           f"{refs.ratios(level.all_running_s / pods, 'runc run')}; removed in "
                           f"{duration(level.removed_s)}"))
    for pods, reps in levels.items():
        if pods < 100:
            continue
        level = reps[-1]
        med = {k: summarize(getattr(level, k)).median_s for k in
               ("conmon_rss_kib", "conmon_pss_kib", "catatonit_rss_kib", "catatonit_pss_kib")}
        parts = (f"conmon RSS {mib(med['conmon_rss_kib'])} (PSS {mib(med['conmon_pss_kib'])}), catatonit "
                 f"RSS {mib(med['catatonit_rss_kib'])} (PSS {mib(med['catatonit_pss_kib'])}), app "
                 f"{mib(summarize(level.app_rss_kib).median_s) if level.app_rss_kib else 'n/a'}")
        out.append(Row(f"4. memory per pod at {pods}, system-wide", mib(level.added_per_pod_kib), "-", "-",
                       parts + implausible(level.added_per_pod_kib, [level], short=True)))
    return out


#: How far the system-wide figure may exceed the RSS of a pod's own processes (kernel memory:
#: page tables, stacks, cgroups, the overlay mount) before it is flagged as disturbed.
KERNEL_SLACK_KIB = 2048


def implausible(added_kib: float, reps: list[Level], *, short: bool = False) -> str:
    """A warning when the system-wide figure cannot be this level's pods alone, else ""."""
    per_pod = [c + k + a for r in reps for c, k, a in zip(r.conmon_rss_kib, r.catatonit_rss_kib, r.app_rss_kib)]
    if not per_pod:
        return ""
    ceiling = summarize(per_pod).median_s + KERNEL_SLACK_KIB
    if 0 <= added_kib <= ceiling:
        return ""
    why = "" if short else f" (the pod's own processes' RSS + {mib(KERNEL_SLACK_KIB)})"
    return f"; DISTURBED: outside 0 .. {mib(ceiling)}{why}: other work changed the machine's memory meanwhile"


def drop_row(level: Level, refs: References) -> Row:
    gaps = summarize(level.start_gaps)
    per_pod = level.all_running_s / level.pods
    return Row(f"{level.pods} pods dropped at once -> all running", duration(level.all_running_s), "-", "-",
               f"n=1; {level.pods / level.all_running_s:.1f} pods/s, {duration(per_pod)} per pod: "
               f"{refs.ratios(per_pod, 'runc run')}; between Started lines median {duration(gaps.median_s)}, "
               f"p95 {duration(gaps.p95_s)}")


def podman_row(label: str, value: Summary | str) -> Row:
    return Row.of(label, value, "-", f"n={value.n}") if isinstance(value, Summary) else Row(label, value, "-")


def podman_str(value: Summary | str) -> str:
    if isinstance(value, Summary):
        return f"{duration(value.median_s)} median, {duration(value.p95_s)} p95 (n={value.n}; --network none)"
    return value


def measure_podman(pm: Podman, work: Path, network: str) -> list[float]:
    """`podman kube play` of the start pod, from the call to the first act (uptime), then `kube down`."""
    samples = []
    for i in range(START_WARMUPS + START_RUNS):
        name = f"podman-start-{i:02d}"
        path = work / f"{name}.yaml"
        path.write_text(pod_manifest(name, [(CONTAINER, pm.image, ["sh", "-c", START_SCRIPT])]))
        container = f"{name}-{CONTAINER}"
        t_boot = boottime()
        pm.play(path, [name], network)
        try:
            out = wait_for(lambda: pm.first_lines([container]), timeout=30, what="podman's container's first line")
        finally:
            pm.down(path, [name])
        if i >= START_WARMUPS:
            samples.append(float(out[container].split()[0]) - t_boot)
    return samples


def measure_podman_restart(pm: Podman, work: Path, network: str) -> list[float]:
    """podman's restart loop: the crash pod through `kube play`; from the second uptime line of the
    first run to the first line of the restarted run (`podman logs` holds both runs), then `kube down`."""
    samples = []
    for i in range(CRASH_PODS):
        name = f"podman-crash-{i:02d}"
        path = work / f"{name}.yaml"
        path.write_text(pod_manifest(name, [(CONTAINER, pm.image, ["sh", "-c", CRASH_SCRIPT])]))
        pm.play(path, [name], network)
        try:
            out = wait_for(lambda: (lines := pm.logs(f"{name}-{CONTAINER}")) and len(lines) >= 3 and lines,
                           timeout=30, what="podman logs", interval=0.05)
        finally:
            pm.down(path, [name])
        samples.append(float(out[2].split()[0]) - float(out[1].split()[0]))
    return samples


def podman_figures(base: Path, archive: Path) -> tuple[dict[str, Summary | str], list[str]]:
    """The podman references, each a figure or a text for its cell ("not installed" without podman), and
    what podman left of the run. podman runs on a store and configuration of the run's own
    (bench/podman.py), its pods with `--network none` as the daemon's here."""
    figures: dict[str, Summary | str] = {"play": "not installed", "restart": "not installed",
                                         "replace": "not installed"}
    pm = Podman.open(base / "podman")
    if pm is None:
        return figures, []
    figures["replace"] = "not measured: not the same work"
    work = base / "podman-pods"
    work.mkdir()
    try:
        pm.load(archive)
        for key, fn in (("play", measure_podman), ("restart", measure_podman_restart)):
            try:
                figures[key] = summarize(fn(pm, work, "none"))
            except (subprocess.SubprocessError, OSError, RuntimeError, TimeoutError, ValueError, IndexError) as exc:
                figures[key] = f"failed: {exc}"[:100]
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        figures = {k: f"failed: {exc}"[:100] for k in figures}
    finally:
        left = pm.close()
    return figures, left


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_runtime needs root (runc, conmon, cgroups, overlay mounts)")
    bins = find_binaries()
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-runtime-", dir="/tmp"))
    node = Node(base / "node", base / "busybox.tar")
    refs: References | None = None
    problems: list[str] = []
    result_start: StartResult | None = None
    result_crash: CrashResult | None = None
    result_update: UpdateResult | None = None
    curve: Curve | None = None
    levels: dict[int, list[Level]] = {}
    daemon_rss = {"started": 0, "idle": 0}
    podman_text: dict[str, Summary | str] = {"play": "not installed", "restart": "not installed",
                                             "replace": "not installed"}
    stop_code: int | None = None
    failure: BaseException | None = None
    check = Check([], [], [], 0.0)
    stale_sockets = 0
    try:
        plain = base / "busybox-plain.tar"
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(plain), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        # the same image under a tag of its own for every update of part 3 (no layer is unpacked again)
        retag(plain, node.busybox_tar, [IMAGE] + update_tags(UPDATE_WARMUPS + 2 * UPDATE_RUNS))
        node.load_image()
        images = ImageStore(node.root)
        image = images.get(IMAGE)
        if image is None:
            raise RuntimeError(f"{IMAGE} is not in the image store after loading it")
        layer = images.layer_dirs(image)[-1]
        layer_listing = sorted(os.listdir(layer))
        refs = References(base / "refs", layer, bins)
        node.start()
        assert node.proc is not None
        time.sleep(SETTLE_S)
        daemon_rss["started"] = status_kib(node.proc.pid, "VmRSS") or 0
        result_start = measure_start(node, refs)
        result_crash = measure_crash(node)
        result_update = measure_update(node)
        time.sleep(SETTLE_S)
        node.wait_idle()
        daemon_rss["idle"] = status_kib(node.proc.pid, "VmRSS") or 0
        for pods in MEMORY_LEVELS:
            levels[pods] = [measure_level(node, pods, rep) for rep in range(LEVEL_REPS.get(pods, 1))]
        curve = measure_curve(node, base / "cli", refs)
        if sorted(os.listdir(layer)) != layer_listing:
            problems.append("the busybox layer used as the references' read-only root changed")
        podman_text, podman_left = podman_figures(base, plain)
        problems += [f"left behind by podman: {x}" for x in podman_left]
    except BaseException as exc:  # noqa: BLE001 — clean up first, then report
        failure = exc
    finally:
        try:
            stop_code = orderly_cleanup(node)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"orderly cleanup: {exc}")
            node.stop()
            force_cleanup(node)
        if refs is not None:
            refs.remove_cgroup()
        check = final_check(node, refs, base)
        stale_sockets = len(list((node.run_dir / "sockets").glob("*")))
        if node.log is not None:
            node.log.poll()
            problems += [f"daemon log: {p}" for p in node.log.problems()]
        problems += [f"left behind: {x}" for x in check.left]
        if check.left:
            print(f"bench_runtime: keeping {base} for inspection", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if failure is not None:
        for p in problems:
            print(f"bench_runtime: {p}", file=sys.stderr)
        raise failure
    assert result_start is not None and result_crash is not None and refs is not None
    assert result_update is not None and curve is not None
    problems += result_update.problems
    watcher_debounce = inspect.signature(ManifestWatcher.__init__).parameters["debounce_s"].default
    load_end = Path("/proc/loadavg").read_text().split()[:3]
    cleanup = (f"cleanup: every pod removed by kubelite, daemon stopped by SIGTERM (exit {stop_code}); "
               + ("no mount, cgroup, process, runc container or record of this run left" if not check.left
                  else "LEFTOVERS, listed below"))
    if check.first_zombies:
        more = " ..." if len(check.first_zombies) > 3 else ""
        cleanup += (f"; at the first look {len(check.first_zombies)} exited process(es) of this run were not reaped "
                    f"yet (e.g. pid {', '.join(check.first_zombies[:3])}{more})"
                    + (f", {len(check.zombies)} still after {check.waited_s:.1f} s" if check.zombies
                       else f", all gone {check.waited_s:.1f} s later"))
    if stale_sockets:
        cleanup += f"; {stale_sockets} conmon socket symlink(s) left in <run-dir>/sockets (deleted with the temp dir)"
    notes = [
        "figures are measured, never asserted; wall clock on a machine others may be using "
        f"(load average {' '.join(load_start)} at start, {' '.join(load_end)} at end)",
        "/proc/uptime has 10 ms resolution (truncated): an uptime figure is that coarse; the CRI-timestamp "
        "rows time the same events on conmon's ns clock (when conmon read the line)",
        "stages come from the daemon's INFO log timestamps (ms); 'Pulled' is logged once the sandbox exists, "
        "just before the container is created",
        f"kubelite's manifest watcher hints at once for a file closed after writing or renamed into place, "
        f"else after {watcher_debounce:g} s without further events (ManifestWatcher debounce_s)",
        "references: wall clock around the commands; private `runc --root`; cgroups below "
        f"/{refs.cgroup}; one round while each start-test pod waits out its {GRACE_S} s grace period, daemon idle"
        + (f" ({result_start.overlaps} round(s) outlasted it)" if result_start.overlaps else ""),
        "infra sandbox alone: runc create + runc start of the bundle kubelite's ocispec.build_sandbox_spec builds; "
        "run_sandbox() (one `runc run --detach`): a second, in-process OCIRuntime on its own state root, "
        "followed by remove_sandbox()",
        f"update: pod {', '.join(UPDATE_CONTAINERS)} (each `trap 'exit 0' TERM; cat /proc/uptime; sleep 3600 & "
        f"wait`: the shell is PID 1 and leaves at SIGTERM, so no grace period is waited out); {UPDATED}'s command "
        f"(a new revision) or image (a new tag of the same image) changed, interleaved, "
        f"{UPDATE_RUNS} of each after {UPDATE_WARMUPS} warm-up; the file renamed into place at least "
        f"{UPDATE_PAUSE_S:g} s after the previous write (the watcher's debounce); from CLOCK_BOOTTIME "
        f"before the rename to the new container's /proc/uptime; the others checked by container ID, PID and "
        f"start time in the runtime's records and for Killing events",
        "density: each level starts from zero pods, its manifests written in one burst; memory read "
        f"{SETTLE_S:g} s after the last Started; RSS counts shared pages in every process, PSS shares them out; "
        f"kubelite's own state per pod = its VmRSS growth over idle / pods",
        f"idle CPU: utime+stime of the daemon's process (all threads) from /proc/<pid>/stat over "
        f"{CPU_WINDOW_S:g} s with nothing to do, as a share of one core; "
        + ("--long (KUBELITE_BENCH_LONG=1): a full minute, three periodic relists (every 20 s)"
           if LONG else "one relist period (20 s), so one periodic relist falls into it (--long or "
                        "KUBELITE_BENCH_LONG=1: 60 s)"),
        f"scale curve: levels {', '.join(map(str, CPU_LEVELS))} built up one after another (each level's new "
        f"`sleep 3600` manifests written at once, added to those running), unlike the bursts above, which start "
        f"from zero; at each level, in this order: memory {SETTLE_S:g} s after the last Started, idle CPU, "
        f"`kubelite get pods` ({SCALE_GET_RUNS} runs after {SCALE_GET_WARMUPS} warm-ups, the console script on "
        f"a copy of the package with its bytecode cached, as bench_cli; interleaved with `python -c pass`), then a "
        f"new pod's start ({SCALE_START_RUNS} runs after {SCALE_START_WARMUPS} warm-up, part 1's method: written "
        f"-> /proc/uptime printed; its shell leaves at SIGTERM, and each is removed before the next); "
        f"targets at {SCALE_TARGET_PODS} pods: start <= {SCALE_START_RATIO:g}x of 0 pods, idle CPU <= "
        f"{SCALE_CPU_TARGET_PERCENT:g} % of a core, get pods <= {SCALE_GET_TARGET_S * 1000:g} ms",
        cleanup,
        f"total time {time.monotonic() - began:.0f} s",
    ] + problems
    print_table("bench_runtime: real pods (runc + conmon + catatonit) against `kubelite serve --runtime runc`",
                rows(result_start, result_crash, result_update, refs, levels, daemon_rss, curve, podman_text),
                notes=notes)
    print_curve(curve)
    record_summary("runtime", summary_rows(result_start, result_crash, result_update, refs, levels, daemon_rss,
                                           curve, podman_text))
    if check.left:
        sys.exit(1)


if __name__ == "__main__":
    main()
