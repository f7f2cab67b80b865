"""Attach sessions without containers: conmon's packets and control FIFO over a socket pair, and
the simulated runtime's attach (a process that echoes its stdin)."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone

import pytest

from kubelite.api.models import Container
from kubelite.errors import RuntimeError_
from kubelite.runtime.attach import STDERR, STDOUT, ConmonAttach
from kubelite.runtime.fake import Behavior, FakeRuntime
from kubelite.runtime.protocol import ContainerConfig, SandboxConfig


def conmon_pair(tmp_path, *, tty: bool = False, stdin: bool = True) -> tuple[ConmonAttach, socket.socket]:
    ours, conmon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return ConmonAttach(ours, control=tmp_path / "winsz" if tty else None, tty=tty, stdin=stdin), conmon


def test_each_packet_is_one_piece_of_output_named_by_its_pipe_byte(tmp_path):
    session, conmon = conmon_pair(tmp_path)
    assert session.read() == (0, b""), "nothing yet, and no wait"
    conmon.send(b"\x02hello\n")
    conmon.send(b"\x03oops\n")
    assert session.read(timeout=1) == (STDOUT, b"hello\n")
    assert session.read(timeout=1) == (STDERR, b"oops\n")
    conmon.close()
    assert session.read(timeout=1) is None, "conmon gone: the session is over"
    session.close()


def test_stdin_is_written_unprefixed_and_its_end_is_the_sockets_write_side(tmp_path):
    session, conmon = conmon_pair(tmp_path)
    assert session.write(b"typed\n") == 6
    assert conmon.recv(100) == b"typed\n"
    session.close_stdin()
    assert conmon.recv(100) == b"", "conmon reads EOF: with stdinOnce it closes the container's stdin"
    conmon.send(b"\x02still output\n")
    assert session.read(timeout=1) == (STDOUT, b"still output\n"), "output goes on after the input ends"
    session.close()
    conmon.close()


def test_a_session_without_stdin_writes_nothing(tmp_path):
    session, conmon = conmon_pair(tmp_path, stdin=False)
    assert session.write(b"dropped") == 7
    conmon.setblocking(False)
    with pytest.raises(BlockingIOError):
        conmon.recv(100)
    session.close_stdin()
    with pytest.raises(BlockingIOError):
        conmon.recv(100)   # no EOF either: an output-only attach never ends the container's stdin early
    session.close()
    conmon.close()


def test_a_resize_is_one_control_line_for_conmon_and_waits_until_conmon_read_the_last(tmp_path):
    os.mkfifo(tmp_path / "winsz")
    reader = os.open(tmp_path / "winsz", os.O_RDONLY | os.O_NONBLOCK)
    session, conmon = conmon_pair(tmp_path, tty=True)
    try:
        assert session.resize(41, 121) is True
        assert session.resize(40, 120) is False, "conmon has not read the size before: this one waits"
        assert session.resize(0, 80) is True, "kubectl's zero size before it knows one: nothing"
        assert os.read(reader, 100) == b"41 121\n", "one line per read of conmon's"
        assert session.flush_resize() is True
        assert os.read(reader, 100) == b"40 120\n", "then the newest size"
        with pytest.raises(BlockingIOError):
            os.read(reader, 100)
    finally:
        os.close(reader)
        session.close()
        conmon.close()
    os.unlink(tmp_path / "winsz")
    lonely, peer = conmon_pair(tmp_path, tty=True)
    assert lonely.resize(10, 10) is True   # no FIFO, or nobody reading it (conmon gone): no error, no wait
    lonely.close()
    peer.close()


def test_connecting_to_a_bundle_without_an_attach_socket_is_one_clear_error(tmp_path):
    with pytest.raises(RuntimeError_, match="attach socket"):
        ConmonAttach.connect(tmp_path, tty=False, stdin=False)
    with pytest.raises(RuntimeError_, match="bundle is gone"):
        ConmonAttach.connect(tmp_path / "gone", tty=False, stdin=False)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def fake_container(runtime: FakeRuntime, **fields) -> str:
    sandbox = runtime.run_sandbox(SandboxConfig(uid="u", name="p", namespace="default", attempt=0, sandbox_hash="h",
                                                hostname="p"))
    container = Container.model_validate({"name": "app", "image": "busybox:1.36", **fields})
    cid = runtime.create_container(sandbox, ContainerConfig(uid="u", pod_name="p", namespace="default",
                                                            container=container, attempt=0, spec_hash="s"))
    runtime.start_container(cid)
    return cid


def test_the_simulated_process_echoes_stdin_until_the_container_stops():
    clock = Clock()
    runtime = FakeRuntime(clock)
    runtime.script("p", "app", Behavior(exit_after_s=10))
    cid = fake_container(runtime, stdin=True, tty=True)
    session = runtime.attach_container(cid, stdin=True)
    assert session.tty and session.stdin
    assert session.write(b"hi\n") == 3
    assert session.read(timeout=1) == (STDOUT, b"hi\n")
    clock.now += timedelta(seconds=11)
    runtime.list_containers()
    assert session.read(timeout=1) is None, "the container stopped: the session ends"
    session.close()
    with pytest.raises(RuntimeError_, match="not running"):
        runtime.attach_container(cid, stdin=False)


def test_stdin_is_granted_only_to_a_container_with_stdin():
    runtime = FakeRuntime(Clock())
    cid = fake_container(runtime)
    session = runtime.attach_container(cid, stdin=True)
    assert not session.stdin
    session.write(b"ignored\n")
    assert session.read(timeout=0.2) == (0, b"")
    session.close()
