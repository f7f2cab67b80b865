"""The image store: loading `docker save` and OCI archives, safe unpacking, sharing and removing layers.

Archives are built here in memory (tarfile), hostile ones included; the busybox image comes from
`scripts/build-busybox-image`. These tests run as root (whiteouts are character devices, opaque
directories carry a trusted.* xattr, and the overlay test mounts).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubelite.errors import KubeliteError
from kubelite.runtime import images
from kubelite.runtime.images import Image, ImageConfig, ImageError, ImageStore, normalize_reference, unpacking

REPO = Path(__file__).resolve().parent.parent
MTIME = 1_600_000_000
HEX_A = "a" * 64

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking whiteouts and owners needs root")


# ------------------------------------------------------------------------------ building archives


def entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, mode: int | None = None, link: str = "",
          uid: int = 0, gid: int = 0, mtime: float = MTIME, devmajor: int = 0, devminor: int = 0,
          pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.uid, info.gid, info.mtime = kind, link, uid, gid, mtime
    info.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.devmajor, info.devminor = devmajor, devminor
    info.pax_headers = pax or {}
    return info, data


def d(name: str, **kw: Any) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, kind=tarfile.DIRTYPE, **kw)


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, kind=tarfile.SYMTYPE, link=target, mode=0o777)


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, kind=tarfile.LNKTYPE, link=target)


def tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def host_arch() -> str:
    return images.host_architecture()


@dataclass
class Img:
    """An image to put into an archive: its layer tars (uncompressed, bottom first) and names."""

    layers: list[bytes]
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=lambda: {"Cmd": ["sh"]})
    diff_ids: list[str] | None = None   # to lie about the layers

    @property
    def config_bytes(self) -> bytes:
        diff_ids = self.diff_ids or [f"sha256:{sha(layer)}" for layer in self.layers]
        return json.dumps({"architecture": host_arch(), "os": "linux", "created": "2024-05-01T10:00:00Z",
                           "config": self.config, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()

    @property
    def id(self) -> str:
        return f"sha256:{sha(self.config_bytes)}"


def write_tar(path: Path, files: dict[str, bytes | tuple[str, str]], *, compress: bool = False) -> Path:
    """An outer archive: name → bytes, or name → ("symlink", target)."""
    entries = []
    for name, value in files.items():
        if isinstance(value, tuple):
            entries.append(sym(name, value[1]))
        else:
            entries.append(entry(name, value))
    data = tar(*entries)
    path.write_bytes(gz(data) if compress else data)
    return path


def docker_save(path: Path, *imgs: Img, gzip_layers: bool = False, compress: bool = False,
                blobs: bool = False) -> Path:
    """A `docker save` archive: classic (<dir>/layer.tar, <id>.json, duplicate layers as symlinks as
    Docker writes them) or, with `blobs`, Docker 25's (blobs/sha256/… plus an OCI index.json)."""
    files: dict[str, bytes | tuple[str, str]] = {}
    manifest, first_path = [], {}
    for i, img in enumerate(imgs):
        layer_paths = []
        for j, layer in enumerate(img.layers):
            blob = gz(layer) if gzip_layers else layer
            if blobs:
                layer_path = f"blobs/sha256/{sha(blob)}"
                files[layer_path] = blob
            elif sha(blob) in first_path:
                layer_path = f"l{i}{j}/layer.tar"
                files[layer_path] = ("symlink", f"../{first_path[sha(blob)]}")
            else:
                layer_path = first_path[sha(blob)] = f"l{i}{j}/layer.tar"
                files[layer_path] = blob
            layer_paths.append(layer_path)
        config_path = f"blobs/sha256/{img.id[7:]}" if blobs else f"{img.id[7:]}.json"
        files[config_path] = img.config_bytes
        manifest.append({"Config": config_path, "RepoTags": img.tags or None, "Layers": layer_paths})
    files["manifest.json"] = json.dumps(manifest).encode()
    if blobs:
        files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
        files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    return write_tar(path, files, compress=compress)


