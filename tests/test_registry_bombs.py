"""A registry that answers with bombs: every body a pull reads is bounded after decompression.

A small registry on 127.0.0.1 (`tests.registries.BombRegistry`: a thread, answers from a table) serves gzip answers of
about 2 MB that expand to 2 GiB — for `GET /v2/`, an error, a token and a manifest — a manifest
over the limit, a blob longer than its descriptor says, and layers that unpack to more than the
bound (`--image-max-layer-size`) or past the image GC high threshold. Each pull fails within
seconds with one line that names the image, the answer and the limit; `kubelite image pull` stays
small (its peak RSS, from GNU time); nothing is left in the image store.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from kubelite.runtime import registry
from kubelite.runtime.images import ImageStore, UnpackLimits
from kubelite.runtime.registry import PullError, RegistryConfig
from tests.real import REPO
from tests.registries import Answer, BombRegistry, gzip_of

MIB = 1 << 20
GIB = 1 << 30
TIME = "/usr/bin/time"   # GNU time: the peak RSS of `kubelite image pull`
#: what `kubelite image pull` may reach with any bomb: the interpreter and a few MiB of chunks (a
#: bomb read whole is 2 GiB or more)
RSS_LIMIT_MIB = 160


# ------------------------------------------------------------------------------------ bombs


@pytest.fixture(scope="module")
def json_bomb() -> bytes:
    """About 2 MB of gzip: a JSON object padded with 2 GiB of spaces… of zeros (what it is matters not)."""
    data = gzip_of(b'{"padding": "', 2 * GIB, b'"}')
    assert len(data) < 3 * MIB
    return data


def tar_of_zeros(size: int) -> tuple[bytes, bytes]:
    """The header and the end of a tar holding one file of `size` zero bytes (the zeros go between)."""
    info = tarfile.TarInfo("zeros")
    info.size, info.mode, info.mtime = size, 0o644, 1672531200
    return info.tobuf(tarfile.GNU_FORMAT), bytes(1024)   # the zeros fill whole blocks: no padding


def tar_of(files: dict[str, bytes], *, pax: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1672531200
            if pax:
                info.pax_headers = dict(pax)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---------------------------------------------------------------------------- the registry


@pytest.fixture
def reg():
    r = BombRegistry()
    try:
        yield r
    finally:
        r.close()


def small_image(reg: BombRegistry, repo: str = "app", tag: str = "v1") -> None:
    tar = tar_of({"hello": b"hello\n"})
    reg.image(repo, tag, [reg.blob(repo, gzip.compress(tar, mtime=0))], ["sha256:" + hashlib.sha256(tar).hexdigest()])


def leftovers(root: Path) -> list[str]:
    """What a failed pull left in the image store: images, layers, configs, temporary files, downloads."""
    images = root / "images"
    found = []
    for sub in ("layers", "configs", "tmp", "downloads"):
        if (images / sub).is_dir():
            found += [f"{sub}/{name}" for name in os.listdir(images / sub)]
    if (images / "index.json").exists():
        index = json.loads((images / "index.json").read_text())
        found += [f"index: {ref}" for ref in index["references"]]
    return found


def pull_command(root: Path, ref: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], int, float]:
    """`kubelite image pull` as a process under GNU time: its result, peak RSS in MiB, and wall time."""
    env = {**os.environ, "KUBELITE_ROOT": str(root), "PYTHONPATH": str(REPO),
           "KUBELITE_AUTHFILE": str(root / "no-auth.json")}
    started = time.monotonic()
    run = subprocess.run([TIME, "-f", "peak-rss-kib %M", sys.executable, "-m", "kubelite.cli.main", "image", "pull",
                          ref, *extra], capture_output=True, text=True, env=env, timeout=120)
    seconds = time.monotonic() - started
    rss = [line for line in run.stderr.splitlines() if line.startswith("peak-rss-kib ")]
    assert rss, run.stderr
    return run, int(rss[-1].split()[1]) // 1024, seconds


def error_line(run: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in run.stderr.splitlines()
             if not line.startswith(("peak-rss-kib ", "Command exited with non-zero status"))]
    assert len(lines) == 1, run.stderr
    return lines[0]


# ------------------------------------------------------------------- answers that expand


GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
GZIP_MANIFEST = {"Content-Encoding": "gzip", "Content-Type": registry.MEDIA_OCI_MANIFEST}


def arm(reg: BombRegistry, where: str, bomb: bytes) -> str:
    """Put a bomb where named; returns the line the pull must fail with (a regex)."""
    if where == "ping":
        reg.routes["/v2/"] = Answer(body=bomb, headers=GZIP)
        return rf"^error: {reg.host}/app:v1: the answer of the registry {reg.host} to GET /v2/ is larger than 1Mi"
    if where == "error":
        reg.routes["/v2/app/manifests/v1"] = Answer(404, bomb, GZIP)
        return (rf"^error: {reg.host}/app:v1: not found \(the registry's error message is larger than 64Ki "
                "once decompressed: not read\\)$")
    if where == "token":
        realm = f"http://{reg.host}/token"
        reg.routes["/v2/"] = Answer(401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="bombs"'})
        reg.routes["/token"] = Answer(body=bomb, headers=GZIP)
        return rf"^error: {reg.host}/app:v1: the answer of the token service {realm} is larger than 1Mi"
    assert where == "manifest"
    reg.routes["/v2/app/manifests/v1"] = Answer(body=bomb, headers=GZIP_MANIFEST)
    return rf"^error: {reg.host}/app:v1: the manifest is larger than 4Mi"


@pytest.mark.parametrize("where", ["ping", "error", "token", "manifest"])
def test_a_2_mb_gzip_answer_of_2_gib_fails_the_pull_fast_and_small(tmp_path, reg, json_bomb, where):
    small_image(reg)
    expected = arm(reg, where, json_bomb)
    run, rss_mib, seconds = pull_command(tmp_path, f"{reg.host}/app:v1")
    assert run.returncode == 1
    line = error_line(run)
    import re

    assert re.search(expected, line), line
    if where != "error":
        assert line.endswith("once decompressed: refusing it"), line
    assert rss_mib < RSS_LIMIT_MIB, f"peak RSS {rss_mib} MiB"
    assert seconds < 20
    assert leftovers(tmp_path) == []


def test_a_gzip_encoded_manifest_and_config_are_decoded_and_verified(tmp_path, reg):
    """Content-Encoding is the transport's: the digest is of the decoded manifest, as the registry names it."""
    small_image(reg)
    path = "/v2/app/manifests/v1"
    manifest = reg.routes[path].body
    reg.routes[path] = Answer(body=gzip.compress(manifest), headers=GZIP_MANIFEST)
    config_desc = json.loads(manifest)["config"]
    config_path = f"/v2/app/blobs/{config_desc['digest']}"
    reg.routes[config_path] = Answer(body=zlib.compress(reg.routes[config_path].body),
                                     headers={"Content-Encoding": "deflate"})
    result = registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
    assert result.digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    [layer] = ImageStore(tmp_path).layer_dirs(result.image)
    assert (layer / "hello").read_bytes() == b"hello\n"


