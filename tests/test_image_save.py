"""`image save` and `image load` from a file, `-i` or a pipe: docker-archives that docker, podman, skopeo and
kubelite read, each layer the exact tar it was loaded as (the image id stays)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kubelite.cli.main import main
from kubelite.runtime.images import ImageError, ImageStore
from tests.test_images import APP, BASE, Img, d, docker_save, entry, hard, oci_archive, sha, sym, tar

PYTHON = sys.executable


def gnu_layer() -> bytes:
    """A layer as GNU tar writes it: long names and links through ././@LongLink, a whiteout, an opaque
    directory, a hard link, 10 KiB records (so zeros follow the end-of-archive blocks)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in (d("deep"), entry("deep/" + "n" * 150, b"long name\n" * 100),
                           sym("deep/link", "/" + "t" * 120), entry("deep/.wh.gone"), d("opaque"),
                           entry("opaque/.wh..wh..opq"), entry("empty"), hard("again", "deep/" + "n" * 150),
                           entry("big", os.urandom(3 * 512 + 7), mode=0o4755)):
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def pax_layer() -> bytes:
    """A layer with pax headers (xattrs, a long name) and nothing after its end-of-archive blocks."""
    return tar(d("etc"), entry("etc/" + "p" * 200, b"pax\n", pax={"SCHILY.xattr.user.k": "v"}),
               entry("etc/zero", b""))


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}  # type: ignore[union-attr]


def config_bytes(store: ImageStore, image_id: str) -> bytes:
    return (store.root / "images" / "configs" / f"{image_id[7:]}.json").read_bytes()


def test_a_saved_image_loads_into_another_root_with_the_same_id_config_and_files(tmp_path):
    img = Img([BASE, gnu_layer(), pax_layer(), tar()], tags=["example.com/team/app:1"])
    first = ImageStore(tmp_path / "first")
    [loaded] = first.load(docker_save(tmp_path / "in.tar", img, gzip_layers=True))
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        [saved] = first.save(["example.com/team/app:1"], f)

    members = archive_members(out)
    manifest = json.loads(members["manifest.json"])
    assert manifest == [{"Config": f"{img.id[7:]}.json", "RepoTags": ["example.com/team/app:1"],
                         "Layers": [f"{sha(layer)}.tar" for layer in img.layers]}]
    for layer in img.layers:   # the exact tars: GNU records, pax headers and padding as they were
        assert members[f"{sha(layer)}.tar"] == layer
    assert json.loads(members["repositories"]) == {"example.com/team/app": {"1": sha(img.layers[-1])}}

    second = ImageStore(tmp_path / "second")
    [again] = second.load(out)
    assert again.id == loaded.id == saved.id == img.id
    assert hashlib.sha256(config_bytes(second, again.id)).hexdigest() == img.id[7:]
    assert config_bytes(second, again.id) == img.config_bytes
    assert again.names == ("example.com/team/app:1",) and again.layers == loaded.layers
    long_file = second.layer_dirs(again)[1] / "deep" / ("n" * 150)
    assert long_file.read_bytes() == b"long name\n" * 100


def test_an_oci_archive_with_gzip_layers_saves_as_its_uncompressed_tars(tmp_path):
    img = Img([BASE, APP])
    first = ImageStore(tmp_path / "first")
    first.load(oci_archive(tmp_path / "oci.tar", (img, {"io.containerd.image.name": "docker.io/library/app:2"})))
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        first.save(["app:2"], f)
    assert archive_members(out)[f"{sha(APP)}.tar"] == APP
    [again] = ImageStore(tmp_path / "second").load(out)
    assert again.id == img.id and again.names == ("docker.io/library/app:2",)


def test_images_sharing_a_layer_write_it_once_and_an_id_saves_no_name(tmp_path):
    one, two = Img([BASE, APP], tags=["one:1"]), Img([BASE], tags=["two:1"], config={"Cmd": ["true"]})
    store = ImageStore(tmp_path / "root")
    store.load(docker_save(tmp_path / "in.tar", one, two))
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        store.save(["one:1", two.id[7:19]], f)
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert names.count(f"{sha(BASE)}.tar") == 1
    manifest = json.loads(archive_members(out)["manifest.json"])
    assert [m["RepoTags"] for m in manifest] == [["docker.io/library/one:1"], None]
    loaded = ImageStore(tmp_path / "second").load(out)
    assert {i.id for i in loaded} == {one.id, two.id}


