"""GitOps (issue 6): the manifests path follows a real git repository made by the test.

Every repository lives in tmp_path: a bare "remote" (`git init --bare`) and a work clone that the
test commits in and pushes from. The engine's own git runs only under its state root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from kubelite.sources import gitsync
from kubelite.sources.gitsync import (
    BACKOFF_MAX_S, GitSync, SyncStatus, backoff_delay, redact,
)
from kubelite.sources.manifests import scan
from tests.helpers import T0, pod_doc

REPO = Path(__file__).resolve().parent.parent


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
                           *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30).stdout


def pod_yaml(name: str, image: str = "busybox:1.36") -> str:
    doc = pod_doc(name)
    doc["spec"]["containers"][0]["image"] = image
    return yaml.safe_dump(doc)


BAD_YAML = """apiVersion: v1
kind: Pod
metadata:
  name: broken
spec:
  containers:
    - image: busybox:1.36
"""


class Remote:
    """A bare repository and a clone to commit in."""

    def __init__(self, tmp_path: Path, name: str = "remote") -> None:
        self.bare = tmp_path / f"{name}.git"
        git("init", "--quiet", "--bare", str(self.bare), cwd=tmp_path)
        self.work = tmp_path / f"{name}-work"
        git("init", "--quiet", str(self.work), cwd=tmp_path)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, files: dict[str, str | None], *, message: str = "change", force: bool = False) -> str:
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "--quiet", *(["--force"] if force else []), "origin", "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self):
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def remote(tmp_path):
    return Remote(tmp_path)


@pytest.fixture
def clock():
    return Clock()


def engine(tmp_path: Path, url: str | Path, clock: Clock, **kw) -> GitSync:
    kw.setdefault("path", "manifests")
    return GitSync(str(url), ref=kw.pop("ref", "main"), root=tmp_path / "state", link=tmp_path / "etc" / "manifests",
                   clock=clock, interval_s=kw.pop("interval_s", 30.0), **kw)


def pods(link: Path) -> dict[str, str]:
    """pod name → first container image, as the daemon would read the link now."""
    snapshot = scan(link)
    assert not snapshot.problems, snapshot.problems
    found = {}
    for result in snapshot.files.values():
        assert result.ok, result.errors
        for pod in result.pods:
            found[pod.key.split("/")[1]] = pod.pod.spec.containers[0].image
    return found


def worktrees(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "state" / "git" / "worktrees").iterdir())


# ------------------------------------------------------------------ following commits


def test_add_change_and_remove_pods_through_commits(tmp_path, remote, clock):
    first = remote.commit({"manifests/web.yaml": pod_yaml("web"), "README.md": "not a manifest\n"})
    sync = engine(tmp_path, remote.bare, clock)
    link = sync.link

    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == first and result.previous is None
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "state/git/worktrees" / first / "manifests")
    assert pods(link) == {"web": "busybox:1.36"}
    assert sync.status.commit == first and sync.status.applied_at == T0.isoformat(timespec="seconds")
    assert sync.status.last_error is None and sync.status.next_attempt == (T0 + timedelta(seconds=30)).isoformat(
        timespec="seconds")

    assert sync.sync_once().outcome == "unchanged"

    second = remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:1.37"),
                            "manifests/db.yaml": pod_yaml("db")})
    result = sync.sync_once()
    assert (result.outcome, result.commit, result.previous) == ("applied", second, first)
    assert pods(link) == {"web": "busybox:1.37", "db": "busybox:1.36"}
    assert worktrees(tmp_path) == [second]

    third = remote.commit({"manifests/web.yaml": None})
    assert sync.sync_once().outcome == "applied"
    assert pods(link) == {"db": "busybox:1.36"}
    assert worktrees(tmp_path) == [third]

    # a restarted engine (new process) finds the running commit from the link
    again = engine(tmp_path, remote.bare, clock)
    assert again.status.commit == third and again.sync_once().outcome == "unchanged"


def test_a_bad_commit_between_two_good_ones_is_not_applied(tmp_path, remote, clock):
    good = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    assert sync.sync_once().outcome == "applied"

    bad = remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:2"), "manifests/broken.yaml": BAD_YAML})
    result = sync.sync_once()
    assert result.outcome == "rejected" and result.commit == good and result.remote == bad
    assert bad[:12] in result.message and "manifests/broken.yaml" in result.message
    assert "line 7" in result.message and "spec.containers[0].name" in result.message
    assert pods(sync.link) == {"web": "busybox:1.36"}  # nothing of the bad commit, not even web's change
    assert worktrees(tmp_path) == [good]
    assert sync.status.last_error == result.message and sync.status.rejected_commit == bad
    assert result.delay_s == 30.0 and sync.status.failures == 0

    clock.tick(30)
    assert sync.sync_once().outcome == "rejected"  # still at the remote: still refused, still reported
    assert sync.status.last_error_at == T0.isoformat(timespec="seconds")

    fixed = remote.commit({"manifests/broken.yaml": None})
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == fixed
    assert pods(sync.link) == {"web": "busybox:2"}
    assert sync.status.last_error is None and sync.status.rejected_commit is None


def test_invalid_yaml_and_duplicate_pods_are_refused_too(tmp_path, remote, clock):
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    bad = remote.commit({"manifests/x.yaml": "a: [1,\n"})
    result = sync.sync_once()
    assert result.outcome == "rejected" and bad[:12] in result.message and "manifests/x.yaml" in result.message
    assert "invalid YAML" in result.message
    remote.commit({"manifests/x.yaml": None, "manifests/y.yaml": pod_yaml("web")})
    result = sync.sync_once()
    assert result.outcome == "rejected" and "already defined in web.yaml" in result.message


def test_a_commit_that_removes_every_pod_needs_allow_empty(tmp_path, remote, clock):
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    empty = remote.commit({"manifests/web.yaml": None, "manifests/notes.txt": "nothing here\n"})
    result = sync.sync_once()
    assert result.outcome == "rejected" and "--allow-empty" in result.message and empty[:12] in result.message
    assert pods(sync.link) == {"web": "busybox:1.36"}

    permissive = engine(tmp_path, remote.bare, clock, allow_empty=True)
    result = permissive.sync_once()
    assert result.outcome == "applied" and result.commit == empty and pods(permissive.link) == {}


def test_a_wrong_path_is_refused_not_applied_as_empty(tmp_path, remote, clock):
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    engine(tmp_path, remote.bare, clock).sync_once()
    wrong = engine(tmp_path, remote.bare, clock, path="manifest")
    result = wrong.sync_once()
    assert result.outcome == "rejected" and "'manifest' is not a directory" in result.message
    assert pods(wrong.link) == {"web": "busybox:1.36"}


def test_a_force_push_to_an_unrelated_history_applies(tmp_path, remote, clock):
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    other = Remote(tmp_path, "other")
    git("remote", "set-url", "origin", str(remote.bare), cwd=other.work)
    rewritten = other.commit({"manifests/api.yaml": pod_yaml("api")}, force=True)
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == rewritten
    assert pods(sync.link) == {"api": "busybox:1.36"}


def test_tags_and_commits_can_be_followed(tmp_path, remote, clock):
    first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    git("tag", "v1", cwd=remote.work)
    git("push", "--quiet", "origin", "v1", cwd=remote.work)
    remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:2")})
    assert engine(tmp_path, remote.bare, clock, ref="v1").sync_once().commit == first
    assert engine(tmp_path, remote.bare, clock, ref=first).sync_once().commit == first
    result = engine(tmp_path, remote.bare, clock, ref="nope").sync_once()
    assert result.outcome == "failed" and "nope" in result.message and result.commit == first


# ------------------------------------------------------------------ failures


def test_an_unreachable_repository_backs_off_and_keeps_the_last_good_commit(tmp_path, remote, clock):
    good = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    moved = tmp_path / "moved.git"
    remote.bare.rename(moved)

    delays = []
    for _ in range(4):
        result = sync.sync_once()
        assert result.outcome == "failed" and result.commit == good
        assert str(remote.bare) in result.message
        delays.append(result.delay_s)
        assert sync.status.next_attempt == (clock.now + timedelta(seconds=result.delay_s)).isoformat(
            timespec="seconds")
        clock.tick(result.delay_s)
    assert delays == [1, 2, 4, 8] and sync.status.failures == 4
    assert sync.status.commit == good and pods(sync.link) == {"web": "busybox:1.36"}
    assert backoff_delay(9) == 256 and backoff_delay(10) == BACKOFF_MAX_S == backoff_delay(1000)

    moved.rename(remote.bare)
    result = sync.sync_once()
    assert result.outcome == "unchanged" and result.delay_s == 30
    assert sync.status.failures == 0 and sync.status.last_error is None


def test_a_damaged_worktree_is_checked_out_again(tmp_path, remote, clock):
    good = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    (tmp_path / "state/git/worktrees" / good / ".git").unlink()
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == good and "damaged" in result.message
    assert pods(sync.link) == {"web": "busybox:1.36"}
    assert sync.sync_once().outcome == "unchanged"


def test_a_manifests_path_that_is_a_real_directory_is_not_replaced(tmp_path, remote, clock):
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.link.mkdir(parents=True)
    (sync.link / "mine.yaml").write_text(pod_yaml("mine"))
    result = sync.sync_once()
    assert result.outcome == "failed" and "is not a symlink" in result.message
    assert pods(sync.link) == {"mine": "busybox:1.36"}


def test_credentials_never_appear(tmp_path, clock):
    assert redact("fatal: unable to access 'https://user:tok3n@host/x/': failed") == \
        "fatal: unable to access 'https://***@host/x/': failed"
    assert redact("https://tok3n@host/x and ssh://git@host/y") == "https://***@host/x and ssh://***@host/y"
    assert redact("password tok3n for p%40ss", "https://u:p%40ss@h/x") == "password tok3n for ***"

    url = "https://user:s3cr3t-t0ken@127.0.0.1:9/x.git"  # port 9: refused at once
    sync = engine(tmp_path, url, clock, fetch_timeout_s=10)
    result = sync.sync_once()
    assert result.outcome == "failed"
    for text in (result.message, sync.status.to_json(), repr(result)):
        assert "s3cr3t" not in text and "user:" not in text
    assert sync.status.repository == "https://***@127.0.0.1:9/x.git"
    assert "https://***@127.0.0.1:9/x.git" in result.message


# ------------------------------------------------------------------ idle intervals


class RealClock(Clock):
    """A clock a little ahead of the wall clock, so that files the test writes are not 'racy' for long."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc) + timedelta(seconds=gitsync.RACY_S + 1)


