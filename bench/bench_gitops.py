"""GitOps benchmark: a commit pushed to a git repository, until its pod runs under `kubelite serve --sync-repo`.

Measures, in one run (figures are printed, never asserted):

1. Commit pushed -> pod Running. A local bare repository and a work clone in a temporary
   directory; `kubelite serve --runtime fake --sync-repo <bare> --sync-ref main --sync-path
   manifests --sync-interval 1s` as a subprocess. Each round adds one pod manifest in the work
   clone, commits, waits and runs `git push`. The clock starts when `git push` returns and stops
   when the state database, read in-process with `kubelite.store.reader.Reader` every 20 ms,
   shows that pod with phase Running and the annotation `kubelite.io/commit` equal to the pushed
   commit. The latency depends mostly on where the push falls in the sync loop's cycle (the loop
   sleeps a full interval after each pass: its cycle is the interval plus one pass). Without a
   wait every push would fall just after a pass, because each round ends just after one; so each
   push is timed, from the daemon's log, to return u before a pass starts, with u spread evenly
   over one cycle: the phases pushes at random times would hit, without their sampling scatter
   (see `follow`). The daemon's INFO log timestamps split each round into stages: the applying
   pass (up to `sync: applied commit ...`), the agent creating the pod (up to `Started`), and the
   database write plus the poll. The expected median is about half the interval plus the apply
   time: half a cycle, plus the applying pass, plus the agent's part; the reference column adds up
   the stages' medians measured in the same run. The same again with `--sync-interval 0.2s`, on
   a fresh state root.
2. Idle CPU of the 1 s daemon between commits: utime + stime from /proc/<pid>/stat over 10 s
   with no commits (60 s with `--long` / KUBELITE_BENCH_LONG=1), as a percentage of one core.
   This includes the agent's own idle work (a sync pass that changed no file has its status
   written between the agent's passes). The git processes the sync loop runs are children: their
   CPU is given apart (cutime + cstime of the children reaped in the window), and the sum is set
   against the goal: at most 0.3 % of a core. Reference, same window: the same pods served by
   `kubelite serve --runtime fake` from a plain directory, without `--sync-repo`.
3. References, first, on a bare repository of their own (one pod, one more per new commit): a
   plain `git fetch` of it into a clone, by the same user (the floor of one sync pass), with
   nothing new and with one new commit; `git ls-remote` of the ref (what an idle pass runs for a
   remote not on this machine); and kubelite's own pass, `GitSync.sync_once()` in-process on a
   state root of its own, with nothing new right after a commit was applied (the tree is too fresh
   for its stat: git checks it; its median is the idle pass in the cycle above), with nothing new
   once the tree is older than RACY_S (no git process at all), and with one new commit applied.

Everything lives below one temporary directory in /tmp, which is removed at the end; the daemons
get SIGTERM. No root is needed; `git` must be installed. About 55 s (about two and a half minutes
with --long). Run: `bench/run gitops`, or `.venv/bin/python -m bench.bench_gitops [--long]` from
the repository root.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubelite.sources.gitsync import RACY_S, GitSync
from kubelite.store.reader import Reader

from bench.common import REPO, Row, cpu_ns, duration, print_table, record_summary, stop_process, summarize

#: Timed rounds per interval, after WARMUPS untimed ones.
ROUNDS = {1.0: 12, 0.2: 20}
WARMUPS = 1
POLL_S = 0.020
REF_RUNS = 10
LONG = "--long" in sys.argv[1:] or os.environ.get("KUBELITE_BENCH_LONG", "") not in ("", "0")
CPU_WINDOW_S = 60.0 if LONG else 10.0
#: The goal for the idle CPU at a 1 s interval, kubelite and its git processes together, % of a core.
IDLE_GOAL_PERCENT = 0.3
#: Pause after the last change before an idle-CPU window opens.
SETTLE_S = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROUND_TIMEOUT_S = 15.0
SEED = 20261128
COMMIT_ANNOTATION = "kubelite.io/commit"


# ---------------------------------------------------------------------- git


def git(*args: str, cwd: Path) -> str:
    """git as the bench user, with a fixed identity; no hooks, no signing, whatever the user's config says."""
    return subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
                           "-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null",
                           "-c", "commit.gpgsign=false", *args],
                          cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


