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
   (catatonit), waited for once by a blocking waitpid and once as kubelite's `_runc` waits
   (`subprocess.run(..., timeout=30)`, which polls with sleeps of 1 ms doubling to 50 ms), and
   `OCIRuntime.run_sandbox()` itself on a second, in-process runtime with its own state root;
   `podman kube play` when podman is installed. One round of references runs while each pod
   waits out its grace period (the daemon idle).
2. Crash -> restarted (first restart, no backoff due): pods whose container prints /proc/uptime,
   sleeps 0.5 s, prints it again and exits 1 (restartPolicy Always); from the second value of
   attempt 0 to the first value of attempt 1. The pods are created one after another, one
   measurement each. Target: median <= 80 ms. The daemon's log splits it into exit noticed,
   create and start. References: `runc create` + `runc start` of the trivial bundle (blocking
   wait, and polled as kubelite waits), and the same created through conmon (kubelite's conmon
   command line and sync-pipe protocol).
3. Memory: the daemon's VmRSS, and per pod at 1, 50 and 100 running `sleep 3600` pods:
   system-wide used memory (MemTotal - MemAvailable) after minus before, over the pod count; the
   RSS (and PSS) of each pod's conmon and catatonit, found by PID (checked with its start time)
   in the runtime's record.json files. Each level is dropped at once (all files written in one
   burst) from zero pods: the time until every container is running gives pods per second.

Everything runs below one temporary directory in /tmp: state root, run dir, manifests, the
reference bundles and their private `runc --root`. The references' cgroups live below a cgroup
of their own (`/kubelite-bench-<pid>`); the in-process runtime's below its own instance. At the end every manifest is deleted, kubelite removes
every pod, the daemon gets SIGTERM, and the benchmark verifies that no mount below the
directory, no cgroup of the instance or of the references, no conmon/runc/catatonit process of
this run and no runc container remain. Processes are only ever signalled by PIDs this run
created (and only when the orderly cleanup failed).

Needs root, runc, conmon and catatonit (Debian's packages); about two minutes.
Run: `bench/run runtime`, or `.venv/bin/python -m bench.bench_runtime` from the repository root.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from kubelite.runtime import linux, oci, ocispec
from kubelite.runtime.images import ImageStore
from kubelite.runtime.oci import OCIRuntime, find_binaries, instance_name
from kubelite.runtime.protocol import SandboxConfig
from kubelite.sources.watch import ManifestWatcher

from bench.common import REPO, Row, duration, print_table, summarize, target

START_RUNS = 12
START_WARMUPS = 1
CRASH_PODS = 12
MEMORY_LEVELS = (1, 50, 100)
#: Repetitions per memory level: one pod's share of system-wide memory is small next to the noise.
LEVEL_REPS = {1: 5}
START_TARGET_S = 0.100
RESTART_TARGET_S = 0.080
START_SCRIPT = "cat /proc/uptime; exec sleep 3600"
CRASH_SCRIPT = "cat /proc/uptime; sleep 0.5; cat /proc/uptime; exit 1"
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


def manifest(name: str, command: list[str]) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nspec:\n"
            f"  restartPolicy: Always\n  terminationGracePeriodSeconds: {GRACE_S}\n  containers:\n"
            f"  - name: {CONTAINER}\n    image: {IMAGE}\n    imagePullPolicy: Never\n"
            f"    command: {json.dumps(command)}\n")


# ---------------------------------------------------------------------- logs


