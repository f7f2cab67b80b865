"""kubelite's fault suite on the fake runtime (fast): manifest churn, state loss and damage, a failing
runtime, and what a manifest or a careless directory must not be able to do.

The agent is driven pass by pass under frozen time, as in test_agent.py; `kubelite serve` runs as a
subprocess where what is checked is what an operator sees (one clear line). The real-container
variants of these faults are in test_faults_real.py, which also uses `ManifestChurn` from here.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy.exc
import yaml

from kubelite.agent.agent import Agent
from kubelite.api.decode import DesiredPod, decode_document
from kubelite.core.types import ContainerState
from kubelite.errors import KubeliteError, StoreError
from kubelite.runtime.fake import Behavior
from kubelite.runtime.protocol import SandboxState
from kubelite.store.reader import Reader
from kubelite.store.store import Store
from tests.helpers import pod_doc
from tests.simulated import SimulatedNode, simulated_node

REPO = Path(__file__).resolve().parent.parent
DB_FILES = ("kubelite.db", "kubelite.db-wal", "kubelite.db-shm")


# ====================================================================== manifest churn (shared)


@dataclass
class ChurnFile:
    pod: str                      # the pod name of this file's lineage: no other file uses it
    valid: bool
    doc: dict[str, Any] | None    # the document of a valid file; None for an empty file


class ManifestChurn:
    """Random creates, edits, renames and deletions of manifest files, some invalid, in `directory` —
    and what the directory asks for at any moment.

    Every file defines at most one pod, whose name no other file ever uses, and paths are never
    reused; so the pods to run follow from the files alone. A valid file's pod must run exactly as
    written. An invalid file's pod may run only in a version that was once valid at that very path
    (kubelite keeps the last valid version it saw; whether it saw one depends on timing), or not at
    all. Files renamed to names that are not manifests (`x.yaml.bak`, dotfiles) are ignored by
    kubelite and stay in the directory.
    """

    def __init__(self, directory: Path, rng: random.Random, make_doc: Callable[[str, random.Random], dict[str, Any]],
                 *, max_files: int = 12, invalid_share: float = 0.2) -> None:
        self.directory, self.rng, self.make_doc = directory, rng, make_doc
        self.max_files, self.invalid_share = max_files, invalid_share
        self.files: dict[str, ChurnFile] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}   # absolute path → documents once valid there
        self.ignored: list[str] = []
        self.ids = itertools.count()
        self.done: Counter[str] = Counter()

    def path(self, name: str) -> str:
        return os.path.join(os.path.abspath(self.directory), name)

    # ------------------------------------------------------------------ operations

    def step(self) -> str:
        ops, weights = ["create", "edit", "rename", "delete"], [4, 4, 2, 2]
        if not self.files:
            ops, weights = ["create"], [1]
        elif len(self.files) >= self.max_files:
            ops, weights = ops[1:], weights[1:]
        op = self.rng.choices(ops, weights)[0]
        getattr(self, op)()
        self.done[op] += 1
        return op

    def create(self) -> None:
        n = next(self.ids)
        name = f"m{n:04d}.json" if self.rng.random() < 0.2 else f"m{n:04d}.yaml"
        self._write(name, f"p{n:04d}")

    def edit(self) -> None:
        name = self.rng.choice(sorted(self.files))
        self._write(name, self.files[name].pod)

    def rename(self) -> None:
        name = self.rng.choice(sorted(self.files))
        n = next(self.ids)
        if self.rng.random() < 0.2:   # out of kubelite's sight: a backup or an editor's swap file
            new = self.rng.choice([f"{name}.bak", f".{name}.swp", f"{name}~"]) + f".{n}"
            os.rename(self.path(name), self.path(new))
            self.ignored.append(new)
            del self.files[name]
            return
        new = f"m{n:04d}-r" + (".json" if name.endswith(".json") else self.rng.choice([".yaml", ".yml"]))
        os.rename(self.path(name), self.path(new))
        f = self.files.pop(name)
        self.files[new] = f
        if f.valid and f.doc is not None:
            self.history.setdefault(self.path(new), []).append(f.doc)

    def delete(self) -> None:
        name = self.rng.choice(sorted(self.files))
        os.unlink(self.path(name))
        del self.files[name]

    def _write(self, name: str, pod: str) -> None:
        json_file = name.endswith(".json")
        roll = self.rng.random()
        if roll < self.invalid_share:
            text, f = self._invalid(pod, json_file), ChurnFile(pod, False, None)
        elif roll < self.invalid_share + 0.03:
            text, f = "", ChurnFile(pod, True, None)     # an empty file: valid, and defines no pod
        else:
            doc = self.make_doc(pod, self.rng)
            text = json.dumps(doc, indent=1) if json_file else yaml.safe_dump(doc)
            f = ChurnFile(pod, True, doc)
            self.history.setdefault(self.path(name), []).append(doc)
        target = self.path(name)
        if self.rng.random() < 0.5:   # written in place (kubelite may read it half-written) ...
            with open(target, "w") as handle:
                handle.write(text)
        else:                         # ... or saved by rename, as editors do
            tmp = self.path(f".{name}.tmp{next(self.ids)}")
            with open(tmp, "w") as handle:
                handle.write(text)
            os.replace(tmp, target)
        self.files[name] = f

    def _invalid(self, pod: str, json_file: bool) -> str:
        kind = "json" if json_file else self.rng.choice(["yaml", "field", "kind", "duplicate"])
        doc = self.make_doc(pod, self.rng)
        if kind == "json":
            return json.dumps(doc)[:-7]
        if kind == "yaml":
            return f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}\nspec: [\n"
        if kind == "field":
            doc["spec"]["containers"][0]["name"] = "Not_A_Label"
            return yaml.safe_dump(doc)
        if kind == "kind":
            doc["kind"], doc["apiVersion"] = "Deployment", "apps/v1"
            return yaml.safe_dump(doc)
        return yaml.safe_dump_all([doc, doc])   # the same pod twice in one file

    # ------------------------------------------------------------------ what the directory asks for

    def expected(self) -> tuple[dict[str, DesiredPod], dict[str, list[DesiredPod]]]:
        """(uid → pod that must run, path of an invalid file → the versions it may still run)."""
        must: dict[str, DesiredPod] = {}
        may: dict[str, list[DesiredPod]] = {}
        for name, f in self.files.items():
            path = self.path(name)
            if f.valid:
                if f.doc is not None:
                    d = _decode(f.doc, path)
                    must[d.uid] = d
            else:
                may[path] = [_decode(doc, path) for doc in self.history.get(path, [])]
        return must, may

    def mismatches(self, agent: Agent) -> list[str]:
        """Every difference between the directory and what runs: in the agent and in its runtime."""
        must, may = self.expected()
        found: list[str] = []
        allowed: dict[str, DesiredPod] = {}
        for uid, d in must.items():
            entry = agent.pods.get(uid)
            if entry is None or entry.deleted_at is not None:
                found.append(f"pod {d.key} ({uid}) is not running")
            elif entry.desired.pod_hash != d.pod_hash:
                found.append(f"pod {d.key}: runs an older version")
            else:
                allowed[uid] = entry.desired
        for path, versions in may.items():
            for entry in agent.pods.values():
                if entry.source == path and entry.deleted_at is None:
                    if any(v.uid == entry.uid and v.pod_hash == entry.desired.pod_hash for v in versions):
                        allowed[entry.uid] = entry.desired
                    else:
                        found.append(f"pod {entry.key} runs from the invalid file {path} in a version never "
                                     "valid there")
        for uid, entry in agent.pods.items():
            if uid not in allowed:
                found.append(f"pod {entry.key} ({uid}, from {entry.source}) should not exist"
                             + (" (still terminating)" if entry.deleted_at else ""))
        running: dict[str, list[Any]] = {}
        for c in agent.runtime.list_containers():
            if c.uid not in allowed:
                found.append(f"runtime: container {c.id} ({c.name}, {c.state.value}) of a pod that is gone")
            elif c.state is ContainerState.RUNNING:
                running.setdefault(c.uid, []).append(c)
        for sb in agent.runtime.list_sandboxes():
            if sb.uid not in allowed:
                found.append(f"runtime: sandbox {sb.id} of a pod that is gone")
        for uid, d in allowed.items():
            wanted = {(name, h) for name, h in d.container_hashes.items()}
            have = {(c.name, c.spec_hash) for c in running.get(uid, [])}
            if have != wanted or len(running.get(uid, [])) != len(wanted):
                found.append(f"pod {d.key}: running containers {sorted(have)}, wanted {sorted(wanted)}")
            ready = [sb for sb in agent.runtime.list_sandboxes() if sb.uid == uid and sb.state is SandboxState.READY]
            if len(ready) != 1:
                found.append(f"pod {d.key}: {len(ready)} ready sandboxes")
        return found

    def summary(self) -> str:
        valid = sum(1 for f in self.files.values() if f.valid)
        return (f"{dict(self.done)}; at the end {len(self.files)} files ({valid} valid), "
                f"{len(self.ignored)} ignored")


def _decode(doc: dict[str, Any], path: str) -> DesiredPod:
    decoded = decode_document(json.loads(json.dumps(doc)), source=path)
    assert decoded.desired is not None, decoded.errors
    return decoded.desired


def fake_doc(pod: str, rng: random.Random) -> dict[str, Any]:
    """A valid pod in one of a few versions: containers, pod-level fields and labels vary."""
    doc = pod_doc(pod, containers=rng.choice([["app"], ["app"], ["app", "side"]]))
    doc["spec"]["containers"][0]["args"] = [f"v{rng.randrange(3)}"]          # a container-level change
    if rng.random() < 0.3:
        doc["spec"]["hostname"] = rng.choice(["ha", "hb"])                 # a pod-level change
    if rng.random() < 0.3:
        doc["metadata"]["labels"] = {"tier": rng.choice(["a", "b"])}       # restarts nothing
    return doc


# ====================================================================== the fake node


Fake = SimulatedNode


@pytest.fixture
def fake(tmp_path: Path):
    with simulated_node(tmp_path) as node:
        yield node


# ====================================================================== 2. churn


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_manifest_churn_ends_with_exactly_the_pods_the_directory_asks_for(fake, seed):
    rng = random.Random(seed)
    churn = ManifestChurn(fake.manifests, rng, fake_doc, max_files=15)
    for _ in range(400):
        churn.step()
        if rng.random() < 0.3:                  # the agent runs between some of the changes
            fake.agent.hint_manifests()
            fake.agent.run_once()
            if rng.random() < 0.3:
                fake.clock.tick(timedelta(seconds=rng.choice([0.5, 1, 3])))
    fake.agent.hint_manifests()
    fake.settle()
    fake.advance(3)                             # past every grace period
    fake.advance(30)                            # and through a full relist
    assert churn.mismatches(fake.agent) == [], churn.summary()
    must, may = churn.expected()
    live = set(fake.agent.pods)
    reader = Reader(fake.root)
    try:
        rows = {(p["metadata"]["uid"], p["status"]["phase"]) for p in reader.pods()}
    finally:
        reader.close()
    assert rows == {(uid, "Running") for uid in live}, "the database shows exactly the pods that run"
    assert set(must) <= live
    for table in ("containers", "sandboxes"):
        uids = {r[0] for r in fake.store.execute_sql(f"SELECT DISTINCT uid FROM {table}")}
        assert uids <= live, f"{table} rows of pods that are gone: {uids - live}"
    assert churn.done["create"] > 50 and churn.done["rename"] > 20 and churn.done["delete"] > 20


# ====================================================================== 4. state loss and damage


def _crashed_once(fake: Fake) -> None:
    """Pods a and b run; crashy's first attempt exited 3 and it runs again (restart count 1)."""
    fake.runtime.script("crashy", "app", Behavior(exit_after_s=5, exit_code=3), Behavior())
    for name in ("a", "b", "crashy"):
        fake.write(f"{name}.yaml", pod_doc(name))
    fake.settle()
    fake.advance(6)
    fake.advance(11)
    assert fake.containers()["crashy"]["restartCount"] == 1


