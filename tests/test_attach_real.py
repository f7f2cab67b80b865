"""`kubelite attach` on real containers: output, stdin with and without `stdinOnce`, a terminal; and
`kubectl attach` through the node's API with both credentials.

The CLI runs as a process of its own against an in-process agent (tests/real.py); each test
checks that the container still runs after the attach ends and that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from typing import Iterator

import pytest

from tests.real import REPO, container, pod, wait_for

pytestmark = pytest.mark.real

TICKER = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done"


@pytest.fixture
def served(tmp_path, busybox):
    """A real node with its API (`tests.test_apiserver_real.Served`), for kubectl; nothing left after."""
    from tests.apinode import require_kubectl
    from tests.test_apiserver_real import Served

    require_kubectl()
    s = Served(tmp_path, busybox)
    yield s
    assert s.close() == []


def start(node, name: str, script: str, *, app: str = "app", stepped: bool = True, **fields) -> None:
    """Pod `name` with one container `app` running `script`, once it runs; the passes run here
    unless a thread runs them (`stepped=False`: the `served` node)."""
    node.write(pod(name, container(app, script, **fields)))
    wait_for(lambda: "running" in (node.container(name, app).get("state") or {}), timeout=60,
             what=f"{name} running", step=node.step if stepped else None)


@contextlib.contextmanager
def attached(argv: list[str], **popen) -> Iterator[subprocess.Popen]:
    """An attach (kubelite's or kubectl's) running as a process; killed at the end if it still runs."""
    proc = subprocess.Popen(argv, **popen)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def kubelite_attach(node, *args: str, **popen) -> contextlib.AbstractContextManager[subprocess.Popen]:
    return attached([sys.executable, "-m", "kubelite.cli.main", "attach", *args], env=node.env(), cwd=REPO, **popen)


@contextlib.contextmanager
def terminal(rows: int, columns: int) -> Iterator[tuple[int, int]]:
    """A pseudo-terminal of that size: (the user's side, the program's side); closed at the end."""
    main, child = os.openpty()
    try:
        resize(child, rows, columns)
        yield main, child
    finally:
        os.close(main)
        os.close(child)


def resize(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def read_until(fd: int, wanted: bytes, *, timeout: float = 10.0) -> bytes:
    """What `fd` gives until `wanted` is in it (AssertionError after `timeout`)."""
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {wanted!r}; got {data!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:   # a pty's other side closed
                chunk = b""
            assert chunk, f"EOF before {wanted!r}; got {data!r}"
            data += chunk
    return data


def ticks_in_order(fd: int, *, more: int, timeout: float = 5) -> int:
    """The first tick an attach shows, after checking that the next `more` follow in order."""
    seen = read_until(fd, b"\n", timeout=timeout)
    first = int(seen.split(b"tick-")[1].split(b"\n")[0])
    following = read_until(fd, f"tick-{first + more}\n".encode(), timeout=5)
    assert f"tick-{first + 1}\n".encode() in seen + following, "every line, in order"
    return first


def ends(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the attach did not end") from None


def a_shell_session(main: int, expected_size: bytes) -> None:
    """At the shell's prompt behind an attach -it: the prompt, a command's output, the size."""
    read_until(main, b"try pressing enter", timeout=15)
    os.write(main, b"\r")
    read_until(main, b"# ")
    os.write(main, b"stty size; echo $((6*7))-done\r")
    out = read_until(main, b"42-done\r\n")
    assert expected_size in out, out


def still_running(node, name: str, app: str) -> None:
    """The container runs on, never restarted, after the attach has gone."""
    time.sleep(0.5)
    state = node.container(name, app)
    assert "running" in state["state"] and state["restartCount"] == 0, f"{name} runs on"


def test_attach_follows_the_output_and_ctrl_c_detaches_leaving_the_container_running(node):
    start(node, "ticker", TICKER)
    node.until(lambda: "tick-3" in node.cli("logs", "ticker").stdout, what="a few lines")
    with kubelite_attach(node, "ticker", "-t", stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:   # no tty
        first = ticks_in_order(proc.stdout.fileno(), more=3)
        assert first > 3, "attach shows what comes, not the log's beginning"
        proc.send_signal(signal.SIGINT)
        assert ends(proc) == 0
        assert b"Unable to use a TTY - container app did not allocate one" in proc.stderr.read(), "kubectl's words"
    node.step()
    assert node.running("ticker", "app"), "detaching leaves the container running"
    before = node.cli("logs", "ticker").stdout.count("tick-")
    time.sleep(0.6)
    assert node.cli("logs", "ticker").stdout.count("tick-") > before, "it keeps printing"


def test_attach_i_writes_stdin_and_stdin_stays_open_for_the_next_attach(node):
    start(node, "catty", "exec cat", stdin=True)
    for word in (b"first", b"second"):
        with kubelite_attach(node, "catty", "-i", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) as proc:
            proc.stdin.write(word + b"\n")
            proc.stdin.flush()
            assert word + b"\n" in read_until(proc.stdout.fileno(), word + b"\n")
            proc.stdin.close()   # the input ends; without stdinOnce the container's stdin stays open
            time.sleep(0.3)
            assert proc.poll() is None, "output is still followed after the input ends"
            proc.send_signal(signal.SIGINT)
            assert ends(proc) == 0
        node.step()
        assert node.running("catty", "app"), f"cat still runs after the attach with {word!r}"


def test_stdin_once_closes_the_containers_stdin_when_the_first_attach_ends(node):
    start(node, "once", "cat; echo stdin-closed; exec sleep 3600", stdin=True, stdinOnce=True)
    with kubelite_attach(node, "once", "-i", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE) as proc:
        proc.stdin.write(b"only once\n")
        proc.stdin.flush()
        read_until(proc.stdout.fileno(), b"only once\n")
        proc.stdin.close()
        read_until(proc.stdout.fileno(), b"stdin-closed\n")
        proc.send_signal(signal.SIGINT)
        assert ends(proc) == 0
    node.step()
    assert node.running("once", "app")
    assert "stdin-closed" in node.cli("logs", "once").stdout


def test_attach_it_gives_the_containers_terminal_and_ctrl_p_ctrl_q_detaches(node):
    start(node, "term", "exec sh", app="sh", stdin=True, tty=True)
    with terminal(31, 97) as (main, child):
        before = termios.tcgetattr(child)   # the local terminal as the attach finds it
        with kubelite_attach(node, "term", "-it", stdin=child, stdout=child, stderr=child,
                             start_new_session=True) as proc:
            a_shell_session(main, b"31 97")
            resize(child, 40, 120)
            os.kill(proc.pid, signal.SIGWINCH)
            time.sleep(0.3)
            os.write(main, b"stty size\r")
            assert b"40 120" in read_until(main, b"40 120")
            os.write(main, b"sleep 30; echo slept-$?\r")
            time.sleep(0.5)
            started = time.monotonic()
            os.write(main, b"\x03")   # Ctrl-C goes to the container: it interrupts sleep, not the attach
            read_until(main, b"# ", timeout=5)
            assert time.monotonic() - started < 5 and proc.poll() is None
            os.write(main, b"\x10\x11")
            assert ends(proc) == 0
            assert termios.tcgetattr(child) == before, "the local terminal is restored"
    node.step()
    assert node.running("term", "sh"), "the shell runs on after a detach"


def test_attach_to_a_container_that_is_not_running_is_refused(node):
    node.write(pod("done", container("app", "echo bye"), restartPolicy="Never"))
    node.until(lambda: "terminated" in node.container("done", "app").get("state", {}), what="the exit")
    result = node.cli("attach", "done")
    assert result.returncode == 1 and result.stderr.strip() == \
        "error: cannot attach a container in a completed pod; current phase is Succeeded", result.stderr


def test_kubectl_attach_through_the_admin_credential_and_the_read_only_one_refused(served):
    from tests.apinode import KUBECTL

    start(served.node, "ticker", TICKER, stepped=False)
    start(served.node, "catty", "exec cat", stdin=True, stepped=False)
    refused = served.kubectl("attach", "ticker")
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr

    env = served.env(served.admin_kubeconfig)
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with attached([KUBECTL, "attach", "ticker"], env=env, **pipes) as watcher, \
            attached([KUBECTL, "attach", "catty", "-i"], env=env, stdin=subprocess.PIPE, **pipes) as typist:
        ticks_in_order(watcher.stdout.fileno(), more=2, timeout=15)
        typist.stdin.write(b"via the API\n")
        typist.stdin.flush()
        read_until(typist.stdout.fileno(), b"via the API\n", timeout=15)
    for name in ("ticker", "catty"):
        still_running(served.node, name, "app")   # after kubectl leaves


def test_kubectl_attach_it_drives_the_containers_terminal_and_its_size(served):
    from tests.apinode import KUBECTL

    start(served.node, "shell", "exec sh", app="sh", stdin=True, tty=True, stepped=False)
    with terminal(33, 101) as (main, child), attached(
            [KUBECTL, "attach", "shell", "-it"], env=served.env(served.admin_kubeconfig), stdin=child, stdout=child,
            stderr=child, start_new_session=True):
        a_shell_session(main, b"33 101")
    still_running(served.node, "shell", "sh")