def count_git(sync: GitSync, monkeypatch) -> list[str]:
    """The git commands `sync` runs from now on (their first argument), through its own `_git`."""
    ran: list[str] = []
    real = sync._git

    def logged(args, **kw):
        ran.append(args[0])
        return real(args, **kw)

    monkeypatch.setattr(sync, "_git", logged)
    return ran


def test_an_unchanged_remote_is_not_fetched_and_a_clean_tree_not_rechecked(tmp_path, remote, monkeypatch):
    """A local repository's ref is read in-process: an idle pass runs no git at all; a push is
    fetched and applied at the next pass."""
    clock = RealClock()
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    assert sync.sync_once().outcome == "applied"
    ran = count_git(sync, monkeypatch)
    clock.tick(30)
    first = sync.sync_once()    # the fresh tree is checked once with git, then known clean
    assert first.outcome == "unchanged" and "fetch" not in ran and "status" in ran
    ran.clear()
    for _ in range(3):
        clock.tick(30)
        result = sync.sync_once()
        assert result.outcome == "unchanged" and result.commit == first.commit
        assert sync.status.last_sync_at == clock.now.isoformat(timespec="seconds")
    assert ran == []

    moved = remote.commit({"manifests/db.yaml": pod_yaml("db")})
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == moved and "fetch" in ran
    assert pods(sync.link) == {"web": "busybox:1.36", "db": "busybox:1.36"}


