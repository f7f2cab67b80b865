"""kubelite's fault suite on real containers (root, runc, conmon, catatonit, busybox).

  1. kubelite killed with -9 while 50 pods run and some crash: nothing restarted because of it, every
     exit that happened meanwhile recorded with its real exit code, restart counts right;
  2. manifest churn (creates, edits, renames, deletions, invalid files) with kubelite running: at the
     end the pods match the directory and nothing of a gone pod is left on the machine;
  4. the state database deleted, damaged, or its disk full;
  5. conmon or runc failing: a clear error on the affected pod, the other pods untouched;
  6. a manifest uid that leads out of the state root; a container setting the host's clock.

Each test owns its state root, run dir and cgroup parent (tmp_path), ends every process, mount and
cgroup it made in a `finally`, and bounds every wait. Each container records every start in its
pod's /dev/shm (a tmpfs shared by the pod's containers that lives as long as the sandbox), which the
tests read from the host: the ground truth for "was this container restarted?".

The default run takes a few minutes; KUBELITE_SLOW_TESTS=1 adds the long churn (1,000 changes
within a minute).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from kubelite.runtime import linux
from kubelite.runtime.oci import find_binaries, instance_name
from tests.real import REPO, SEARCH, Node, container, leftovers, pod, wait_for
from tests.test_faults import ManifestChurn

pytestmark = pytest.mark.real
SLOW = os.environ.get("KUBELITE_SLOW_TESTS") == "1"

#: Each start of a container adds a line to its pod's /dev/shm/starts; SIGTERM ends it at once.
STEADY = "echo start >> /dev/shm/starts; trap 'exit 0' TERM; sleep 3600 & wait"


def ends_on_term_with(code: int) -> str:
    return f"echo start >> /dev/shm/starts; trap 'exit {code}' TERM; sleep 3600 & wait"


CRASHER = "echo start >> /dev/shm/starts; sleep 1; exit 3"


# ====================================================================== helpers


def starts(run_dir: Path) -> dict[str, int]:
    """Pod name → how many times its containers started, from each live sandbox's /dev/shm/starts."""
    counts: dict[str, int] = {}
    for record in run_dir.glob("sandboxes/*/record.json"):
        try:
            data = json.loads(record.read_text())
            lines = (record.parent / "shm" / "starts").read_text().count("start\n")
        except (OSError, ValueError):
            continue
        if not data.get("stopped"):
            counts[data["name"]] = counts.get(data["name"], 0) + lines
    return counts