def test_a_deleted_database_is_rebuilt_from_the_manifests_and_the_runtime_without_restarting_anything(fake):
    _crashed_once(fake)
    before = fake.containers()
    creates = fake.creates()
    fake.store.close()
    for name in DB_FILES:
        (fake.root / name).unlink(missing_ok=True)
    fake.restart_agent()
    fake.settle()
    fake.advance(30)
    after = fake.containers()
    assert fake.creates() == creates, "no container was created again"
    assert {n: (s["containerID"], s["restartCount"]) for n, s in after.items()} == \
        {n: (s["containerID"], s["restartCount"]) for n, s in before.items()}
    assert all("running" in s["state"] for s in after.values())
    assert after["crashy"]["lastState"]["terminated"]["exitCode"] == 3, "the exited attempt is adopted too"


def test_a_database_deleted_while_kubelite_runs_is_written_again(fake):
    _crashed_once(fake)
    for name in DB_FILES:
        (fake.root / name).unlink(missing_ok=True)
    fake.write("late.yaml", pod_doc("late"))
    fake.settle()
    fake.advance(30)
    assert set(fake.containers()) == {"a", "b", "crashy", "late"}


@contextmanager
def commits_fail(store: Store) -> Iterator[None]:
    """Every transaction of `store` fails at its end and rolls back, as on a full disk (SQLITE_FULL)."""
    original = store.transaction

    @contextmanager
    def transaction() -> Iterator[Store]:
        with original():
            yield store
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("database or disk is full"))

    store.transaction = transaction  # type: ignore[method-assign]
    try:
        yield
    finally:
        del store.transaction


