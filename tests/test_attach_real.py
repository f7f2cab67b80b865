"""`kubelite attach` on real containers: output, stdin with and without `stdinOnce`, a terminal.

The CLI runs as a process of its own against an in-process agent (tests/real.py); each test
checks that the container still runs after the attach ends and that nothing is left behind.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.real import REPO, container, pod

pytestmark = pytest.mark.real

TICKER = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done"


def attach(node, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "attach", *args], env=node.env(), cwd=REPO,
                            **popen)


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


def ends(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the attach did not end") from None


def test_attach_follows_the_output_and_ctrl_c_detaches_leaving_the_container_running(node):
    node.write(pod("ticker", container("app", TICKER)))
    node.until(lambda: node.running("ticker", "app"), what="running")
    node.until(lambda: "tick-3" in node.cli("logs", "ticker").stdout, what="a few lines")
    proc = attach(node, "ticker", "-t", stdout=subprocess.PIPE, stderr=subprocess.PIPE)   # no terminal there
    try:
        seen = read_until(proc.stdout.fileno(), b"\n", timeout=5)
        first = int(seen.split(b"tick-")[1].split(b"\n")[0])
        more = read_until(proc.stdout.fileno(), f"tick-{first + 3}\n".encode(), timeout=5)
        assert f"tick-{first + 1}\n".encode() in more, "every line, in order"
        assert first > 3, "attach shows what comes, not the log's beginning"
        proc.send_signal(signal.SIGINT)
        assert ends(proc) == 0
        assert b"Unable to use a TTY - container app did not allocate one" in proc.stderr.read(), "kubectl's words"
    finally:
        proc.kill()
        proc.wait()
    node.step()
    assert node.running("ticker", "app"), "detaching leaves the container running"
    before = node.cli("logs", "ticker").stdout.count("tick-")
    time.sleep(0.6)
    assert node.cli("logs", "ticker").stdout.count("tick-") > before, "it keeps printing"


def test_attach_i_writes_stdin_and_stdin_stays_open_for_the_next_attach(node):
    node.write(pod("catty", container("app", "exec cat", stdin=True)))
    node.until(lambda: node.running("catty", "app"), what="running")
    for word in (b"first", b"second"):
        proc = attach(node, "catty", "-i", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.stdin.write(word + b"\n")
            proc.stdin.flush()
            assert word + b"\n" in read_until(proc.stdout.fileno(), word + b"\n")
            proc.stdin.close()   # the input ends; without stdinOnce the container's stdin stays open
            time.sleep(0.3)
            assert proc.poll() is None, "output is still followed after the input ends"
            proc.send_signal(signal.SIGINT)
            assert ends(proc) == 0
        finally:
            proc.kill()
            proc.wait()
        node.step()
        assert node.running("catty", "app"), f"cat still runs after the attach with {word!r}"


def test_stdin_once_closes_the_containers_stdin_when_the_first_attach_ends(node):
    node.write(pod("once", container("app", "cat; echo stdin-closed; exec sleep 3600", stdin=True, stdinOnce=True)))
    node.until(lambda: node.running("once", "app"), what="running")
    proc = attach(node, "once", "-i", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"only once\n")
        proc.stdin.flush()
        read_until(proc.stdout.fileno(), b"only once\n")
        proc.stdin.close()
        read_until(proc.stdout.fileno(), b"stdin-closed\n")
        proc.send_signal(signal.SIGINT)
        assert ends(proc) == 0
    finally:
        proc.kill()
        proc.wait()
    node.step()
    assert node.running("once", "app")
    assert "stdin-closed" in node.cli("logs", "once").stdout


def test_attach_it_gives_the_containers_terminal_and_ctrl_p_ctrl_q_detaches(node):
    node.write(pod("term", container("sh", "exec sh", stdin=True, tty=True)))
    node.until(lambda: node.running("term", "sh"), what="running")
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
    before = termios.tcgetattr(child)
    proc = attach(node, "term", "-it", stdin=child, stdout=child, stderr=child, start_new_session=True)
    try:
        read_until(main, b"try pressing enter")
        os.write(main, b"\r")
        read_until(main, b"# ")
        os.write(main, b"stty size; echo $((6*7))-done\r")
        out = read_until(main, b"42-done")
        assert b"31 97" in out, out
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
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
    finally:
        proc.kill()
        proc.wait()
        os.close(main)
        os.close(child)
    node.step()
    assert node.running("term", "sh"), "the shell runs on after a detach"


def test_attach_to_a_container_that_is_not_running_is_refused(node):
    node.write(pod("done", container("app", "echo bye"), restartPolicy="Never"))
    node.until(lambda: "terminated" in node.container("done", "app").get("state", {}), what="the exit")
    result = node.cli("attach", "done")
    assert result.returncode == 1 and result.stderr.strip() == \
        "error: cannot attach a container in a completed pod; current phase is Succeeded", result.stderr


def test_kubectl_attach_through_the_admin_credential_and_the_read_only_one_refused(tmp_path, busybox):
    from tests.apinode import KUBECTL, require_kubectl
    from tests.test_apiserver_real import Served

    require_kubectl()
    served = Served(tmp_path, busybox)
    try:
        served.node.write(pod("ticker", container("app", TICKER)))
        served.node.write(pod("catty", container("app", "exec cat", stdin=True)))
        node_running = lambda: all("running" in (served.node.container(p, "app").get("state") or {})  # noqa: E731
                                   for p in ("ticker", "catty"))
        deadline = time.monotonic() + 30
        while not node_running():
            assert time.monotonic() < deadline, "the pods never ran"
            time.sleep(0.1)
        refused = served.kubectl("attach", "ticker")
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr

        env = served.env(served.admin_kubeconfig)
        watcher = subprocess.Popen([KUBECTL, "attach", "ticker"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        typist = subprocess.Popen([KUBECTL, "attach", "catty", "-i"], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            seen = read_until(watcher.stdout.fileno(), b"\n", timeout=15)
            first = int(seen.split(b"tick-")[1].split(b"\n")[0])
            read_until(watcher.stdout.fileno(), f"tick-{first + 2}\n".encode(), timeout=5)
            typist.stdin.write(b"via the API\n")
            typist.stdin.flush()
            read_until(typist.stdout.fileno(), b"via the API\n", timeout=15)
        finally:
            for proc in (watcher, typist):
                proc.kill()
                proc.wait(timeout=10)
        time.sleep(0.5)
        assert all("running" in served.node.container(p, "app")["state"] and
                   served.node.container(p, "app")["restartCount"] == 0 for p in ("ticker", "catty")), \
            "the containers run on after kubectl leaves"
    finally:
        assert served.close() == []


def test_kubectl_attach_it_drives_the_containers_terminal_and_its_size(tmp_path, busybox):
    from tests.apinode import KUBECTL, require_kubectl
    from tests.test_apiserver_real import Served

    require_kubectl()
    served = Served(tmp_path, busybox)
    main, child = os.openpty()
    try:
        served.node.write(pod("shell", container("sh", "exec sh", stdin=True, tty=True)))
        deadline = time.monotonic() + 30
        while "running" not in (served.node.container("shell", "sh").get("state") or {}):
            assert time.monotonic() < deadline, "the pod never ran"
            time.sleep(0.1)
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        proc = subprocess.Popen([KUBECTL, "attach", "shell", "-it"], env=served.env(served.admin_kubeconfig),
                                stdin=child, stdout=child, stderr=child, start_new_session=True)
        try:
            read_until(main, b"try pressing enter", timeout=15)
            os.write(main, b"\r")
            read_until(main, b"# ")
            os.write(main, b"stty size; echo $((6*7))-done\r")
            out = read_until(main, b"42-done\r\n")
            assert b"33 101" in out, out
        finally:
            proc.kill()
            proc.wait(timeout=10)
        time.sleep(0.5)
        state = served.node.container("shell", "sh")
        assert "running" in state["state"] and state["restartCount"] == 0, "the shell runs on"
    finally:
        os.close(main)
        os.close(child)
        assert served.close() == []
