"""kubelite.sources.watch: real inotify, real threads; every wait is bounded."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubelite.sources.manifests import scan
from kubelite.sources.watch import ManifestWatcher

DEBOUNCE_S = 0.05
HINT_TIMEOUT_S = 5.0  # an expected hint comes well within this
QUIET_S = 0.5  # no hint within this counts as none


class Hints:
    """An `on_change` that counts calls and lets a test wait for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def after(self, action: Callable[[], object], *, timeout: float = HINT_TIMEOUT_S) -> bool:
        """Run `action`; True as soon as a new hint follows it, False if none within `timeout`."""
        with self._cond:
            seen = self.count
        action()
        with self._cond:
            return self._cond.wait_for(lambda: self.count > seen, timeout)

    def settle(self) -> int:
        """Wait until no hint came for QUIET_S; the count then."""
        while self.after(lambda: None, timeout=QUIET_S):
            pass
        return self.count


@pytest.fixture
def watch() -> Iterator[Callable[..., Hints]]:
    """Start watchers on demand; stop them all after the test and check no thread is left behind."""
    threads_before = threading.active_count()
    watchers: list[ManifestWatcher] = []

    def start(path: Path, on_change: Callable[[], None] | None = None, *, debounce_s: float = DEBOUNCE_S) -> Hints:
        hints = Hints()
        watcher = ManifestWatcher(path, on_change or hints, debounce_s=debounce_s)
        watchers.append(watcher)
        watcher.start()
        return hints

    try:
        yield start
    finally:
        for watcher in watchers:
            watcher.stop()
            watcher.stop()  # idempotent
    assert threading.active_count() == threads_before


def write(path: Path, text: str = "kind: Pod\n") -> Callable[[], None]:
    return lambda: path.write_text(text)