def test_state_rolled_back_by_a_failed_commit_is_written_once_the_disk_has_room_again(fake):
    _crashed_once(fake)
    creates = fake.creates()
    with commits_fail(fake.store):
        fake.write("late.yaml", pod_doc("late"))
        b_id = fake.containers()["b"]["containerID"].partition("://")[2]
        fake.runtime.exit_container(b_id, 5)
        for _ in range(3):
            with pytest.raises(StoreError, match="cannot write the state database"):
                fake.agent.run_once()
    assert fake.creates() == creates + 2, "the pod and the restart happened, in the runtime"
    fake.settle()
    fake.advance(30)
    fake.advance(30)
    after = fake.containers()
    assert fake.creates() == creates + 2, "and only once"
    assert set(after) == {"a", "b", "crashy", "late"}
    assert after["b"]["restartCount"] == 1 and after["b"]["lastState"]["terminated"]["exitCode"] == 5


def _damage(db: Path, how: str) -> None:
    """Damage the state database (kubelite stopped, so everything is in the main file)."""
    size = db.stat().st_size
    rng = random.Random(how)
    with open(db, "r+b") as f:
        if how == "truncated-to-zero":
            f.truncate(0)
        elif how == "truncated-to-half":
            f.truncate(size // 2)
        elif how == "random-header":
            f.write(rng.randbytes(100))
        elif how == "random-pods-pages":        # random bytes over the pages of the pods table
            con = sqlite3.connect(db)
            page = con.execute("PRAGMA page_size").fetchone()[0]
            pages = [r[0] for r in con.execute("SELECT pageno FROM dbstat WHERE name = 'pods'")] \
                if _has_dbstat(con) else [con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'pods'")
                                          .fetchone()[0]]
            con.close()
            for pageno in pages:
                f.seek((pageno - 1) * page)
                f.write(rng.randbytes(page))
        else:
            raise AssertionError(how)


def _has_dbstat(con: sqlite3.Connection) -> bool:
    try:
        con.execute("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except sqlite3.Error:
        return False


def _many_pods(fake: Fake, count: int = 12) -> None:
    for i in range(count):
        doc = pod_doc(f"p{i:02d}")
        doc["metadata"]["annotations"] = {"filler": "x" * 1500}   # rows big enough to fill several pages
        fake.write(f"p{i:02d}.yaml", doc)
    fake.settle()
    fake.store.close()
    for name in DB_FILES[1:]:
        assert not (fake.root / name).exists(), "closing the store checkpoints the WAL into the main file"


@pytest.mark.parametrize("how", [
    "truncated-to-zero",
    "truncated-to-half",
    "random-header",
    "random-pods-pages",
])
def test_a_damaged_database_is_reported_in_one_line_naming_it_and_no_pod_is_forgotten(fake, how, caplog):
    _many_pods(fake)
    creates = fake.creates()
    running = {c.id for c in fake.runtime.list_containers() if c.state is ContainerState.RUNNING}
    db = fake.root / "kubelite.db"
    _damage(db, how)
    caplog.set_level(logging.INFO, logger="kubelite")
    try:
        fake.store = Store(fake.root)
        fake.agent = Agent(store=fake.store, runtime=fake.runtime, config=fake.agent.config)
    except KubeliteError as exc:                 # refuses to start: the CLI prints `error: <exc>`
        message = str(exc)
        assert str(db) in message and "\n" not in message, message
        assert {c.id for c in fake.runtime.list_containers() if c.state is ContainerState.RUNNING} == running
        return
    # or recovers: then it must have said so, and every pod must come back untouched
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(db) in r.getMessage()]
    assert said, f"kubelite opened the damaged database {db} without a word"
    fake.settle()
    fake.advance(30)
    assert fake.creates() == creates, "no container was created again"
    assert set(fake.containers()) == {f"p{i:02d}" for i in range(12)}


def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=20)


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "KUBELITE_ROOT": str(tmp_path / "state"), "KUBELITE_RUN_DIR": str(tmp_path / "run"),
           "KUBELITE_MANIFESTS": str(tmp_path / "manifests"), "PYTHONPATH": str(REPO)}
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO)