def test_one_image_under_two_names_is_one_entry_with_both(tmp_path):
    store = ImageStore(tmp_path / "root")
    store.load(docker_save(tmp_path / "in.tar", Img([BASE], tags=["base:1", "base:latest"])))
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        store.save(["base:1", "base:latest", "base:1"], f)
    manifest = json.loads(archive_members(out)["manifest.json"])
    assert [m["RepoTags"] for m in manifest] == [["docker.io/library/base:1", "docker.io/library/base:latest"]]


def test_a_layer_changed_after_it_was_unpacked_fails_the_save(tmp_path):
    img = Img([BASE], tags=["base:1"])
    store = ImageStore(tmp_path / "root")
    [image] = store.load(docker_save(tmp_path / "in.tar", img))
    (store.layer_dirs(image)[0] / "etc" / "os-release").write_bytes(b"ID=else\n")   # same size, other bytes
    with pytest.raises(ImageError, match="could not be reproduced"):
        store.save(["base:1"], io.BytesIO())
    (store.layer_dirs(image)[0] / "etc" / "os-release").write_bytes(b"ID=longer\n")
    with pytest.raises(ImageError, match="not the file the layer's tar held"):
        store.save(["base:1"], io.BytesIO())


def test_a_layer_stored_without_its_tar_record_says_to_load_it_again(tmp_path):
    store = ImageStore(tmp_path / "root")
    store.load(docker_save(tmp_path / "in.tar", Img([BASE], tags=["base:1"])))
    shutil.rmtree(tmp_path / "root" / "images" / "tarsplit")
    with pytest.raises(ImageError, match="older kubelite.*load or pull the image again"):
        store.save(["base:1"], io.BytesIO())
    with pytest.raises(ImageError, match="no such image"):
        store.save(["absent:1"], io.BytesIO())


def test_removing_the_last_image_of_a_layer_removes_its_tar_record(tmp_path):
    store = ImageStore(tmp_path / "root")
    store.load(docker_save(tmp_path / "in.tar", Img([BASE], tags=["base:1"])))
    assert [p.name for p in (tmp_path / "root" / "images" / "tarsplit").iterdir()] == [f"{sha(BASE)}.gz"]
    store.remove("base:1")
    assert list((tmp_path / "root" / "images" / "tarsplit").iterdir()) == []


# ------------------------------------------------------------------------------------ the command line


def kubelite(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PYTHON, "-m", "kubelite.cli.main", "--root", str(root), *args], input=stdin,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("how", ["FILE", "-i FILE", "stdin", "-"])
def test_image_load_reads_a_file_given_either_way_or_a_pipe(tmp_path, how):
    archive = docker_save(tmp_path / "in.tar", Img([BASE], tags=["base:1"]), compress=True)
    args = {"FILE": [str(archive)], "-i FILE": ["-i", str(archive)], "stdin": [], "-": ["-"]}[how]
    stdin = archive.read_bytes() if how in ("stdin", "-") else None
    result = kubelite(tmp_path / "root", "image", "load", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "Loaded image: docker.io/library/base:1\n"
    assert not list((tmp_path / "root" / "images" / "tmp").iterdir())   # the pipe's copy is gone


def test_image_load_from_a_terminal_or_a_damaged_pipe_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    assert main(["--root", str(tmp_path / "root"), "image", "load"]) == 1
    assert "stdin is a terminal" in capsys.readouterr().err
    result = kubelite(tmp_path / "root", "image", "load", stdin=b"not an archive")
    assert result.returncode == 1 and b"cannot load stdin: " in result.stderr
    assert not list((tmp_path / "root" / "images" / "tmp").iterdir())


def test_image_save_writes_a_file_or_a_pipe_never_a_terminal(tmp_path, monkeypatch, capsys):
    img = Img([BASE, APP], tags=["app:1"])
    root = tmp_path / "root"
    assert kubelite(root, "image", "load", str(docker_save(tmp_path / "in.tar", img))).returncode == 0
    result = kubelite(root, "image", "save", "app:1", "-o", str(tmp_path / "out.tar"))
    assert result.returncode == 0 and result.stdout == b"", result.stderr
    piped = kubelite(root, "image", "save", "app:1")
    assert piped.returncode == 0 and piped.stdout == (tmp_path / "out.tar").read_bytes()
    assert kubelite(tmp_path / "other", "image", "load", stdin=piped.stdout).returncode == 0
    assert ImageStore(tmp_path / "other").get("app:1").id == img.id  # type: ignore[union-attr]

    failed = kubelite(root, "image", "save", "app:1", "absent:2", "-o", str(tmp_path / "no.tar"))
    assert failed.returncode == 1 and b"no such image: absent:2" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tar", "other", "out.tar", "root"]   # no partial file
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["--root", str(root), "image", "save", "app:1"]) == 1
    assert "refusing to write an archive to a terminal" in capsys.readouterr().err


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") and tool == "skopeo":
            pytest.fail("skopeo is a test package: scripts/bootstrap test installs it")
        pytest.skip(f"{tool} is not installed")
    return path