def pod_yaml(name: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n"
            f"spec:\n  containers:\n  - name: app\n    image: busybox:1.36\n")


class Remote:
    """A bare repository and a work clone to commit in and push from."""

    def __init__(self, base: Path) -> None:
        self.bare = base / "remote.git"
        self.work = base / "work"
        git("init", "--quiet", "--bare", str(self.bare), cwd=base)
        git("init", "--quiet", str(self.work), cwd=base)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, name: str) -> str:
        """Add manifests/<name>.yaml and commit (not pushed); the new commit's SHA."""
        path = self.work / "manifests" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pod_yaml(name))
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "-m", f"add {name}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def push(self) -> None:
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=self.work)


# ---------------------------------------------------------------------- the daemon


def cpu_ticks(pid: int, *, children: bool = False) -> int:
    """utime + stime of `pid` (all threads), or cutime + cstime (children it reaped), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11  # proc(5) fields 14+15 (16+17); fields[0] is field 3
    return int(fields[first]) + int(fields[first + 1])


@dataclass(frozen=True)
class IdleCpu:
    window_s: float
    ticks: int
    child_ticks: int
    sched_ns: int

    def percent(self, ticks: int) -> float:
        return 100.0 * ticks / CLK_TCK / self.window_s

    @property
    def own(self) -> float:
        return self.percent(self.ticks)

    @property
    def children(self) -> float:
        return self.percent(self.child_ticks)

    @property
    def sched(self) -> float:
        return 100.0 * self.sched_ns / 1e9 / self.window_s


def parse_log_time(text: str) -> float:
    """`2026-11-28T08:11:25.615Z` (the daemon's UTC log time) as seconds since the epoch."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@dataclass
class Daemon:
    """`kubelite serve --runtime fake` on a state root, run dir and manifests path of its own."""

    base: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.root, self.run_dir = self.base / "state", self.base / "run"
        self.manifests = self.base / "etc" / "manifests"
        self.log_path = self.base / "serve.log"
        self.env = {**os.environ, "KUBELITE_ROOT": str(self.root), "KUBELITE_RUN_DIR": str(self.run_dir),
                    "KUBELITE_MANIFESTS": str(self.manifests), "PYTHONPATH": str(REPO)}
        self.reader: Reader | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake",
                                          *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self) -> int | None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.proc is None:
            return None
        code, self.proc = stop_process(self.proc), None
        return code

    def pod(self, name: str) -> dict[str, Any] | None:
        if self.reader is None:
            if not (self.root / "kubelite.db").exists():
                return None
            self.reader = Reader(self.root)
        found = self.reader.pods("default", name)
        return found[0] if found else None

    def running(self, name: str, commit: str | None = None) -> bool:
        pod = self.pod(name)
        if pod is None or pod.get("status", {}).get("phase") != "Running":
            return False
        return commit is None or pod["metadata"].get("annotations", {}).get(COMMIT_ANNOTATION) == commit

    def log_lines(self) -> list[tuple[float, str]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            stamp, _, rest = line.partition(" ")
            try:
                out.append((parse_log_time(stamp), rest))
            except ValueError:
                continue
        return out

    def log_time(self, needle: str) -> float | None:
        for stamp, text in self.log_lines():
            if needle in text:
                return stamp
        return None

    def last_log_time(self, needle: str) -> float | None:
        found = [stamp for stamp, text in self.log_lines() if needle in text]
        return found[-1] if found else None

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = ROUND_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kubelite serve exited with {self.proc.returncode} while waiting for {what}:\n"
                                   + self.log_path.read_text()[-3000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}:\n"
                                   + self.log_path.read_text()[-3000:])
            time.sleep(POLL_S)

    def idle_cpu(self) -> IdleCpu:
        pid = self.proc.pid
        began, ticks, kids, ns = time.monotonic(), cpu_ticks(pid), cpu_ticks(pid, children=True), cpu_ns(pid)
        time.sleep(CPU_WINDOW_S)
        ticks2, kids2, ns2, elapsed = cpu_ticks(pid), cpu_ticks(pid, children=True), cpu_ns(pid), \
            time.monotonic() - began
        if self.proc.poll() is not None:
            raise RuntimeError("the daemon exited during the idle-CPU window")
        return IdleCpu(elapsed, ticks2 - ticks, kids2 - kids, max(0, ns2 - ns))