def test_an_encoding_kubelite_did_not_ask_for_is_refused(tmp_path, reg):
    small_image(reg)
    path = "/v2/app/manifests/v1"
    reg.routes[path] = Answer(body=reg.routes[path].body, headers={"Content-Encoding": "br"})
    with pytest.raises(PullError, match=r"the manifest is sent with Content-Encoding 'br', which kubelite did "
                                        r"not ask for \(gzip and deflate only\)"):
        registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
    assert leftovers(tmp_path) == []


def test_a_manifest_over_4_mib_is_refused_without_compression_too(tmp_path, reg):
    small_image(reg)
    big = json.dumps({"schemaVersion": 2, "padding": "x" * (4 * MIB)}).encode()
    reg.routes["/v2/app/manifests/v1"] = Answer(body=big, headers={"Content-Type": registry.MEDIA_OCI_MANIFEST},
                                                length=False)
    with pytest.raises(PullError, match=rf"^{reg.host}/app:v1: the manifest is larger than 4Mi once decompressed: "
                                        "refusing it$"):
        registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
    assert leftovers(tmp_path) == []


def test_a_gzip_bomb_config_is_stopped_at_its_declared_size(tmp_path, reg, json_bomb):
    small_image(reg)
    config_desc = json.loads(reg.routes["/v2/app/manifests/v1"].body)["config"]
    reg.routes[f"/v2/app/blobs/{config_desc['digest']}"] = Answer(body=json_bomb, headers=GZIP)
    started = time.monotonic()
    with pytest.raises(PullError, match=rf"^{reg.host}/app:v1: the image config {config_desc['digest']} is larger "
                                        rf"than its descriptor's {config_desc['size']} bytes once decompressed"):
        registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
    assert time.monotonic() - started < 10
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------- blobs


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "until-close"])
def test_a_blob_longer_than_its_descriptor_fails_and_leaves_no_partial_file(tmp_path, reg, length):
    tar = tar_of({"f": os.urandom(256 << 10)})
    blob = gzip.compress(tar, compresslevel=1, mtime=0)
    desc = reg.blob("app", blob)
    reg.routes[f"/v2/app/blobs/{desc['digest']}"] = Answer(body=blob + os.urandom(8 * MIB), length=length)
    reg.image("app", "v1", [desc], ["sha256:" + hashlib.sha256(tar).hexdigest()])
    with pytest.raises(PullError, match=rf"^{reg.host}/app:v1: blob {desc['digest']} is longer than the "
                                        rf"{len(blob)} bytes its descriptor says: refusing it$"):
        registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------- layers