def oci_archive(path: Path, *imgs: tuple[Img, dict[str, str]], gzip_layers: bool = True,
                nested: bool = False, corrupt_layer: bool = False) -> Path:
    """An OCI image layout archive; `nested` puts each manifest behind a multi-arch image index."""
    files: dict[str, bytes | tuple[str, str]] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}

    def blob(data: bytes, media: str, **extra: Any) -> dict[str, Any]:
        files[f"blobs/sha256/{sha(data)}"] = data
        return {"mediaType": media, "digest": f"sha256:{sha(data)}", "size": len(data), **extra}

    descriptors = []
    for img, image_annotations in imgs:
        layer_descs = []
        for layer in img.layers:
            data = gz(layer) if gzip_layers else layer
            layer_descs.append(blob(data, "application/vnd.oci.image.layer.v1.tar+gzip" if gzip_layers
                                    else "application/vnd.oci.image.layer.v1.tar"))
        if corrupt_layer:
            name = f"blobs/sha256/{layer_descs[-1]['digest'][7:]}"
            files[name] = files[name][:-1] + b"\1"  # type: ignore[operator]
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": blob(img.config_bytes, "application/vnd.oci.image.config.v1+json"),
                    "layers": layer_descs}
        desc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        if nested:
            other = blob(b'{"schemaVersion": 2, "layers": [], "config": {}}',
                         "application/vnd.oci.image.manifest.v1+json",
                         platform={"os": "linux", "architecture": "mips64le"})
            index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": [other, {**desc, "platform": {"os": "linux", "architecture": host_arch()}}]}
            desc = blob(json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json")
        descriptors.append({**desc, "annotations": image_annotations})
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": descriptors}).encode()
    return write_tar(path, files)


BASE = tar(d("etc"), entry("etc/os-release", b"ID=test\n"), d("bin"), entry("bin/tool", b"#!/bin/sh\n", mode=0o755))
APP = tar(d("app"), entry("app/main", b"print('hi')\n"))
OTHER = tar(d("srv"), entry("srv/data", b"other\n"))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


def snapshot(store: ImageStore) -> dict[str, Any]:
    """Everything below <root>/images that matters, to compare before and after."""
    top = store.root / "images"
    if not top.exists():
        return {}
    files = sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.name != ".lock")
    index = (top / "index.json").read_text() if (top / "index.json").exists() else None
    return {"files": files, "index": index}


# ------------------------------------------------------------------------------------- references


@pytest.mark.parametrize("ref, full", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("team/app", "docker.io/team/app:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("registry.local:5000/app", "registry.local:5000/app:latest"),
    ("registry.local:5000/team/app:v2", "registry.local:5000/team/app:v2"),
    ("localhost/app:v1", "localhost/app:v1"),
    ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
    ("quay.io/org/app", "quay.io/org/app:latest"),
    ("Registry/app", "Registry/app:latest"),
    ("my_app-x.y__z:V1.0-rc_1", "docker.io/library/my_app-x.y__z:V1.0-rc_1"),
    (f"busybox@sha256:{HEX_A}", f"docker.io/library/busybox@sha256:{HEX_A}"),
    (f"busybox:1.36@sha256:{HEX_A}", f"docker.io/library/busybox:1.36@sha256:{HEX_A}"),
    (f"[fe80::1]:5000/app@sha256:{HEX_A}", f"[fe80::1]:5000/app@sha256:{HEX_A}"),
])
def test_references_are_normalized_by_docker_rules(ref, full):
    assert normalize_reference(ref) == full
    assert normalize_reference(full) == full


@pytest.mark.parametrize("ref", [
    "", "Busybox", "team/App", "busybox:", "busybox:-x", ":tag", "/busybox", "busybox/", "a//b", "bus box",
    "busybox@sha256:abc", f"busybox@md5:{HEX_A}", HEX_A, "-app", "app-", "a" * 256, "reg.io/", "busybox:" + "t" * 129,
])
def test_invalid_references_are_refused(ref):
    with pytest.raises(ImageError):
        normalize_reference(ref)
    assert issubclass(ImageError, KubeliteError)