def mounts_below(*dirs: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if any(point == str(d) or point.startswith(str(d) + "/") for d in dirs):
            found.append(point)
    return found


def force_cleanup(root: Path, run_dir: Path) -> list[str]:
    """The last resort after a failure: end what this instance left — its containers' and conmon's
    processes (by PID and start time, from its own records), its runc containers, its mounts and
    its cgroups. Touches nothing else."""
    done = []
    for record in run_dir.glob("*/*/record.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        for pid, start in ((data.get("pid", 0), data.get("pid_start", 0)),
                           (data.get("conmon_pid", 0), data.get("conmon_start", 0))):
            if pid and linux.alive(pid, start):
                os.kill(pid, signal.SIGKILL)
                done.append(f"killed {pid}")
    time.sleep(0.2)
    runc = shutil.which("runc", path=SEARCH)
    if runc and (run_dir / "runc").exists():
        listed = subprocess.run([runc, "--root", str(run_dir / "runc"), "list", "-q"], capture_output=True, text=True,
                                timeout=30).stdout.split()
        for cid in listed:
            subprocess.run([runc, "--root", str(run_dir / "runc"), "delete", "--force", cid], capture_output=True,
                           timeout=30)
            done.append(f"runc delete {cid}")
    for point in sorted(mounts_below(root, run_dir), key=len, reverse=True):
        linux.unmount(Path(point))
        done.append(f"unmounted {point}")
    linux.remove_cgroup(f"/{instance_name(root)}")
    return done


class Kubelite:
    """`kubelite serve --runtime runc` as a subprocess, with its own directories and log."""

    def __init__(self, tmp: Path, busybox: Path, *serve_args: str, root: Path | None = None) -> None:
        self.tmp = tmp
        self.manifests, self.root, self.run_dir = tmp / "manifests", root or tmp / "state", tmp / "run"
        self.manifests.mkdir(exist_ok=True)
        self.env = {**os.environ, "KUBELITE_ROOT": str(self.root), "KUBELITE_RUN_DIR": str(self.run_dir),
                    "KUBELITE_MANIFESTS": str(self.manifests), "PYTHONPATH": str(REPO)}
        self.serve_args = serve_args
        self.log_path = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        loaded = self.cli("image", "load", "-i", str(busybox))
        assert loaded.returncode == 0, loaded.stderr

    @property
    def db(self) -> Path:
        return self.root / "kubelite.db"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=REPO)

    def start(self) -> None:
        self.runs += 1
        with open(self.log_path, "a") as log:
            log.write(f"=== run {self.runs}\n")
            log.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "runc",
                                          "--network", "none", *self.serve_args], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def log(self, run: int | None = None) -> str:
        """The daemon's log: of one run, or all of it."""
        text = self.log_path.read_text() if self.log_path.exists() else ""
        if run is None:
            return text
        return text.partition(f"=== run {run}\n")[2].partition(f"=== run {run + 1}\n")[0]

    def write(self, doc: dict[str, Any]) -> Path:
        path = self.manifests / f"{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def pods(self) -> dict[str, dict[str, Any]]:
        out = self.cli("get", "pods", "-o", "json")
        return {p["metadata"]["name"]: p for p in json.loads(out.stdout)["items"]} if out.returncode == 0 else {}

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Pod name → its (only) container's status."""
        return {name: p["status"]["containerStatuses"][0] for name, p in self.pods().items()
                if p.get("status", {}).get("containerStatuses")}

    def cleanup(self) -> list[str]:
        """Delete every manifest, let kubelite remove the pods, stop it; what is left of this instance."""
        for path in self.manifests.iterdir():
            path.unlink()
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            wait_for(lambda: not self.pods() and not list(self.run_dir.glob("containers/*/record.json")),
                     timeout=90, what="every pod to be removed")
        finally:
            self.stop()
        return leftovers(self.root, self.run_dir, instance_name(self.root))


@contextmanager
def kubelite(tmp: Path, busybox: Path, *serve_args: str, root: Path | None = None) -> Iterator[Kubelite]:
    k = Kubelite(tmp, busybox, *serve_args, root=root)
    left: list[str] = ["cleanup did not finish"]
    try:
        yield k
    finally:
        try:
            left = k.cleanup()
        finally:
            if k.proc is not None:
                k.stop(signal.SIGKILL)
            forced = force_cleanup(k.root, k.run_dir)
        assert left == [], f"left behind: {left} (then force-cleaned: {forced})"


def finished(status: dict[str, Any]) -> float:
    text = status["lastState"]["terminated"]["finishedAt"]
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


# ====================================================================== 1. kill -9 with 50 pods