# ---------------------------------------------------------------------- figure 1


@dataclass
class Latency:
    interval_s: float
    cycle_s: float                                         # interval + one pass with nothing new (reference)
    total: list[float] = field(default_factory=list)       # push returned -> Running read (perf_counter)
    to_pass: list[float] = field(default_factory=list)     # push returned -> the next pass starts (the push's phase)
    in_pass: list[float] = field(default_factory=list)     # the applying pass: its start -> "sync: applied" logged
    to_started: list[float] = field(default_factory=list)  # "sync: applied" -> "Started" logged
    to_seen: list[float] = field(default_factory=list)     # "Started" logged -> Running read
    push: list[float] = field(default_factory=list)        # `git push` itself (before the clock starts)
    after_idle_pass: int = 0                               # rounds pushed after the next (idle) pass
    pods: int = 0


def sync_args(remote: Remote, interval: str) -> list[str]:
    return ["--sync-repo", str(remote.bare), "--sync-ref", "main", "--sync-path", "manifests",
            "--sync-interval", interval]


def follow(daemon: Daemon, remote: Remote, interval_s: float, idle_pass_s: float, prefix: str,
           rng: random.Random) -> Latency:
    """WARMUPS + ROUNDS[interval_s] rounds of: commit, wait, push, poll until Running.

    The sync loop sleeps `interval_s` after each pass, so after the pass that applied the previous
    round (logged at A) the next one starts at A + interval, and then one every cycle (interval +
    one pass with nothing new). Each push is timed to return u before a pass starts, u spread evenly
    over one cycle ((k + 0.5)/n of it, shuffled): the phases that pushes at random times would hit,
    without the scatter of random sampling. When u is too long for the pass at A + interval, the
    push goes after that (idle) pass, u before the one that follows it.
    """
    cycle = interval_s + idle_pass_s
    result = Latency(interval_s, cycle)
    n = ROUNDS[interval_s]
    phases = [cycle * (k + 0.5) / n for k in range(n)]
    rng.shuffle(phases)
    phases = [cycle / 2] * WARMUPS + phases
    anchor = daemon.last_log_time("sync: applied commit")
    if anchor is None:
        raise RuntimeError("the daemon logged no applied commit")
    push_s = 0.025
    for i, u in enumerate(phases):
        name = f"{prefix}-{i:02d}"
        sha = remote.commit(name)
        pass_start = anchor + interval_s
        if pass_start - u - push_s < time.time() + 0.002:  # too late for that pass: push after it
            result.after_idle_pass += i >= WARMUPS
            while pass_start - u - push_s < time.time() + 0.002:
                pass_start += cycle
        time.sleep(max(0.0, pass_start - u - push_s - time.time()))
        push_began = time.perf_counter()
        remote.push()
        pushed, pushed_wall = time.perf_counter(), time.time()
        daemon.wait(lambda: daemon.running(name, sha), f"pod {name} (commit {sha[:12]}) Running")
        seen, seen_wall = time.perf_counter(), time.time()
        # the log lines may reach the file a moment after the state database shows the pod Running (the
        # watcher sees the swap and the agent starts the pod before the sync thread logs 'applied')
        daemon.wait(lambda: daemon.log_time(f"pod default/{name}: Started") is not None
                    and daemon.log_time(f"sync: applied commit {sha[:12]}") is not None,
                    f"{name}'s 'applied' and 'Started' logged", timeout=5)
        applied = daemon.log_time(f"sync: applied commit {sha[:12]}")
        started = daemon.log_time(f"pod default/{name}: Started")
        if applied is None or started is None:
            raise RuntimeError(f"round {name}: the daemon's log lacks 'applied' or 'Started':\n"
                               + daemon.log_path.read_text()[-3000:])
        push_s = pushed - push_began
        anchor = applied
        if i < WARMUPS:
            continue
        result.total.append(seen - pushed)
        result.push.append(push_s)
        result.to_pass.append(pass_start - pushed_wall)
        result.in_pass.append(applied - pass_start)
        result.to_started.append(max(0.0, started - applied))
        result.to_seen.append(max(0.0, seen_wall - started))
    result.pods = len(list((remote.work / "manifests").glob("*.yaml")))
    return result


