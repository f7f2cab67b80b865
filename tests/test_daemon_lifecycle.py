"""The daemon's lifecycle under signals and failures: a signal that lands while the main thread holds a
lock, a signal before the handlers exist, a start-up that fails half-way, a shutdown step that fails,
and what systemd hears after a pass that failed. Each daemon is a `kubelite serve --runtime fake` in a
child process with a patch applied first (a script), so that a hang is a timeout, not a stuck test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from kubelite.service import signals

REPO = Path(__file__).resolve().parent.parent
#: A daemon that hangs on a signal is ended after this long (a healthy one needs about a second).
HANG_S = 30

PRELUDE = """
import os, signal, sys, threading, time
from kubelite import daemon
from kubelite.agent.agent import Agent
passes = [0]
_run_once = Agent.run_once
"""

EPILOGUE = """
from kubelite.cli.main import main
rc = main(sys.argv[1:])
if "after" in globals():
    after()
sys.exit(rc)
"""


def serve_patched(tmp_path: Path, patch: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `serve` with `patch` applied in a child process; its exit code and its log."""
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    script = tmp_path / "serve_patched.py"
    script.write_text(PRELUDE + textwrap.dedent(patch) + EPILOGUE)
    environ = {**os.environ, "KUBELITE_ROOT": str(tmp_path / "state"), "KUBELITE_RUN_DIR": str(tmp_path / "run"),
               "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1", **(env or {})}
    if "NOTIFY_SOCKET" not in (env or {}):
        environ.pop("NOTIFY_SOCKET", None)
    try:
        done = subprocess.run([sys.executable, str(script), "serve", "--runtime", "fake", "--no-api",
                               "--manifests", str(manifests), *args], env=environ, capture_output=True, text=True,
                              cwd=REPO, timeout=HANG_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"serve hung: {exc.stderr!r}") from None
    return done.returncode, done.stderr


# ------------------------------------------------------------------ a signal while a lock is held


def test_sigterm_while_the_loop_holds_its_wake_up_guard_stops_the_daemon(tmp_path):
    rc, log = serve_patched(tmp_path, """
        def run_once(self, *, wait=True):
            with self.wake._guard:                 # as in wake.clear() and take(), every pass
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)                    # the handler runs here, on this thread
            return _run_once(self, wait=wait)
        Agent.run_once = run_once
    """)
    assert rc == 0, log
    assert "received SIGTERM; stopping" in log and "stopped; " in log


def test_sighup_and_a_reset_request_while_the_loop_waits_on_an_event_are_handled(tmp_path):
    rc, log = serve_patched(tmp_path, """
        def run_once(self, *, wait=True):
            passes[0] += 1
            held = self.wake._cond if passes[0] < 3 else self.wake._guard   # inside Event.wait/set/clear
            with held:
                if passes[0] < 3:
                    os.kill(os.getpid(), (signal.SIGHUP, signal.SIGUSR1)[passes[0] - 1])
                    time.sleep(0.2)
            return _run_once(self, wait=wait)
        Agent.run_once = run_once
    """)
    assert rc == 0, log
    assert "received SIGHUP: no configuration file to reload" in log
    assert "kubelite reset: every pod is stopped and removed; stopping" in log


def test_a_handler_only_writes_the_wakeup_fd_and_the_relay_thread_acts():
    import threading

    seen: list[int] = []
    event = threading.Event()
    relay = signals.SignalRelay((signal.SIGUSR2,), lambda signum: (seen.append(signum), event.set()))
    relay.install()
    try:
        with event._cond:   # type: ignore[attr-defined]  # a lock the old handler took
            os.kill(os.getpid(), signal.SIGUSR2)
            assert not event.is_set()   # the relay's thread waits for this one to let go
        assert event.wait(5) and seen == [signal.SIGUSR2]
    finally:
        relay.restore()
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGUSR2))
    assert signal.set_wakeup_fd(-1) == -1   # the wakeup fd from before (none) is back


# ------------------------------------------------------------------ a signal before the handlers exist


@pytest.mark.parametrize("signum, said", [(signal.SIGUSR1, "kubelite reset: every pod is stopped"),
                                          (signal.SIGHUP, "received SIGHUP: no configuration file")])