def test_kill_9_with_50_pods_running_and_crashing_restarts_nothing_and_records_every_exit(tmp_path, busybox):
    steady = [f"steady-{i:02d}" for i in range(40)]
    victims = {f"victim-{i}": 10 + i for i in range(4)}          # ended by SIGTERM with these codes
    victims["victim-kill"] = 137                                # ended by SIGKILL
    crashers = [f"crasher-{i}" for i in range(5)]               # exit 3 after 1 s, forever
    with kubelite(tmp_path, busybox, "--backoff-initial", "1", "--backoff-max", "2") as k:
        for name in steady:
            k.write(pod(name, container("app", STEADY)))
        for name, code in victims.items():
            k.write(pod(name, container("app", ends_on_term_with(code if code != 137 else 0))))
        for name in crashers:
            k.write(pod(name, container("app", CRASHER)))
        k.start()

        def all_up() -> bool:
            s = k.statuses()
            return len(s) == 50 and all("running" in s[n]["state"] and s[n]["restartCount"] == 0
                                        for n in steady + list(victims)) \
                and all(s[n]["restartCount"] >= 1 for n in crashers)
        wait_for(all_up, timeout=180, what="50 pods up, the crashers crash-looping")
        before = k.statuses()
        k.stop(signal.SIGKILL)                                  # kubelite dies; conmon and the containers live on
        for name, code in victims.items():                      # exits while kubelite is down
            killed = k.cli("kill", name, "-s", "KILL" if code == 137 else "TERM")
            assert killed.returncode == 0, killed.stderr
        time.sleep(2.5)                                         # every crasher's attempt (1 s) exits meanwhile
        down_until = time.time()
        k.start()

        def recovered() -> bool:
            s = k.statuses()
            return len(s) == 50 and all("running" in s[n]["state"] and s[n]["restartCount"] == 1 for n in victims)
        wait_for(recovered, timeout=120, what="the victims to be restarted once")
        after = k.statuses()
        counted = starts(k.run_dir)
        for name in steady:
            assert (after[name]["containerID"], after[name]["restartCount"]) == \
                (before[name]["containerID"], 0), f"{name} was restarted"
            assert "running" in after[name]["state"] and counted[name] == 1, f"{name} started {counted[name]} times"
        for name, code in victims.items():
            last = after[name]["lastState"]["terminated"]
            assert (last["exitCode"], last["containerID"]) == (code, before[name]["containerID"]), name
            assert finished(after[name]) <= down_until + 1, f"{name}: the exit is recorded with the time it happened"
            assert counted[name] == 2, f"{name} started {counted[name]} times"

        k.stop()                                                # freeze: compare the record with the truth
        time.sleep(1.5)
        frozen = k.statuses()
        counted = starts(k.run_dir)
        for name in crashers:
            s = frozen[name]
            assert s["restartCount"] >= before[name]["restartCount"]
            assert counted[name] == s["restartCount"] + 1, \
                f"{name}: {counted[name]} starts, but restartCount {s['restartCount']}"
            assert (s["lastState"]["terminated"]["exitCode"], s["lastState"]["terminated"]["reason"]) == (3, "Error")
        with closing(sqlite3.connect(f"file:{k.db}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT exit_code, reason FROM containers WHERE state = 'exited'").fetchall()
        assert rows and all(row in ((3, "Error"), (137, "Error")) or row[0] in victims.values() for row in rows), rows
        second = k.log(2)
        assert "ContainerStatusUnknown" not in second and "orphan" not in second, second
        assert "Traceback" not in k.log()


# ====================================================================== 2. churn


def real_doc(name: str, rng: random.Random) -> dict[str, Any]:
    """A pod in one of a few versions: its container's command, a second container, the hostname
    (a pod-level change: the pod is replaced) and labels (nothing restarts) vary."""
    containers = [container("app", f"trap 'exit 0' TERM; sleep {3600 + rng.randrange(3)} & wait")]
    if rng.random() < 0.2:
        containers.append(container("side", "trap 'exit 0' TERM; sleep 3600 & wait"))
    spec: dict[str, Any] = {}
    if rng.random() < 0.3:
        spec["hostname"] = rng.choice(["ha", "hb"])
    doc = pod(name, *containers, **spec)
    if rng.random() < 0.3:
        doc["metadata"]["labels"] = {"tier": rng.choice(["a", "b"])}
    return doc


class Loop:
    """The daemon's loop around an in-process agent: the watcher hints, passes run as they are due."""

    def __init__(self, node: Node) -> None:
        from kubelite.sources.watch import ManifestWatcher

        self.node = node
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.passes = 0
        node.runtime.set_exit_hint(node.agent.hint_runtime)
        self.watcher = ManifestWatcher(node.manifests, node.agent.hint_manifests)
        self.thread = threading.Thread(target=self._run, name="agent-loop", daemon=True)

    def __enter__(self) -> "Loop":
        self.watcher.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.node.agent.wake.set()
        self.thread.join(timeout=120)
        self.watcher.stop()
        assert not self.thread.is_alive(), "a reconcile pass did not end within 120 s"

    def _run(self) -> None:
        agent = self.node.agent
        while not self.stop.is_set():
            try:
                wake = agent.run_once(wait=False)   # as the daemon: pod workers wake the loop
                self.passes += 1
            except Exception:  # noqa: BLE001 — as the daemon: log, pause, go on
                self.errors.append(traceback.format_exc())
                time.sleep(1.0)
                continue
            timeout = 1.0 if wake is None else min(1.0, max(0.0, (wake - datetime.now(timezone.utc)).total_seconds()))
            if timeout > 0:
                agent.wake.wait(timeout)


def gone_pod_remains(node: Node, live: set[str]) -> list[str]:
    """Anything on the machine that belongs to a pod not in `live` (uids): mounts, conmon, cgroups, files."""
    found = []
    live_cids = {c.id for c in node.runtime.list_containers() if c.uid in live}
    live_sids = {s.id for s in node.runtime.list_sandboxes() if s.uid in live}
    for point in mounts_below(node.root, node.run_dir):
        rel = Path(point).relative_to(node.root if point.startswith(str(node.root)) else node.run_dir).parts
        if rel[:1] == ("pods",) and (rel[1] not in live or rel[3] not in live_cids):
            found.append(f"mount {point}")
        elif rel[:1] == ("sandboxes",) and rel[1] not in live_sids:
            found.append(f"mount {point}")
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    for line in ps.splitlines():
        if "conmon" in line and str(node.run_dir) in line and not any(cid in line for cid in live_cids):
            found.append(f"conmon {line.strip()}")
    instance = node.runtime.instance
    for base in linux.cgroup_dirs(f"/{instance}"):   # v1 controllers and v2 alike
        found += [f"cgroup {d}" for d in base.iterdir()   # conmon's cgroup holds the live pods' monitors
                  if d.is_dir() and d.name != "conmon" and d.name.removeprefix("pod") not in live]
    for uid_dir in (node.root / "pods").glob("*"):
        if uid_dir.name not in live:
            found.append(f"layer dir {uid_dir}")
    for log_dir in (node.root / "logs").glob("*"):
        if log_dir.name.rpartition("_")[2] not in live:
            found.append(f"log dir {log_dir}")
    for kind, ids in (("containers", live_cids), ("sandboxes", live_sids)):
        found += [f"run dir {d}" for d in (node.run_dir / kind).glob("*") if d.name not in ids]
    return found


def churn(tmp_path: Path, busybox: Path, *, changes: int, within_s: float, max_files: int, settle_s: float,
          seed: int) -> None:
    node = Node(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox).start()
    left: list[str] = ["close did not finish"]
    try:
        rng = random.Random(seed)
        ch = ManifestChurn(node.manifests, rng, real_doc, max_files=max_files)
        with Loop(node) as loop:
            started = time.monotonic()
            for i in range(changes):
                ch.step()
                pause = started + within_s * (i + 1) / changes - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            took = time.monotonic() - started
        assert took < within_s + 5, f"{changes} changes took {took:.1f}s"
        assert loop.errors == [], "reconcile passes failed:\n" + "\n".join(loop.errors[:3])
        node.agent.hint_manifests()
        try:
            node.until(lambda: not ch.mismatches(node.agent), timeout=settle_s, what="the pods to match the directory")
        except AssertionError:
            raise AssertionError(f"{ch.summary()}; still different: {ch.mismatches(node.agent)}") from None
        live = set(node.agent.pods)
        print(f"\nchurn: {ch.summary()}; {loop.passes} passes; {len(live)} pods at the end")
        assert gone_pod_remains(node, live) == []
        assert ch.done["create"] and ch.done["edit"] and ch.done["rename"] and ch.done["delete"]
    finally:
        try:
            for path in node.manifests.iterdir():
                path.unlink()
            left = node.close()
        finally:
            forced = force_cleanup(node.root, node.run_dir)
    assert left == [], f"left behind: {left} (then force-cleaned: {forced})"


def test_manifest_churn_ends_with_the_pods_of_the_directory_and_nothing_of_the_others(tmp_path, busybox):
    churn(tmp_path, busybox, changes=200, within_s=20, max_files=12, settle_s=150, seed=7)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="the long variant: set KUBELITE_SLOW_TESTS=1")