def test_a_ref_moved_within_packed_refs_is_seen(tmp_path, remote, monkeypatch):
    """The remote's refs packed (`git pack-refs`, as `git gc` does): a move that only rewrites
    packed-refs is read like one of a loose ref."""
    clock = RealClock()
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    git("pack-refs", "--all", "--prune", cwd=remote.bare)
    sync = engine(tmp_path, remote.bare, clock)
    assert sync.sync_once().outcome == "applied"
    clock.tick(30)
    assert sync.sync_once().outcome == "unchanged"
    moved = remote.commit({"manifests/db.yaml": pod_yaml("db")})
    git("pack-refs", "--all", "--prune", cwd=remote.bare)
    assert not (remote.bare / "refs" / "heads" / "main").exists()
    ran = count_git(sync, monkeypatch)
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == moved and "fetch" in ran


def test_without_an_in_process_read_ls_remote_is_asked_and_a_moved_ref_fetched(tmp_path, remote, monkeypatch):
    monkeypatch.setattr(gitsync.LocalRefs, "read", lambda self, ref: None)   # as for an https:// or ssh:// remote
    clock = RealClock()
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    assert sync.sync_once().outcome == "applied"
    ran = count_git(sync, monkeypatch)
    for _ in range(2):
        clock.tick(30)
        assert sync.sync_once().outcome == "unchanged"
    assert ran.count("ls-remote") == 2 and "fetch" not in ran
    moved = remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:2")})
    ran.clear()
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == moved and ran[:2] == ["ls-remote", "fetch"]
    assert pods(sync.link) == {"web": "busybox:2"}


