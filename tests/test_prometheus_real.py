"""A real monitoring client: Debian's Prometheus scrapes a real node's `/metrics` over HTTPS with the
node's bearer token (as docs/kubectl.md configures it), and its own query API shows the pod phases
and, after a container is killed, the restart counter.

Prometheus runs as a child of the test on a free loopback port, with its configuration and its
storage in the test's temporary directory, scraping every second; it is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from kubelite.apiserver import auth
from tests.real import container, pod, wait_for
from tests.test_apiserver_real import Served, busybox, served  # noqa: F401 (the fixtures: a real node with its API)

pytestmark = pytest.mark.real

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
START_TIMEOUT_S = 60.0    # a first start on a busy machine takes a few seconds (TSDB, web UI)


def require_prometheus() -> None:
    """Prometheus must be there in CI (scripts/bootstrap test installs Debian's prometheus)."""
    if not os.access(PROMETHEUS, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed — CI must run this test (scripts/bootstrap test installs it)")
        pytest.skip("prometheus is not installed (scripts/bootstrap test installs it)")


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A Prometheus server of the test's own: loopback only, storage under `base`."""

    def __init__(self, base: Path, *, target: str, ca_file: Path, token: str) -> None:
        base.mkdir(parents=True, exist_ok=True)
        token_file = base / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "kubelite", "scheme": "https",
                "tls_config": {"ca_file": str(ca_file)},
                "authorization": {"credentials_file": str(token_file)},
                "static_configs": [{"targets": [target]}],
            }],
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.base, self.port = base, _free_loopback_port()
        self.log = open(base / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=base, start_new_session=True)

    def get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
        return json.loads(body) if path.startswith("/api/") else body

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited ({self.process.returncode}): {self.output()}")
        try:
            self.get("/-/ready")
        except OSError:
            return False
        return True

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of `promql`, through Prometheus's HTTP API."""
        answer = self.get("/api/v1/query", query=promql)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single sample of `promql`, or None while there is none."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def output(self) -> str:
        self.log.flush()
        return (self.base / "prometheus.log").read_text(errors="replace")[-2000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()
        shutil.rmtree(self.base / "data", ignore_errors=True)


@pytest.fixture
def prometheus(served: Served, tmp_path: Path) -> Iterator[Prometheus]:
    require_prometheus()
    target = served.api.url.removeprefix("https://")
    server = Prometheus(tmp_path / "prometheus", target=target, ca_file=auth.api_dir(served.node.root) / "ca.crt",
                        token=served.api.token)
    try:
        wait_for(server.ready, timeout=START_TIMEOUT_S, what="prometheus to be ready")
        yield server
    finally:
        server.close()


def test_prometheus_scrapes_the_node_with_its_token_and_sees_phases_and_a_restart(served, prometheus):
    started = time.monotonic()
    served.node.write(pod("prom-victim", container("app", "sleep 1000"), restartPolicy="Always"))
    served.node.write(pod("prom-done", container("app", "true"), restartPolicy="Never"))

    # the scrape works: HTTPS with the node's CA, the read-only token as the bearer
    wait_for(lambda: prometheus.value('up{job="kubelite"}') == 1, timeout=30,
             what=f"a successful scrape; prometheus says: {prometheus.output()}")
    wait_for(lambda: prometheus.value('kubelite_pods{phase="Running"}') == 1
             and prometheus.value('kubelite_pods{phase="Succeeded"}') == 1, timeout=60,
             what="one Running and one Succeeded pod in Prometheus")
    assert prometheus.value('kubelite_pods{phase="Failed"}') == 0
    assert prometheus.value('kubelite_container_restarts_total{pod="prom-victim"}') is None   # not restarted yet

    # crash the container (as `kubelite kill` does) and watch the counter arrive
    killed = served.node.cli("kill", "prom-victim", "-s", "KILL")
    assert killed.returncode == 0, killed.stderr
    wait_for(lambda: (prometheus.value('kubelite_container_restarts_total{namespace="default",pod="prom-victim",'
                                       'container="app"}') or 0) >= 1, timeout=60,
             what="the restart counter in Prometheus")
    wait_for(lambda: served.node.running("prom-victim", "app", restarts=1), timeout=30, what="the restarted container")
    wait_for(lambda: prometheus.value('kubelite_running_containers') == 1
             and prometheus.value('kubelite_pods{phase="Running"}') == 1, timeout=30,
             what="the pod Running again in Prometheus")
    # the series Prometheus stored is the one the node exposes: the counter went up by exactly one
    assert prometheus.value('max_over_time(kubelite_container_restarts_total{pod="prom-victim"}[5m])') == 1
    assert time.monotonic() - started < 150
