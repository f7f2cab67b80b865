"""Pulls from a real registry on loopback: Debian's docker-registry, started here, images pushed by skopeo.

Anonymous, htpasswd basic auth and bearer-token registries; TLS with a CA in certs.d; image indexes;
gzip, zstd and uncompressed layers; a tampered blob; a registry that dies mid-download and a pull
that resumes; a missing tag; two pulls of one image at once; `kubelite image pull`.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kubelite.runtime import registry
from kubelite.runtime.images import ImageStore, host_architecture
from kubelite.runtime.registry import PullError, RegistryConfig, load_credentials, parse_challenge
from tests.real import REPO, build_busybox
from tests.registries import CuttingProxy, Registry, layer_tar, oci_index_layout, oci_layout, require_registry

BIG = 8 << 20


def noise(size: int, seed: int) -> bytes:
    """Incompressible bytes, so a gzip layer is as big as its content."""
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    require_registry()
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def busybox(work) -> Path:
    return build_busybox(work / "busybox.tar")


@pytest.fixture(scope="module")
def anon(work, busybox):
    """An anonymous registry with busybox, a three-layer image and a big-layer image pushed."""
    reg = Registry(work / "anon").start()
    try:
        reg.busybox_digest = reg.push(f"docker-archive:{busybox}", "library/busybox:1.36")
        reg.push(oci_layout(work / "multi", [layer_tar({"etc/a": b"a" * 1000}),
                                             layer_tar({"etc/b": b"b" * 5000}),
                                             layer_tar({"etc/c": b"c" * 300})]), "multi:v1")
        reg.push(oci_layout(work / "big", [layer_tar({"small": b"s"}), layer_tar({"big": noise(BIG, 1)})]), "big:v1")
        yield reg
    finally:
        reg.stop()


def auth_file(path: Path, host: str, user: str, password: str) -> Path:
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    return path


def layers_of(store: ImageStore, ref: str) -> list[Path]:
    image = store.get(ref)
    assert image is not None, f"{ref} is not in the store"
    return store.layer_dirs(image)


# ------------------------------------------------------------------ anonymous


def test_an_image_is_pulled_verified_and_named_by_tag_and_digest(tmp_path, anon):
    assert media_type(anon, "library/busybox", "1.36") == registry.MEDIA_DOCKER_MANIFEST   # Docker v2 schema 2
    store = ImageStore(tmp_path)
    result = registry.pull(store, f"{anon.host}/library/busybox:1.36")
    assert result.digest == anon.busybox_digest
    assert set(result.image.names) == {f"{anon.host}/library/busybox:1.36",
                                       f"{anon.host}/library/busybox@{anon.busybox_digest}"}
    [layer] = layers_of(store, f"{anon.host}/library/busybox:1.36")
    assert (layer / "bin" / "busybox").is_file() and os.readlink(layer / "bin" / "sh") == "busybox"
    assert result.image.config.cmd == ("sh",)
    assert os.listdir(store.downloads_dir) == [], "the downloaded blobs are gone once unpacked"


def test_a_multi_layer_image_and_a_second_pull_fetches_no_blob(tmp_path, anon):
    store = ImageStore(tmp_path)
    first = registry.pull(store, f"{anon.host}/multi:v1")
    dirs = layers_of(store, f"{anon.host}/multi:v1")
    assert [sorted(os.listdir(d / "etc")) for d in dirs] == [["a"], ["b"], ["c"]]
    assert first.downloaded > 0
    blob_gets = anon.requests("/v2/multi/blobs/")
    again = registry.pull(store, f"{anon.host}/multi:v1")
    assert again.downloaded == 0 and again.image.id == first.image.id
    assert anon.requests("/v2/multi/blobs/") == blob_gets + 1, "only the config is fetched again"


def test_a_pulled_image_saves_as_a_docker_archive_that_loads_with_the_same_id(tmp_path, anon):
    """gzip blobs from the registry, the exact uncompressed tars in the archive: the diff_ids, hence the id."""
    import io

    store = ImageStore(tmp_path / "pulled")
    pulled = registry.pull(store, f"{anon.host}/multi:v1").image
    out = io.BytesIO()
    store.save([f"{anon.host}/multi:v1"], out)
    archive = tmp_path / "multi.tar"
    archive.write_bytes(out.getvalue())
    [loaded] = ImageStore(tmp_path / "loaded").load(archive)
    assert loaded.id == pulled.id and loaded.layers == pulled.layers and loaded.names == (f"{anon.host}/multi:v1",)


def test_pull_by_digest(tmp_path, anon):
    store = ImageStore(tmp_path)
    ref = f"{anon.host}/library/busybox@{anon.busybox_digest}"
    result = registry.pull(store, ref)
    assert result.image.names == (ref,)


def test_a_missing_tag_and_a_missing_repository_are_not_found(tmp_path, anon):
    store = ImageStore(tmp_path)
    with pytest.raises(PullError, match=rf"^{anon.host}/multi:nope: not found \(MANIFEST_UNKNOWN"):
        registry.pull(store, f"{anon.host}/multi:nope")
    with pytest.raises(PullError, match="not found"):
        registry.pull(store, f"{anon.host}/nobody/here:v1")
    assert store.list() == []


def media_type(reg: Registry, repository: str, reference: str) -> str:
    import httpx

    response = httpx.get(f"http://{reg.host}/v2/{repository}/manifests/{reference}",
                         headers={"Accept": registry.ACCEPT})
    return response.headers["content-type"]


@pytest.mark.parametrize("form, media", [("oci", "application/vnd.oci.image.index.v1+json"),
                                         ("v2s2", "application/vnd.docker.distribution.manifest.list.v2+json")])
def test_an_image_index_or_manifest_list_gives_the_image_for_this_machine(tmp_path, work, anon, form, media):
    ours = host_architecture()
    other = "s390x" if ours != "s390x" else "amd64"
    source = oci_index_layout(work / f"index-{form}", {other: [layer_tar({"which": b"other"})],
                                                        ours: [layer_tar({"which": b"ours"})]})
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--format", form, "--dest-tls-verify=false", source,
                    f"docker://{anon.host}/multiarch:{form}"], check=True, capture_output=True, timeout=60)
    assert media_type(anon, "multiarch", form) == media
    store = ImageStore(tmp_path)
    registry.pull(store, f"{anon.host}/multiarch:{form}")
    [layer] = layers_of(store, f"{anon.host}/multiarch:{form}")
    assert (layer / "which").read_bytes() == b"ours"


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_zstd_and_uncompressed_layers(tmp_path, work, anon, compress):
    anon.push(oci_layout(work / f"layers-{compress}", [layer_tar({"f": compress.encode() * 100})], compress=compress),
              f"compress:{compress}")
    store = ImageStore(tmp_path)
    registry.pull(store, f"{anon.host}/compress:{compress}")
    [layer] = layers_of(store, f"{anon.host}/compress:{compress}")
    assert (layer / "f").read_bytes() == compress.encode() * 100


def test_a_tampered_blob_is_refused_and_nothing_is_stored(tmp_path, work, anon):
    anon.push(oci_layout(work / "tamper", [layer_tar({"good": b"g" * 4096})]), "tamper:v1")
    manifest = json.loads((work / "tamper" / "index.json").read_text())["manifests"][0]["digest"]
    layer_digest = json.loads((work / "tamper" / "blobs" / "sha256" / manifest.split(":")[1]).read_text())[
        "layers"][0]["digest"]
    blob = anon.blob_path(layer_digest)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF                   # same length, one byte changed
    blob.write_bytes(bytes(data))
    store = ImageStore(tmp_path)
    with pytest.raises(PullError, match=rf"blob {layer_digest} has digest sha256:[0-9a-f]{{64}}: refusing it"):
        registry.pull(store, f"{anon.host}/tamper:v1")
    assert store.list() == []
    assert not (tmp_path / "images" / "layers").exists() or os.listdir(tmp_path / "images" / "layers") == []
    assert [p for p in os.listdir(store.downloads_dir) if not p.endswith(".partial")] == []


def test_a_registry_that_dies_mid_pull_leaves_no_image_and_the_next_pull_resumes(tmp_path, anon):
    proxy = CuttingProxy(anon.port, cut_after=2 << 20).start()
    store = ImageStore(tmp_path)
    try:
        with pytest.raises(PullError, match="broke off after|sent .* of the"):
            registry.pull(store, f"{proxy.host}/big:v1")
        assert proxy.cuts == 1
        assert store.list() == [] and store.get(f"{proxy.host}/big:v1") is None
        partial = [p for p in store.downloads_dir.iterdir() if p.name.endswith(".partial") and p.stat().st_size]
        assert partial, "the bytes that arrived are kept for the next pull"
        kept = partial[0].stat().st_size
        with pytest.raises(PullError, match="cannot reach the registry"):
            registry.pull(store, f"{proxy.host}/big:v1")    # it is still down
        proxy.start()                                       # back up
        result = registry.pull(store, f"{proxy.host}/big:v1")
    finally:
        proxy.stop()
    assert 0 < result.downloaded <= BIG + 4096 - kept, "only the rest was fetched"
    layer = layers_of(store, f"{proxy.host}/big:v1")[1]
    assert (layer / "big").read_bytes() == noise(BIG, 1)
    assert os.listdir(store.downloads_dir) == []


def test_two_pulls_of_one_image_at_once_share_one_download(tmp_path, work, anon):
    anon.push(oci_layout(work / "shared", [layer_tar({"shared": noise(4 << 20, 2)})]), "shared:v1")
    store = ImageStore(tmp_path)
    before = anon.requests("/v2/shared/blobs/")
    results: list[object] = []

    def one() -> None:
        try:
            results.append(registry.pull(store, f"{anon.host}/shared:v1"))
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, registry.PullResult) for r in results), results
    assert sum(r.downloaded for r in results) < 2 * (4 << 20), "the layer was fetched once"
    layer_gets = anon.requests("/v2/shared/blobs/") - before - 2   # minus the two configs
    assert layer_gets == 1


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_registries_that_need_credentials(tmp_path, work, busybox, auth):
    reg = Registry(work / f"auth-{auth}", auth=auth).start()
    try:
        reg.push(f"docker-archive:{busybox}", "private/busybox:1.36")
        ref = f"{reg.host}/private/busybox:1.36"
        store = ImageStore(tmp_path)
        with pytest.raises(PullError, match=f"the registry {reg.host} requires credentials: none for"):
            registry.pull(store, ref, config=RegistryConfig(auth_file=tmp_path / "absent.json"))
        wrong = auth_file(tmp_path / "wrong.json", reg.host, "alice", "not-her-password")
        with pytest.raises(PullError, match=f"refused the credentials from {wrong}"):
            registry.pull(store, ref, config=RegistryConfig(auth_file=wrong))
        good = auth_file(tmp_path / "good.json", reg.host, "alice", "wonderland")
        result = registry.pull(store, ref, config=RegistryConfig(auth_file=good))
        assert ref in result.image.names
        if auth == "token":
            issued = reg.token_server.issued   # type: ignore[union-attr]
            assert {"type": "repository", "name": "private/busybox", "actions": ["pull"]} in issued[-1]["access"]
    finally:
        reg.stop()


def test_credentials_file_forms(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:secret").decode()},
        "http://registry.example:5000/v2/": {"username": "u", "password": "p"},
        "token.example": {"identitytoken": "xyz"},
    }}))
    assert load_credentials(path, "docker.io") == registry.Credentials("hub", "secret")
    assert load_credentials(path, "registry.example:5000") == registry.Credentials("u", "p")
    assert load_credentials(path, "other.example") is None
    assert load_credentials(tmp_path / "absent.json", "docker.io") is None
    with pytest.raises(PullError, match="identity token"):
        load_credentials(path, "token.example")
    path.write_text("{not json")
    with pytest.raises(PullError, match=f"cannot read the credentials file {path}"):
        load_credentials(path, "docker.io")


def test_challenges_are_parsed():
    c = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                        'scope="repository:library/busybox:pull"')
    assert (c.scheme, c.params["realm"], c.params["service"]) == ("bearer", "https://auth.docker.io/token",
                                                                  "registry.docker.io")
    assert parse_challenge('Basic realm="x"').scheme == "basic"


# ------------------------------------------------------------------ TLS


def test_tls_with_the_ca_in_certs_d_and_a_wrong_ca_refused(tmp_path, work, busybox):
    from tests.registries import self_signed

    reg = Registry(work / "tls", tls=True).start()
    try:
        reg.push(f"docker-archive:{busybox}", "library/busybox:1.36")
        ref = f"{reg.host}/library/busybox:1.36"
        certs = tmp_path / "certs.d"
        (certs / reg.host).mkdir(parents=True)
        wrong, _ = self_signed(tmp_path, "someone-else")
        (certs / reg.host / "ca.crt").write_bytes(wrong.read_bytes())
        with pytest.raises(PullError, match="certificate"):
            registry.pull(ImageStore(tmp_path / "a"), ref, config=RegistryConfig(certs_dir=certs))
        assert reg.cert is not None
        (certs / reg.host / "ca.crt").write_bytes(reg.cert.read_bytes())
        registry.pull(ImageStore(tmp_path / "b"), ref, config=RegistryConfig(certs_dir=certs))
        # without certs.d a loopback registry is insecure, as with Docker: HTTPS, the certificate unchecked
        registry.pull(ImageStore(tmp_path / "c"), ref, config=RegistryConfig(certs_dir=tmp_path / "none"))
    finally:
        reg.stop()


def test_a_registry_with_its_own_ca_is_never_reached_over_plain_http(tmp_path, anon):
    """certs.d for a loopback registry makes it a secure one: HTTPS only, so this plain-HTTP registry fails."""
    certs = tmp_path / "certs.d"
    (certs / anon.host).mkdir(parents=True)
    from tests.registries import self_signed

    ca, _ = self_signed(tmp_path, "ca")
    (certs / anon.host / "ca.crt").write_bytes(ca.read_bytes())
    with pytest.raises(PullError, match=f"cannot reach the registry {anon.host}"):
        registry.pull(ImageStore(tmp_path), f"{anon.host}/multi:v1", config=RegistryConfig(certs_dir=certs))


# ------------------------------------------------------------------ the command


def test_kubelite_image_pull_prints_plain_lines_when_not_a_terminal(tmp_path, anon):
    env = {**os.environ, "KUBELITE_ROOT": str(tmp_path), "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "pull", f"{anon.host}/multi:v1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Resolved: 3 layers, ")
    assert sum(line.startswith("Layer ") and "fetched" in line for line in lines) == 3
    assert lines[-1].startswith(f"Pulled {anon.host}/multi:v1: sha256:")
    assert "\r" not in run.stdout
    listed = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "ls"], capture_output=True,
                            text=True, env=env, timeout=30)
    assert f"{anon.host}/multi:v1" in listed.stdout
    assert "@sha256" not in listed.stdout, "digest references are listed only for images without a tag"
    missing = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "pull", f"{anon.host}/multi:v9"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode != 0
    assert missing.stderr.strip() == f"error: {anon.host}/multi:v9: not found (MANIFEST_UNKNOWN: manifest unknown)"
    removed = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "rm", f"{anon.host}/multi:v1"],
                             capture_output=True, text=True, env=env, timeout=30)
    assert removed.returncode == 0, removed.stderr
    store = ImageStore(tmp_path)
    assert store.list() == [], "its digest reference alone does not keep the image"
    assert os.listdir(tmp_path / "images" / "layers") == []


def test_the_terminal_display_rewrites_one_line():
    import io

    from kubelite.cli.image import PullDisplay
    from kubelite.runtime.registry import Progress

    out = io.StringIO()
    display = PullDisplay(out, tty=True)
    display.update(Progress("resolved", layers=2, total=2000))
    display.update(Progress("exists", digest="sha256:" + "a" * 64))
    display.update(Progress("downloaded", digest="sha256:" + "b" * 64, done=2000, total=2000))
    display.finish()
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == 4
    assert "layers 2/2, 2.0kB / 2.0kB" in text


# ------------------------------------------------------------------ references (pure)


@pytest.mark.parametrize("ref, parts, api", [
    ("busybox", ("docker.io", "library/busybox", "latest", None), "registry-1.docker.io"),
    ("team/app:v1", ("docker.io", "team/app", "v1", None), "registry-1.docker.io"),
    ("127.0.0.1:5000/a/b@sha256:" + "c" * 64, ("127.0.0.1:5000", "a/b", None, "sha256:" + "c" * 64), "127.0.0.1:5000"),
    ("r.example/app:v2@sha256:" + "d" * 64, ("r.example", "app", "v2", "sha256:" + "d" * 64), "r.example"),
])
def test_references_are_split_as_docker_splits_them(ref, parts, api):
    from kubelite.runtime import reference

    parsed = reference.parse(ref)
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == parts
    assert parsed.api_host == api
    assert parsed.by_digest == (parts[3] or parts[2])


@pytest.mark.parametrize("registry_, loopback", [("localhost:5000", True), ("127.0.0.1:5000", True),
                                                 ("127.3.2.1", True), ("[::1]:5000", True), ("10.0.0.1:5000", False),
                                                 ("registry.example", False), ("localhost.example", False)])
def test_loopback_registries_are_insecure_by_default(registry_, loopback):
    from kubelite.runtime import reference

    assert reference.is_loopback(registry_) is loopback


def test_credentials_are_not_sent_to_a_plain_http_token_service_of_a_tls_registry(tmp_path, work, busybox):
    reg = Registry(work / "tls-token", tls=True, auth="token").start()
    try:
        reg.push(f"docker-archive:{busybox}", "private/busybox:1.36")
        certs = tmp_path / "certs.d"
        (certs / reg.host).mkdir(parents=True)
        assert reg.cert is not None
        (certs / reg.host / "ca.crt").write_bytes(reg.cert.read_bytes())
        good = auth_file(tmp_path / "good.json", reg.host, "alice", "wonderland")
        before = len(reg.token_server.issued)   # type: ignore[union-attr]
        with pytest.raises(PullError, match="plain HTTP: refusing to send it the credentials"):
            registry.pull(ImageStore(tmp_path), f"{reg.host}/private/busybox:1.36",
                          config=RegistryConfig(auth_file=good, certs_dir=certs))
        assert len(reg.token_server.issued) == before   # type: ignore[union-attr]
    finally:
        reg.stop()
