"""Pulls on the real node (root, runc, conmon) from docker-registry on loopback: a pod whose image is
pushed only after the pod was created goes ErrImagePull → ImagePullBackOff → Running, and the image
GC removes an unused pulled image but never the one the running pod uses.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubelite.runtime import registry as client
from tests.real import Node, build_busybox, pod, require_real_runtime
from tests.registries import Registry, layer_tar, oci_layout

pytestmark = pytest.mark.real


@pytest.fixture
def node(tmp_path):
    require_real_runtime()
    busybox = build_busybox(tmp_path / "busybox.tar")
    n = Node(manifests=tmp_path / "manifests", root=tmp_path / "state", run_dir=tmp_path / "run",
             busybox=busybox).start()
    try:
        yield n
    finally:
        assert n.close() == []


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path / "registry").start()
    try:
        yield r
    finally:
        r.stop()


def reasons(node: Node) -> list[str]:
    from kubelite.store.reader import Reader

    reader = Reader(node.root)
    try:
        return [e["reason"] for e in reader.events(None)]
    finally:
        reader.close()


def messages(node: Node, reason: str) -> list[str]:
    from kubelite.store.reader import Reader

    reader = Reader(node.root)
    try:
        return [e["message"] for e in reader.events(None) if e["reason"] == reason]
    finally:
        reader.close()


def test_an_image_pushed_after_the_pod_was_created_runs_after_imagepullbackoff(node, reg):
    image = f"{reg.host}/late/busybox:v1"
    node.write(pod("late", {"name": "app", "image": image, "command": ["sh", "-c", "echo pulled; sleep 600"]}))
    waiting = node.until(lambda: node.container("late", "app").get("state", {}).get("waiting", {}).get("reason")
                         in ("ErrImagePull", "ImagePullBackOff") and node.container("late", "app"),
                         timeout=20, what="ErrImagePull")
    assert f'Failed to pull image "{image}": {image}: not found' in waiting["state"]["waiting"]["message"] or \
        waiting["state"]["waiting"]["reason"] == "ImagePullBackOff"
    node.until(lambda: node.container("late", "app")["state"]["waiting"]["reason"] == "ImagePullBackOff",
               timeout=5, what="ImagePullBackOff")
    assert messages(node, "Pulling") == [f'Pulling image "{image}"']
    reg.push(f"docker-archive:{node.busybox}", "late/busybox:v1")
    node.until(lambda: node.running("late", "app"), timeout=40, what="the pod to run once the image is there")
    assert any(m.startswith(f'Successfully pulled image "{image}" in ') for m in messages(node, "Pulled"))
    order = reasons(node)
    assert order.index("Failed") < order.index("BackOff") < order.index("Pulled") < order.index("Started")
    code, out = node.exec("late", "app", "cat", "/etc/passwd")
    assert code == 0 and out.startswith("root:x:0:0")


def test_image_gc_removes_an_unused_pulled_image_never_the_one_in_use(node, reg):
    reg.push(f"docker-archive:{node.busybox}", "used/busybox:v1")
    reg.push(oci_layout(node.root.parent / "unused", [layer_tar({"unused": b"u" * 100_000})]), "unused:v1")
    used = f"{reg.host}/used/busybox:v1"
    node.write(pod("user", {"name": "app", "image": used, "command": ["sleep", "600"]}))
    node.until(lambda: node.running("user", "app"), timeout=30, what="the pod to run")
    images = node.runtime.images
    client.pull(images, f"{reg.host}/unused:v1")
    assert images.get(f"{reg.host}/unused:v1") is not None
    # thresholds of 0 %: any usage is "too full", so GC removes every image no pod uses — without filling a disk
    node.agent.config = replace(node.agent.config, image_gc_high_percent=0, image_gc_low_percent=0)
    node.agent.next_image_gc = None
    node.step()
    assert images.get(f"{reg.host}/unused:v1") is None
    assert images.get(used) is not None
    code, _ = node.exec("user", "app", "true")
    assert code == 0


def test_the_daemon_pulls_a_private_image_with_its_authfile(tmp_path, reg):
    import base64
    import json

    from tests.real import wait_for
    from tests.test_faults_real import kubelite

    require_real_runtime()
    busybox = build_busybox(tmp_path / "busybox.tar")
    private = Registry(tmp_path / "private", auth="htpasswd").start()
    try:
        private.push(f"docker-archive:{busybox}", "team/busybox:v1")
        authfile = tmp_path / "auth.json"
        token = base64.b64encode(b"alice:wonderland").decode()
        authfile.write_text(json.dumps({"auths": {private.host: {"auth": token}}}))
        image = f"{private.host}/team/busybox:v1"
        with kubelite(tmp_path, busybox, "--authfile", str(authfile)) as k:
            k.start()
            k.write(pod("private", {"name": "app", "image": image, "command": ["sleep", "600"]}))
            wait_for(lambda: "running" in k.statuses().get("private", {}).get("state", {}), timeout=40,
                     what="the pod with the private image to run")
            events = k.cli("get", "events").stdout
            assert f'Successfully pulled image "{image}" in ' in events
            assert image in k.cli("image", "ls").stdout
    finally:
        private.stop()


def test_a_layer_bomb_fails_the_pod_with_errimagepull_and_leaves_nothing_behind(node):
    """A layer past --image-max-layer-size: the usual Failed events and ErrImagePull, with a message that
    names the bound; the image store keeps no layer, temporary file, download or name of it."""
    import os

    from tests.test_registry_bombs import GIB, MIB, BombRegistry, zero_layer

    bombs = BombRegistry()
    try:
        image = zero_layer(bombs, 1 * GIB)
        node.runtime.registry = client.RegistryConfig(max_layer_bytes=64 * MIB)
        layers_before = sorted(os.listdir(node.root / "images" / "layers"))
        node.write(pod("bomb", {"name": "app", "image": image, "command": ["true"]}))
        waiting = node.until(lambda: node.container("bomb", "app").get("state", {}).get("waiting", {})
                             .get("reason") == "ErrImagePull" and node.container("bomb", "app")["state"]["waiting"],
                             timeout=30, what="ErrImagePull")
        why = f"of {image} unpacks to more than 64Mi (--image-max-layer-size): refusing it"
        assert waiting["message"].startswith(f'Failed to pull image "{image}": layer sha256:'), waiting
        assert waiting["message"].endswith(why), waiting
        failed = messages(node, "Failed")
        assert any(m.startswith(f'Failed to pull image "{image}": ') and m.endswith(why) for m in failed), failed
        assert "Error: ErrImagePull" in failed
        images = node.root / "images"
        assert sorted(os.listdir(images / "layers")) == layers_before
        assert os.listdir(images / "tmp") == [] and os.listdir(images / "downloads") == []
        assert node.runtime.images.get(image) is None
    finally:
        bombs.close()