def test_a_signal_while_the_runtime_starts_waits_for_the_handlers(tmp_path, signum, said):
    rc, log = serve_patched(tmp_path, f"""
        _make_runtime = daemon.make_runtime
        def make_runtime(options, clock):
            os.kill(os.getpid(), {int(signum)})   # `kubelite reset` read the pid in the lock just now
            time.sleep(0.1)
            return _make_runtime(options, clock)
        daemon.make_runtime = make_runtime
        def run_once(self, *, wait=True):   # a reset's drain ends by itself; else, a stop after the first pass
            if {int(signum)} != signal.SIGUSR1:
                os.kill(os.getpid(), signal.SIGTERM)
            return _run_once(self, wait=wait)
        Agent.run_once = run_once
    """)
    assert rc == 0, log
    assert said in log


def test_the_reset_s_drain_ends_with_words_that_say_the_pods_were_stopped(tmp_path):
    address = f"@kubelite-test-lifecycle-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + address[1:])
        sock.settimeout(HANG_S)
        rc, log = serve_patched(tmp_path, """
            def run_once(self, *, wait=True):
                passes[0] += 1
                if passes[0] == 1:
                    os.kill(os.getpid(), signal.SIGUSR1)
                return _run_once(self, wait=wait)
            Agent.run_once = run_once
        """, env={"NOTIFY_SOCKET": address})
        datagrams = []
        sock.setblocking(False)
        while True:
            try:
                datagrams.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    assert rc == 0, log
    assert "STOPPING=1\nSTATUS=stopping; every pod was stopped (kubelite reset)" in datagrams[-1]
    assert log.rstrip().splitlines()[-1].endswith("stopped; every pod was stopped and removed (kubelite reset)")
    assert "pods keep running" not in datagrams[-1]


# ------------------------------------------------------------------ failures at start and at the end


def test_a_start_that_fails_after_the_runtime_closes_it_and_restores_the_handlers(tmp_path):
    rc, log = serve_patched(tmp_path, """
        closed = []
        _make_runtime = daemon.make_runtime
        def make_runtime(options, clock):
            runtime = _make_runtime(options, clock)
            runtime.close = lambda: closed.append("runtime")
            return runtime
        daemon.make_runtime = make_runtime
        def refuse(self):
            raise daemon.KubeliteError("inotify watch limit reached")
        daemon.ManifestWatcher.start = refuse
        def after():
            from kubelite import layout
            from kubelite.runtime import linux
            handle, holder = linux.try_lock(layout.lock_path(daemon.Path(os.environ["KUBELITE_ROOT"])), "test")
            print("closed", closed, "lock free", handle is not None,
                  "handlers", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, file=sys.stderr)
    """)
    assert rc == 1 and "inotify watch limit reached" in log
    assert "closed ['runtime'] lock free True handlers True" in log


def test_a_failing_step_of_the_shutdown_skips_none_of_the_others(tmp_path):
    rc, log = serve_patched(tmp_path, """
        closed = []
        _make_runtime = daemon.make_runtime
        def make_runtime(options, clock):
            runtime = _make_runtime(options, clock)
            runtime.close = lambda: closed.append("runtime")
            return runtime
        daemon.make_runtime = make_runtime
        def broken(self):
            raise OSError(5, "Input/output error")
        daemon.ManifestWatcher.stop = broken
        _store_close = daemon.Store.close
        def store_close(self):
            closed.append("store")
            _store_close(self)
        daemon.Store.close = store_close
        def run_once(self, *, wait=True):
            os.kill(os.getpid(), signal.SIGTERM)
            return _run_once(self, wait=wait)
        Agent.run_once = run_once
        def after():
            print("closed", closed, "handlers", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, file=sys.stderr)
    """)
    assert rc == 0, log
    assert "stopping the manifest watcher: OSError" in log
    assert "closed ['runtime', 'store'] handlers True" in log


def test_recovery_after_an_unexpected_failure_is_announced_and_logged(tmp_path):
    address = f"@kubelite-test-lifecycle-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + address[1:])
        rc, log = serve_patched(tmp_path, """
            daemon.ERROR_PAUSE_S = 0.1
            def run_once(self, *, wait=True):
                passes[0] += 1
                if passes[0] == 2:
                    raise ZeroDivisionError("a bug")
                if passes[0] == 4:
                    os.kill(os.getpid(), signal.SIGTERM)
                return _run_once(self, wait=False)
            Agent.run_once = run_once
            def nudge():   # passes come every relist period: hurry them
                while True:
                    time.sleep(0.2)
                    for agent in list(woken):
                        agent.wake.set()
            woken = []
            _init = Agent.__init__
            def init(self, *a, **k):
                _init(self, *a, **k)
                woken.append(self)
            Agent.__init__ = init
            threading.Thread(target=nudge, daemon=True).start()
        """, env={"NOTIFY_SOCKET": address})
        sock.setblocking(False)
        statuses = []
        while True:
            try:
                statuses.append(dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines()))
            except BlockingIOError:
                break
    assert rc == 0, log
    said = [s.get("STATUS", "") for s in statuses]
    failed = next(i for i, s in enumerate(said) if s.startswith("reconcile pass failed: ZeroDivisionError: a bug"))
    assert any(s.startswith("serving 0 pods from ") for s in said[failed + 1:]), said
    assert "reconcile passes succeed again" in log