@pytest.mark.parametrize("how", ["random-header", "random-pods-pages",
                                 "truncated-to-half"])
def test_serve_and_get_pods_on_a_damaged_database_say_so_in_one_line_naming_the_file(fake, tmp_path, how):
    _many_pods(fake)
    db = fake.root / "kubelite.db"
    _damage(db, how)
    env = _cli_env(tmp_path)
    got = _cli(env, "get", "pods")
    assert got.returncode == 1 and got.stderr.count("\n") == 1 and str(db) in got.stderr, got.stderr
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake"], env=env,
                                stdout=subprocess.DEVNULL, stderr=out, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline and str(db) not in log.read_text():
            time.sleep(0.1)
    finally:
        _stop(proc)
    text = log.read_text()
    if proc.returncode not in (0, -signal.SIGTERM):       # refused to start: one line, naming the file
        assert text.count("\n") == 1 and str(db) in text and text.startswith("error: "), text
    else:                                                   # or started: its log names the damaged file
        assert str(db) in text, text


# ====================================================================== 5. a failing runtime


def test_a_container_that_cannot_be_created_shows_createcontainererror_and_other_pods_are_untouched(fake):
    fake.write("a.yaml", pod_doc("a"))
    fake.write("b.yaml", pod_doc("b"))
    fake.settle()
    before = fake.containers()
    calls = len(fake.runtime.calls)
    fake.runtime.script("broken", "app", Behavior(fail_create="conmon: exit status 1"))
    fake.write("broken.yaml", pod_doc("broken"))
    fake.settle()
    fake.advance(11)
    waiting = fake.containers()["broken"]["state"]["waiting"]
    assert waiting["reason"] in ("CreateContainerError", "CrashLoopBackOff") and "conmon" in waiting["message"]
    reader = Reader(fake.root)
    failed = [e["message"] for e in reader.events(None) if e["reason"] == "Failed"]
    reader.close()
    assert failed == ["Error: conmon: exit status 1"]
    after = fake.containers()
    ids = {n: before[n]["containerID"] for n in ("a", "b")}
    assert {n: after[n]["containerID"] for n in ("a", "b")} == ids
    assert {n: after[n]["restartCount"] for n in ("a", "b")} == {"a": 0, "b": 0}
    touched = {cid for _, cid in fake.runtime.calls[calls:]}
    assert not touched & {cid.partition("://")[2] for cid in ids.values()}, "a and b were not touched"