# ---------------------------------------------------------------------- references


@dataclass
class References:
    fetch_none: list[float] = field(default_factory=list)
    fetch_one: list[float] = field(default_factory=list)
    pass_none: list[float] = field(default_factory=list)
    pass_one: list[float] = field(default_factory=list)
    ls_remote: list[float] = field(default_factory=list)
    pass_steady: list[float] = field(default_factory=list)


def references(base: Path) -> References:
    """Plain `git fetch` into a clone, and GitSync.sync_once() in-process, each nothing new / one new commit,
    on a repository of their own (one pod, then one more per new commit)."""
    out = References()
    base.mkdir()
    remote = Remote(base)
    remote.commit("ref-base")
    remote.push()
    clone = base / "fetch-clone"
    git("clone", "--quiet", str(remote.bare), str(clone), cwd=base)
    sync = GitSync(str(remote.bare), ref="main", path="manifests", root=base / "ref-state",
                   link=base / "ref-etc" / "manifests", interval_s=1.0)
    first = sync.sync_once()
    if first.outcome != "applied":
        raise RuntimeError(f"GitSync reference: first pass {first.outcome}: {first.message}")

    def fetch() -> None:
        git("fetch", "--quiet", "origin", cwd=clone)

    fetch()  # warm-up
    for i in range(REF_RUNS):
        began = time.perf_counter()
        fetch()
        out.fetch_none.append(time.perf_counter() - began)
        began = time.perf_counter()
        result = sync.sync_once()
        out.pass_none.append(time.perf_counter() - began)
        if result.outcome != "unchanged":
            raise RuntimeError(f"GitSync reference: expected unchanged, got {result.outcome}: {result.message}")
        remote.commit(f"ref-{i:02d}")
        remote.push()
        began = time.perf_counter()
        fetch()
        out.fetch_one.append(time.perf_counter() - began)
        began = time.perf_counter()
        result = sync.sync_once()
        out.pass_one.append(time.perf_counter() - began)
        if result.outcome != "applied":
            raise RuntimeError(f"GitSync reference: expected applied, got {result.outcome}: {result.message}")
    for _ in range(REF_RUNS):
        began = time.perf_counter()
        git("ls-remote", "origin", "main", cwd=clone)
        out.ls_remote.append(time.perf_counter() - began)
    time.sleep(RACY_S + 0.5)   # the last tree is no longer too fresh for its stat to tell
    sync.sync_once()           # the one git check of that tree
    for _ in range(REF_RUNS):
        began = time.perf_counter()
        result = sync.sync_once()
        out.pass_steady.append(time.perf_counter() - began)
        if result.outcome != "unchanged":
            raise RuntimeError(f"GitSync reference: expected unchanged, got {result.outcome}: {result.message}")
    return out


# ---------------------------------------------------------------------- report


def interval_label(interval_s: float) -> str:
    return f"{interval_s:g}s"


def expected(lat: Latency) -> tuple[float, str]:
    """The median to expect from this run's own stages, and how it is made up."""
    half = lat.cycle_s / 2
    applying = summarize(lat.in_pass).median_s
    agent = summarize([a + b for a, b in zip(lat.to_started, lat.to_seen)]).median_s
    return half + applying + agent, (f"cycle/2 {duration(half)} + applying pass {duration(applying)} + agent "
                                     f"{duration(agent)}")


def latency_rows(lat: Latency, refs: References) -> list[Row]:
    s = summarize(lat.total)
    n = f"n={s.n}"
    total, parts = expected(lat)
    idle = summarize(refs.pass_none).median_s
    return [
        Row.of(f"commit pushed -> pod Running, --sync-interval {interval_label(lat.interval_s)}", s, "-",
               f"{n}; expected ~ {duration(total)} = {parts}"),
        Row.of("  stage: pushed -> the next pass starts (set by the push time)", summarize(lat.to_pass), "-",
               f"{n}; spread over one cycle = interval + idle pass ({duration(idle)}); "
               f"{lat.after_idle_pass} pushed after an idle pass"),
        Row.of("  stage: applying pass -> 'sync: applied' logged", summarize(lat.in_pass), "-",
               f"{n}; fetch, worktree add, validate, swap, old tree removed; {lat.pods - s.n} -> {lat.pods} pods"),
        Row.of("  stage: 'sync: applied' -> 'Started' logged", summarize(lat.to_started), "-",
               f"{n}; hint, rescan, sandbox + container on the fake runtime"),
        Row.of("  stage: 'Started' logged -> Running read", summarize(lat.to_seen), "-",
               f"{n}; the rest of the pass, the state database write, the Reader poll every {POLL_S * 1000:g} ms"),
        Row.of("  (not timed) git push", summarize(lat.push), "-", f"{n}; before the clock starts"),
    ]