def test_ls_remote_failures_back_off_and_stay_redacted(tmp_path, remote, monkeypatch):
    monkeypatch.setattr(gitsync.LocalRefs, "read", lambda self, ref: None)
    good = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    clock = Clock()
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    ran = count_git(sync, monkeypatch)
    moved = tmp_path / "moved.git"
    remote.bare.rename(moved)
    delays = []
    for _ in range(3):
        result = sync.sync_once()
        assert result.outcome == "failed" and result.commit == good and "asking" in result.message
        delays.append(result.delay_s)
        clock.tick(result.delay_s)
    assert delays == [1, 2, 4] and set(ran) == {"ls-remote"}
    moved.rename(remote.bare)
    assert sync.sync_once().outcome == "unchanged" and sync.status.failures == 0

    url = "https://user:s3cr3t-t0ken@127.0.0.1:9/x.git"
    other = GitSync(url, ref="main", root=tmp_path / "other", link=tmp_path / "other-link", clock=clock,
                    fetch_timeout_s=10)
    ran = count_git(other, monkeypatch)
    result = other.sync_once()
    assert result.outcome == "failed" and ran[-1] == "ls-remote" and result.delay_s == 1
    assert "s3cr3t" not in result.message + other.status.to_json() and "https://***@127.0.0.1:9/x.git" in result.message


def test_a_ref_given_as_a_commit_needs_no_network_once_fetched(tmp_path, remote, monkeypatch):
    clock = RealClock()
    first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:2")})
    sync = engine(tmp_path, remote.bare, clock, ref=first)
    assert sync.sync_once().commit == first
    ran = count_git(sync, monkeypatch)
    remote.bare.rename(tmp_path / "gone.git")   # no remote at all
    for _ in range(3):
        clock.tick(30)
        result = sync.sync_once()
        assert result.outcome == "unchanged" and result.commit == first
    assert "fetch" not in ran and "ls-remote" not in ran