def test_manifest_churn_1000_changes_within_a_minute(tmp_path, busybox):
    churn(tmp_path, busybox, changes=1000, within_s=60, max_files=30, settle_s=400, seed=11)


# ====================================================================== 4. state loss and damage


def test_a_deleted_database_is_rebuilt_without_restarting_any_container(tmp_path, busybox):
    with kubelite(tmp_path, busybox) as k:
        for name in ("steady-a", "steady-b"):
            k.write(pod(name, container("app", STEADY)))
        k.write(pod("victim", container("app", STEADY)))
        k.start()
        wait_for(lambda: all("running" in s["state"] for s in k.statuses().values()) and len(k.statuses()) == 3,
                 timeout=60, what="three pods running")
        assert k.cli("kill", "victim", "-s", "KILL").returncode == 0
        wait_for(lambda: k.statuses().get("victim", {}).get("restartCount") == 1
                 and "running" in k.statuses()["victim"]["state"], timeout=60, what="victim restarted once")
        before = k.statuses()
        for name in ("kubelite.db", "kubelite.db-wal", "kubelite.db-shm"):
            (k.root / name).unlink(missing_ok=True)            # deleted while kubelite and the pods run
        time.sleep(1)
        k.stop(signal.SIGKILL)
        k.start()
        wait_for(lambda: len(k.statuses()) == 3 and all("running" in s["state"] for s in k.statuses().values()),
                 timeout=60, what="the pods back in the new database")
        time.sleep(2)                                           # a few more passes: still nothing restarted
        after = k.statuses()
        assert {n: (s["containerID"], s["restartCount"]) for n, s in after.items()} == \
            {n: (s["containerID"], s["restartCount"]) for n, s in before.items()}
        assert starts(k.run_dir) == {"steady-a": 1, "steady-b": 1, "victim": 2}
        assert after["victim"]["lastState"]["terminated"]["exitCode"] == 137, "the earlier attempt is adopted too"
        assert "orphan" not in k.log(2)


