"""exec, exec -it and cp into real containers, through the node's API with the real kubectl and the
Python client (admin credential), and through `kubelite exec`/`kubelite cp` without the API.

The agent runs on the real runtime (root, runc, conmon, busybox), stepped by a thread here; the API
server reads the same state root and reaches containers through the same runtime, as `kubelite
serve` wires them. Terminals are pseudo-terminals made here, so kubectl and kubelite run as a user's
shell would run them.
"""

from __future__ import annotations

import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import fcntl
import threading
import time
from pathlib import Path

import pytest

from kubelite.apiserver import auth
from kubelite.apiserver.auth import kubeconfig
from kubelite.apiserver.server import ApiServer, Health
from tests.apinode import KUBECTL, require_kubectl, wait_for
from tests.real import REPO, Node, container, pod

pytestmark = pytest.mark.real


class Served:
    """A real node with pod `web` (busybox, sleeping), its API with both kubeconfigs, and a thread
    that runs the agent's passes."""

    def __init__(self, base: Path, busybox: Path) -> None:
        self.base = base
        self.node = Node(base / "manifests", base / "state", base / "run", busybox).start()
        self.api = ApiServer(root=self.node.root, node_name="test", runtime="runc", host="127.0.0.1", port=0,
                             health=lambda: Health(True, "ok"), containers=self.node.runtime)
        self.api.start()
        ca = (auth.api_dir(self.node.root) / "ca.crt").read_bytes()
        self.kubeconfig, self.admin_kubeconfig = base / "kubeconfig", base / "kubeconfig-admin"
        self.kubeconfig.write_text(kubeconfig(server=self.api.url, token=self.api.token, node="test", ca_pem=ca))
        self.admin_kubeconfig.write_text(kubeconfig(server=self.api.url, token=self.api.admin_token, node="test",
                                                    ca_pem=ca, admin=True))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        self.node.write(pod("web", container("app", "sleep 3600")))
        wait_for(lambda: self._running("web"), what="web running", timeout=60)

    def _running(self, name: str) -> bool:
        pods, _ = self.api.items("pods", "default", name)
        statuses = pods[0].get("status", {}).get("containerStatuses", []) if pods else []
        return bool(statuses) and "running" in statuses[0].get("state", {})

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.node.step()
            self.api.notify()
            self.stop.wait(0.1)

    def env(self, admin: bool = True) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.admin_kubeconfig if admin else self.kubeconfig),
                "HOME": str(self.base)}

    def kubectl(self, *args: str, input: str | None = None, admin: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, *args], env=self.env(admin), input=input, capture_output=True, text=True,
                              timeout=timeout, cwd=self.base)

    def in_container(self, *command: str) -> tuple[int, str]:
        return self.node.exec("web", "app", *command)

    def close(self) -> list[str]:
        self.stop.set()
        self.thread.join(timeout=10)
        self.api.close()
        return self.node.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, busybox):
    require_kubectl()
    s = Served(tmp_path_factory.mktemp("exec"), busybox)
    yield s
    left = s.close()
    assert left == [], f"left behind: {left}"


# ---------------------------------------------------------------------- kubectl exec


@pytest.mark.parametrize("script, code", [("exit 3", 3), ("true", 0), ("kill -9 $$", 137)])
def test_kubectl_exec_exits_with_the_commands_exit_code(served, script, code):
    out = served.kubectl("exec", "web", "--", "sh", "-c", script)
    assert out.returncode == code, (out.stdout, out.stderr)


def test_kubectl_exec_passes_stdin_and_keeps_stderr_apart(served):
    out = served.kubectl("exec", "-i", "web", "--", "cat", input="hi\n")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    out = served.kubectl("exec", "web", "--", "sh", "-c", "echo out; echo err >&2")
    assert (out.returncode, out.stdout, out.stderr) == (0, "out\n", "err\n")


def test_kubectl_cp_copies_a_file_in_and_out(served):
    local = served.base / "payload.bin"
    data = os.urandom(200_000) + b"\nend\n"
    local.write_bytes(data)
    out = served.kubectl("cp", "payload.bin", "web:/tmp/payload.bin")
    assert out.returncode == 0, out.stderr
    code, listed = served.in_container("sh", "-c", "wc -c < /tmp/payload.bin")
    assert (code, listed.strip()) == (0, str(len(data)))
    out = served.kubectl("cp", "web:/tmp/payload.bin", "back.bin")
    assert out.returncode == 0, out.stderr
    assert (served.base / "back.bin").read_bytes() == data


def test_the_python_client_execs_over_v4(served):
    from tests.test_apiserver_exec import python_client_exec

    assert python_client_exec(served.admin_kubeconfig, "web", "sh", "-c", "echo $((2+3))") == ("5\n", 0)
    assert python_client_exec(served.admin_kubeconfig, "web", "sh", "-c", "exit 4")[1] == 4


def test_the_read_only_credential_runs_nothing(served):
    out = served.kubectl("exec", "web", "--", "touch", "/tmp/marker", admin=False)
    assert out.returncode != 0 and "forbidden" in out.stderr.lower(), out.stderr
    assert served.in_container("test", "-e", "/tmp/marker")[0] == 1   # never created