_DAEMON_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z (\w+) (.*)$")
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
    """The daemon's stdout/stderr, read incrementally and parsed into timestamped lines."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.entries, self._rest = path, 0, [], b""

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
                self.entries.append(Entry(at, m[2], m[3]))
        return self.entries

    def find(self, pod: str, prefix: str, after: float = 0.0) -> Entry | None:
        head = f"pod {NAMESPACE}/{pod}: {prefix}"
        for entry in self.poll():
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


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far (schedstat, ns); 0 when it is gone."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


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
            self.proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "runc"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        self.log = DaemonLog(self.log_path)
        wait_for(lambda: any(" serving " in e.text for e in self.log.poll()) or self.proc.poll() is not None,
                 timeout=30, what="kubelite serve to start", interval=0.05)
        if self.proc.poll() is not None:
            raise RuntimeError(f"kubelite serve exited with {self.proc.returncode}: {self.log_path.read_text()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # the daemon this run started, by its PID
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    # manifests

    def write(self, name: str, command: list[str]) -> None:
        tmp = self.manifests / f".{name}.yaml.tmp"  # dotfiles are never read; the rename is atomic
        tmp.write_text(manifest(name, command))
        os.replace(tmp, self.manifests / f"{name}.yaml")

    def delete(self, name: str) -> None:
        (self.manifests / f"{name}.yaml").unlink()

    def container_log(self, pod: str, attempt: int) -> Path | None:
        found = list((self.root / "logs").glob(f"{NAMESPACE}_{pod}_*/{CONTAINER}/{attempt}.log"))
        return found[0] if found else None

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
        heads = {f"pod {NAMESPACE}/{p}: removed" for p in pods}
        wait_for(lambda: heads <= {e.text for e in self.log.poll()}, timeout=timeout,
                 what=f"kubelite to remove {len(pods)} pod(s)", interval=0.02)

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
            if not r.get("stopped") and linux.alive(r["pid"], r["pid_start"]):
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


@dataclass
class References:
    """Trivial runc/conmon containers and namespaces, timed as subprocesses (wall clock)."""

    base: Path
    layer: Path
    bins: dict[str, str]
    cgroup: str = f"kubelite-bench-{os.getpid()}"
    samples: dict[str, list[float]] = field(default_factory=dict)
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

    def _id(self, kind: str) -> str:
        self.counter += 1
        return f"bench-{kind}-{self.counter}"

    def _add(self, label: str, seconds: float, record: bool) -> None:
        if record:
            self.samples.setdefault(label, []).append(seconds)

    def _delete(self, cid: str) -> None:
        run_quiet(self._runc("delete", "--force", cid), timeout=30)

    def run_round(self, record: bool = True) -> None:
        """One run of every reference; each leaves nothing behind."""
        # runc run: create, start, wait for `true`, delete — one command
        cid = self._id("run")
        start = time.perf_counter()
        code = run_blocking(self._runc("run", "--bundle", str(self.trivial), cid), check=False)
        self._add("runc run", time.perf_counter() - start, record and code == 0)
        if code != 0:
            self._delete(cid)
            raise RuntimeError(f"runc run of the trivial bundle failed with {code}")
        # the namespace floor
        if self.unshare:
            start = time.perf_counter()
            run_blocking([self.unshare, "--net", "--ipc", "--uts", "--pid", "--fork", "--mount", "true"])
            self._add("unshare", time.perf_counter() - start, record)
        # kubelite's infra container: runc create + runc start of its bundle, waited for by a
        # blocking waitpid and as kubelite's `_runc` waits; then OCIRuntime.run_sandbox() itself
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
        # waitpid, and as kubelite's `_runc` waits (`subprocess.run(..., timeout=30)`, which polls)
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
        oci.run_conmon(argv, bundle=work)  # kubelite's own conmon protocol, so the reference matches it
        run_blocking(self._runc("start", cid))
        elapsed = time.perf_counter() - began
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
class Level:
    pods: int
    all_running_s: float
    start_gaps: list[float]
    used_before_kib: int
    used_after_kib: int
    daemon_rss_kib: int
    per_pod_rss_kib: list[int]      # conmon + catatonit, one value per pod
    per_pod_pss_kib: list[int]
    app_rss_kib: list[int]
    found: int                      # pods with both processes found alive

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
    heads = {f"pod {NAMESPACE}/{n}: Started:" for n in names}

    def started() -> list[Entry] | None:
        hits = [e for e in node.log.poll() if e.text.startswith(tuple(heads))]
        return hits if len(hits) >= pods else None
    hits = sorted(wait_for(started, timeout=180, what=f"{pods} pods running", interval=0.02), key=lambda e: e.at)
    time.sleep(SETTLE_S)
    after = used_kib()
    daemon_rss = status_kib(node.proc.pid, "VmRSS") or 0
    rss, pss, app = [], [], []
    found = 0
    for procs in node.pod_processes().values():
        if "conmon" in procs and "catatonit" in procs:
            found += 1
            rss.append(sum(status_kib(procs[k], "VmRSS") or 0 for k in ("conmon", "catatonit")))
            pss.append(sum(pss_kib(procs[k]) or 0 for k in ("conmon", "catatonit")))
        if "app" in procs:
            app.append(status_kib(procs["app"], "VmRSS") or 0)
    for name in names:
        node.delete(name)
    node.wait_removed(names, timeout=120)
    gaps = [b.at - a.at for a, b in zip(hits, hits[1:])]
    return Level(pods, hits[-1].at - t_real, gaps, before, after, daemon_rss, rss, pss, app, found)


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
    """Delete every manifest, wait until kubelite removed every pod, stop it with SIGTERM."""
    for path in node.manifests.glob("*.yaml"):
        path.unlink()
    if node.proc is not None and node.proc.poll() is None:
        def empty() -> bool:
            return not node.records("sandboxes") and not node.records("containers")
        wait_for(empty, timeout=60, what="kubelite to remove every pod", interval=0.05)
        out = node.cli("get", "pods", "-o", "json")
        if out.returncode != 0 or json.loads(out.stdout)["items"]:
            raise RuntimeError(f"kubelite still lists pods: {out.stdout[:300]} {out.stderr[:300]}")
    return node.stop()


# ---------------------------------------------------------------------- report


def rows(start: StartResult, crash: CrashResult, refs: References, levels: dict[int, list[Level]],
         daemon_rss: dict[str, int], podman: str) -> list[Row]:
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
                      f"n={n} after {START_WARMUPS} warm-up ({duration(start.warmup[0])}); uptime has 10 ms steps"))
    out.append(Row.of("  same, conmon's CRI log timestamp", summarize(start.cri), "-",
                      f"n={n}; ns clock, line read by conmon"))
    out.append(Row.of("  stage: written -> Scheduled (noticed, parsed)", summarize(start.noticed), "-",
                      f"n={n}; daemon INFO log, ms"))
    out.append(Row.of("  stage: Scheduled -> Pulled (infra sandbox)", summarize(start.sandbox), "-", f"n={n}"))
    out.append(Row.of("  stage: Pulled -> Created (overlay, conmon, runc create)", summarize(start.create), "-",
                      f"n={n}"))
    out.append(Row.of("  stage: Created -> Started (runc start)", summarize(start.start), "-", f"n={n}"))
    out.append(ref("runc run", "ref: runc run, trivial container (true)"))
    out.append(ref("unshare", "ref: unshare --net --ipc --uts --pid --fork --mount true"))
    out.append(ref("sandbox", "ref: infra sandbox alone, runc create + start (catatonit)"))
    out.append(ref("sandbox polled", "ref: the same, subprocess.run(timeout=30) as kubelite's _runc"))
    out.append(ref("run_sandbox", "ref: the same, kubelite's OCIRuntime.run_sandbox() in-process"))
    out.append(Row("ref: podman kube play", podman, "-"))

    m = len(crash.latency)
    out.append(Row("2. crash -> restarted (first restart)", "", ""))
    lat = summarize(crash.latency)
    out.append(Row.of("exit -> first act of attempt 1 (/proc/uptime)", lat,
                      target(RESTART_TARGET_S, lat.median_s, strict=False),
                      f"n={m} pods, one after another; both ends 10 ms steps"))
    out.append(Row.of("  same, conmon's CRI log timestamps", summarize(crash.cri), "-", f"n={m}"))
    out.append(Row.of("  stage: last line -> exit logged (exit file, inotify)", summarize(crash.noticed), "-",
                      f"n={m}; CRI ts -> daemon INFO log"))
    out.append(Row.of("  stage: exit logged -> Created (overlay, conmon, runc create)", summarize(crash.create), "-",
                      f"n={m}"))
    out.append(Row.of("  stage: Created -> Started (runc start)", summarize(crash.start), "-", f"n={m}"))
    out.append(ref("create+start", "ref: runc create + runc start, trivial (true)"))
    out.append(ref("create+start polled", "ref: the same, subprocess.run(timeout=30) as kubelite's _runc"))
    out.append(ref("conmon", "ref: conmon (runc create) + runc start, trivial"))

    out.append(Row("3. memory", "", ""))
    out.append(Row("kubelite VmRSS, just started", mib(daemon_rss["started"]), "-", "-", "n=1"))
    out.append(Row("kubelite VmRSS, idle after parts 1 and 2", mib(daemon_rss["idle"]), "-", "-", "n=1"))
    for pods, reps in levels.items():
        last = reps[-1]
        out.append(Row(f"kubelite VmRSS, {pods_(pods)} running", mib(last.daemon_rss_kib), "-", "-",
                       f"n=1; {last.daemon_rss_kib - daemon_rss['idle']:+d} KiB over idle"))
    for pods, reps in levels.items():
        span = "; ".join(f"used {mib(r.used_before_kib)} -> {mib(r.used_after_kib)}" for r in reps[:1])
        out.append(kib_row(f"added memory per pod, system-wide, {pods_(pods)}", [r.added_per_pod_kib for r in reps],
                           ("each from zero pods; first: " if len(reps) > 1 else "") + span,
                           " runs" if len(reps) > 1 else ""))
    for pods, reps in levels.items():
        rss = [v for r in reps for v in r.per_pod_rss_kib]
        pss = [v for r in reps for v in r.per_pod_pss_kib]
        app = [v for r in reps for v in r.app_rss_kib]
        found = sum(r.found for r in reps)
        if not rss:
            out.append(Row(f"conmon + catatonit RSS per pod, {pods_(pods)}", "n/a", "-"))
            continue
        out.append(kib_row(f"conmon + catatonit RSS per pod, {pods_(pods)}", rss,
                           f"PSS median {mib(summarize(pss).median_s)}"
                           + (f"; app (sleep) RSS {mib(summarize(app).median_s)}" if app else "")
                           + (f"; found {found} of {pods * len(reps)}" if found != pods * len(reps) else ""),
                           " pods"))
    for pods, reps in levels.items():
        if pods < 2:
            continue
        level = reps[-1]
        gaps = summarize(level.start_gaps)
        out.append(Row(f"{pods} pods dropped at once -> all running", duration(level.all_running_s), "-", "-",
                       f"n=1; {pods / level.all_running_s:.1f} pods/s; between Started lines median "
                       f"{duration(gaps.median_s)}, p95 {duration(gaps.p95_s)}"))
    return out


def measure_podman(base: Path, podman: str) -> list[float]:
    """`podman kube play` of the start pod, from the call to the first act (uptime), then `kube down`."""
    samples = []
    for i in range(START_WARMUPS + START_RUNS):
        name = f"podman-start-{i:02d}"
        path = base / f"{name}.yaml"
        path.write_text(manifest(name, ["sh", "-c", START_SCRIPT]))
        t_boot = boottime()
        run_quiet([podman, "kube", "play", str(path)], check=True, timeout=120)
        out = wait_for(lambda: subprocess.run([podman, "logs", f"{name}-{CONTAINER}"], capture_output=True,
                                              text=True).stdout.strip(), timeout=30, what="podman logs")
        if i >= START_WARMUPS:
            samples.append(float(out.split()[0]) - t_boot)
        run_quiet([podman, "kube", "down", str(path)], timeout=120)
    return samples


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_runtime needs root (runc, conmon, cgroups, overlay mounts)")
    bins = find_binaries()
    podman = shutil.which("podman")
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-runtime-", dir="/tmp"))
    node = Node(base / "node", base / "busybox.tar")
    refs: References | None = None
    problems: list[str] = []
    result_start: StartResult | None = None
    result_crash: CrashResult | None = None
    levels: dict[int, list[Level]] = {}
    daemon_rss = {"started": 0, "idle": 0}
    podman_text = "not installed"
    stop_code: int | None = None
    failure: BaseException | None = None
    check = Check([], [], [], 0.0)
    stale_sockets = 0
    try:
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(node.busybox_tar), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
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
        time.sleep(SETTLE_S)
        daemon_rss["idle"] = status_kib(node.proc.pid, "VmRSS") or 0
        for pods in MEMORY_LEVELS:
            levels[pods] = [measure_level(node, pods, rep) for rep in range(LEVEL_REPS.get(pods, 1))]
        if sorted(os.listdir(layer)) != layer_listing:
            problems.append("the busybox layer used as the references' read-only root changed")
        if podman:
            podman_samples = measure_podman(base, podman)
            ps = summarize(podman_samples)
            podman_text = f"{duration(ps.median_s)} median, {duration(ps.p95_s)} p95 (n={ps.n})"
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
        "memory: each level starts from zero pods, its manifests written in one burst; read "
        f"{SETTLE_S:g} s after the last Started; RSS counts shared pages in every process, PSS shares them out",
        cleanup,
        f"total time {time.monotonic() - began:.0f} s",
    ] + problems
    print_table("bench_runtime: real pods (runc + conmon + catatonit) against `kubelite serve --runtime runc`",
                rows(result_start, result_crash, refs, levels, daemon_rss, podman_text), notes=notes)
    if check.left:
        sys.exit(1)


if __name__ == "__main__":
    main()