def verdict(cpu: IdleCpu) -> str:
    return "met" if cpu.own + cpu.children <= IDLE_GOAL_PERCENT else "missed"


def idle_row(label: str, cpu: IdleCpu, pods: int) -> Row:
    window = "--long" if LONG else "short; --long: 60 s"
    return Row(label, f"{cpu.own:.2f} %", "-", "-",
               f"n=1; {pods} pods; utime+stime {cpu.ticks} ticks of {1000 / CLK_TCK:g} ms over {cpu.window_s:.1f} s"
               f" ({window}), of one core; schedstat {cpu.sched:.3f} %; "
               f"children reaped (git) {cpu.child_ticks} ticks = {cpu.children:.2f} %")


def rows(runs: list[Latency], idle: IdleCpu, plain: IdleCpu, idle_pods: int, refs: References) -> list[Row]:
    out = [Row("1. commit pushed -> pod Running (`serve --sync-repo`, fake runtime)", "", "")]
    for lat in runs:
        out.extend(latency_rows(lat, refs))
    out.append(Row("2. idle between commits, --sync-interval 1s (agent's own idle work included)", "", ""))
    out.append(Row("kubelite serve --sync-repo: CPU idle, kubelite + git", f"{idle.own + idle.children:.2f} %", "-",
                   f"<= {IDLE_GOAL_PERCENT:g} % ({verdict(idle)})",
                   f"kubelite {idle.own:.2f} % + git {idle.children:.2f} %; without sync {plain.own:.2f} %"))
    out.append(idle_row("  kubelite serve --sync-repo: CPU idle, kubelite itself", idle, idle_pods))
    out.append(idle_row("ref: kubelite serve, plain directory, no sync", plain, idle_pods))
    out.append(Row("3. references: one sync pass", "", ""))
    for label, samples, what in (
            ("ref: git fetch into a clone, nothing new", refs.fetch_none, "plain `git fetch --quiet origin`"),
            ("ref: git fetch into a clone, one new commit", refs.fetch_one, "the floor of an applying pass"),
            ("ref: git ls-remote of the ref, nothing new", refs.ls_remote,
             "what an idle pass runs for a remote not on this machine (https, ssh)"),
            ("ref: GitSync.sync_once(), nothing new, tree just checked out", refs.pass_none,
             f"in-process: ref read in-process, drift check with git (the tree changed < {RACY_S:g} s ago)"),
            ("ref: GitSync.sync_once(), nothing new, steady", refs.pass_steady,
             "in-process: ref read in-process, the tree's lstat unchanged: no git process"),
            ("ref: GitSync.sync_once(), one new commit applied", refs.pass_one,
             "in-process: fetch, worktree add, validate, swap, old tree removed")):
        s = summarize(samples)
        out.append(Row.of(label, s, "-", f"n={s.n}; {what}"))
    return out


def summary_rows(runs: list[Latency], idle: IdleCpu, plain: IdleCpu, refs: References) -> list[Row]:
    fetch = duration(summarize(refs.fetch_one).median_s)
    out = []
    for lat in runs:
        s = summarize(lat.total)
        total, _parts = expected(lat)
        out.append(Row.of(f"7. gitops: commit pushed -> pod Running, interval {interval_label(lat.interval_s)}", s,
                          "-", f"n={s.n}; expected ~ {duration(total)} (cycle/2 + applying pass + agent); "
                          f"git fetch of one commit {fetch}"))
    window = f"{CPU_WINDOW_S:g} s" + (" (--long)" if LONG else "")
    out.append(Row("7. gitops: idle CPU, interval 1s, kubelite + git", f"{idle.own + idle.children:.2f} %", "-",
                   f"<= {IDLE_GOAL_PERCENT:g} % ({verdict(idle)})",
                   f"kubelite {idle.own:.2f} % + git children {idle.children:.2f} % of a core over {window}; "
                   f"without sync {plain.own:.2f} % (+ {plain.children:.2f} %)"))
    return out