def test_a_tag_and_an_annotated_tag_are_read_like_the_fetch_reads_them(tmp_path, remote, monkeypatch):
    first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    git("tag", "-a", "-m", "release", "v1", cwd=remote.work)
    git("push", "--quiet", "origin", "v1", cwd=remote.work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/v1", cwd=remote.work)   # a branch of the same name
    remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:2")})
    git("push", "--quiet", "origin", "HEAD:refs/heads/v1", cwd=remote.work)
    clock = RealClock()
    sync = engine(tmp_path, remote.bare, clock, ref="v1")
    assert sync.sync_once().commit == first, "the tag wins over the branch, as for git fetch"
    ran = count_git(sync, monkeypatch)
    clock.tick(30)
    assert sync.sync_once().outcome == "unchanged" and "fetch" not in ran
    tag_object = git("rev-parse", "v1", cwd=remote.work).strip()
    assert gitsync.LocalRefs(str(remote.bare)).read("v1") == tag_object != first
    advertised = {"refs/heads/v1": "1" * 40, "refs/tags/v1": "2" * 40, "refs/remotes/origin/v1": "3" * 40}
    assert gitsync.pick_ref("v1", advertised) == "2" * 40 and gitsync.pick_ref("origin/v1", advertised) == "3" * 40
    assert gitsync.pick_ref("HEAD", {"HEAD": "4" * 40, "refs/remotes/origin/HEAD": "5" * 40}) == "4" * 40
    assert gitsync.local_repository("file:///srv/x.git") == "/srv/x.git"
    assert gitsync.local_repository("https://host/x.git") is None and gitsync.local_repository("host:x.git") is None


def test_drift_is_found_after_idle_passes_even_with_size_and_times_put_back(tmp_path, remote, monkeypatch):
    clock = RealClock()
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    for _ in range(2):
        clock.tick(30)
        assert sync.sync_once().outcome == "unchanged"
    ran = count_git(sync, monkeypatch)
    clock.tick(30)
    assert sync.sync_once().outcome == "unchanged" and ran == []
    web = sync.link / "web.yaml"
    before = web.stat()
    text = web.read_text()
    web.write_text(text.replace("busybox:1.36", "evilbox:1.3"))   # the same size
    os.utime(web, ns=(before.st_atime_ns, before.st_mtime_ns))
    clock = RealClock()
    sync.clock = clock
    result = sync.sync_once()
    assert result.outcome == "drift" and result.drift == ["manifests/web.yaml (modified)"]
    assert pods(sync.link) == {"web": "busybox:1.36"}


def test_a_checkout_by_hand_in_the_live_tree_is_drift(tmp_path, remote, monkeypatch):
    first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    second = remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:2")})
    clock = RealClock()
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    for _ in range(2):
        clock.tick(30)
        assert sync.sync_once().outcome == "unchanged"
    tree = Path(os.path.realpath(sync.link)).parent
    subprocess.run(["git", "checkout", "--quiet", "--detach", first], cwd=tree, check=True, capture_output=True)
    sync.clock = clock = RealClock()
    result = sync.sync_once()
    assert result.outcome == "drift" and result.drift[0].startswith("HEAD moved to")
    assert pods(sync.link) == {"web": "busybox:2"} and result.commit == second


# ------------------------------------------------------------------ drift and the swap


def test_drift_is_restored_and_reported(tmp_path, remote, clock):
    remote.commit({"manifests/web.yaml": pod_yaml("web"), "manifests/db.yaml": pod_yaml("db"),
                   ".gitignore": "*.local.yaml\n"})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    (sync.link / "web.yaml").write_text(pod_yaml("web", "evil:1"))
    (sync.link / "db.yaml").unlink()
    (sync.link / "extra.yaml").write_text(pod_yaml("extra"))
    (sync.link / "x.local.yaml").write_text(pod_yaml("ignored"))
    assert pods(sync.link) == {"web": "evil:1", "extra": "busybox:1.36", "ignored": "busybox:1.36"}

    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "drift"
    assert set(result.drift) == {"manifests/web.yaml (modified)", "manifests/db.yaml (deleted)",
                                 "manifests/extra.yaml (added)", "manifests/x.local.yaml (added)"}
    assert "restored" in result.message
    assert pods(sync.link) == {"web": "busybox:1.36", "db": "busybox:1.36"}
    assert sync.status.drift == result.drift and sync.status.drift_at == clock.now.isoformat(timespec="seconds")
    assert sync.sync_once().outcome == "unchanged"


def test_the_old_worktree_is_removed_only_after_the_swap(tmp_path, remote, clock, monkeypatch):
    first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    sync.sync_once()
    second = remote.commit({"manifests/web.yaml": pod_yaml("web", "busybox:2")})
    base = tmp_path / "state/git/worktrees"
    seen = []
    real_swap, real_remove = sync._swap, sync._remove_worktree

    def swap(target):
        seen.append(("swap", (base / first).is_dir(), (base / second / "manifests/web.yaml").is_file()))
        real_swap(target)

    def remove(tree):
        seen.append(("remove", tree.name, os.path.realpath(sync.link)))
        real_remove(tree)

    monkeypatch.setattr(sync, "_swap", swap)
    monkeypatch.setattr(sync, "_remove_worktree", remove)
    assert sync.sync_once().outcome == "applied"
    assert seen[0] == ("swap", True, True)  # the old tree is still there, the new one complete
    assert ("remove", first, str(base / second / "manifests")) in seen[1:]
    assert worktrees(tmp_path) == [second]
    assert not list(sync.link.parent.glob(".manifests.sync-*"))


def test_status_round_trips_through_json(tmp_path, remote, clock):
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    sync = engine(tmp_path, remote.bare, clock)
    status = sync.sync_once().status
    assert SyncStatus.from_json(status.to_json()) == status
    assert set(json.loads(status.to_json())) >= {"repository", "ref", "commit", "applied_at", "last_error",
                                                 "next_attempt"}


# ------------------------------------------------------------------ the commands


def cli(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite.cli.sync", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_sync_once_and_get_sync(tmp_path, remote):
    first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    link = tmp_path / "etc" / "manifests"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KUBELITE_ROOT": str(tmp_path / "state"),
           "KUBELITE_MANIFESTS": str(link)}
    done = cli("sync", "--repo", str(remote.bare), "--ref", "main", "--path", "manifests", "--once", env=env)
    assert done.returncode == 0, done.stderr
    assert "applied commit" in done.stderr and pods(link) == {"web": "busybox:1.36"}

    shown = cli("get", "sync", "-o", "json", env=env)
    status = json.loads(shown.stdout)
    assert status["commit"] == first and status["ref"] == "main" and status["last_error"] is None
    table = cli("get", "sync", env=env).stdout
    assert "Commit:" in table and first in table and "Last Error:" in table

    remote.commit({"manifests/bad.yaml": BAD_YAML})
    done = cli("sync", "--repo", str(remote.bare), "--ref", "main", "--path", "manifests", "--once", env=env)
    assert done.returncode == 1 and "bad.yaml" in done.stderr
    status = json.loads(cli("get", "sync", "-o", "json", env=env).stdout)
    assert status["commit"] == first and "manifests/bad.yaml" in status["last_error"]

    from kubelite.store.reader import Reader
    reader = Reader(tmp_path / "state")
    reasons = [e["reason"] for e in reader.events("default")]
    reader.close()
    assert reasons == ["SyncApplied", "SyncRejected"]

    assert cli("sync", "--repo", str(remote.bare), "--interval", "0s", env=env).returncode == 2


def test_a_serving_daemon_follows_commits(tmp_path, remote):
    """kubelite serve --runtime fake on the link, kubelite sync --interval 0.2s: the pods follow git."""
    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    link = tmp_path / "etc" / "manifests"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KUBELITE_ROOT": str(tmp_path / "state"),
           "KUBELITE_RUN_DIR": str(tmp_path / "run"), "KUBELITE_MANIFESTS": str(link)}
    done = cli("sync", "--repo", str(remote.bare), "--ref", "main", "--path", "manifests", "--once", env=env)
    assert done.returncode == 0, done.stderr
    log = open(tmp_path / "serve.log", "w+")
    daemon = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake",
                               "--manifests", str(link)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    syncer = subprocess.Popen([sys.executable, "-m", "kubelite.cli.sync", "sync", "--repo", str(remote.bare),
                               "--ref", "main", "--path", "manifests", "--interval", "0.2s"], env=env,
                              stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def running() -> set[str]:
        out = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "get", "pods", "--no-headers"], env=env,
                             capture_output=True, text=True, timeout=20, cwd=REPO).stdout
        return {line.split()[0] for line in out.splitlines() if line.split()[2:3] == ["Running"]}

    def wait_for(expected: set[str]) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if running() == expected:
                return
            time.sleep(0.1)
        log.seek(0)
        raise AssertionError(f"pods {running()} != {expected}\n{log.read()}")

    try:
        wait_for({"web"})
        remote.commit({"manifests/db.yaml": pod_yaml("db")})
        wait_for({"web", "db"})
        remote.commit({"manifests/web.yaml": None})
        wait_for({"db"})
        remote.commit({"manifests/db.yaml": BAD_YAML})  # broken: nothing changes on the machine
        time.sleep(1)
        assert running() == {"db"}
    finally:
        for process in (syncer, daemon):
            process.send_signal(signal.SIGTERM)
        for process in (syncer, daemon):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    assert syncer.returncode == 0 and daemon.returncode == 0


