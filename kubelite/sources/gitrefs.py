"""The cheap checks of an idle git sync: which commit the remote's ref names, and whether the live
tree changed since git last found it clean.

Owns: reading a ref of a repository on this machine in-process (dulwich), resolving a short ref
name as `git fetch` does, and the stat stamp of a worktree with its git state (`tree_stamp`).
`gitsync` asks these first and runs git only when they say something may have changed.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: A tree changed less than this long ago is checked with git even when its stat looks unchanged:
#: file times are coarse, so a second edit within the same tick could leave the stat as it was.
RACY_S = 2.0
_SHA = re.compile(r"[0-9a-f]{40}\Z")


#: What `tree_stamp` records of one entry: (path, mode, inode, size, mtime ns, ctime ns).
TreeStamp = tuple[tuple[str, int, int, int, int, int], ...]


def tree_stamp(tree: Path, now: datetime) -> TreeStamp | None:
    """The lstat of every entry of a worktree and of its git state (the directory its `.git` file
    names: HEAD, index), sorted; None when it cannot be read, or when an entry changed less than
    RACY_S before `now` (a change within the same tick of the file times would not show).
    An edit, an added or removed file, a mode change, a checkout or `git add` in the tree changes it:
    each sets a ctime (which no one can set back) or an inode."""
    try:
        admin = (tree / ".git").read_text()
        if not admin.startswith("gitdir: "):
            return None
        entries: list[tuple[str, int, int, int, int, int]] = []
        for top in (str(tree), os.path.join(tree, admin[len("gitdir: "):].strip())):
            _stat_tree(top, entries)
    except (OSError, UnicodeDecodeError):
        return None
    newest = max(entry[5] for entry in entries)
    if newest >= (now.timestamp() - RACY_S) * 1e9:
        return None
    return tuple(sorted(entries))


def _stat_tree(top: str, out: list[tuple[str, int, int, int, int, int]]) -> None:
    pending = [top]
    while pending:
        directory = pending.pop()
        st = os.lstat(directory)
        out.append((directory, st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    st = entry.stat(follow_symlinks=False)
                    out.append((entry.path, st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


def ref_candidates(ref: str) -> list[str]:
    """The remote refs a short ref name stands for, in the order git's fetch prefers them
    (`git help revisions`: the name itself, refs/, refs/tags/, refs/heads/, refs/remotes/, .../HEAD)."""
    names = [f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}", f"refs/remotes/{ref}", f"refs/remotes/{ref}/HEAD"]
    return ([ref] if ref == "HEAD" or ref.startswith("refs/") else []) + names


def pick_ref(ref: str, advertised: dict[str, str]) -> str | None:
    """The object the remote's refs (name → object) give for `ref`, as `git fetch` would pick it."""
    for name in ref_candidates(ref):
        if name in advertised:
            return advertised[name]
    return None


def local_repository(url: str) -> str | None:
    """The directory of a repository URL that is an absolute path or a file:// URL; else None."""
    if url.startswith("file://"):
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        return unquote(parts.path) if parts.netloc in ("", "localhost") and parts.path.startswith("/") else None
    return url if url.startswith("/") else None


class LocalRefs:
    """The refs of a repository on this machine, read in-process (dulwich: loose refs, packed-refs,
    symbolic refs, reftable). The repository stays open between passes: dulwich reads a loose ref
    afresh each time and packed-refs again whenever its inode, size or times changed (git replaces
    it by a rename). Anything it cannot read closes it, to be opened again at the next read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._repo: Any = None

    def read(self, ref: str) -> str | None:
        """The object `ref` names (resolved as `git fetch` resolves it), or None when it cannot be
        read or is not there."""
        from dulwich.refs import DiskRefsContainer
        from dulwich.repo import Repo

        found = None
        try:
            if self._repo is None:
                self._repo = Repo(self.path)
            for name in ref_candidates(ref):
                try:
                    value = self._repo.refs[name.encode()]
                except (KeyError, ValueError):
                    continue
                text = value.decode("ascii", "replace") if isinstance(value, bytes) else ""
                found = text if _SHA.match(text) else None
                break
        except Exception:  # noqa: BLE001 — whatever the library cannot read, `git ls-remote` is asked instead
            found = None
        if found is None or type(getattr(self._repo, "refs", None)) is not DiskRefsContainer:  # others: afresh each time
            self.close()
        return found

    def close(self) -> None:
        repo, self._repo = self._repo, None
        if repo is not None:
            repo.close()