# ---------------------------------------------------------------------- main


def main() -> None:
    if shutil.which("git") is None:
        sys.exit("bench_gitops: git is not installed (apt-get install git)")
    started = time.monotonic()
    rng = random.Random(SEED)
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-gitops-"))
    daemons: list[Daemon] = []
    problems: list[str] = []
    try:
        refs = references(base / "refs")
        idle_pass = summarize(refs.pass_none).median_s

        remote = Remote(base)
        remote.commit("base")
        remote.push()

        runs: list[Latency] = []
        one = Daemon(base / "node-1s", sync_args(remote, "1s"))
        daemons.append(one)
        one.start()
        one.wait(lambda: one.running("base"), "the first commit's pod Running", timeout=30)
        runs.append(follow(one, remote, 1.0, idle_pass, "one", rng))
        idle_pods = runs[0].pods
        time.sleep(SETTLE_S)
        idle = one.idle_cpu()
        if one.stop() != 0:
            problems.append("kubelite serve (1s) did not exit 0 at SIGTERM")

        # the reference: the same pods from a plain directory, no sync
        plain = Daemon(base / "node-plain", [])
        daemons.append(plain)
        shutil.copytree(remote.work / "manifests", plain.manifests)
        plain.start()
        names = [p.stem for p in plain.manifests.glob("*.yaml")]
        plain.wait(lambda: all(plain.running(n) for n in names), f"{len(names)} pods Running", timeout=30)
        time.sleep(SETTLE_S)
        plain_idle = plain.idle_cpu()
        if plain.stop() != 0:
            problems.append("kubelite serve (plain) did not exit 0 at SIGTERM")

        fast = Daemon(base / "node-0.2s", sync_args(remote, "0.2s"))
        daemons.append(fast)
        fast.start()
        last = sorted(names)[-1]
        fast.wait(lambda: fast.running(last), "the repository's pods Running", timeout=30)
        runs.append(follow(fast, remote, 0.2, idle_pass, "fast", rng))
        if fast.stop() != 0:
            problems.append("kubelite serve (0.2s) did not exit 0 at SIGTERM")
    finally:
        for daemon in daemons:
            daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
    if base.exists():
        problems.append(f"{base} could not be removed")

    notes = ["each round: commit in a work clone, wait, `git push` to a local bare repository; the clock runs from "
             "push returned to Running read",
             "each push returns u before a pass of the sync loop starts (pass starts: the previous 'applied' log "
             f"line + the interval, then every cycle), u = (k + 0.5)/n of a cycle, k shuffled (seed {SEED}): the "
             "phases random pushes would hit, without their sampling scatter",
             f"Running read in-process (kubelite.store.reader.Reader) every {POLL_S * 1000:g} ms, with the "
             f"pushed commit in {COMMIT_ANNOTATION}; {WARMUPS} untimed warm-up round per interval",
             "stages from the daemon's INFO log (ms, wall clock); the sync loop sleeps a full interval after "
             "each pass, so its cycle is the interval plus one pass; expected median: the stages' medians",
             "idle CPU: the daemon's own threads (utime+stime); the git processes of each sync pass are its "
             "children, given apart (cutime+cstime of those reaped in the window); a pass that changed no file "
             "has its status written between the agent's passes (no rescan); a periodic relist runs every 20 s",
             f"all in one temporary directory, removed; daemons stopped with SIGTERM; "
             f"{time.monotonic() - started:.0f} s in all",
             "wall clock (perf_counter); figures are measured, never asserted"]
    notes += [f"PROBLEM: {p}" for p in problems]
    print_table("bench_gitops: commit pushed -> pod running (kubelite serve --sync-repo, --runtime fake)",
                rows(runs, idle, plain_idle, idle_pods, refs), notes=notes)
    record_summary("gitops", summary_rows(runs, idle, plain_idle, refs))
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