def _damage_pods_pages(db: Path) -> None:
    con = sqlite3.connect(db)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    root_page = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'pods'").fetchone()[0]
    con.close()
    with open(db, "r+b") as f:
        f.seek((root_page - 1) * page)
        f.write(random.Random(4).randbytes(page))


def _damage_header(db: Path) -> None:
    with open(db, "r+b") as f:
        f.write(random.Random(5).randbytes(100))


@pytest.mark.parametrize("damage", [
    _damage_header,
    _damage_pods_pages,
], ids=["random-header", "random-pods-pages"])
def test_a_damaged_database_is_named_in_one_line_and_no_pod_is_forgotten(tmp_path, busybox, damage):
    with kubelite(tmp_path, busybox) as k:
        for i in range(8):
            doc = pod(f"p{i}", container("app", STEADY))
            doc["metadata"]["annotations"] = {"filler": "x" * 2000}   # the pods table spans several pages
            k.write(doc)
        k.start()
        wait_for(lambda: len(k.statuses()) == 8 and all("running" in s["state"] for s in k.statuses().values()),
                 timeout=60, what="eight pods running")
        before = {n: s["containerID"] for n, s in k.statuses().items()}
        assert k.stop() == 0                                    # a clean stop: everything is in the main file
        damage(k.db)
        try:
            k.start()
            try:
                code = k.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                code = None
            text = k.log(2).strip()
            if code is not None:                                # refused to start: one line, naming the file
                k.proc = None
                assert code != 0 and len(text.splitlines()) == 1 and str(k.db) in text, text
                assert starts(k.run_dir) == {f"p{i}": 1 for i in range(8)}, "the containers were not touched"
            else:                                               # or recovered: and said so, naming the file
                assert str(k.db) in text, text
        finally:
            if k.proc is None and k.db.exists():                # what the message asks the operator to do
                k.db.rename(k.db.with_name("kubelite.db.damaged"))
                for extra in ("kubelite.db-wal", "kubelite.db-shm"):
                    (k.root / extra).unlink(missing_ok=True)
        if k.proc is None:
            k.start()
        wait_for(lambda: len(k.statuses()) == 8 and all("running" in s["state"] for s in k.statuses().values()),
                 timeout=60, what="the pods back")
        assert {n: s["containerID"] for n, s in k.statuses().items()} == before
        assert starts(k.run_dir) == {f"p{i}": 1 for i in range(8)}


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True,
                   timeout=30)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=30)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` with one file until ENOSPC."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0]


def test_a_full_disk_while_writing_state_corrupts_nothing_and_a_restart_sets_the_record_straight(tmp_path, busybox):
    """What happens: each pass that has something to write fails at COMMIT ('database or disk is
    full'), logged with a traceback, retried every second; the containers are started all the same,
    and once. What the database shows stays behind until kubelite is restarted (test_faults.py has
    that as an expected failure); it is never damaged."""
    with small_tmpfs(tmp_path / "disk", "24m") as disk:
        root = disk / "state"
        with kubelite(tmp_path, busybox, root=root) as k:
            k.write(pod("steady", container("app", STEADY)))
            k.write(pod("victim", container("app", STEADY)))
            k.start()
            wait_for(lambda: len(k.statuses()) == 2 and all("running" in s["state"] for s in k.statuses().values()),
                     timeout=60, what="two pods running")
            before = k.statuses()
            filler = fill(disk)
            try:
                assert k.cli("kill", "victim", "-s", "KILL").returncode == 0        # state to write: an exit,
                k.write(pod("late", container("app", STEADY)))                      # a new pod
                wait_for(lambda: starts(k.run_dir) == {"steady": 1, "victim": 2, "late": 1}, timeout=30,
                         what="the containers to be started even so")
                time.sleep(3)                                                        # a few failing passes
                assert k.proc.poll() is None, "kubelite exited on a full disk:\n" + k.log(1)[-3000:]
                assert starts(k.run_dir) == {"steady": 1, "victim": 2, "late": 1}, "started once, not once a pass"
                assert integrity(k.db) == "ok"
                assert "database or disk is full" in k.log(1)
            finally:
                filler.unlink()
            time.sleep(3)
            assert k.proc.poll() is None and integrity(k.db) == "ok"
            assert k.statuses()["steady"]["containerID"] == before["steady"]["containerID"]
            k.stop()
            k.start()
            wait_for(lambda: len(k.statuses()) == 3 and k.statuses()["victim"]["restartCount"] == 1
                     and all("running" in s["state"] for s in k.statuses().values()),
                     timeout=60, what="the record straight after a restart")
            assert k.statuses()["victim"]["lastState"]["terminated"]["exitCode"] == 137
            assert starts(k.run_dir) == {"steady": 1, "victim": 2, "late": 1}, "the restart restarted nothing"
            assert integrity(k.db) == "ok"


# ====================================================================== 5. a failing runtime


@dataclass
class BinNode(Node):
    """A Node whose OCI runtime uses the given binaries (a broken conmon or runc, say)."""

    binaries: dict[str, str] | None = None

    def start(self) -> "BinNode":
        from kubelite.agent.agent import Agent, AgentConfig
        from kubelite.runtime.images import ImageStore
        from kubelite.runtime.oci import OCIRuntime
        from kubelite.store.store import Store

        self.manifests.mkdir(parents=True, exist_ok=True)
        images = ImageStore(self.root)
        if images.get("busybox:latest") is None:
            images.load(self.busybox)
        self.runtime = OCIRuntime(root=self.root, run_dir=self.run_dir, images=images, binaries=self.binaries)
        self.store = Store(self.root)
        self.agent = Agent(store=self.store, runtime=self.runtime,
                           config=AgentConfig(manifests=self.manifests, root=self.root, node_name="test"))
        return self

    def restart(self, binaries: dict[str, str]) -> None:
        """kubelite restarted with other binaries; the pods keep running meanwhile."""
        self.runtime.close()
        self.store.close()
        self.binaries = binaries
        self.start()


def script(path: Path, text: str) -> str:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return str(path)


def test_a_failing_conmon_or_runc_gives_a_clear_error_on_the_new_pod_and_leaves_the_others_alone(tmp_path, busybox):
    good = find_binaries()
    bins = tmp_path / "bin"
    bins.mkdir()
    # exits 1 — after a moment: one that exits at once is a race in kubelite (test_faults.py has it)
    broken_conmon = script(bins / "conmon", "sleep 0.3\necho 'conmon: simulated failure' >&2\nexit 1\n")
    runc_create_fails = script(bins / "runc-create-fails", f"""for a in "$@"; do
  if [ "$a" = create ]; then echo 'runc create: simulated failure' >&2; exit 1; fi
done
exec {good['runc']} "$@"
""")
    broken_runc = script(bins / "runc", "echo 'runc: simulated failure' >&2\nexit 1\n")
    node = BinNode(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox, binaries=good).start()
    left: list[str] = ["close did not finish"]
    try:
        for name in ("steady-a", "steady-b"):
            node.write(pod(name, container("app", STEADY)))
        node.until(lambda: node.running("steady-a", "app") and node.running("steady-b", "app"), what="steady pods")
        steady = {n: node.container_id(n, "app") for n in ("steady-a", "steady-b")}

        def untouched() -> None:
            for n, cid in steady.items():
                assert node.running(n, "app") and node.container_id(n, "app") == cid, f"{n} was touched"
            assert starts(node.run_dir).get("steady-a") == 1 and starts(node.run_dir).get("steady-b") == 1

        def failed_events(reason: str) -> list[str]:
            return [r[0] for r in node.store.execute_sql(f"SELECT message FROM events WHERE reason = '{reason}'")]

        for phase, binaries, newcomer, expect in (
                ("conmon exits 1", {**good, "conmon": broken_conmon}, "new-1", "conmon: simulated failure"),
                ("runc create fails", {**good, "runc": runc_create_fails}, "new-2", "simulated failure")):
            node.restart(binaries)
            node.write(pod(newcomer, container("app", STEADY)))

            def create_error() -> bool:
                waiting = node.container(newcomer, "app").get("state", {}).get("waiting", {})
                return waiting.get("reason") == "CreateContainerError" and expect in waiting.get("message", "")
            node.until(create_error, timeout=30, what=f"{phase}: CreateContainerError on {newcomer}")
            assert any(expect in m for m in failed_events("Failed")), failed_events("Failed")
            print(f"\n{phase}: {newcomer}: {node.container(newcomer, 'app')['state']['waiting']}")
            untouched()
            uid = next(e.uid for e in node.agent.pods.values() if e.pod.metadata.name == newcomer)
            assert [m for m in mounts_below(node.root / "pods" / uid)] == [], "a failed create left its mount"

        node.restart({**good, "runc": broken_runc})             # runc fails outright: no sandbox either
        node.write(pod("new-3", container("app", STEADY)))
        node.until(lambda: any("runc: simulated failure" in m for m in failed_events("FailedCreatePodSandBox")),
                   timeout=30, what="FailedCreatePodSandBox on new-3")
        untouched()
        print(f"\nrunc fails: new-3: {failed_events('FailedCreatePodSandBox')}")

        node.restart(good)                                      # repaired: every pod runs
        node.until(lambda: all(node.running(n, "app") for n in ("new-1", "new-2", "new-3")), timeout=60,
                   what="the new pods to run once the binaries work")
        untouched()
    finally:
        try:
            if node.binaries != good:
                node.restart(good)
            left = node.close()
        finally:
            forced = force_cleanup(node.root, node.run_dir)
    assert left == [], f"left behind: {left} (then force-cleaned: {forced})"


# ====================================================================== 6. security


@pytest.fixture
def node(tmp_path, busybox):
    n = Node(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox).start()
    try:
        yield n
    finally:
        try:
            left = n.close()
        finally:
            forced = force_cleanup(n.root, n.run_dir)
        assert left == [], f"left behind: {left} (then force-cleaned: {forced})"


def _realtime_offset() -> float:
    return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)


def test_a_container_cannot_set_the_host_clock(node):
    offset = _realtime_offset()
    # two seconds ahead: visible if it ever worked, harmless to the machine if it did. (busybox's
    # `date -s` reports the failure but exits 0, so the message and the clock are what count.)
    node.write(pod("clock", container("app", 'date -s "@$(( $(date +%s) + 2 ))"'), restartPolicy="Never"))
    node.until(lambda: "terminated" in node.container("clock", "app").get("state", {}), what="date -s to finish")
    logs = node.cli("logs", "clock").stdout
    assert "date: can't set date: Operation not permitted" in logs, logs
    assert abs(_realtime_offset() - offset) < 0.5, "the host's clock moved"


def test_a_manifest_uid_cannot_make_kubelite_write_or_delete_outside_its_root(tmp_path, busybox):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "canary").write_text("not kubelite's\n")
    mine = {"manifests", "state", "run"}

    def outside() -> set[str]:
        return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                if p.relative_to(tmp_path).parts[0] not in mine}

    before = outside()
    n = Node(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox).start()
    left: list[str] = ["close did not finish"]
    try:
        doc = pod("evil", container("app", STEADY))
        doc["metadata"]["uid"] = "../../victim"
        n.write(doc)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not n.running("evil", "app"):
            n.step()
            time.sleep(0.1)
        written = outside() - before
    finally:
        try:
            left = n.close()
        finally:
            force_cleanup(n.root, n.run_dir)
            for point in sorted(mounts_below(tmp_path), key=len, reverse=True):
                linux.unmount(Path(point))
    canary = (victim / "canary").exists()
    assert left == []
    assert written == set(), f"kubelite wrote outside its root: {sorted(written)[:5]}"
    assert canary, "kubelite deleted a directory outside its root"