def test_skopeo_reads_a_saved_archive(tmp_path):
    skopeo = _need("skopeo")
    img = Img([BASE, gnu_layer()], tags=["example.com/app:3"])
    store = ImageStore(tmp_path / "root")
    store.load(docker_save(tmp_path / "in.tar", img, gzip_layers=True))
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        store.save(["example.com/app:3"], f)
    inspected = json.loads(subprocess.run([skopeo, "inspect", f"docker-archive:{out}"], check=True,
                                          capture_output=True, text=True, timeout=60).stdout)
    assert inspected["Layers"] == [f"sha256:{sha(layer)}" for layer in img.layers]
    config = json.loads(subprocess.run([skopeo, "inspect", "--config", f"docker-archive:{out}"], check=True,
                                       capture_output=True, text=True, timeout=60).stdout)
    assert config["rootfs"]["diff_ids"] == [f"sha256:{sha(layer)}" for layer in img.layers]
    # skopeo copies it into an OCI layout, verifying every digest on the way (and rewriting the config as
    # an OCI one: another id); kubelite loads that too, with the same layers
    subprocess.run([skopeo, "copy", "-q", f"docker-archive:{out}", f"oci-archive:{tmp_path / 'oci.tar'}"],
                   check=True, capture_output=True, timeout=60)
    [again] = ImageStore(tmp_path / "second").load(tmp_path / "oci.tar")
    assert again.layers == tuple(f"sha256:{sha(layer)}" for layer in img.layers)