def test_serve_with_sync_repo_follows_commits_and_pods_carry_their_commit(tmp_path, remote):
    """One process: `kubelite serve --sync-repo`; `describe pod` names the commit a pod came from."""
    first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    link = tmp_path / "etc" / "manifests"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KUBELITE_ROOT": str(tmp_path / "state"),
           "KUBELITE_RUN_DIR": str(tmp_path / "run"), "KUBELITE_MANIFESTS": str(link)}
    log = open(tmp_path / "serve.log", "w+")
    daemon = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake",
                               "--sync-repo", str(remote.bare), "--sync-ref", "main", "--sync-path", "manifests",
                               "--sync-interval", "0.2s"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def pods() -> dict[str, dict]:
        out = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "get", "pods", "-o", "json"], env=env,
                             capture_output=True, text=True, timeout=20, cwd=REPO).stdout
        return {p["metadata"]["name"]: p for p in json.loads(out)["items"]} if out else {}

    def wait_for(check, what: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        log.seek(0)
        raise AssertionError(f"timed out waiting for {what}\n{log.read()}")

    try:
        wait_for(lambda: "web" in pods(), "web")
        assert pods()["web"]["metadata"]["annotations"]["kubelite.io/commit"] == first
        second = remote.commit({"manifests/db.yaml": pod_yaml("db")})
        wait_for(lambda: set(pods()) == {"web", "db"}, "db")
        assert pods()["db"]["metadata"]["annotations"]["kubelite.io/commit"] == second
        described = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "describe", "pod", "db"], env=env,
                                   capture_output=True, text=True, timeout=20, cwd=REPO).stdout
        assert f"kubelite.io/commit: {second}" in described
        status = json.loads(subprocess.run([sys.executable, "-m", "kubelite.cli.main", "get", "sync", "-o", "json"],
                                           env=env, capture_output=True, text=True, timeout=20, cwd=REPO).stdout)
        assert status["commit"] == second
        other = cli("sync", "--repo", str(remote.bare), "--ref", "main", "--path", "manifests", "--once", env=env)
        assert other.returncode == 1 and "another kubelite sync is already running" in other.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
    assert daemon.returncode == 0


