"""`kubelite cp` out of a container: what the container's tar sends is hostile until checked."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from kubelite.cli import copy
from kubelite.errors import UsageError


class TarView:
    """A runtime view whose "exec" is `cat` of a tar file made by the test (the container's `tar cf`)."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive

    def exec_argv(self, container_id: str, command: list[str]) -> list[str]:
        return ["cat", str(self.archive)]


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_a_symlink_then_a_file_of_the_same_name_never_writes_through_the_link(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.write_text("safe")
    dest = tmp_path / "dest"
    dest.mkdir()
    evil = _tar(tmp_path / "evil.tar", [(_link("data", "../victim"), None), (tarfile.TarInfo("data"), b"owned")])
    assert copy._copy_out(TarView(evil), "c", "/data", dest) == 0
    assert victim.read_text() == "safe"
    assert (dest / "data").read_bytes() == b"owned" and not (dest / "data").is_symlink()
    assert "skipping symlink data -> ../victim" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kubelite-cp-")] == []   # staging gone


def test_links_that_leave_the_copy_are_skipped_and_those_inside_kept(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.write_text("safe")
    dest = tmp_path / "out"
    d = tarfile.TarInfo("dir")
    d.type = tarfile.DIRTYPE
    evil = _tar(tmp_path / "evil.tar", [
        (d, None), (tarfile.TarInfo("dir/file"), b"content"),
        (_link("dir/inside", "file"), None),                      # kept: it stays in the copy
        (_link("dir/abs", str(victim)), None),                    # absolute: skipped
        (_link("dir/up", "../../victim"), None),                  # climbs out: skipped
        (_link("dir/hard", "dir/file", tarfile.LNKTYPE), None),   # hard link: skipped
        (tarfile.TarInfo("dir/up"), b"x"),                        # a file where the skipped link was
    ])
    assert copy._copy_out(TarView(evil), "c", "/srv/dir", dest) == 0
    assert victim.read_text() == "safe"
    assert (dest / "file").read_text() == "content"
    assert (dest / "inside").is_symlink() and (dest / "inside").read_text() == "content"
    assert not (dest / "abs").exists() and not (dest / "hard").exists()
    assert (dest / "up").read_text() == "x" and not (dest / "up").is_symlink()
    err = capsys.readouterr().err
    assert "skipping symlink out/abs" in err and "skipping symlink out/up" in err and "skipping hard link" in err


def test_a_chatty_tar_does_not_block_the_copy(tmp_path):
    archive = _tar(tmp_path / "ok.tar", [(tarfile.TarInfo("f"), b"1")])

    class Chatty(TarView):
        def exec_argv(self, container_id: str, command: list[str]) -> list[str]:
            return ["sh", "-c", f"head -c 300000 /dev/zero >&2; cat {self.archive}"]

    dest = tmp_path / "copy"
    assert copy._copy_out(Chatty(archive), "c", "/f", dest) == 0
    assert dest.read_text() == "1"


def test_a_member_the_data_filter_refuses_places_nothing_and_says_why(tmp_path):
    dev = tarfile.TarInfo("data/dev")
    dev.type = tarfile.CHRTYPE
    d = tarfile.TarInfo("data")
    d.type = tarfile.DIRTYPE
    evil = _tar(tmp_path / "evil.tar", [(d, None), (tarfile.TarInfo("data/ok"), b"1"), (dev, None)])
    dest = tmp_path / "dest"
    with pytest.raises(UsageError, match="refused what the container sent"):
        copy._copy_out(TarView(evil), "c", "/data", dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kubelite-cp-")] == []