def _sleepers(served: Served, mark: str) -> list[str]:
    return [line for line in served.in_container("ps")[1].splitlines() if mark in line]


def test_a_client_that_leaves_takes_its_command_with_it(served):
    proc = subprocess.Popen([KUBECTL, "exec", "web", "--", "sh", "-c", "sleep 1001; echo never"],
                            env=served.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _sleepers(served, "sleep 1001"), what="the command to run", timeout=20)
    finally:
        proc.kill()
        proc.wait(10)
    wait_for(lambda: not _sleepers(served, "sleep 1001"), what="the command to be killed", timeout=20)


# ---------------------------------------------------------------------- terminals


class Terminal:
    """A program on a pseudo-terminal of its own: what it prints, read as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, size: tuple[int, int] = (24, 80)) -> None:
        self.master, slave = os.openpty()
        self.resize(*size)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"},
                                     cwd=cwd, start_new_session=True)
        self.slave = slave   # kept: the terminal's modes are read from it after the program ends
        self.modes = termios.tcgetattr(slave)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = 15) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern.encode(), self.seen)
            if found:
                self.seen = self.seen[found.end():]
                return found
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not seen within {timeout}s; seen {self.seen[-500:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:   # the program closed its terminal
                    assert False, f"{pattern!r} not seen before the end; seen {self.seen[-500:]!r}"

    def close(self) -> int:
        try:
            code = self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.modes_after = termios.tcgetattr(self.slave)
            os.close(self.slave)
            os.close(self.master)
        return code


PROMPT = r"# $|# \x1b"


def _drive_shell(term: Terminal, pid: int) -> None:
    term.expect(r"# ")
    term.send("echo $((6*7))\r")
    term.expect(r"\r\n42\r\n")
    term.send("sleep 100\r")
    time.sleep(1)
    started = time.monotonic()
    term.send("\x03")   # Ctrl-C: the terminal inside makes it SIGINT
    term.send("echo back$((1+1))\r")
    term.expect(r"\r\nback2\r\n", timeout=10)
    assert time.monotonic() - started < 10
    term.resize(33, 101)
    os.kill(pid, signal.SIGWINCH)   # as the terminal's kernel driver tells its foreground process
    time.sleep(1)
    term.send("stty size\r")
    term.expect(r"\r\n33 101\r\n")
    term.send("exit 5\r")


def test_kubectl_exec_it_gives_a_shell_with_a_terminal(served):
    term = Terminal([KUBECTL, "exec", "-it", "web", "--", "sh"], served.env(), served.base)
    try:
        _drive_shell(term, term.proc.pid)
    finally:
        code = term.close()
    assert code == 5


def test_a_terminal_client_that_leaves_takes_its_shell_and_jobs_with_it(served):
    term = Terminal([KUBECTL, "exec", "-it", "web", "--", "sh"], served.env(), served.base)
    try:
        term.expect(r"# ")
        term.send("sleep 1002 &\r")
        term.send("sleep 1003\r")
        wait_for(lambda: len(_sleepers(served, "sleep 100")) == 2, what="the shell's two jobs", timeout=20)
    finally:
        term.proc.kill()
        term.close()
    wait_for(lambda: not _sleepers(served, "sleep 100"), what="the shell and its jobs to be killed", timeout=20)


# ---------------------------------------------------------------------- kubelite, without the API


def test_kubelite_exec_it_gives_a_shell_on_this_terminal_and_restores_it(served):
    term = Terminal([sys.executable, "-m", "kubelite.cli.main", "exec", "-it", "web", "--", "sh"],
                    served.node.env(), REPO)
    try:
        _drive_shell(term, term.proc.pid)
    finally:
        code = term.close()
    assert code == 5
    assert term.modes_after == term.modes   # raw mode undone: echo and line editing are back


def test_kubelite_exec_t_without_a_terminal_runs_without_one_as_kubectl(served):
    out = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "exec", "-t", "web", "--", "sh", "-c",
                          "test -t 0 || echo no-tty"], env=served.node.env(), input="", capture_output=True,
                         text=True, timeout=30, cwd=REPO)
    assert (out.returncode, out.stdout) == (0, "no-tty\n"), out.stderr
    assert "Unable to use a TTY - input is not a terminal" in out.stderr


def test_kubelite_cp_copies_files_and_directories_both_ways(served):
    data = os.urandom(100_000)
    (served.base / "in.bin").write_bytes(data)
    out = served.node.cli("cp", str(served.base / "in.bin"), "web:/tmp/in.bin")
    assert out.returncode == 0, out.stderr
    assert served.in_container("sh", "-c", "wc -c < /tmp/in.bin")[1].strip() == str(len(data))
    out = served.node.cli("cp", "default/web:/tmp/in.bin", str(served.base / "again.bin"))
    assert out.returncode == 0, out.stderr
    assert (served.base / "again.bin").read_bytes() == data
    assert served.in_container("sh", "-c", "mkdir -p /tmp/d/sub && echo one > /tmp/d/a && echo two > /tmp/d/sub/b")[0] == 0
    out = served.node.cli("cp", "web:/tmp/d", str(served.base / "d-copy"))
    assert out.returncode == 0, out.stderr
    assert (served.base / "d-copy" / "a").read_text() == "one\n"
    assert (served.base / "d-copy" / "sub" / "b").read_text() == "two\n"
    out = served.node.cli("cp", "web:/tmp/nothing-here", str(served.base / "none"))
    assert out.returncode != 0 and "nothing-here" in out.stderr


FLOOD = """
import sys, websocket
ws = websocket.create_connection(sys.argv[1], sslopt={"ca_certs": sys.argv[2]}, subprotocols=["v5.channel.k8s.io"],
                                 header=["Authorization: Bearer " + sys.argv[3]], timeout=60)