def zero_layer(reg: BombRegistry, size: int, repo: str = "bomb") -> str:
    """An image whose one layer is a gzip tar of one file of `size` zero bytes; returns its reference."""
    head, end = tar_of_zeros(size)
    blob = gzip_of(head, size, end)
    reg.image(repo, "v1", [reg.blob(repo, blob)], ["sha256:" + hashlib.sha256(b"never checked").hexdigest()])
    return f"{reg.host}/{repo}:v1"


def test_a_layer_bomb_fails_the_command_at_the_bound_given(tmp_path, reg):
    ref = zero_layer(reg, 1 * GIB)
    run, rss_mib, seconds = pull_command(tmp_path, ref, "--image-max-layer-size", "64Mi")
    assert run.returncode == 1
    line = error_line(run)
    assert line.startswith("error: layer sha256:") and line.endswith(
        f" of {ref} unpacks to more than 64Mi (--image-max-layer-size): refusing it"), line
    assert rss_mib < RSS_LIMIT_MIB and seconds < 20
    assert leftovers(tmp_path) == []


def test_many_files_over_the_bound_fail_once_the_bound_is_crossed(tmp_path, reg):
    tar = tar_of({f"f{i}": os.urandom(MIB) for i in range(8)})
    blob = gzip.compress(tar, compresslevel=1, mtime=0)
    reg.image("many", "v1", [reg.blob("many", blob)], ["sha256:" + hashlib.sha256(tar).hexdigest()])
    store = ImageStore(tmp_path)
    with pytest.raises(PullError, match=r"unpacks to more than 5Mi \(--image-max-layer-size\): refusing it$"):
        registry.pull(store, f"{reg.host}/many:v1", config=RegistryConfig(max_layer_bytes=5 * MIB))
    assert leftovers(tmp_path) == []
    result = registry.pull(store, f"{reg.host}/many:v1", config=RegistryConfig(max_layer_bytes=9 * MIB))
    assert result.image.size == 8 * MIB, "the same layer under a bound it fits in is pulled"


