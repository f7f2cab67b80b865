"""SIGHUP on the real node (root, runc, conmon): the configuration file's registry credentials change
under a running `kubelite serve --runtime runc`, and the next pull of a pod stuck in
ImagePullBackOff uses them — the one live setting the simulated runtime cannot show (its pulls
reach no registry).
"""

from __future__ import annotations

import base64
import json
import signal

import pytest

from tests.real import pod, wait_for
from tests.registries import Registry
from tests.test_faults_real import kubelite

pytestmark = pytest.mark.real

HEAD = "apiVersion: kubelite.io/v1alpha1\nkind: KubeliteConfiguration\n"


def test_sighup_hands_registry_credentials_to_a_running_node_and_its_next_pull_uses_them(tmp_path, busybox):
    private = Registry(tmp_path / "private", auth="htpasswd").start()
    try:
        private.push(f"docker-archive:{busybox}", "reload/busybox:v1")
        image = f"{private.host}/reload/busybox:v1"
        missing, credentials = tmp_path / "no-auth.json", tmp_path / "auth.json"
        credentials.write_text(json.dumps({"auths": {private.host: {
            "auth": base64.b64encode(b"alice:wonderland").decode()}}}))
        config = tmp_path / "config.yaml"
        config.write_text(HEAD + f"enableAPI: false\nregistry:\n  authFile: {missing}\n")
        with kubelite(tmp_path, busybox, "--config", str(config)) as k:
            k.start()
            k.write(pod("private", {"name": "app", "image": image, "command": ["sleep", "600"]}))

            def waiting() -> str:
                return k.statuses().get("private", {}).get("state", {}).get("waiting", {}).get("reason", "")

            wait_for(lambda: waiting() == "ImagePullBackOff", timeout=40, what="anonymous pulls refused")
            assert "running" not in k.statuses()["private"]["state"]

            config.write_text(HEAD + f"enableAPI: false\nregistry:\n  authFile: {credentials}\n")
            assert k.proc is not None
            k.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "running" in k.statuses().get("private", {}).get("state", {}), timeout=60,
                     what="the pull with the reloaded credentials, at the end of the image pull backoff")
            assert f"configuration reloaded from {config}: registry.authFile {missing} → {credentials}" in k.log()
            assert f'Successfully pulled image "{image}" in ' in k.cli("get", "events").stdout
    finally:
        private.stop()