def test_a_conmon_that_fails_at_once_is_reported_with_its_own_message(tmp_path):
    from kubelite.errors import RuntimeError_
    from kubelite.runtime.oci import run_conmon

    conmon = tmp_path / "conmon"
    conmon.write_text("#!/bin/sh\necho 'conmon: simulated failure' >&2\nexit 1\n")
    conmon.chmod(0o755)
    messages = Counter()
    for _ in range(30):
        try:
            run_conmon([str(conmon)], bundle=tmp_path, timeout=10)
        except RuntimeError_ as exc:
            messages[str(exc)] += 1
        except OSError as exc:
            messages[f"{type(exc).__name__}: {exc}"] += 1
    assert messages == Counter({"creating container: conmon: simulated failure": 30})


# ====================================================================== 6. security


ESCAPES = ["..", "../x", "../../victim", "a/../../b", "/etc", "a/b"]


@pytest.mark.parametrize("field", ["metadata.name", "metadata.namespace", "spec.containers[0].name",
                                   "spec.initContainers[0].name"])
@pytest.mark.parametrize("value", ESCAPES)
def test_names_that_could_lead_out_of_the_state_root_are_rejected(field, value):
    doc = pod_doc("ok", init=["init"])
    if field == "metadata.name":
        doc["metadata"]["name"] = value
    elif field == "metadata.namespace":
        doc["metadata"]["namespace"] = value
    elif field == "spec.containers[0].name":
        doc["spec"]["containers"][0]["name"] = value
    else:
        doc["spec"]["initContainers"][0]["name"] = value
    decoded = decode_document(doc, source="/manifests/ok.yaml")
    assert decoded.desired is None and [e.path for e in decoded.errors] == [field]