# --------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("form", ["classic", "gzip-layers", "gzip-archive", "docker25-blobs"])
def test_a_docker_save_archive_loads_lists_gets_and_removes(tmp_path, store, form):
    img = Img([BASE, APP], tags=["app:1.0", "registry.local:5000/team/app"],
              config={"Entrypoint": ["/bin/tool"], "Cmd": ["--serve"], "Env": ["A=1", "PATH=/bin"],
                      "WorkingDir": "/app", "User": "1000:1000", "StopSignal": "SIGQUIT"})
    archive = docker_save(tmp_path / "app.tar", img, gzip_layers=form == "gzip-layers",
                          compress=form == "gzip-archive", blobs=form == "docker25-blobs")

    [loaded] = store.load(archive)

    assert loaded == Image(
        id=img.id, names=("docker.io/library/app:1.0", "registry.local:5000/team/app:latest"),
        config=ImageConfig(entrypoint=("/bin/tool",), cmd=("--serve",), env=("A=1", "PATH=/bin"),
                           working_dir="/app", user="1000:1000", stop_signal="SIGQUIT"),
        layers=(f"sha256:{sha(BASE)}", f"sha256:{sha(APP)}"),
        size=len(b"ID=test\n") + len(b"#!/bin/sh\n") + len(b"print('hi')\n"), created="2024-05-01T10:00:00Z")
    assert store.list() == [loaded]
    for ref in ["app:1.0", "docker.io/library/app:1.0", "registry.local:5000/team/app", img.id, img.id[7:],
                img.id[7:19], img.id[:19]]:
        assert store.get(ref) == loaded, ref
    for ref in ["app", "app:2.0", img.id[7:18], "sha256:" + "0" * 64]:
        assert store.get(ref) is None, ref
    with pytest.raises(ImageError):
        store.get("Not/Valid")

    base_dir, app_dir = store.layer_dirs(loaded)
    assert base_dir == store.root / "images" / "layers" / sha(BASE)
    assert (base_dir / "etc" / "os-release").read_bytes() == b"ID=test\n"
    assert stat.S_IMODE((base_dir / "bin" / "tool").stat().st_mode) == 0o755
    assert (app_dir / "app" / "main").read_bytes() == b"print('hi')\n"
    assert json.loads((store.root / "images" / "index.json").read_text())["references"] == {
        "docker.io/library/app:1.0": img.id, "registry.local:5000/team/app:latest": img.id}
    assert (store.root / "images" / "configs" / f"{img.id[7:]}.json").read_bytes() == img.config_bytes

    assert store.remove("app:1.0") == loaded               # untag: the other name keeps it
    assert store.get("app:1.0") is None
    assert store.get("registry.local:5000/team/app").names == ("registry.local:5000/team/app:latest",)
    assert base_dir.is_dir()
    store.remove("registry.local:5000/team/app")            # the last name: the image goes, and its layers
    assert store.list() == []
    assert not base_dir.exists() and not app_dir.exists()
    assert os.listdir(store.root / "images" / "configs") == []
    assert os.listdir(store.root / "images" / "tmp") == []
    with pytest.raises(ImageError, match="no such image"):
        store.remove("app:1.0")


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "multi-arch-index"])
def test_an_oci_archive_loads_with_its_names(tmp_path, store, nested):
    first = Img([BASE, APP], config={"Cmd": ["/app/main"]})
    second = Img([BASE, OTHER], config={"Entrypoint": "/srv/run"})   # a lone string, as Docker allows
    third = Img([OTHER])
    archive = oci_archive(tmp_path / "oci.tar",
                          (first, {"org.opencontainers.image.ref.name": "quay.io/org/first:v1"}),
                          (second, {"io.containerd.image.name": "docker.io/library/second:latest",
                                    "org.opencontainers.image.ref.name": "latest"}),
                          (third, {"org.opencontainers.image.ref.name": "v3"}),   # a bare tag names nothing
                          nested=nested)

    loaded = store.load(archive)

    assert [i.id for i in loaded] == [first.id, second.id, third.id]
    assert [i.names for i in loaded] == [("quay.io/org/first:v1",), ("docker.io/library/second:latest",), ()]
    assert loaded[1].config.entrypoint == ("/srv/run",)
    assert [i.id for i in store.list()] == [second.id, first.id, third.id]   # named ones first, by name
    assert store.get("quay.io/org/first:v1").config.cmd == ("/app/main",)
    assert store.get(third.id[7:23]) == loaded[2]
    assert (store.layer_dirs(loaded[1])[1] / "srv" / "data").read_bytes() == b"other\n"

    store.remove(third.id)   # by id: OTHER is still used by `second`
    assert (store.root / "images" / "layers" / sha(OTHER)).is_dir()


def test_of_top_level_manifests_for_several_architectures_only_this_machines_loads(tmp_path, store):
    ours, theirs = Img([BASE], tags=["x"]), Img([OTHER], tags=["x"])
    archive = oci_archive(tmp_path / "flat.tar", (ours, {"io.containerd.image.name": "multi:1"}),
                          (theirs, {"io.containerd.image.name": "multi:1"}))
    index = json.loads(tarfile.open(archive).extractfile("index.json").read())
    index["manifests"][0]["platform"] = {"os": "linux", "architecture": host_arch()}
    index["manifests"][1]["platform"] = {"os": "linux", "architecture": "mips64le"}
    with tarfile.open(archive) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    files["index.json"] = json.dumps(index).encode()
    write_tar(archive, files)   # type: ignore[arg-type]
    assert [i.id for i in store.load(archive)] == [ours.id]
    assert store.get("multi:1").id == ours.id


def test_a_multi_arch_index_without_this_machine_is_refused(tmp_path, store):
    img = Img([BASE])
    archive = oci_archive(tmp_path / "oci.tar", (img, {}), nested=True)
    index = json.loads(tarfile.open(archive).extractfile("index.json").read())
    with tarfile.open(archive) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    nested = json.loads(files[f"blobs/sha256/{index['manifests'][0]['digest'][7:]}"])
    nested["manifests"] = nested["manifests"][:1]   # only mips64le is left
    data = json.dumps(nested).encode()
    files[f"blobs/sha256/{sha(data)}"] = data
    index["manifests"][0].update(digest=f"sha256:{sha(data)}", size=len(data))
    files["index.json"] = json.dumps(index).encode()
    write_tar(archive, files)   # type: ignore[arg-type]
    with pytest.raises(ImageError, match=f"no image for linux/{host_arch()}.*linux/mips64le"):
        store.load(archive)