def test_podman_loads_a_saved_archive_into_a_store_of_its_own(tmp_path, request):
    podman = _need("podman")
    img = Img([BASE, pax_layer()], tags=["example.com/app:4"])
    store = ImageStore(tmp_path / "root")
    store.load(docker_save(tmp_path / "in.tar", img))
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        store.save(["example.com/app:4"], f)
    # never the host's store: root, run root and tmp dir of its own, no mounts (vfs); podman wants a short run root
    base = Path(tempfile.mkdtemp(prefix="kl-podman-"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    argv = [podman, "--root", str(base / "root"), "--runroot", str(base / "run"), "--tmpdir", str(base / "tmp"),
            "--storage-driver", "vfs", "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
    loaded = subprocess.run([*argv, "load", "-q", "-i", str(out)], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    listed = subprocess.run([*argv, "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
                            check=True, capture_output=True, text=True, timeout=60).stdout.split("\n")
    assert f"{img.id} example.com/app:4" in listed
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(base) in line]


def test_a_gzip_layer_record_is_small(tmp_path):
    """The record keeps headers and padding, not contents: a 1 MiB file costs a few hundred bytes."""
    layer = tar(d("data"), entry("data/big", os.urandom(1 << 20)))
    store = ImageStore(tmp_path / "root")
    store.load(docker_save(tmp_path / "in.tar", Img([layer], tags=["big:1"])))
    record = tmp_path / "root" / "images" / "tarsplit" / f"{sha(layer)}.gz"
    assert record.stat().st_size < 1024
    assert len(gzip.decompress(record.read_bytes())) < 16 * 1024   # headers and the 10 KiB record's zeros


def test_a_sparse_file_and_a_whiteout_with_content_keep_their_bytes_in_the_record(tmp_path):
    tree = tmp_path / "tree" / "dir"
    tree.mkdir(parents=True)
    with open(tree / "sparse", "wb") as f:   # GNU tar stores it as a sparse member: its data is not the file's
        f.seek(1 << 20)
        f.write(b"end")
    (tree / ".wh.old").write_bytes(b"odd")
    layer_path = tmp_path / "layer.tar"
    subprocess.run(["tar", "--sparse", "--format=gnu", "--owner=0", "--group=0", "-cf", str(layer_path),
                    "-C", str(tmp_path / "tree"), "dir"], check=True, timeout=60)
    layer = layer_path.read_bytes()
    with tarfile.open(layer_path) as tf:
        assert tf.getmember("dir/sparse").sparse is not None
    store = ImageStore(tmp_path / "root")
    [image] = store.load(docker_save(tmp_path / "in.tar", Img([layer], tags=["odd:1"])))
    assert (store.layer_dirs(image)[0] / "dir" / "sparse").stat().st_size == (1 << 20) + 3
    out = io.BytesIO()
    store.save(["odd:1"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.extractfile(f"{sha(layer)}.tar").read() == layer  # type: ignore[union-attr]


def test_a_whiteout_with_much_content_is_recorded_in_bounded_memory_and_saved_exactly(tmp_path, monkeypatch):
    from kubelite.runtime.images import tarsplit

    monkeypatch.setattr(tarsplit, "FLUSH_BYTES", 64 << 10)   # small bounds, so a small layer shows them
    monkeypatch.setattr(tarsplit, "KEEP_BYTES", 16 << 10)
    most = []
    feed = tarsplit.Recorder.feed

    def watched(self, data):
        feed(self, data)
        most.append(len(self._buf))

    monkeypatch.setattr(tarsplit.Recorder, "feed", watched)
    layer = tar(d("dir"), entry("dir/.wh.big", os.urandom(3 << 20)), entry("dir/after", b"after\n" * 1000))
    store = ImageStore(tmp_path / "root")
    [image] = store.load(docker_save(tmp_path / "in.tar", Img([layer], tags=["wh:1"])))
    assert max(most) <= (64 << 10) + (1 << 20)   # at most the bound and one read of the tar reader
    out = io.BytesIO()
    store.save(["wh:1"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.extractfile(f"{sha(layer)}.tar").read() == layer  # type: ignore[union-attr]


def test_a_fifo_where_the_record_expects_a_file_fails_the_save_at_once(tmp_path):
    img = Img([BASE], tags=["base:1"])
    store = ImageStore(tmp_path / "root")
    [image] = store.load(docker_save(tmp_path / "in.tar", img))
    target = store.layer_dirs(image)[0] / "etc" / "os-release"
    target.unlink()
    os.mkfifo(target)   # opened for reading without O_NONBLOCK, this waits for a writer forever
    raised: list[BaseException] = []

    def save() -> None:
        try:
            store.save(["base:1"], io.BytesIO())
        except BaseException as exc:  # noqa: BLE001 — handed to the test's thread
            raised.append(exc)

    worker = threading.Thread(target=save, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "image save waits on the FIFO"
    assert len(raised) == 1 and isinstance(raised[0], ImageError), raised
    assert "not the file the layer's tar held" in str(raised[0])


def test_a_slow_pipe_into_image_load_holds_no_lock_of_the_store(tmp_path):
    archive = docker_save(tmp_path / "in.tar", Img([BASE], tags=["base:1"])).read_bytes()
    store = ImageStore(tmp_path / "root")
    read, write = os.pipe()
    loaded: list = []
    loader = threading.Thread(target=lambda: loaded.extend(store.load_stream(os.fdopen(read, "rb"))), daemon=True)
    loader.start()
    os.write(write, archive[:1024])   # the producer stalls here, as `ssh host … save | kubelite image load` may
    time.sleep(0.2)
    def take_the_lock() -> None:   # as a pull, rm or GC does
        with store._locked():
            pass

    locker = threading.Thread(target=take_the_lock, daemon=True)
    locker.start()
    locker.join(timeout=10)
    assert not locker.is_alive(), "the store's lock is held while the pipe is read"
    with os.fdopen(write, "wb") as rest:
        rest.write(archive[1024:])
    loader.join(timeout=30)
    assert [image.names for image in loaded] == [("docker.io/library/base:1",)]
    assert not any(store.root.rglob("*.partial")) and not any((store.root / "images" / "tmp").iterdir())