# ------------------------------------------------------------------ the git sync beside the loop


class Engine:
    """A sync engine that counts its passes; `fail` raises from the next ones."""

    def __init__(self, name: str) -> None:
        self.name, self.passes, self.fail = name, 0, None
        self.interval_s, self.allow_empty = 0.05, False

    def sync_once(self):
        from types import SimpleNamespace

        self.passes += 1
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(outcome="unchanged", message="", delay_s=0.05)


class QuietAgent:
    def __init__(self) -> None:
        import queue

        self.sync_results = queue.Queue()

    def hint_manifests(self) -> None:
        pass

    def hint_sync_status(self) -> None:
        pass


def sync_runner(tmp_path: Path, make_engine):
    import threading

    from kubelite import daemon
    from kubelite.agent.agent import AgentConfig

    class Runner(daemon.SyncRunner):
        def _syncer(self, options):
            return make_engine(options)

    config = AgentConfig(manifests=tmp_path / "manifests", root=tmp_path / "state")
    options = daemon.SyncOptions(repo="https://git.invalid/r.git", interval_s=0.05)
    return Runner(options, config, QuietAgent(), threading.Event()).start()   # type: ignore[arg-type]


def until(predicate, what: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_new_sync_settings_that_fail_keep_the_running_engine_and_the_thread(tmp_path):
    from kubelite import daemon
    from kubelite.errors import KubeliteError

    def make_engine(options):
        if options.path == "broken":
            raise KubeliteError("kustomize: accumulating resources: missing")
        return Engine(options.path)

    runner = sync_runner(tmp_path, make_engine)
    try:
        first = runner.syncer
        until(lambda: first.passes >= 1, "a first pass")
        runner.update(daemon.SyncOptions(repo=runner.options.repo, path="broken", interval_s=0.05))
        seen = first.passes
        until(lambda: first.passes >= seen + 3, "passes of the running engine after the refused settings")
        assert runner.thread.is_alive() and runner.syncer is first and runner.options.path == ""
    finally:
        runner.close()
    assert not runner.thread.is_alive()


def test_a_sync_pass_that_raises_is_retried_and_close_ends_the_thread_and_frees_the_lock(tmp_path):
    from kubelite import daemon
    from kubelite.sources.gitsync import hold_sync_lock

    daemon_pause = daemon.ERROR_PAUSE_S
    daemon.ERROR_PAUSE_S = 0.05
    try:
        runner = sync_runner(tmp_path, lambda options: Engine(options.path))
        engine = runner.syncer
        engine.fail = RuntimeError("a bug in a pass")
        until(lambda: engine.passes >= 3, "passes after one that raised")
        assert runner.thread.is_alive()
        engine.fail = None
        runner.close()
    finally:
        daemon.ERROR_PAUSE_S = daemon_pause
    assert not runner.thread.is_alive() and runner.stop.is_set()
    hold_sync_lock(tmp_path / "state").close()   # free again


def test_the_reset_s_drain_stops_the_git_sync_before_it_closes(tmp_path):
    rc, log = serve_patched(tmp_path, """
        class Runner:
            def __init__(self, stop):
                self.stop = stop
            def close(self):
                print("sync closed with stop set:", self.stop.is_set(), file=sys.stderr)
        daemon.start_sync = lambda options, config, agent, stop: Runner(stop)
        def run_once(self, *, wait=True):
            passes[0] += 1
            if passes[0] == 1:
                os.kill(os.getpid(), signal.SIGUSR1)
            return _run_once(self, wait=wait)
        Agent.run_once = run_once
    """, "--sync-repo", "https://git.invalid/r.git")
    assert rc == 0, log
    assert "sync closed with stop set: True" in log
