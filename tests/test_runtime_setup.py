"""The OCI runtime refuses to start without its parts or without root, with one clear line."""

from __future__ import annotations

import shutil

import pytest

from kubelite.agent.agent import AgentConfig
from kubelite.daemon import ServeOptions, make_runtime
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


def test_at_start_only_layers_of_unknown_containers_go_and_a_pods_volumes_stay(tmp_path, monkeypatch):
    from kubelite.runtime import linux
    from kubelite.runtime.images import ImageStore

    monkeypatch.setattr(linux, "unmount", lambda target: None)   # nothing is mounted here
    root = tmp_path / "state"
    kept = root / "pods" / "u1"
    (kept / "containers" / "c1" / "upper").mkdir(parents=True)
    (kept / "containers" / "c1" / "upper" / "written").write_text("x")
    (kept / "volumes" / "kubernetes.io~empty-dir" / "data").mkdir(parents=True)
    (kept / "volumes" / "kubernetes.io~empty-dir" / "data" / "file").write_text("kept")
    (root / "pods" / "u2" / "containers" / "c2" / "rootfs").mkdir(parents=True)   # only a layer
    oci.OCIRuntime(root=root, run_dir=tmp_path / "run", images=ImageStore(root),
                   binaries={"runc": "/bin/true", "conmon": "/bin/true", "catatonit": "/bin/true"})
    assert not (kept / "containers").exists()
    assert (kept / "volumes" / "kubernetes.io~empty-dir" / "data" / "file").read_text() == "kept"
    assert not (root / "pods" / "u2").exists()


def test_an_exit_written_between_the_runtimes_two_looks_is_an_exit_not_unknown(tmp_path, monkeypatch):
    """conmon writes the exit file, then exits: when both happen between the runtime's read of the
    exit file and its look at the processes, the exit is still read (it was taken for "unknown",
    and the container restarted without its exit code or backoff)."""
    import threading
    from types import SimpleNamespace

    from kubelite.core.types import ContainerState
    from kubelite.runtime import linux
    from kubelite.runtime.oci.containers import Containers
    from kubelite.runtime.oci.records import ContainerRecord
    from tests.helpers import at

    exit_dir = tmp_path / "exits"
    exit_dir.mkdir()
    record = ContainerRecord("c1", "sb", "uid", "app", "web", "default", 0, "h", "busybox", at(0).isoformat(), "",
                             pid=10, pid_start=1, conmon_pid=11, conmon_start=1, started_at=at(1).isoformat())

    def exits_meanwhile(pid: int, start: int) -> bool:
        (exit_dir / "c1").write_text("3")   # conmon wrote it, and both processes are gone now
        return False
    monkeypatch.setattr(linux, "alive", exits_meanwhile)
    runtime = SimpleNamespace(exit_dir=exit_dir, container_dir=tmp_path / "containers", _lock=threading.RLock(),
                              _save=lambda r: None)
    state, code, finished, reason = Containers._observe(runtime, record)  # type: ignore[arg-type]
    assert (state, code, reason) == (ContainerState.EXITED, 3, "Error") and finished is not None


def test_an_exit_wakes_the_agent_once_at_the_rename_of_conmons_file_and_nothing_else_does(tmp_path, monkeypatch):
    """conmon writes `<id>.XXXXXX` and renames it to the container's ID: that rename is the one
    hint of the exit. Its temporary file, the directory's own changes, a removed exit file and
    the file of a container the runtime does not know wake nothing (each cost a pass)."""
    import os
    import threading
    import time

    from kubelite.runtime import linux
    from kubelite.runtime.images import ImageStore
    from kubelite.runtime.oci.records import ContainerRecord
    from tests.helpers import at

    monkeypatch.setattr(linux, "unmount", lambda target: None)   # nothing is mounted here
    root = tmp_path / "state"
    runtime = oci.OCIRuntime(root=root, run_dir=tmp_path / "run", images=ImageStore(root),
                             binaries={"runc": "/bin/true", "conmon": "/bin/true", "catatonit": "/bin/true"})
    known = "0123456789abcdef0123456789abcdef"
    with runtime._lock:
        runtime._containers[known] = ContainerRecord(known, "sb", "uid", "app", "web", "default", 0, "h", "busybox",
                                                     at(0).isoformat(), "")
    hints: list[float] = []
    woken = threading.Event()

    def hint() -> None:
        hints.append(time.monotonic())
        woken.set()

    def conmon_writes_exit(name: str, code: str) -> None:
        """As conmon 2.1 (g_file_set_contents): a temporary file beside it, written, closed, renamed."""
        tmp = runtime.exit_dir / f"{name}.Q1W2E3"
        with open(tmp, "w") as out:
            out.write(code)
        os.rename(tmp, runtime.exit_dir / name)

    runtime.set_exit_hint(hint)
    try:
        conmon_writes_exit("fedcba9876543210fedcba9876543210", "0")   # a container of no record here
        (runtime.exit_dir / "fedcba9876543210fedcba9876543210").unlink()
        (runtime.exit_dir / "stray.tmp").write_text("x")
        time.sleep(0.5)
        assert hints == []
        conmon_writes_exit(known, "1")
        assert woken.wait(5), "the exit file's rename woke nothing"
        time.sleep(0.5)   # what else this exit's events would wake has arrived by now
        assert len(hints) == 1
        (runtime.exit_dir / known).unlink()   # the container's removal
        time.sleep(0.5)
        assert len(hints) == 1
    finally:
        runtime.close()