def test_a_full_disk_keeps_the_last_good_commit_and_backs_off(tmp_path, remote, clock):
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test mounts a small tmpfs: it needs root, and CI has it")
        pytest.skip("needs root to mount a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        first = remote.commit({"manifests/web.yaml": pod_yaml("web")})
        sync = GitSync(str(remote.bare), ref="main", path="manifests", root=small / "state",
                       link=small / "manifests", clock=clock)
        assert sync.sync_once().outcome == "applied"
        remote.commit({"manifests/db.yaml": pod_yaml("db"), "manifests/big.bin": "x" * (3 * 1024 * 1024)})
        result = sync.sync_once()
        assert result.outcome == "failed" and result.delay_s > 0
        assert sync.status.commit == first and sync.status.last_error
        assert pods(small / "manifests") == {"web": "busybox:1.36"}, "the last good commit keeps running"
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_checkout_is_the_owners_alone(tmp_path, remote, clock):
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: x}\n"
    remote.commit({"manifests/web.yaml": pod_yaml("web"), "manifests/db.yaml": secret})
    sync = engine(tmp_path, remote.bare, clock)
    old = os.umask(0o022)
    try:
        assert sync.sync_once().outcome == "applied"
    finally:
        os.umask(old)
    tree = Path(os.path.realpath(sync.link))
    assert (tree / "db.yaml").stat().st_mode & 0o777 == 0o600
    assert tree.stat().st_mode & 0o777 == 0o700
    for path in (tmp_path / "state" / "git", tmp_path / "state" / "git" / "worktrees"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_an_executable_file_stays_executable_and_is_no_drift(tmp_path, remote, clock):
    """Files lose only their group and other bits: a script committed 0755 is checked out 0700 and
    stays so, so git sees no mode change and no pass restores the tree (nor does a start's tightening)."""
    import kubelite.statefiles as statefiles

    remote.commit({"manifests/web.yaml": pod_yaml("web")})
    script = remote.work / "manifests" / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o755)
    remote.commit({})
    sync = engine(tmp_path, remote.bare, clock)
    assert sync.sync_once().outcome == "applied"
    tree = Path(os.path.realpath(sync.link))
    assert (tree / "check.sh").stat().st_mode & 0o777 == 0o700
    clock.tick(30)
    assert sync.sync_once().outcome == "unchanged"
    os.chmod(tree / "check.sh", 0o755)   # as an older kubelite left it: the start tightens it, still executable
    statefiles.tighten_layout(tmp_path / "state", tmp_path / "run")
    assert (tree / "check.sh").stat().st_mode & 0o777 == 0o700
    clock.tick(30)
    result = sync.sync_once()
    assert result.outcome == "unchanged" and not result.drift, result.message


