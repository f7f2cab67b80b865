"""What another local user can do to a real node: nothing. A node runs a pod with a Secret volume, a
ConfigMap volume, an emptyDir, a container running as a non-root user with logs, and a container of an
image holding a setuid-root copy of busybox; then, as nobody (`setpriv --reuid=65534 --regid=65534
--clear-groups`), every path under the state root and the run directory is listed, read, written and
probed by name, and the setuid binary executed from the host: all of it is refused.

The node lives below a directory every user may enter (0755), so that only kubelite's own modes keep
the other user out.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import free_port
from tests.real import REPO, Daemon, wait_for

pytestmark = pytest.mark.real

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PROBE = r'''
import json, os, subprocess, sys
found = []
for path in json.load(open(sys.argv[1])):
    try:
        os.listdir(path); found.append(("list", path))
    except OSError:
        pass
    try:
        with open(path, "rb") as f:
            f.read(1)
        found.append(("read", path))
    except OSError:
        pass
    try:
        with open(path, "ab"):
            pass
        found.append(("write", path))
    except OSError:
        pass
    try:
        fd = os.open(os.path.join(path, ".probe"), os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd); found.append(("create-in", path))
    except OSError:
        pass
    if os.path.lexists(path):
        found.append(("exists", path))
for path in json.load(open(sys.argv[2])):
    try:
        subprocess.run([path, "id", "-u"], capture_output=True, timeout=5)
        found.append(("exec", path))
    except OSError:
        pass
print(json.dumps(found))
'''


def suid_image(busybox: Path, out: Path) -> Path:
    """`suid:latest`: the busybox image plus /bin/suidbox, a copy of busybox with mode 04755."""
    with tarfile.open(busybox) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))[0]
        layer = archive.extractfile(manifest["Layers"][0]).read()
        config = json.load(archive.extractfile(manifest["Config"]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(layer)) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, data)
            if member.name == "bin/busybox":
                suid = tarfile.TarInfo("bin/suidbox")
                suid.size, suid.mode, suid.mtime = member.size, 0o4755, member.mtime
                dst.addfile(suid, io.BytesIO(src.extractfile(member).read()))
    layer = buf.getvalue()
    layer_hex = hashlib.sha256(layer).hexdigest()
    config["rootfs"]["diff_ids"] = [f"sha256:{layer_hex}"]
    config_bytes = json.dumps(config).encode()
    image_hex = hashlib.sha256(config_bytes).hexdigest()
    files = {f"{layer_hex}/layer.tar": layer, f"{image_hex}.json": config_bytes,
             "manifest.json": json.dumps([{"Config": f"{image_hex}.json", "RepoTags": ["suid:latest"],
                                           "Layers": [f"{layer_hex}/layer.tar"]}]).encode()}
    with tarfile.open(out, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out


MANIFESTS = [
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "s3cr3t-value"}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"greeting": "hello"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "guarded"}, "spec": {
        "terminationGracePeriodSeconds": 2,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        "volumes": [{"name": "sec", "secret": {"secretName": "db"}},
                    {"name": "cfg", "configMap": {"name": "app"}},
                    {"name": "scratch", "emptyDir": {}}],
        "containers": [
            {"name": "app", "image": "busybox:latest", "imagePullPolicy": "Never",
             "command": ["sh", "-c", "echo uid=$(id -u) umask=$(umask); cat /etc/sec/password; echo;"
                                     " cat /etc/cfg/greeting; echo; echo ok > /data/w && echo wrote;"
                                     " grep -q localhost /etc/hosts && echo hosts; sleep 3600"],
             "volumeMounts": [{"name": "sec", "mountPath": "/etc/sec"}, {"name": "cfg", "mountPath": "/etc/cfg"},
                              {"name": "scratch", "mountPath": "/data"}]},
            {"name": "suid", "image": "suid:latest", "imagePullPolicy": "Never",
             "command": ["sh", "-c", "stat -c %a /bin/suidbox; sleep 3600"]}]}},
]


@pytest.fixture
def guarded(busybox: Path):
    base = Path(tempfile.mkdtemp(prefix="kubelite-security-"))
    os.chmod(base, 0o755)   # any user may enter: only kubelite's modes below keep them out
    daemon = Daemon(base, busybox, serve_args=("--network", "none", "--api-address", f"127.0.0.1:{free_port()}"))
    try:
        assert daemon.cli("image", "load", "-i", str(suid_image(busybox, base / "suid.tar"))).returncode == 0
        (daemon.manifests / "guarded.yaml").write_text(yaml.safe_dump_all(MANIFESTS))
        daemon.start()
        try:
            wait_for(lambda: all(c.get("ready") for c in daemon.pods().get("guarded", {}).get("status", {})
                                 .get("containerStatuses", [{}])) and
                     len(daemon.pods()["guarded"]["status"].get("containerStatuses", [])) == 2,
                     timeout=60, what="the pod running")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{daemon.cli('describe', 'pod', 'guarded').stdout}\n"
                                 f"{(base / 'serve.log').read_text()[-3000:]}") from None
        yield daemon
    finally:
        for f in daemon.manifests.glob("*.yaml"):
            f.unlink()
        if daemon.proc is not None:
            wait_for(lambda: daemon.pods() == {}, timeout=60, what="the pod removed")
        daemon.stop()
        daemon.log.close()
        shutil.rmtree(base, ignore_errors=True)


def logs(daemon: Daemon, container: str) -> str:
    return daemon.cli("logs", "guarded", "-c", container).stdout


def test_another_user_reaches_nothing_of_a_running_node(guarded: Daemon):
    d = guarded
    # the pod works as its own non-root user: configMap and Secret read, emptyDir written, /etc/hosts read,
    # its own umask 0022 (runc's default, not kubelite's), and the setuid bit kept in the image's layer
    wait_for(lambda: "hosts" in logs(d, "app"), timeout=20, what="the app's output")
    out = logs(d, "app")
    assert "uid=1000 umask=0022" in out and "s3cr3t-value" in out and "hello" in out and "wrote" in out, out
    assert logs(d, "suid").split()[0] == "4755"
    done = d.cli("exec", "-c", "app", "guarded", "--", "cat", "/data/w")
    assert done.stdout.strip() == "ok", done

    paths, suid = [], []
    for top in (d.root, d.run_dir):
        for parent, dirs, files in os.walk(top):
            # a container's mounted rootfs is its image again (the layers are walked themselves)
            dirs[:] = [x for x in dirs if not (x == "rootfs" and os.path.ismount(os.path.join(parent, x)))]
            for name in dirs + files:
                path = os.path.join(parent, name)
                paths.append(path)
                if name == "suidbox":
                    suid.append(path)
    assert suid, "the setuid binary is not in the image store"
    owner_only = [p for p in paths if os.path.isfile(p) and not os.path.islink(p) and
                  (p.startswith(str(d.root / "logs")) or p.endswith("/config.json") or p.startswith(str(d.root / "api")))]
    assert len(owner_only) >= 6 and all(os.stat(p).st_mode & 0o777 == 0o600 for p in owner_only), \
        {p: oct(os.stat(p).st_mode) for p in owner_only}
    secret_files = [p for p in paths if p.endswith("/password")]
    assert secret_files, "no Secret file found by the walk"
    named = [str(d.root), str(d.run_dir), str(d.root / "kubelite.db"), str(d.root / "api" / "token"),
             str(d.root / "api" / "ca.key"), str(d.root / "logs")]
    assert all(os.path.lexists(p) for p in named)
    probe_dir = Path(tempfile.mkdtemp(prefix="kubelite-probe-"))
    try:
        os.chmod(probe_dir, 0o755)
        (probe_dir / "paths.json").write_text(json.dumps(named + paths))
        (probe_dir / "suid.json").write_text(json.dumps(suid))
        (probe_dir / "probe.py").write_text(PROBE)
        for f in probe_dir.iterdir():
            f.chmod(0o644)
        result = subprocess.run([*NOBODY, "/usr/bin/python3", str(probe_dir / "probe.py"),
                                 str(probe_dir / "paths.json"), str(probe_dir / "suid.json")],
                                capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(probe_dir)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    # the state root and run dir themselves can be stat'ed by their parent's users, nothing more
    found = [f for f in found if not (f[0] == "exists" and f[1] in (str(d.root), str(d.run_dir)))]
    assert found == [], found[:20]
    assert len(paths) > 100   # the walk saw the node (layers, pods, logs), not an empty directory


def test_an_older_installation_is_tightened_at_start(busybox: Path):
    base = Path(tempfile.mkdtemp(prefix="kubelite-security-"))
    daemon = Daemon(base, busybox, serve_args=("--network", "none", "--api-address", f"127.0.0.1:{free_port()}"))
    try:
        loose = [daemon.root, daemon.root / "images", daemon.root / "logs"]
        for path in loose:
            path.mkdir(exist_ok=True)
            os.chmod(path, 0o755)
        (daemon.root / "logs" / "old.log").write_text("x")
        os.chmod(daemon.root / "logs" / "old.log", 0o644)
        daemon.start()
        wait_for(lambda: "serving" in (base / "serve.log").read_text(), timeout=30, what="the daemon serving")
        for path in loose:
            assert os.stat(path).st_mode & 0o777 == 0o700, path
        assert os.stat(daemon.root / "logs" / "old.log").st_mode & 0o777 == 0o600
        assert os.stat(daemon.root / "kubelite.db").st_mode & 0o777 == 0o600
        assert os.stat(daemon.run_dir).st_mode & 0o777 == 0o700
        assert "tightened the modes" in (base / "serve.log").read_text()
    finally:
        daemon.stop()
        daemon.log.close()
        shutil.rmtree(base, ignore_errors=True)


def _serve_fails(base: Path, *, root: Path | None = None, run_dir: Path | None = None) -> str:
    """`kubelite serve` on these directories: its output (it must exit, refusing them)."""
    (base / "manifests").mkdir()
    env = {**os.environ, "KUBELITE_ROOT": str(root or base / "state"), "KUBELITE_RUN_DIR": str(run_dir or base / "run"),
           "KUBELITE_MANIFESTS": str(base / "manifests"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "runc", "--network",
                           "none", "--no-api"], env=env, capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode != 0, done.stderr
    return done.stdout + done.stderr


def test_unsafe_roots_are_refused_in_one_line(tmp_path: Path):
    base = Path(tempfile.mkdtemp(prefix="kubelite-security-"))
    try:
        os.chmod(base, 0o755)
        real = base / "real-root"
        real.mkdir(mode=0o700)
        (base / "link").symlink_to(real)
        open_dir = base / "open"
        open_dir.mkdir()
        os.chmod(open_dir, 0o777)
        theirs = base / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        cases = {"symlink": {"root": base / "link"}, "world-writable parent": {"run_dir": open_dir / "run"},
                 "another user's": {"root": theirs}}
        for label, dirs in cases.items():
            tmp = tmp_path / label.replace(" ", "-").replace("'", "")
            tmp.mkdir()
            text = _serve_fails(tmp, **dirs)
            refused = [line for line in text.splitlines() if "refused" in line]
            assert len(refused) == 1 and "Traceback" not in text, (label, text)
        assert not any(real.iterdir()), "state written through the symlink"
        assert not (open_dir / "run").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