def test_creating_a_manifest_gives_a_hint(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    hints = watch(tmp_path)
    assert hints.after(write(tmp_path / "web.yaml"))


def test_modifying_a_manifest_gives_a_hint(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    (tmp_path / "web.yaml").write_text("kind: Pod\n")
    hints = watch(tmp_path)
    assert hints.after(write(tmp_path / "web.yaml", "kind: Pod\nmetadata: {}\n"))


def test_deleting_a_manifest_gives_a_hint(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    (tmp_path / "web.yaml").write_text("kind: Pod\n")
    hints = watch(tmp_path)
    assert hints.after((tmp_path / "web.yaml").unlink)


def test_rename_on_save_gives_a_hint(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    (tmp_path / "web.yaml").write_text("kind: Pod\n")
    hints = watch(tmp_path)
    assert not hints.after(write(tmp_path / ".web.yaml.tmp"), timeout=QUIET_S)
    assert hints.after(lambda: os.replace(tmp_path / ".web.yaml.tmp", tmp_path / "web.yaml"))


def test_renaming_a_manifest_to_a_backup_name_gives_a_hint(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    (tmp_path / "web.yaml").write_text("kind: Pod\n")
    hints = watch(tmp_path)
    assert hints.after(lambda: os.replace(tmp_path / "web.yaml", tmp_path / "web.yaml.bak"))


def test_dotfile_and_backup_changes_give_no_hint(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    hints = watch(tmp_path)

    def editor_noise() -> None:
        (tmp_path / ".web.yaml.swp").write_text("swap")
        (tmp_path / "web.yaml~").write_text("backup")
        (tmp_path / "web.yaml.bak").write_text("backup")
        (tmp_path / "notes.txt").write_text("notes")
        (tmp_path / ".web.yaml.swp").unlink()

    assert not hints.after(editor_noise, timeout=QUIET_S)


def test_reading_the_manifests_gives_no_hint(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    (tmp_path / "web.yaml").write_text("kind: Pod\n")
    hints = watch(tmp_path)
    assert not hints.after(lambda: scan(tmp_path), timeout=QUIET_S)  # the agent scans on every hint


def test_a_burst_of_writes_gives_few_hints(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    hints = watch(tmp_path)

    def burst() -> None:
        for i in range(20):
            (tmp_path / f"pod-{i % 4}.yaml").write_text(f"kind: Pod\n# {i}\n")

    assert hints.after(burst)
    assert 1 <= hints.settle() <= 3


def test_continuous_changes_still_give_a_hint_every_second(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    hints = watch(tmp_path, debounce_s=0.5)  # longer than the gap between writes: never quiet enough
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.wait(0.1):
            (tmp_path / "web.yaml").write_text("kind: Pod\n")

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert hints.after(lambda: None, timeout=HINT_TIMEOUT_S)
        assert hints.after(lambda: None, timeout=HINT_TIMEOUT_S)
    finally:
        stop.set()
        writer.join()


def test_symlink_swap_moves_the_watch_to_the_new_target(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    dir_a, dir_b, link = tmp_path / "rev-a", tmp_path / "rev-b", tmp_path / "manifests"
    dir_a.mkdir()
    dir_b.mkdir()
    link.symlink_to(dir_a)
    hints = watch(link)
    assert hints.after(write(dir_a / "web.yaml"))

    def swap() -> None:  # git-sync: ln -s rev-b tmp && mv -T tmp manifests
        (tmp_path / "manifests.tmp").symlink_to(dir_b)
        os.replace(tmp_path / "manifests.tmp", link)

    assert hints.after(swap)
    hints.settle()
    assert not hints.after(write(dir_a / "api.yaml"), timeout=QUIET_S)
    assert hints.after(write(dir_b / "api.yaml"))


def test_directory_missing_at_start_is_watched_once_created(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    manifests = tmp_path / "manifests"
    hints = watch(manifests)
    assert hints.after(manifests.mkdir)
    assert hints.after(write(manifests / "web.yaml"))


def test_directory_deleted_and_recreated_is_watched_again(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    hints = watch(manifests)
    assert hints.after(manifests.rmdir)
    assert hints.after(manifests.mkdir)
    assert hints.after(write(manifests / "web.yaml"))


def test_parent_missing_at_start_is_followed_down(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    manifests = tmp_path / "etc" / "kubelite" / "manifests"
    hints = watch(manifests)
    assert hints.after(lambda: manifests.mkdir(parents=True))
    assert hints.after(write(manifests / "web.yaml"))


def test_single_manifest_file_path_is_watched(tmp_path: Path, watch: Callable[..., Hints]) -> None:
    (tmp_path / "web.yaml").write_text("kind: Pod\n")
    hints = watch(tmp_path / "web.yaml")
    assert hints.after(write(tmp_path / "web.yaml", "kind: Pod\nmetadata: {}\n"))
    assert not hints.after(write(tmp_path / "api.yaml"), timeout=QUIET_S)


def test_failing_on_change_is_logged_and_watching_goes_on(tmp_path: Path, watch: Callable[..., Hints],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    hints = Hints()

    def failing() -> None:
        hints()
        raise ValueError("agent queue is gone")

    watch(tmp_path, failing)
    with caplog.at_level(logging.ERROR, logger="kubelite.sources.watch"):
        assert hints.after(write(tmp_path / "web.yaml"))
        assert hints.after(write(tmp_path / "api.yaml"))
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


@pytest.mark.parametrize("how", ["rename", "write", "delete"])
def test_a_complete_change_is_hinted_at_once_not_after_the_quiet_period(tmp_path: Path,
                                                                       watch: Callable[..., Hints], how: str) -> None:
    (tmp_path / "web.yaml").write_text("kind: Pod\n")
    hints = watch(tmp_path, debounce_s=2.0)
    hints.settle()

    def change() -> None:
        if how == "rename":
            (tmp_path / ".web.yaml.tmp").write_text("kind: Pod\n# saved\n")
            os.replace(tmp_path / ".web.yaml.tmp", tmp_path / "web.yaml")
        elif how == "write":
            (tmp_path / "web.yaml").write_text("kind: Pod\n# edited\n")  # closed after writing
        else:
            (tmp_path / "web.yaml").unlink()

    assert hints.after(change, timeout=1.0), "the hint waited for the 2 s quiet period"