def test_loading_the_same_archive_twice_changes_nothing(tmp_path, store):
    archive = docker_save(tmp_path / "a.tar", Img([BASE, APP], tags=["app"]))
    first = store.load(archive)
    before = snapshot(store)
    inode = os.stat(store.layer_dirs(first[0])[0] / "etc" / "os-release").st_ino

    assert store.load(archive) == first

    assert snapshot(store) == before
    assert os.stat(store.layer_dirs(first[0])[0] / "etc" / "os-release").st_ino == inode


def test_images_sharing_a_layer_unpack_it_once_and_keep_it_until_the_last_goes(tmp_path, store, monkeypatch):
    unpacked: list[str] = []
    real = unpacking.unpack_layer
    monkeypatch.setattr(unpacking, "unpack_layer",
                        lambda archive, layer, dest, **kw: unpacked.append(layer.diff_hex) or real(archive, layer, dest,
                                                                                                   **kw))
    one, two = Img([BASE, APP], tags=["one"]), Img([BASE, OTHER], tags=["two"])

    store.load(docker_save(tmp_path / "one.tar", one))
    base = store.root / "images" / "layers" / sha(BASE)
    inode = (base / "etc" / "os-release").stat().st_ino
    store.load(docker_save(tmp_path / "two.tar", two))
    store.load(docker_save(tmp_path / "both.tar", one, two))   # one archive, two images, BASE twice

    assert sorted(unpacked) == sorted([sha(BASE), sha(APP), sha(OTHER)])
    assert (base / "etc" / "os-release").stat().st_ino == inode
    assert store.get("one").size == store.get("two").size - len(b"other\n") + len(b"print('hi')\n")

    store.remove("one")
    assert base.is_dir() and (store.root / "images" / "layers" / sha(OTHER)).is_dir()
    assert not (store.root / "images" / "layers" / sha(APP)).exists()
    store.remove("two")
    assert os.listdir(store.root / "images" / "layers") == []


def test_a_name_moves_to_the_image_loaded_last_and_the_old_one_stays_untagged(tmp_path, store):
    old, new = Img([BASE], tags=["app"]), Img([BASE, APP], tags=["app"])
    store.load(docker_save(tmp_path / "old.tar", old))
    store.load(docker_save(tmp_path / "new.tar", new))
    assert store.get("app").id == new.id
    assert store.get(old.id).names == ()
    assert [i.id for i in store.list()] == [new.id, old.id]


def test_an_image_may_repeat_a_layer_and_empty_layers_load(tmp_path, store):
    empty = b"\0" * 1024   # what Docker writes for a layer with no changes
    img = Img([BASE, empty, APP, empty], tags=["rep"])
    [image] = store.load(docker_save(tmp_path / "rep.tar", img))
    dirs = store.layer_dirs(image)
    assert dirs[1] == dirs[3] and os.listdir(dirs[1]) == []
    store.remove("rep")
    assert os.listdir(store.root / "images" / "layers") == []


def test_zstd_layers_are_unpacked_and_a_damaged_one_is_refused(tmp_path, store):
    import zstandard

    layer = tar(entry("z.txt", b"zstd" * 1000))
    archive = docker_save(tmp_path / "z.tar", Img([layer], tags=["z"]))
    with tarfile.open(archive) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    files["l00/layer.tar"] = zstandard.ZstdCompressor().compress(layer)
    write_tar(archive, files)   # type: ignore[arg-type]
    [image] = store.load(archive)
    [layer_dir] = store.layer_dirs(image)
    assert (layer_dir / "z.txt").read_bytes() == b"zstd" * 1000

    other = tar(entry("y.txt", b"other"))
    archive = docker_save(tmp_path / "y.tar", Img([other], tags=["y"]))
    with tarfile.open(archive) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    files["l00/layer.tar"] = b"\x28\xb5\x2f\xfd" + b"\0" * 100
    write_tar(archive, files)   # type: ignore[arg-type]
    with pytest.raises(ImageError, match="damaged|refusing"):
        store.load(archive)
    assert store.get("y") is None


# --------------------------------------------------------------------------------- unpacking rules