def test_a_sync_that_changed_no_file_is_written_between_passes_without_one(tmp_path):
    """`serve --sync-repo`: an unchanged (or rejected) interval's status and event are written by the
    reconcile thread while it waits; only an applied commit or corrected drift asks for a pass."""
    import threading

    from kubelite.daemon import wait_for_work
    from kubelite.sources.gitsync import SyncResult
    from kubelite.store.reader import SYNC_META_KEY, Reader
    from tests.simulated import simulated_node

    with simulated_node(tmp_path) as node:
        node.settle()
        node.agent.wake.clear()
        status = SyncStatus(repository="/srv/r.git", ref="main", commit="a" * 40, last_sync_at="2026-11-28T06:00:01")
        node.agent.sync_results.put(SyncResult("unchanged", "a" * 40, "a" * 40, "up to date", 1.0, status))
        node.agent.hint_sync_status()
        assert node.agent.wake.is_set() and node.agent.absorb_probe_outcomes() is False, "no pass asked for"
        node.agent.absorb_sync_results()
        rejected = SyncStatus.from_json(status.to_json())
        rejected.rejected_commit = "b" * 40
        node.agent.sync_results.put(SyncResult("rejected", "a" * 40, "b" * 40, "commit bbbb not applied", 1.0,
                                               rejected))
        node.agent.hint_sync_status()
        wait_for_work(node.agent, 0.2, threading.Event())   # absorbed while it waits
        assert node.agent.sync_results.empty() and not node.agent.manifests_dirty
        reader = Reader(node.root)
        try:
            assert SyncStatus.from_json(reader.meta(SYNC_META_KEY)) == rejected
        finally:
            reader.close()
        assert [e["reason"] for e in node.events() if e["reason"].startswith("Sync")] == ["SyncRejected"]


def test_a_ref_the_remote_lacks_is_left_to_the_fetch_to_report(tmp_path, clock):
    """HEAD of the remote names a branch that does not exist: the in-process read and ls-remote find
    nothing, so the fetch runs and says why; once the branch is pushed, it is applied."""
    remote = Remote(tmp_path)   # its HEAD names refs/heads/main
    git("commit", "--quiet", "--allow-empty", "-m", "x", cwd=remote.work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/trunk", cwd=remote.work)
    sync = engine(tmp_path, remote.bare, clock, ref="HEAD")
    result = sync.sync_once()
    assert result.outcome == "failed" and "give --ref BRANCH" in result.message
    sha = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    clock.tick(result.delay_s)
    result = sync.sync_once()
    assert result.outcome == "applied" and result.commit == sha


def test_kubelite_sync_follows_into_the_manifests_path_serve_recorded(tmp_path, remote, monkeypatch):
    """Without --manifests or KUBELITE_MANIFESTS, the path `kubelite serve` recorded in the state root
    (as diff, apply and delete take it), not the default."""
    from kubelite.cli import config
    from kubelite.cli.main import main
    from kubelite.store.store import Store

    monkeypatch.delenv("KUBELITE_MANIFESTS", raising=False)
    monkeypatch.setattr(config, "default_manifests", lambda: tmp_path / "default-manifests")
    recorded = tmp_path / "served" / "manifests"
    store = Store(tmp_path / "state")
    try:
        with store.transaction():
            store.set_meta("manifests", str(recorded))
    finally:
        store.close()
    sha = remote.commit({"manifests/web.yaml": pod_yaml("web")})
    assert main(["sync", "--repo", str(remote.bare), "--ref", "main", "--path", "manifests", "--once",
                 "--root", str(tmp_path / "state")]) == 0
    assert gitsync.commit_of(recorded, tmp_path / "state") == sha and pods(recorded) == {"web": "busybox:1.36"}
    assert not os.path.lexists(tmp_path / "default-manifests")