chunk = b"\\x00" + b"x" * 32768
sent = 0
while True:   # the command never reads: the pipe fills, then TCP, then this send blocks
    ws.send_binary(chunk)
    sent += 32768
    print(sent, flush=True)
"""


def test_a_client_flooding_a_command_that_reads_nothing_blocks_no_one(served):
    import http.client
    import ssl as ssls

    ca = str(auth.api_dir(served.node.root) / "ca.crt")
    url = (f"wss://{served.api.address}/api/v1/namespaces/default/pods/web/exec?command=sleep&command=1004"
           "&stdin=true&stdout=true")
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, url, ca, served.api.admin_token], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        host, port = served.api.address.rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=ssls.create_default_context(cafile=ca))
        started = time.monotonic()
        conn.request("GET", "/api/v1/namespaces/default/pods/web",
                     headers={"Authorization": f"Bearer {served.api.admin_token}"})
        assert conn.getresponse().status == 200
        took = time.monotonic() - started
        conn.close()
        assert flood.poll() is None, flood.stderr.read() if flood.stderr else ""
    finally:
        flood.kill()   # the client goes as a killed process does, its input unread
        out, _ = flood.communicate(timeout=10)
    assert took < 2.0, f"a read took {took:.2f}s while a session was flooded"
    sent = int(out.split()[-1])
    assert 0 < sent < 64 * 1024 * 1024   # held back, not buffered without bound
    # its FIN waits behind the unread flood (TCP gives such a connection up only later): the command
    # ending ends the session, and its slot is free again
    assert served.in_container("sh", "-c", "kill -9 $(ps -o pid,args | grep '[s]leep 1004' | awk '{print $1}')")[0] == 0
    assert served.api._serving is not None
    wait_for(lambda: served.api._serving.sessions == 0, what="the session to end", timeout=20)


# ---------------------------------------------------------------------- which container, in kubectl's words


def test_the_container_is_chosen_and_refused_alike_by_the_api_and_kubelite(served):
    """`runtime.targets`' one set of rules behind the API and the CLI: the annotation's container,
    else the first with kubectl's notice; an unknown or stopped container and a missing pod refused
    in kubectl's words."""
    from tests.test_apiserver_exec import python_client_exec

    env = lambda name: [{"name": "WHO", "value": name}]   # noqa: E731
    idle = "sleep 3600"
    pair = pod("pair", container("a", idle, env=env("a")), container("b", idle, env=env("b")),
               initContainers=[container("setup", "true")])
    duo = pod("duo", container("a", idle, env=env("a")), container("b", idle, env=env("b")))
    duo["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": "b"}
    for doc in (pair, duo):
        served.node.write(doc)
    wait_for(lambda: all(served.node.running(p, c) for p in ("pair", "duo") for c in ("a", "b")), timeout=60,
             what="pair and duo running")
    who = ["sh", "-c", "echo $WHO"]

    # the API: the annotation's container, else the first (the Python client names none)
    assert python_client_exec(served.admin_kubeconfig, "duo", *who) == ("b\n", 0)
    assert python_client_exec(served.admin_kubeconfig, "pair", *who) == ("a\n", 0)
    # kubelite exec: the same choice, with kubectl's notice only where it chose the first of several
    out = served.node.cli("exec", "duo", "--", *who)
    assert (out.returncode, out.stdout, out.stderr) == (0, "b\n", "")
    out = served.node.cli("exec", "pod/pair", "--", *who)
    assert (out.returncode, out.stdout) == (0, "a\n")
    assert out.stderr == 'Defaulted container "a" out of: a, b, setup (init)\n'
    # refusals, the same words from kubectl (through the API) and from kubelite
    cases = [(["pair", "-c", "nope"], "Error from server (BadRequest): container nope is not valid for pod pair"),
             (["pair", "-c", "setup"], 'error: unable to upgrade connection: container not found ("setup")'),
             (["nothere"], 'Error from server (NotFound): pods "nothere" not found')]
    for args, line in cases:
        mine = served.node.cli("exec", *args, "--", "true")
        assert (mine.returncode, mine.stderr.strip()) == (1, line), mine.stderr
        theirs = served.kubectl("exec", *args, "--", "true")
        assert theirs.returncode == 1 and theirs.stderr.strip().endswith(line.split(": ", 1)[1]), theirs.stderr