@needs_root
def test_whiteouts_become_0_0_character_devices_and_opaque_dirs_get_the_overlay_xattr(tmp_path, store):
    lower = tar(d("data"), entry("data/a", b"a"), d("keep"), entry("keep/x", b"x"), entry("keep/y", b"y"))
    upper = tar(d("data"), entry("data/.wh..wh..opq"), entry("data/c", b"c"), entry("keep/.wh.x"),
                entry(".wh.gone"), entry("new/.wh..wh..opq"), entry("keep/.wh..wh.plnk"))
    [image] = store.load(docker_save(tmp_path / "wh.tar", Img([lower, upper], tags=["wh"])))
    top = store.layer_dirs(image)[1]

    for path in (top / "keep" / "x", top / "gone"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), path
    assert os.getxattr(top / "data", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(top / "new", "trusted.overlay.opaque") == b"y"
    assert (top / "data" / "c").read_bytes() == b"c"
    assert sorted(os.listdir(top)) == ["data", "gone", "keep", "new"]
    assert sorted(os.listdir(top / "keep")) == ["x"]   # no .wh. names and no AUFS bookkeeping survive
    with pytest.raises(OSError):
        os.getxattr(top / "keep", "trusted.overlay.opaque")


@needs_root
def test_modes_owners_times_links_and_fifos_are_kept_devices_skipped(tmp_path, store):
    layer = tar(
        d("sbin"), entry("sbin/su", b"su", mode=0o4755), d("opt", mode=0o2775, uid=7, gid=8),
        d("home/u", mode=0o700, uid=1234, gid=5678, mtime=1_500_000_000),
        entry("home/u/f", b"secret", mode=0o640, uid=1234, gid=5678, mtime=1_400_000_000),
        hard("home/u/g", "home/u/f"), sym("abs", "/bin/busybox"), sym("rel", "../../etc/passwd"),
        entry("run/fifo", kind=tarfile.FIFOTYPE, mode=0o620), d("tmp", mode=0o1777),
        entry("dev/null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3), entry("dev/sda", kind=tarfile.BLKTYPE,
                                                                              devmajor=8),
        entry("cap", b"c", pax={"SCHILY.xattr.user.note": "hello"}),
        d("sneaky", pax={"SCHILY.xattr.trusted.overlay.opaque": "y",     # overlayfs xattrs never come from the tar
                         "SCHILY.xattr.user.overlay.opaque": "y"}),
    )
    [image] = store.load(docker_save(tmp_path / "m.tar", Img([layer], tags=["m"])))
    root = store.layer_dirs(image)[0]

    assert stat.S_IMODE(os.lstat(root / "sbin" / "su").st_mode) == 0o4755
    st = os.lstat(root / "opt")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2775, 7, 8)
    st = os.lstat(root / "home" / "u")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o700, 1234, 5678, 1_500_000_000)
    st = os.lstat(root / "home" / "u" / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o640, 1234, 5678, 1_400_000_000)
    assert os.lstat(root / "home" / "u" / "g").st_ino == st.st_ino
    assert os.readlink(root / "abs") == "/bin/busybox" and os.readlink(root / "rel") == "../../etc/passwd"
    assert stat.S_ISFIFO(os.lstat(root / "run" / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(root / "run" / "fifo").st_mode) == 0o620
    assert stat.S_IMODE(os.lstat(root / "tmp").st_mode) == 0o1777
    assert not os.path.lexists(root / "dev" / "null") and not os.path.lexists(root / "dev" / "sda")
    assert os.getxattr(root / "cap", "user.note") == b"hello"
    assert os.listxattr(root / "sneaky") == []
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o755


def test_later_entries_replace_earlier_ones_without_following_symlinks(tmp_path, store):
    canary = tmp_path / "canary"
    canary.mkdir()
    layer = tar(sym("lib", str(canary)), d("lib"), entry("lib/x", b"x"),    # a directory replaces the symlink
                entry("f", b"one"), sym("f", str(canary / "f")), entry("f", b"two"))
    [image] = store.load(docker_save(tmp_path / "r.tar", Img([layer], tags=["r"])))
    root = store.layer_dirs(image)[0]
    assert (root / "lib" / "x").read_bytes() == b"x" and not (root / "lib").is_symlink()
    assert (root / "f").read_bytes() == b"two" and not (root / "f").is_symlink()
    assert os.listdir(canary) == []


# ------------------------------------------------------------------------------ hostile archives

SECRET = b"TOP-SECRET-CONTENT"
ESCAPE_NAME = f"kubelite-test-escape-{uuid.uuid4().hex}"


def hostile_layers(canary: Path) -> dict[str, tuple[bytes, str]]:
    """name → (layer, what the error must name)."""
    depth = "../" * 4   # from <root>/images/tmp/<layer>/ up to the directory holding the canary
    return {
        "dotdot": (tar(entry("ok", SECRET), entry("../escape", SECRET)), "'../escape'"),
        "dotdot-deep": (tar(entry(f"a/{depth}canary/x", SECRET)), "canary/x"),
        "absolute": (tar(entry("/etc/passwd", SECRET)), "'/etc/passwd'"),
        "under-symlink-to-root": (tar(sym("evil", "/"), entry(f"evil/etc/{ESCAPE_NAME}", SECRET)),
                                  "under the symlink 'evil'"),
        "under-symlink-to-canary": (tar(d("a"), sym("a/evil", str(canary)), entry("a/evil/x", SECRET)),
                                    "under the symlink 'a/evil'"),
        "dir-under-symlink": (tar(sym("evil", str(canary)), d("evil/sub")), "under the symlink 'evil'"),
        "hardlink-absolute": (tar(hard("shadow", "/etc/shadow")), "outside the layer"),
        "hardlink-dotdot": (tar(hard("shadow", "../../../../../etc/shadow")), "outside the layer"),
        "hardlink-missing": (tar(hard("x", "nowhere")), "not a file of this layer"),
        "hardlink-through-symlink": (tar(sym("evil", "/etc"), hard("x", "evil/shadow")), "not a file of this layer"),
        "whiteout-of-parent": (tar(entry("a/.wh..."),), "whiteout of nothing"),
    }


@pytest.mark.parametrize("case", list(hostile_layers(Path("/x"))))
def test_a_hostile_layer_is_refused_and_nothing_is_written_outside_the_store(tmp_path, store, case):
    canary = tmp_path / "canary"
    canary.mkdir()
    store.load(docker_save(tmp_path / "good.tar", Img([BASE], tags=["good"])))
    before = snapshot(store)
    layer, named = hostile_layers(canary)[case]

    with pytest.raises(ImageError) as refused:
        store.load(docker_save(tmp_path / "bad.tar", Img([APP, layer], tags=["bad"])))

    message = str(refused.value)
    assert "refusing to load" in message and named in message
    assert SECRET.decode() not in message
    assert os.listdir(canary) == []
    assert not Path("/etc", ESCAPE_NAME).exists()
    assert not (store.root / "images" / "escape").exists() and not (store.root / "escape").exists()
    assert snapshot(store) == before


def test_a_layer_that_does_not_match_its_diff_id_is_refused(tmp_path, store):
    img = Img([BASE, APP], tags=["liar"], diff_ids=[f"sha256:{sha(BASE)}", f"sha256:{sha(OTHER)}"])
    with pytest.raises(ImageError, match=f"not the diff_id sha256:{sha(OTHER)}.*refusing to load"):
        store.load(docker_save(tmp_path / "liar.tar", img))
    assert store.list() == [] and os.listdir(store.root / "images" / "layers") == []
    assert os.listdir(store.root / "images" / "tmp") == []


def test_an_oci_blob_that_does_not_match_its_digest_is_refused(tmp_path, store):
    archive = oci_archive(tmp_path / "bad.tar", (Img([BASE, APP]), {"io.containerd.image.name": "bad"}),
                          gzip_layers=False, corrupt_layer=True)
    with pytest.raises(ImageError, match="not sha256:[0-9a-f]{64} as named: refusing to load"):
        store.load(archive)
    gzipped = oci_archive(tmp_path / "bad.tar", (Img([BASE, APP]), {"io.containerd.image.name": "bad"}),
                          corrupt_layer=True)   # the gzip trailer no longer matches
    with pytest.raises(ImageError, match="layer 'blobs/sha256/[0-9a-f]{64}' of bad.tar is damaged"):
        store.load(gzipped)
    assert store.list() == [] and os.listdir(store.root / "images" / "layers") == []


def test_a_docker_save_config_that_does_not_match_its_name_is_refused(tmp_path, store):
    archive = docker_save(tmp_path / "a.tar", Img([BASE], tags=["a"]))
    with tarfile.open(archive) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    name = next(n for n in files if n.endswith(".json") and n != "manifest.json")
    files[name] = files[name].replace(b"sh", b"ls")
    write_tar(archive, files)   # type: ignore[arg-type]
    with pytest.raises(ImageError, match="does not match its name"):
        store.load(archive)


@pytest.mark.parametrize("cut_in", ["first layer", "big layer", "config", "manifest.json"])
def test_a_truncated_archive_leaves_the_store_as_it_was(tmp_path, store, cut_in):
    store.load(docker_save(tmp_path / "good.tar", Img([BASE], tags=["good"])))
    before = snapshot(store)
    big = tar(entry("blob", os.urandom(200_000)))
    full = docker_save(tmp_path / "full.tar", Img([APP], tags=["a"]), Img([OTHER, big], tags=["b"]))
    with tarfile.open(full) as tf:
        members = [m for m in tf if m.isreg()]
    member = {"first layer": members[0], "big layer": max(members, key=lambda m: m.size),
              "config": next(m for m in members if m.name.endswith(".json") and m.name != "manifest.json"),
              "manifest.json": members[-1]}[cut_in]
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(full.read_bytes()[:member.offset_data + member.size // 2])

    with pytest.raises(ImageError):
        store.load(truncated)

    assert snapshot(store) == before


def test_a_tar_header_record_over_1_mib_is_refused_before_it_is_read(tmp_path, store):
    """tarfile reads a pax header whole: 1 MiB is the bound (as Go's archive/tar); below it, a layer loads."""
    store.load(docker_save(tmp_path / "good.tar", Img([BASE], tags=["good"])))
    before = snapshot(store)
    huge = tar(entry("f", b"x", pax={"SCHILY.xattr.user.big": "y" * (2 << 20)}))
    with pytest.raises(ImageError, match=r"has a tar header record of \d+ bytes, more than 1048576: refusing it$"):
        store.load(docker_save(tmp_path / "huge.tar", Img([huge], tags=["huge"])))
    assert snapshot(store) == before
    fits = tar(entry("f", b"x", pax={"SCHILY.xattr.user.big": "y" * (512 << 10)}))
    [image] = store.load(docker_save(tmp_path / "fits.tar", Img([fits], tags=["fits"])))
    assert (store.layer_dirs(image)[0] / "f").read_bytes() == b"x"


def test_not_an_archive_is_refused(tmp_path, store):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"hello, I am not a tar archive" * 100)
    with pytest.raises(ImageError, match="not a tar archive"):
        store.load(junk)
    with pytest.raises(ImageError, match="no such file"):
        store.load(tmp_path / "missing.tar")
    with pytest.raises(ImageError, match="neither"):
        store.load(write_tar(tmp_path / "empty.tar", {"README": b"hi"}))


def test_leftovers_of_a_crashed_load_are_cleaned_by_the_next_load(tmp_path, store):
    store.load(docker_save(tmp_path / "a.tar", Img([BASE], tags=["a"])))
    top = store.root / "images"
    (top / "tmp" / "layer-0123456789ab-half").mkdir()
    (top / "tmp" / "layer-0123456789ab-half" / "file").write_bytes(b"half")
    (top / "tmp" / "index.json.deadbeef").write_bytes(b"{")
    (top / "layers" / sha(OTHER)).mkdir()                # renamed into place, but the index never written
    (top / "configs" / f"{'b' * 64}.json").write_bytes(b"{}")

    store.load(docker_save(tmp_path / "b.tar", Img([APP], tags=["b"])))

    assert os.listdir(top / "tmp") == []
    assert sorted(os.listdir(top / "layers")) == sorted([sha(BASE), sha(APP)])
    assert len(os.listdir(top / "configs")) == 2
    assert [i.names for i in store.list()] == [("docker.io/library/a:latest",), ("docker.io/library/b:latest",)]


def test_a_store_that_was_never_written_is_empty(tmp_path, store):
    assert store.list() == [] and store.get("busybox") is None
    with pytest.raises(ImageError, match="no such image"):
        store.remove("busybox")
    assert not (store.root / "images").exists()


# ------------------------------------------------------------------------------------ busybox image


@pytest.fixture(scope="module")
def busybox_archive(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("busybox") / "busybox.tar"
    subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(out)], check=True, stdout=subprocess.PIPE)
    return out


def test_the_busybox_image_is_built_without_a_registry_and_loads(tmp_path, store, busybox_archive):
    again = tmp_path / "again.tar"
    printed = subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(again), "busybox:latest"],
                             check=True, capture_output=True, text=True).stdout.strip()
    assert again.read_bytes() == busybox_archive.read_bytes()   # deterministic: same id on every run

    [image] = store.load(busybox_archive)

    assert image.id == printed
    assert image.names == ("docker.io/library/busybox:latest",)
    assert image.config.cmd == ("sh",) and image.config.entrypoint == ()
    assert image.config.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    [root] = store.layer_dirs(image)
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert (root / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert "root:x:0:0:" in (root / "etc" / "passwd").read_text()
    assert "nobody:x:65534:" in (root / "etc" / "group").read_text()
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert all((root / p).is_dir() and not os.listdir(root / p) for p in ("proc", "sys", "dev", "root"))
    config = json.loads((store.root / "images" / "configs" / f"{image.id[7:]}.json").read_text())
    assert config["architecture"] == host_arch() and config["os"] == "linux"


def test_the_busybox_script_refuses_bad_usage():
    run = subprocess.run([str(REPO / "scripts" / "build-busybox-image")], capture_output=True, text=True)
    assert run.returncode == 2 and "usage" in run.stderr


@needs_root
def test_the_layers_stack_under_overlayfs_as_a_working_root(tmp_path, store, busybox_archive):
    """The kernel agrees with the whiteout format: mount the layers and run busybox's sh in them."""
    [busybox] = store.load(busybox_archive)
    lower = tar(d("data"), entry("data/a", b"a"), d("keep"), entry("keep/x", b"x"), entry("keep/y", b"y"))
    upper = tar(d("data"), entry("data/.wh..wh..opq"), entry("data/c", b"c"), entry("keep/.wh.x"),
                entry("etc/.wh.group"))
    img = Img([busybox_archive_layer(busybox_archive), lower, upper], tags=["stack"])
    [image] = store.load(docker_save(tmp_path / "stack.tar", img))
    assert image.layers[0] == busybox.layers[0]
    merged, up, work = tmp_path / "merged", tmp_path / "upper", tmp_path / "work"
    for p in (merged, up, work):
        p.mkdir()
    lowerdir = ":".join(str(p) for p in reversed(store.layer_dirs(image)))
    mount = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={lowerdir},upperdir={up},workdir={work}", str(merged)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"overlayfs cannot be mounted here: {mount.stderr.strip()}")
    try:
        assert sorted(os.listdir(merged / "data")) == ["c"]
        assert sorted(os.listdir(merged / "keep")) == ["y"]
        assert not (merged / "etc" / "group").exists() and (merged / "etc" / "passwd").exists()
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        run = subprocess.run([chroot, str(merged), "/bin/sh", "-c", "echo $((6 * 7)); ls /data"],
                             capture_output=True, text=True, env={"PATH": "/bin"})
        assert run.stdout.split() == ["42", "c"], run.stderr
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def busybox_archive_layer(archive: Path) -> bytes:
    with tarfile.open(archive) as tf:
        return next(tf.extractfile(m).read() for m in tf if m.name.endswith("layer.tar"))


# --------------------------------------------------------------------------------- image GC


def gc_store(tmp_path: Path, store: ImageStore) -> dict[str, Image]:
    """Three images with a layer of their own (10 kB each) and one shared base layer, used in order a, b, c."""
    found = {}
    for i, name in enumerate(["a", "b", "c"]):
        [found[name]] = store.load(docker_save(tmp_path / f"{name}.tar",
                                               Img([BASE, tar(entry(f"{name}.bin", name.encode() * 10_000))],
                                                   tags=[name])))
        os.utime(store._configs_dir / f"{found[name].id[7:]}.json", (1000 + i, 1000 + i))
    return found


def test_image_gc_does_nothing_below_the_high_threshold(tmp_path, store):
    gc_store(tmp_path, store)
    assert store.collect_garbage(in_use=set(), high_percent=85, low_percent=80, usage=lambda: (84, 100)) == []
    assert len(store.list()) == 3


def test_image_gc_removes_unused_images_least_recently_used_first_down_to_the_low_threshold(tmp_path, store):
    images_ = gc_store(tmp_path, store)
    layers = store.root / "images" / "layers"

    def usage() -> tuple[int, int]:   # the store's bytes on a filesystem of 100 kB with 59 kB used by others
        size = sum(f.stat().st_size for f in layers.rglob("*") if f.is_file())
        return 59_000 + size, 100_000

    assert usage()[0] > 85_000
    removed = store.collect_garbage(in_use={images_["a"].id}, high_percent=85, low_percent=80, usage=usage)
    assert [i.id for i in removed] == [images_["b"].id], "a is in use; b was used before c; then 80 % is reached"
    assert {i.names for i in store.list()} == {("docker.io/library/a:latest",), ("docker.io/library/c:latest",)}
    assert usage()[0] <= 80_000
    assert store.get("a") is not None and store.layer_dirs(store.get("a"))   # its layers, the shared base too


def test_image_gc_never_removes_an_image_in_use_even_if_still_full(tmp_path, store):
    images_ = gc_store(tmp_path, store)
    removed = store.collect_garbage(in_use={i.id for i in images_.values()}, high_percent=85, low_percent=80,
                                    usage=lambda: (99, 100))
    assert removed == [] and len(store.list()) == 3


def test_using_an_image_makes_it_the_last_to_go(tmp_path, store):
    images_ = gc_store(tmp_path, store)
    store.touch(images_["a"].id)      # a container was created from it just now
    removed = store.collect_garbage(in_use=set(), high_percent=85, low_percent=80,
                                    usage=lambda: (90 << 20, 100 << 20))   # nothing frees enough: all go, a last
    assert [i.id for i in removed] == [images_["b"].id, images_["c"].id, images_["a"].id]


def test_downloads_left_for_a_day_are_pruned_but_not_one_being_written(tmp_path, store):
    import fcntl
    import time

    store.downloads_dir.mkdir(parents=True)
    old, fresh, busy = (store.downloads_dir / f"{c * 64}.partial" for c in "abc")
    for path in (old, fresh, busy):
        path.write_bytes(b"x")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    os.utime(busy, (day_ago, day_ago))
    with open(busy, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert store.prune_downloads(older_than_s=24 * 3600) == [old.name]
    assert sorted(p.name for p in store.downloads_dir.iterdir()) == sorted([fresh.name, busy.name])
