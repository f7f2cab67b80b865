"""kubelite as a systemd service: the readiness notifications, the log formats, the unit file and
`kubelite install-service` (the real-container side, pods surviving a stop of the service's
cgroup, is in test_service_real.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kubelite.cli import service as install
from kubelite.cli.main import main
from kubelite.service import logformat, unit
from kubelite.service.notify import Notifier
from tests.helpers import pod_doc

REPO = Path(__file__).resolve().parent.parent
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def datagram_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(10)
    return sock


def fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


# ------------------------------------------------------------------ sd_notify


def test_ready_stopping_and_status_reach_an_abstract_socket_as_one_datagram_each():
    address = f"@kubelite-test-notify-{uuid.uuid4().hex}"
    with datagram_socket(address) as sock:
        notifier = Notifier(address)
        assert notifier.ready("serving 3 pods")
        assert fields(sock.recv(4096)) == {"READY": "1", "STATUS": "serving 3 pods", "MAINPID": str(os.getpid())}
        assert notifier.status("reconcile pass failed")
        assert fields(sock.recv(4096)) == {"STATUS": "reconcile pass failed"}
        assert notifier.stopping("stopping; pods keep running")
        assert fields(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "stopping; pods keep running"}


def test_a_socket_path_works_too(tmp_path):
    path = str(tmp_path / "notify")
    with datagram_socket(path) as sock:
        assert Notifier(path).send("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_the_socket_is_taken_out_of_the_environment_so_children_never_see_it():
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "PATH": "/bin"}
    notifier = Notifier.from_environment(environ)
    assert notifier.address == "/run/systemd/notify" and notifier.enabled
    assert environ == {"PATH": "/bin"}


def test_without_a_service_manager_or_with_a_dead_socket_nothing_is_sent_and_nothing_fails(tmp_path):
    assert not Notifier.from_environment({}).enabled
    assert Notifier(None).ready("x") is False
    assert Notifier(str(tmp_path / "nobody-listens")).ready("x") is False
    assert Notifier("vsock:2:1234").ready("x") is False


# ------------------------------------------------------------------ log formats


def record(msg: str, *args: object, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("kubelite.agent", level, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_carries_ts_level_logger_msg_and_the_pod_container_and_reason_of_the_call():
    line = logformat.JsonFormatter().format(record("pod %s: %s: %s", "default/web", "Started", "Started container app",
                                                   pod="default/web", container="app", reason="Started"))
    assert "\n" not in line
    data = json.loads(line)
    assert TS.match(data.pop("ts"))
    assert data == {"level": "info", "logger": "kubelite.agent", "msg": "pod default/web: Started: Started container app",
                    "pod": "default/web", "container": "app", "reason": "Started"}


def test_a_json_line_without_fields_has_none_and_keeps_newlines_and_non_ascii_inside_its_string():
    data = json.loads(logformat.JsonFormatter().format(record("first\nsecond — ü", level=logging.WARNING)))
    assert set(data) == {"ts", "level", "logger", "msg"}
    assert data["level"] == "warning" and data["msg"] == "first\nsecond — ü"


def test_a_json_line_of_an_exception_holds_its_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("kubelite", logging.ERROR, __file__, 1, "pass failed", (), sys.exc_info())
    data = json.loads(logformat.JsonFormatter().format(rec))
    assert data["level"] == "error" and "ValueError: boom" in data["exc"] and "Traceback" in data["exc"]


def test_the_text_line_is_as_before_the_fields_left_out():
    line = logformat.TextFormatter().format(record("pod %s: removed", "default/web", pod="default/web"))
    stamp, level, message = line.split(" ", 2)
    assert TS.match(stamp) and level == "INFO" and message == "pod default/web: removed"


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="text or json"):
        logformat.formatter("xml")


def test_serve_refuses_an_unknown_log_format(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--runtime", "fake", "--log-format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def serve_fake(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(yaml.safe_dump(pod_doc("web")))
    environ = {**os.environ, "KUBELITE_ROOT": str(tmp_path / "state"), "KUBELITE_RUN_DIR": str(tmp_path / "run"),
               "PYTHONPATH": str(REPO), **(env or {})}
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake", "--no-api",
                             "--manifests", str(manifests), *args], env=environ, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), cwd=REPO)
    return proc, log


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def until(predicate, *, timeout: float = 20.0, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def json_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_serve_with_json_logs_writes_only_json_lines_and_a_pod_start_names_its_pod_and_container(tmp_path):
    proc, log = serve_fake(tmp_path, "--log-format", "json")
    try:
        started = until(lambda: [line for line in json_lines(log) if line.get("reason") == "Started"],
                        what="the Started line of the pod")
        assert started[0]["pod"] == "default/web" and started[0]["container"] == "app"
        assert started[0]["msg"] == "pod default/web: Started: Started container app"
        assert started[0]["level"] == "info" and started[0]["logger"] == "kubelite.agent"
    finally:
        assert stop(proc) == 0
    lines = json_lines(log)   # every line, to the last one, parses
    assert lines[-1]["msg"].startswith("stopped; ") and lines[-1]["level"] == "info"
    assert any(line.get("reason") == "Scheduled" and line.get("pod") == "default/web" for line in lines)


def test_serve_tells_systemd_it_is_ready_after_its_first_pass_and_that_it_stops(tmp_path):
    address = f"@kubelite-test-serve-{uuid.uuid4().hex}"
    with datagram_socket(address) as sock:
        proc, log = serve_fake(tmp_path, env={"NOTIFY_SOCKET": address})
        try:
            ready = fields(sock.recv(4096))
            assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
            assert ready["STATUS"].startswith("serving 1 pods from ")
            assert "Started container app" in log.read_text(), "READY comes after the first pass"
        finally:
            assert stop(proc) == 0
        assert fields(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "stopping; pods keep running"}


# ------------------------------------------------------------------ the unit and install-service


def test_the_packaged_unit_is_the_rendered_one():
    assert (REPO / "packaging" / "kubelite.service").read_text() == unit.render()


def test_the_unit_is_a_notify_service_that_kills_only_kubelite_and_restarts_on_failure():
    text = unit.render()
    service = text.split("[Service]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    settings = dict(line.split("=", 1) for line in service)
    assert settings["Type"] == "notify" and settings["KillMode"] == "process" and settings["Delegate"] == "yes"
    assert settings["Restart"] == "on-failure" and settings["TasksMax"] == "infinity"
    assert settings["LimitNOFILE"] == "1048576" and settings["ExecStart"] == "/usr/local/bin/kubelite serve"
    assert "WantedBy=multi-user.target" in text and "#" not in text


def test_the_unit_quotes_what_systemd_would_read_otherwise():
    text = unit.render(command=("/opt/my tools/python", "-m", "kubelite.cli.main"), config="/etc/kubelite/50%$.yaml")
    assert 'ExecStart="/opt/my tools/python" -m kubelite.cli.main serve --config /etc/kubelite/50%%$$.yaml\n' in text
    assert unit.quote('a"b\\c') == '"a\\"b\\\\c"'


def test_install_service_prints_the_unit_and_writes_nothing(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("kind: KubeliteConfiguration\n")
    assert main(["install-service", "--print", "--config", str(config), "--unit-dir", str(tmp_path / "units")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[Unit]\n") and f"serve --config {config}\n" in out
    assert not (tmp_path / "units").exists()


def test_install_service_refuses_a_missing_configuration_file(tmp_path, capsys):
    assert main(["install-service", "--print", "--config", str(tmp_path / "absent.yaml")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_install_service_without_systemd_writes_the_unit_and_says_it_is_not_loaded(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(install, "SYSTEMD_RUNNING", tmp_path / "no-systemd-here")
    assert main(["install-service", "--unit-dir", str(tmp_path / "units")]) == 0
    written = tmp_path / "units" / "kubelite.service"
    assert written.read_text() == unit.render(command=install.program())
    assert written.stat().st_mode & 0o777 == 0o644
    assert "systemd is not running on this machine" in capsys.readouterr().out


def test_install_service_with_systemd_reloads_it_and_says_how_to_enable(tmp_path, capsys, monkeypatch):
    (tmp_path / "systemd").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setattr(install, "SYSTEMD_RUNNING", tmp_path / "systemd")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert main(["install-service", "--unit-dir", str(tmp_path / "units")]) == 0
    assert calls.read_text() == "daemon-reload\n"
    assert "systemctl enable --now kubelite" in capsys.readouterr().out


def test_install_service_reports_a_failing_reload(tmp_path, capsys, monkeypatch):
    (tmp_path / "systemd").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setattr(install, "SYSTEMD_RUNNING", tmp_path / "systemd")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert main(["install-service", "--unit-dir", str(tmp_path / "units")]) == 1
    assert "daemon-reload failed: Failed to connect to bus" in capsys.readouterr().err


def test_another_librarys_warning_takes_the_same_json_format(tmp_path):
    script = ("import logging\nfrom kubelite.daemon import configure_logging\nconfigure_logging(False, 'json')\n"
              "logging.getLogger('asyncio').warning('Task was destroyed but it is pending!')\n"
              "logging.getLogger('asyncio').info('not shown')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["logger"], line["level"], line["msg"]) for line in lines] == [
        ("asyncio", "warning", "Task was destroyed but it is pending!")]