@pytest.mark.parametrize("value", ESCAPES + ["."])
def test_a_uid_that_could_lead_out_of_the_state_root_is_rejected(value):
    doc = pod_doc("ok")
    doc["metadata"]["uid"] = value
    decoded = decode_document(doc, source="/manifests/ok.yaml")
    assert decoded.desired is None and [e.path for e in decoded.errors] == ["metadata.uid"]


def test_an_ordinary_uid_is_still_accepted():
    doc = pod_doc("ok")
    doc["metadata"]["uid"] = "3f9b8a2e-1c4d-4e5f-9a6b-7c8d9e0f1a2b"
    decoded = decode_document(doc, source="/manifests/ok.yaml")
    assert decoded.desired is not None and decoded.desired.uid == "3f9b8a2e-1c4d-4e5f-9a6b-7c8d9e0f1a2b"


@pytest.mark.parametrize("mode", [0o777, 0o757, 0o1777])
def test_a_manifests_directory_others_may_write_to_is_refused_with_a_clear_message(fake, mode, caplog):
    caplog.set_level(logging.INFO, logger="kubelite")
    fake.write("a.yaml", pod_doc("a"))
    fake.settle()
    os.chmod(fake.manifests, mode)
    try:
        fake.write("intruder.yaml", pod_doc("intruder"))      # as if another user had put it there
        fake.settle()
        fake.advance(30)
        assert "intruder" not in fake.containers(), "a pod from a directory anyone may write to ran"
        reader = Reader(fake.root)
        problems = [p["text"] for p in reader.problems()]
        reader.close()
        where = str(fake.manifests)
        assert any(where in t and "writable" in t for t in problems), problems
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(where in m and "writable" in m for m in logged), logged
    finally:
        os.chmod(fake.manifests, 0o755)
    fake.agent.hint_manifests()
    fake.advance(1)
    assert "intruder" in fake.containers(), "once the directory is safe again its pods run"


def test_a_manifest_file_others_may_write_to_is_refused(fake):
    path = fake.write("loose.yaml", pod_doc("loose"))
    os.chmod(path, 0o666)
    fake.agent.hint_manifests()
    fake.settle()
    assert "loose" not in fake.containers()
    reader = Reader(fake.root)
    problems = [p["text"] for p in reader.problems()]
    reader.close()
    assert any("loose.yaml" in t and "writable" in t for t in problems), problems


def test_serve_on_a_world_writable_manifests_directory_runs_nothing_and_says_why(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "a.yaml").write_text(yaml.safe_dump(pod_doc("a")))
    os.chmod(manifests, 0o777)
    env = _cli_env(tmp_path)
    proc = _serve(env)
    try:
        deadline = time.monotonic() + 20          # until it refuses to start, reports the directory, or runs a
        while proc.poll() is None and time.monotonic() < deadline:
            if _db_has_problem(tmp_path / "state", str(manifests)) or _pods(env):
                break
            time.sleep(0.2)
        time.sleep(1.0)                           # time enough to (wrongly) start the pod
        pods = _pods(env)
    finally:
        out, err = _stop(proc)
        os.chmod(manifests, 0o755)
    assert pods == [], "a pod ran from a directory anyone may write to"
    lines = [line for line in err.splitlines() if str(manifests) in line and "writable" in line]
    assert lines, err


def _pods(env: dict[str, str]) -> list[str]:
    return _cli(env, "get", "pods", "-o", "name").stdout.split()


def _db_has_problem(root: Path, where: str) -> bool:
    try:
        reader = Reader(root)
    except KubeliteError:
        return False
    try:
        return any(where in p["text"] and "writable" in p["text"] for p in reader.problems())
    finally:
        reader.close()