def test_a_huge_pax_header_is_refused_before_it_is_read(tmp_path, reg):
    """tarfile reads a pax header whole: one that says 512 MiB must not be read (Go's archive/tar
    bounds them at 1 MiB too)."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 512 * MIB
    head = info.tobuf(tarfile.USTAR_FORMAT)
    blob = gzip_of(head, 512 * MIB, bytes(1024))
    reg.image("pax", "v1", [reg.blob("pax", blob)], ["sha256:" + hashlib.sha256(b"x").hexdigest()])
    started = time.monotonic()
    with pytest.raises(PullError, match=r"has a tar header record of 536870912 bytes, more than 1048576: refusing it"):
        registry.pull(ImageStore(tmp_path), f"{reg.host}/pax:v1")
    assert time.monotonic() - started < 10
    assert leftovers(tmp_path) == []


def test_a_layer_that_would_fill_the_image_filesystem_past_the_gc_high_threshold_fails(tmp_path, reg, monkeypatch):
    tar = tar_of({f"f{i}": os.urandom(4 * MIB) for i in range(3)})
    blob = gzip.compress(tar, compresslevel=1, mtime=0)
    reg.image("fill", "v1", [reg.blob("fill", blob)], ["sha256:" + hashlib.sha256(tar).hexdigest()])
    small_image(reg)
    store = ImageStore(tmp_path)
    unpacked = tmp_path / "images" / "tmp"

    def usage() -> tuple[int, int]:
        """A 100 MiB filesystem, 80 MiB used before the pull, plus what the pull has unpacked so far."""
        written = sum(p.stat().st_size for p in unpacked.rglob("*") if p.is_file()) if unpacked.is_dir() else 0
        return 80 * MIB + written, 100 * MIB

    monkeypatch.setattr(store, "disk_usage", usage)
    config = RegistryConfig(gc_high_percent=85)
    with pytest.raises(PullError, match=rf"^layer sha256:[0-9a-f]{{64}} of {reg.host}/fill:v1 would fill the image "
                                        r"filesystem past 85% \(--image-gc-high-threshold\): 88% with this layer; "
                                        r"free space or raise the threshold$"):
        registry.pull(store, f"{reg.host}/fill:v1", config=config)
    assert leftovers(tmp_path) == []
    registry.pull(store, f"{reg.host}/app:v1", config=config)   # a small layer still fits below the threshold
    registry.pull(store, f"{reg.host}/fill:v1", config=RegistryConfig(gc_high_percent=95))


def test_unpack_limits_are_kept_with_the_pull(tmp_path):
    assert RegistryConfig().max_layer_bytes == UnpackLimits().max_layer_bytes == 64 * GIB
    assert RegistryConfig().gc_high_percent == 85


def test_raw_deflate_and_gzip_in_several_members_are_decoded(tmp_path, reg):
    small_image(reg)
    path = "/v2/app/manifests/v1"
    manifest = reg.routes[path].body
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    reg.routes[path] = Answer(body=raw.compress(manifest) + raw.flush(), headers={"Content-Encoding": "deflate"})
    config_desc = json.loads(manifest)["config"]
    config_path = f"/v2/app/blobs/{config_desc['digest']}"
    config = reg.routes[config_path].body
    reg.routes[config_path] = Answer(body=gzip.compress(config[:10]) + gzip.compress(config[10:]),
                                     headers={"Content-Encoding": "gzip"})
    result = registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
    assert result.image.id == config_desc["digest"]


# ------------------------------------------------------------------------- the flags


def test_the_flags_give_the_limits_to_the_pull():
    from kubelite.cli.image import registry_config
    from kubelite.cli.main import _parser
    from kubelite.errors import UsageError

    for argv in (["image", "pull", "x"], ["serve"]):
        config = registry_config(_parser().parse_args(argv))
        assert (config.max_layer_bytes, config.gc_high_percent) == (64 * GIB, 85)
    config = registry_config(_parser().parse_args(["image", "pull", "--image-max-layer-size", "1.5Gi",
                                                   "--image-gc-high-threshold", "90", "x"]))
    assert (config.max_layer_bytes, config.gc_high_percent) == (3 * GIB // 2, 90)
    config = registry_config(_parser().parse_args(["serve", "--image-max-layer-size", "20G",
                                                   "--image-gc-high-threshold", "70"]))
    assert (config.max_layer_bytes, config.gc_high_percent) == (20 * 10**9, 70)
    for bad in ("lots", "-1Gi", "1Ki", "64Gi\n"):
        with pytest.raises(UsageError, match="--image-max-layer-size"):
            registry_config(_parser().parse_args(["image", "pull", f"--image-max-layer-size={bad}", "x"]))
    with pytest.raises(UsageError, match="--image-gc-high-threshold"):
        registry_config(_parser().parse_args(["image", "pull", "--image-gc-high-threshold", "101", "x"]))


# ------------------------------------------------------------------------- redirects


def _blob_paths(reg: BombRegistry, repo: str = "app") -> tuple[str, str]:
    """The config's and the layer's blob paths of `small_image`."""
    manifest = json.loads(reg.routes[f"/v2/{repo}/manifests/v1"].body)
    return (f"/v2/{repo}/blobs/{manifest['config']['digest']}",
            f"/v2/{repo}/blobs/{manifest['layers'][0]['digest']}")


def redirect(reg: BombRegistry, path: str, to: str, *, status: int = 307, body: bytes = b"",
             headers: dict[str, str] | None = None) -> str:
    """Move the answer at `path` to `to` (a path on this registry, or a URL) behind a redirect; returns `to`."""
    if to.startswith("/"):
        reg.routes[to] = reg.routes[path]
    reg.routes[path] = Answer(status, body, {"Location": to, **(headers or {})})
    return to


def test_a_redirect_with_a_gzip_bomb_body_is_never_read(tmp_path, reg, json_bomb):
    """A registry (or a CDN) that sends 2 GiB of gzip with its redirect: the body is closed unread."""
    small_image(reg)
    config_path, layer_path = _blob_paths(reg)
    redirect(reg, config_path, "/cdn/config", status=302, body=json_bomb, headers=GZIP)
    redirect(reg, layer_path, "/cdn/layer", body=json_bomb, headers=GZIP)
    run, rss_mib, seconds = pull_command(tmp_path, f"{reg.host}/app:v1")
    assert run.returncode == 0, run.stderr
    assert rss_mib < RSS_LIMIT_MIB, f"peak RSS {rss_mib} MiB"
    assert seconds < 20
    assert reg.asked.count("/cdn/config") == 1 and reg.asked.count("/cdn/layer") == 1


def test_a_redirect_loop_fails_with_a_clear_message(tmp_path, reg):
    small_image(reg)
    path = "/v2/app/manifests/v1"
    redirect(reg, path, "/elsewhere")
    reg.routes["/elsewhere"] = Answer(302, b"", {"Location": f"http://{reg.host}{path}"})
    with pytest.raises(PullError, match=rf"^the registry {reg.host} redirected http://{reg.host}/(v2/app/manifests/v1|"
                                        r"elsewhere) more than 10 times \(a redirect loop\?\): giving up$"):
        registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
    assert len(reg.asked) - reg.asked.count("/v2/") == 11   # the request, and ten redirects followed
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("location, message", [
    ("ftp://127.0.0.1/blob", "to a ftp: URL: only http and https are followed"),
    ("file:///etc/passwd", "to a file: URL: only http and https are followed"),
    ("https:///blob", "to a URL without a host")])
def test_a_redirect_to_anything_but_http_is_refused(tmp_path, reg, location, message):
    small_image(reg)
    config_path, _ = _blob_paths(reg)
    reg.routes[config_path] = Answer(302, b"", {"Location": location})
    with pytest.raises(PullError, match=rf"^the registry {reg.host} redirected http://{reg.host}{config_path} "
                                        + re.escape(message)):
        registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")


def test_the_token_follows_a_redirect_on_the_same_host_and_never_to_another(tmp_path, reg):
    """Blobs sent to a CDN (another host, or the same host on another port) go there without the
    registry's token, as with Docker and containerd; a redirect within the registry keeps it."""
    cdn = BombRegistry()
    try:
        small_image(reg)
        reg.routes["/v2/"] = Answer(401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{reg.host}/token"'})
        reg.routes["/token"] = Answer(body=b'{"token": "the-registry-token"}')
        config_path, layer_path = _blob_paths(reg)
        redirect(reg, config_path, "/same-host/config")
        cdn.routes["/cdn/layer?sig=abc"] = reg.routes[layer_path]
        cdn.routes["/cdn/layer"] = reg.routes[layer_path]
        reg.routes[layer_path] = Answer(307, b"", {"Location": f"http://{cdn.host}/cdn/layer?sig=abc"})
        result = registry.pull(ImageStore(tmp_path), f"{reg.host}/app:v1")
        assert result.downloaded > 0
        bearer = "Bearer the-registry-token"
        assert reg.authorizations["/v2/app/manifests/v1"][-1] == bearer
        assert reg.authorizations[config_path] == [bearer] and reg.authorizations["/same-host/config"] == [bearer]
        assert reg.authorizations[layer_path] == [bearer]
        assert cdn.authorizations["/cdn/layer"] == [None]
    finally:
        cdn.close()
