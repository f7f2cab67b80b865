"""GitOps: the manifests path follows a git repository, one validated commit at a time.

Owns: fetching a ref with the `git` command line into a bare repository under `<root>/git/`,
checking each new commit out into a fresh worktree `<root>/git/worktrees/<sha>`, validating every
manifest of that commit (under `path`) with exactly the daemon's rules (`scan` + `resolve`),
refusing a commit that would remove every pod (unless `allow_empty`), swapping the manifests path
— a symlink this module owns — to the new tree atomically (`symlink` to a temporary name, then
`rename`), and only then removing the previous worktree. Between commits it puts back files edited
by hand in the live tree (drift) and reports them. Failures back off exponentially (1 s doubling,
capped at 5 min); a commit rejected for its content is not a failure of the machinery: it is
retried only when the ref moves, at the normal interval. A commit's manifests are read by one
function (`render`), the same for a sync and for its preview (`GitSync.preview`: a commit fetched,
checked out and judged, not applied — `kubelite sync --dry-run`).

An interval in which nothing moved is cheap: the remote is first asked only what its ref names
(read in-process from a repository on this machine, else `git ls-remote`; a ref given as a commit
SHA needs no asking), and the fetch runs only when that differs from what was fetched last. The
drift check (`git status`) runs only when the stat of some entry of the live tree or of its git
state (HEAD, index) changed since the last clean check, or when one changed too recently for its
times to tell (`RACY_S`).

Kustomize: when the directory under `path` holds a `kustomization.yaml`, the commit's manifests
are kustomize's output of it (`kubelite.sources.kustomize`: its references checked to stay in the
checkout, `kubectl kustomize` run bounded and without network), written to
`<root>/git/rendered/<worktree name>/<path>/` and validated like a plain directory; the manifests path
then leads there, the checkout staying beside it for the drift check, and the output is checked
by its digest at every pass. `path` may hold `{node}`, the node's name (`nodes/{node}`).

All or nothing: the daemon only ever sees the previous commit's tree or the new one — never a
half-checked-out tree, never a commit with an invalid manifest.

Safety of the git calls: every call has a timeout (its process group is killed on expiry), runs
with `core.hooksPath=/dev/null`, `core.fsmonitor=false`, `GIT_TERMINAL_PROMPT=0`, SSH in batch
mode, no inherited `GIT_*` variables, and only in directories this module created (with
`GIT_CEILING_DIRECTORIES` so git never looks above them). Credentials in the repository URL
(`https://user:token@host/x`) are replaced by `***` in every message and in the status.

The status (`SyncStatus`) is plain data, serialisable to JSON; persisting it is the caller's job
(`kubelite sync`, or the agent for `serve --sync-repo`, stores it in the state database's `meta`
table under "sync"). Reads the clock only through the injected `clock`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from kubelite.clock import utcnow
import kubelite.statefiles as statefiles
from kubelite.errors import KubeliteError, SyncError
from kubelite import layout
from kubelite.sources import kustomize
from kubelite.sources.gitrefs import RACY_S  # noqa: F401 (re-exported: tests and the benchmark read it here)
from kubelite.sources.gitrefs import LocalRefs, TreeStamp, local_repository, pick_ref, tree_stamp
from kubelite.sources.manifests import ManifestProblem, ManifestSnapshot, resolve, scan

#: Retry delays after a failure: BACKOFF_INITIAL_S, doubling, at most BACKOFF_MAX_S.
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 300.0
#: Default poll interval when nothing fails.
DEFAULT_INTERVAL_S = 30.0
#: Timeouts of one git call: talking to the remote, and local work (checkout, status).
FETCH_TIMEOUT_S = 120.0
LOCAL_TIMEOUT_S = 60.0
#: The ref in the bare repository that holds the last fetched commit.
FETCHED_REF = "refs/kubelite/fetched"

_SHA = re.compile(r"[0-9a-f]{40}\Z")
#: Worktrees are named by commit; a second checkout of the commit in use (a damaged tree, another
#: --path) goes to `<sha>.1`, so that the tree the manifests path leads to is never touched before the swap.
_WORKTREE_NAME = re.compile(r"[0-9a-f]{40}(\.1)?\Z")
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@")


def redact(text: str, url: str | None = None) -> str:
    """`text` with the credentials of any `scheme://userinfo@host` URL replaced by `***`.

    With `url`, its user-info is also removed wherever it appears on its own (percent-decoded too).
    """
    if url:
        try:
            parts = urlsplit(url)
            netloc, scheme = parts.netloc, parts.scheme
        except ValueError:
            netloc = scheme = ""
        if "@" in netloc:
            userinfo = netloc.rsplit("@", 1)[0]
            user, _, password = userinfo.partition(":")
            secrets = {userinfo, unquote(userinfo), password, unquote(password)}
            if not password and scheme in ("http", "https"):  # a token given as the user name
                secrets |= {user, unquote(user)}
            for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
                text = text.replace(secret, "***")
    return _URL_USERINFO.sub(r"\1***@", text)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


@dataclass
class SyncStatus:
    """What `kubelite get sync` shows. Times are ISO 8601 strings (UTC); the repository is redacted."""

    repository: str
    ref: str
    path: str = ""
    commit: str | None = None            # the commit the manifests path leads to
    applied_at: str | None = None        # when that commit was applied
    last_error: str | None = None        # the current problem, or None
    last_error_at: str | None = None
    rejected_commit: str | None = None   # the newest commit refused for its content
    failures: int = 0                    # consecutive failed passes (drives the backoff)
    next_attempt: str | None = None
    last_sync_at: str | None = None      # the last pass, whatever its outcome
    drift: list[str] = field(default_factory=list)  # files put back by the last pass that found drift
    drift_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(vars(self), sort_keys=True)   # plain fields only: no deep copy needed

    @classmethod
    def from_json(cls, text: str) -> "SyncStatus":
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class SyncResult:
    """The outcome of one `sync_once`.

    `outcome` is one of: "applied" (a new commit now runs), "unchanged" (nothing to do), "drift"
    (hand edits were put back), "rejected" (the remote commit is invalid or would remove every
    pod; the previous commit keeps running), "failed" (fetch, checkout or disk trouble; backing off).
    """

    outcome: str
    commit: str | None          # the commit running after this pass
    remote: str | None          # the commit the ref pointed to, when the fetch worked
    message: str
    delay_s: float              # until the next attempt
    status: SyncStatus
    drift: list[str] = field(default_factory=list)
    previous: str | None = None  # the commit replaced, for "applied"


#: The event each sync outcome records ("unchanged" records none): (type, reason).
SYNC_EVENTS = {"applied": ("Normal", "SyncApplied"), "rejected": ("Warning", "SyncRejected"),
               "failed": ("Warning", "SyncFailed"), "drift": ("Warning", "DriftCorrected")}


def hold_sync_lock(root: Path) -> IO[str]:
    """`<root>/sync.lock`, held for the life of the caller: one sync per state root, whether it
    runs as `kubelite sync` or inside `kubelite serve --sync-repo`."""
    statefiles.make_top(root)
    lock = open(layout.sync_lock_path(root), "a+", opener=statefiles.no_follow)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SyncError(f"another kubelite sync is already running with state root {root}") from None
    return lock


def commit_of(link: Path, root: Path) -> str | None:
    """The commit a manifests path leads into, when it leads into one of kubelite's worktrees (or
    into the kustomize output of one)."""
    target = Path(os.path.realpath(link))
    for base in (layout.git_worktrees_dir(root), layout.git_rendered_dir(root)):
        try:
            relative = target.relative_to(os.path.realpath(base))
        except ValueError:
            continue
        name = relative.parts[0] if relative.parts else ""
        return name[:40] if re.fullmatch(r"[0-9a-f]{40}(\.[0-9]+)?", name) else None
    return None


def expand_path(path: str, node: str | None) -> str:
    """`--sync-path` with `{node}` replaced by the node's name (`nodes/{node}` → `nodes/edge-1`)."""
    if "{node}" in path:
        if not node or "/" in node or node in (".", "..") or not node.isprintable():
            raise SyncError(f"{path!r} names the node, but the node name {node!r} cannot be a directory name")
        path = path.replace("{node}", node)
    if "{" in path or "}" in path:
        raise SyncError(f"{path!r}: the only placeholder is {{node}}")
    return path


def setting_problems(repo_url: str | None, *, ref: str, path: str, node: str | None) -> dict[str, str]:
    """What makes a sync's settings unusable, by setting ("repo", "ref", "path"; empty: none): the rules
    GitSync applies when it is made, for whoever checks them before (`kubelite sync`'s flags, a
    configuration file read at start or reloaded). `repo_url` None: not checked."""
    problems = {}
    if repo_url is not None and (not repo_url or repo_url.startswith("-") or not repo_url.isprintable()):
        problems["repo"] = "the repository URL must not be empty, start with '-' or hold control characters"
    if not ref or ref.startswith("-") or any(c.isspace() or not c.isprintable() for c in ref) or ":" in ref:
        problems["ref"] = (f"invalid ref {ref!r}: a branch, tag or commit, without spaces, control characters or "
                           "':', not starting with '-'")
    try:
        _clean_subdir(expand_path(path, node))
    except SyncError as exc:
        problems["path"] = str(exc)
    return problems


class GitSync:
    """The sync engine for one repository, ref and sub-directory. Not thread-safe: one caller."""

    def __init__(self, repo_url: str, *, ref: str = "HEAD", path: str = "", root: Path, link: Path,
                 allow_empty: bool = False, interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], datetime] = utcnow, status: SyncStatus | None = None,
                 fetch_timeout_s: float = FETCH_TIMEOUT_S, local_timeout_s: float = LOCAL_TIMEOUT_S,
                 node: str | None = None, render_timeout_s: float = kustomize.RENDER_TIMEOUT_S) -> None:
        problems = setting_problems(repo_url, ref=ref, path=path, node=node)
        if problems:
            raise SyncError("; ".join(f"{name}: {why}" for name, why in problems.items()))
        self.repo_url = repo_url
        self.ref = ref
        self.path = _clean_subdir(expand_path(path, node))
        self.base = layout.git_dir(Path(os.path.abspath(root)))
        self.rendered = layout.git_rendered_dir(Path(os.path.abspath(root)))
        self.render_timeout_s = render_timeout_s
        self._rendered_digest: dict[str, str] = {}   # worktree name → sha256 of the kustomize output written
        self.bare = layout.git_repo_dir(Path(os.path.abspath(root)))
        self.worktrees = layout.git_worktrees_dir(Path(os.path.abspath(root)))
        self.link = Path(os.path.abspath(link))
        self.allow_empty = allow_empty
        self.interval_s = interval_s
        self.clock = clock
        self.fetch_timeout_s = fetch_timeout_s
        self.local_timeout_s = local_timeout_s
        shown = redact(repo_url, repo_url)
        if status is not None and (status.repository, status.ref, status.path) == (shown, ref, self.path):
            self.status = status
        else:
            self.status = SyncStatus(repository=shown, ref=ref, path=self.path)
        self._rejected: tuple[str, str] | None = None  # (sha, why) of the last commit refused
        self._fetched: tuple[str, str] | None = None   # (object the remote's ref named, its commit) at the last fetch
        self._clean_stamp: TreeStamp | None = None      # the live tree's stat when git last found it clean
        local = local_repository(repo_url)
        self._local_refs = LocalRefs(local) if local is not None else None
        live = self.live_commit()
        if live != self.status.commit:
            self.status.commit, self.status.applied_at = live, None

    # ------------------------------------------------------------------ the pass

    def sync_once(self) -> SyncResult:
        """Fetch the ref if it moved; apply its commit if new and valid, else repair drift. Never raises
        KubeliteError: any (a rendering that fails while the output is put back too) fails the pass."""
        now = self.clock()
        self.status.last_sync_at = _iso(now)
        remote: str | None = None
        try:
            self._ensure_repository()
            remote = self._fetch_if_moved()
            tree, live = self._live()
            if remote == live and tree is not None:
                return self._unchanged_or_drift(live, tree, now)
            if self._rejected is not None and self._rejected[0] == remote:
                return self._reject(remote, self._rejected[1], now, again=True)
            return self._apply(remote, live, now)
        except (KubeliteError, OSError, subprocess.SubprocessError) as exc:
            message = self._redact(str(exc) if isinstance(exc, KubeliteError) else _describe_os_error(exc))
            return self._fail(message, remote, now)

    def live_commit(self) -> str | None:
        """The commit the manifests path leads to: set only when it leads to `path` in one of our worktrees."""
        return self._live()[1]

    def _live(self) -> tuple[str | None, str | None]:
        """(the worktree the manifests path leads into, whatever the sub-directory; the live commit)."""
        target = os.path.realpath(self.link)
        name = self._linked_tree(target)
        if name is None:
            return None, None
        expected = self.worktrees / name / self.path if self.path else self.worktrees / name
        live = target in (os.path.realpath(expected), os.path.realpath(self._output(name)))
        return name, name[:40] if live else None

    def _output(self, name: str) -> Path:
        """Where the kustomize output of `path` in worktree `name` is written: `<rendered>/<name>/<path>/`.
        The output of another path of the same commit (before a new --path) is never taken for it."""
        return self.rendered / name / self.path if self.path else self.rendered / name

    def _linked_tree(self, target: str | None = None) -> str | None:
        """The name of the worktree the manifests path (resolved: `target`) leads into, or None."""
        try:
            resolved = Path(target if target is not None else os.path.realpath(self.link))
        except OSError:
            return None
        for base in (self.worktrees, self.rendered):   # a checkout, or its kustomize output
            try:
                relative = resolved.relative_to(os.path.realpath(base))
            except (OSError, ValueError):
                continue
            name = relative.parts[0] if relative.parts else ""
            return name if _WORKTREE_NAME.match(name) and (self.worktrees / name).is_dir() else None
        return None

    # ------------------------------------------------------------------ outcomes

    def _unchanged_or_drift(self, sha: str, name: str, now: datetime) -> SyncResult:
        refused, self._rejected = self._rejected, None  # the ref is back on the running commit: any refused commit is history
        self.status.rejected_commit = None
        tree = self.worktrees / name
        stamp = tree_stamp(tree, now)  # taken before git looks: a change after it changes the next one
        if stamp is not None and stamp == self._clean_stamp:
            drift: list[str] = []
        else:
            self._clean_stamp = None
            try:
                drift = self._drift(tree, sha)
            except SyncError as exc:  # a corrupt worktree: check the same commit out afresh
                return self._apply(sha, sha, now, reason=f"worktree of commit {sha[:12]} is damaged ({exc}); "
                                                         "checked out again")
            if not drift:
                self._clean_stamp = stamp
        self._succeeded(now)
        if drift:
            self._restore(tree, sha)
        rendered, afresh = self._rendered_drift(name, sha, source_changed=bool(drift))
        if afresh is not None:   # the live output cannot be told from what this commit renders: apply it afresh
            if refused is not None and refused[0] == sha:   # and refused already: not rendered again every pass
                self._rejected = refused
                return self._reject(sha, refused[1], now, again=True)
            return self._apply(sha, sha, now, reason=f"commit {sha[:12]} checked out again: {afresh}")
        drift += rendered
        if not drift:
            return SyncResult("unchanged", sha, sha, f"commit {sha[:12]} is up to date", self.interval_s,
                              self._snapshot())
        self.status.drift, self.status.drift_at = drift, _iso(now)
        message = f"drift in the tree of commit {sha[:12]}: restored {', '.join(drift)}"
        return SyncResult("drift", sha, sha, message, self.interval_s, self._snapshot(), drift=drift)

    def _apply(self, sha: str, live: str | None, now: datetime, reason: str | None = None) -> SyncResult:
        self._clean_stamp = None
        tree = self._checkout(sha)
        try:
            problem, directory = self._validate(tree, sha)
            if problem is None:
                self._swap(directory)
        except BaseException:
            self._remove_worktree(tree)
            raise
        if problem is not None:
            self._remove_worktree(tree)
            self._rejected = (sha, problem)
            return self._reject(sha, problem, now)
        for other in self._worktree_dirs():  # the previous tree, and any left by a crash
            if other.name != tree.name:
                self._remove_worktree(other)
        for other in self._rendered_dirs():   # kustomize output whose checkout is gone
            if other.name != tree.name:
                _remove_tree(other)
        self._rejected = None
        self.status.commit, self.status.applied_at = sha, _iso(now)
        self.status.rejected_commit = None
        self._succeeded(now)
        message = reason or (f"applied commit {sha[:12]}" + (f" (was {live[:12]})" if live else ""))
        return SyncResult("applied", sha, sha, message, self.interval_s, self._snapshot(), previous=live)

    def _reject(self, sha: str, why: str, now: datetime, *, again: bool = False) -> SyncResult:
        self.status.failures = 0
        self.status.rejected_commit = sha
        if not again or self.status.last_error != why:
            self.status.last_error, self.status.last_error_at = why, _iso(now)
        self.status.next_attempt = _iso(now + timedelta(seconds=self.interval_s))
        return SyncResult("rejected", self.live_commit(), sha, why, self.interval_s, self._snapshot())

    def _fail(self, message: str, remote: str | None, now: datetime) -> SyncResult:
        self.status.failures += 1
        delay = backoff_delay(self.status.failures)
        self.status.last_error, self.status.last_error_at = message, _iso(now)
        self.status.next_attempt = _iso(now + timedelta(seconds=delay))
        return SyncResult("failed", self.live_commit(), remote, message, delay, self._snapshot())

    def _succeeded(self, now: datetime) -> None:
        self.status.failures = 0
        if self._rejected is None:
            self.status.last_error = self.status.last_error_at = None
        self.status.next_attempt = _iso(now + timedelta(seconds=self.interval_s))

    def _snapshot(self) -> SyncStatus:
        return dataclasses.replace(self.status, drift=list(self.status.drift))

    # ------------------------------------------------------------------ steps

    def _ensure_repository(self) -> None:
        statefiles.make_dirs(self.worktrees, base=self.base.parent)
        if not (self.bare / "HEAD").is_file():
            if self.bare.exists():
                shutil.rmtree(self.bare)
            self._git(["init", "--quiet", "--bare", str(self.bare)], cwd=self.base, git_dir=False)
            self._fetched = None

    def _fetch_if_moved(self) -> str:
        """The commit the ref names: the one fetched last while the remote's ref names the same
        object as then, else fetched now."""
        named = self._remote_ref()
        if named is not None and self._fetched is not None and self._fetched[0] == named:
            return self._fetched[1]
        self._fetched = None
        self._fetched = self._fetch()
        return self._fetched[1]

    def _remote_ref(self) -> str | None:
        """The object the remote's ref names now, without fetching: the ref itself when it is a commit
        SHA; read in-process from a repository on this machine; else `git ls-remote` (with the fetch's
        timeout, settings and redaction; a failure is the pass's failure). None when the ref is not
        found that way: the fetch then decides, and says why."""
        if _SHA.match(self.ref):
            return self.ref
        if self._local_refs is not None:
            found = self._local_refs.read(self.ref)
            if found is not None:
                return found
        out = self._git(["ls-remote", "--", self.repo_url, self.ref, f"{self.ref}/HEAD"],
                        timeout=self.fetch_timeout_s, what=f"asking {self.status.repository} for {self.ref!r}")
        advertised = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if _SHA.match(sha):
                advertised[name] = sha
        return pick_ref(self.ref, advertised)

    def _fetch(self) -> tuple[str, str]:
        """Fetch the ref into FETCHED_REF: (the object it names, the commit that is)."""
        source = self.ref
        try:
            self._git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", self.repo_url,
                       f"+{source}:{FETCHED_REF}"], timeout=self.fetch_timeout_s,
                      what=f"fetch of {self.ref!r} from {self.status.repository}")
        except SyncError as exc:
            if self.ref == "HEAD" and "couldn't find remote ref HEAD" in str(exc):
                raise SyncError(f"{exc} (the repository's HEAD names a branch that does not exist; "
                                "give --ref BRANCH)") from None
            raise
        try:
            out = self._git(["rev-parse", FETCHED_REF, f"{FETCHED_REF}^{{commit}}"],
                            what="reading the fetched commit")
        except SyncError as exc:
            raise SyncError(f"ref {self.ref!r} does not name a commit ({exc})") from None
        lines = out.split()
        if len(lines) != 2 or not all(_SHA.match(line) for line in lines):
            raise SyncError(f"ref {self.ref!r} does not name a commit")
        return lines[0], lines[1]

    def _checkout(self, sha: str) -> Path:
        """A fresh worktree of `sha`, never the one the manifests path leads into."""
        tree = self.worktrees / (f"{sha}.1" if self._linked_tree() == sha else sha)
        if tree.exists() or os.path.lexists(tree):
            self._remove_worktree(tree)
        self._git(["worktree", "prune"], what="pruning worktrees")
        self._git(["worktree", "add", "--quiet", "--detach", "--force", str(tree), sha],
                  what=f"checkout of commit {sha[:12]}")
        _drop_other_write(tree)
        return tree

    def _validate(self, tree: Path, sha: str) -> tuple[str | None, Path]:
        """(why commit `sha` must not run, or None; the directory the manifests path is to lead to).
        Every manifest under `path` is read; a kustomization there is rendered first, and its output read."""
        short = sha[:12]
        target = tree / self.path if self.path else tree
        real_tree = os.path.realpath(tree)
        real_target = os.path.realpath(target)
        if real_target != real_tree and not real_target.startswith(real_tree + os.sep):
            return f"commit {short}: path {self.path!r} leads outside the repository; refused", target
        if not os.path.isdir(target):
            return f"commit {short}: path {self.path!r} is not a directory in this commit", target
        rendered = kustomize.find(target) is not None
        if rendered:
            try:
                target = self._render(tree, target)
            except kustomize.KustomizeError as exc:
                return f"commit {short} not applied: {exc}", target
        resolution = resolve(render(target), {})
        if resolution.problems:
            shown = [self._in_repo(problem, target if rendered else None) for problem in resolution.problems]
            more = f" (and {len(shown) - 1} more)" if len(shown) > 1 else ""
            return f"commit {short} not applied: {shown[0]}{more}" + "".join(f"; {p}" for p in shown[1:5]), target
        if not resolution.pods and not self.allow_empty:
            running = _pod_count(self.link)
            if running:
                where = f"under {self.path!r}" if self.path else "in the repository"
                return (f"commit {short} not applied: it has no pods {where}, and applying it would remove all "
                        f"{running} pod(s) running now; use --allow-empty if that is intended"), target
        return None, target

    @contextmanager
    def preview(self) -> Iterator[CommitPreview]:
        """The commit the ref names, fetched and checked out beside the live tree and judged as
        `sync_once` judges it, without applying it (`kubelite sync --dry-run`); its checkout is
        removed when the caller is done. Raises SyncError when the fetch or the checkout fails."""
        self._ensure_repository()
        sha = self._fetch_if_moved()
        tree = self._checkout(sha)
        try:
            problem, directory = self._validate(tree, sha)
            yield CommitPreview(sha, problem, render(directory, read_as=self.link) if problem is None else None)
        finally:
            self._remove_worktree(tree)

    def _render(self, tree: Path, target: Path) -> Path:
        """Kustomize's output of `target` (a kustomization of checkout `tree`) written into a fresh
        `<rendered>/<tree name>/`, which is returned. KustomizeError for a kustomization refused or broken."""
        kustomize.check_references(tree, target)
        try:
            data = self._run_kustomize(target)
        except kustomize.KustomizeError as exc:
            raise kustomize.KustomizeError(f"{self.path or '.'}: {exc}") from None
        _remove_tree(self.rendered / tree.name)
        out = self._output(tree.name)
        statefiles.make_dirs(out, base=self.base)
        statefiles.write_atomic(out / layout.GIT_RENDERED_FILE, data, 0o600, fsync=True)
        self._rendered_digest[tree.name] = hashlib.sha256(data).hexdigest()
        return out

    def _run_kustomize(self, target: Path) -> bytes:
        statefiles.make_dirs(self.base, base=self.base.parent)
        workdir = Path(tempfile.mkdtemp(prefix=".kustomize-", dir=self.base))
        try:
            return kustomize.render(target, workdir=workdir, timeout_s=self.render_timeout_s)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _rendered_drift(self, name: str, sha: str, *, source_changed: bool) -> tuple[list[str], str | None]:
        """Hand edits of the live kustomize output, put back (what was found: `[]` when nothing); or why
        the commit must be validated and applied afresh instead: the checkout's kind and the live path's
        no longer agree, or — the digest of what was written unknown (a restart) — the output differs
        from a fresh rendering, so it was never validated as this commit's."""
        tree = self.worktrees / name
        target = tree / self.path if self.path else tree
        out = self._output(name)
        is_rendered = os.path.realpath(self.link) == os.path.realpath(out)
        if (kustomize.find(target) is not None) != is_rendered:
            return [], "its kustomization appeared or went"
        if not is_rendered:
            return [], None
        file = out / layout.GIT_RENDERED_FILE
        try:
            entries = sorted(os.listdir(out))
            current = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
        except OSError:
            entries, current = [], None
        known = self._rendered_digest.get(name)
        data = None
        expected = known
        if known is None or source_changed:   # after a restart, or the source was put back: render again
            data = self._render_again(tree, target, sha)
            expected = hashlib.sha256(data).hexdigest()
            if known is None and current != expected:
                return [], "its kustomize output was not what the commit renders (rendered again)"
            self._rendered_digest = {name: expected}
        found = [f"kustomize output: {entry} (added)" for entry in entries if entry != layout.GIT_RENDERED_FILE]
        if current != expected:
            found.append(f"kustomize output: {layout.GIT_RENDERED_FILE} ({'modified' if current else 'deleted'})")
        if found:
            if data is None:
                data = self._render_again(tree, target, sha)
            for entry in entries:
                if entry != layout.GIT_RENDERED_FILE:
                    _remove_tree(out / entry)
            statefiles.make_dirs(out, base=self.base)   # the whole directory may have gone
            statefiles.write_atomic(file, data, 0o600, fsync=True)
            self._rendered_digest = {name: hashlib.sha256(data).hexdigest()}
        return found, None

    def _render_again(self, tree: Path, target: Path, sha: str) -> bytes:
        """Kustomize's output of the live commit's kustomization, for the drift check; SyncError when it fails."""
        try:
            kustomize.check_references(tree, target)
            return self._run_kustomize(target)
        except kustomize.KustomizeError as exc:
            raise SyncError(f"rendering commit {sha[:12]} again failed: {exc}") from None

    def _in_repo(self, problem: ManifestProblem, rendered: Path | None = None) -> str:
        if rendered is not None:   # a document of kustomize's output: named by the object it holds
            return str(kustomize.output_problem(problem, rendered / layout.GIT_RENDERED_FILE, self.path or "."))
        if self.path and not os.path.isabs(problem.file):
            problem = dataclasses.replace(problem, file=f"{self.path}/{problem.file}")
        elif os.path.isabs(problem.file):
            problem = dataclasses.replace(problem, file=self.path or ".")
        return str(problem)

    def _swap(self, target: Path) -> None:
        """Point the manifests path at `target` in one rename."""
        if os.path.lexists(self.link) and not self.link.is_symlink():
            raise SyncError(f"{self.link} exists and is not a symlink; kubelite sync owns the manifests path "
                            "as a symlink: move it aside first")
        self.link.parent.mkdir(parents=True, exist_ok=True)
        statefiles.replace_symlink(self.link, str(target), temporary=f".{self.link.name}.sync-{os.getpid()}",
                                   fsync=True)

    def _drift(self, tree: Path, sha: str) -> list[str]:
        """Files of the live tree that differ from commit `sha` (changed, added or removed)."""
        if not tree.is_dir() or not (tree / ".git").is_file():
            raise SyncError("its .git file is missing" if tree.is_dir() else "it is missing")
        head = self._git(["rev-parse", "HEAD"], cwd=tree, git_dir=False, what="reading the worktree").strip()
        out = self._git(["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching",
                         "--no-renames"], cwd=tree, git_dir=False, what="checking the worktree")
        changed = []
        for entry in out.split("\0"):
            if len(entry) > 3 and entry[2] == " ":
                code, name = entry[:2], entry[3:]
                kind = {"??": "added", "!!": "added"}.get(code, "deleted" if "D" in code else "modified")
                changed.append(f"{name} ({kind})")
        if head != sha:
            changed.insert(0, f"HEAD moved to {head[:12]}")
        return changed

    def _restore(self, tree: Path, sha: str) -> None:
        self._git(["reset", "--quiet", "--hard", sha], cwd=tree, git_dir=False, what="restoring the worktree")
        self._git(["clean", "-ffdxq"], cwd=tree, git_dir=False, what="restoring the worktree")
        _drop_other_write(tree)

    def _worktree_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in self.worktrees.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def _rendered_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in self.rendered.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def _remove_worktree(self, tree: Path) -> None:
        """Remove one of our worktrees, and git's record of it."""
        if tree.parent != self.worktrees:
            raise AssertionError(f"not a worktree of ours: {tree}")
        if tree.is_symlink() or tree.is_file():
            tree.unlink()
        elif tree.exists():
            shutil.rmtree(tree)
        _remove_tree(self.rendered / tree.name)
        self._rendered_digest.pop(tree.name, None)
        if (self.bare / "HEAD").is_file():
            self._git(["worktree", "prune"], what="pruning worktrees")

    # ------------------------------------------------------------------ running git

    def _redact(self, text: str) -> str:
        return redact(text, self.repo_url)

    def _git(self, args: list[str], *, cwd: Path | None = None, git_dir: bool = True, timeout: float | None = None,
             what: str = "git") -> str:
        """Run git with the safe settings; its stdout. Raises SyncError (redacted) on failure or timeout."""
        where = cwd or self.base
        if not str(os.path.abspath(where)).startswith(str(self.base)):
            raise AssertionError(f"git must run only below {self.base}, not in {where}")
        argv = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "gc.autoDetach=false",
                "-c", "maintenance.auto=false", "-c", "advice.detachedHead=false", "-c", "core.quotePath=false"]
        if git_dir:
            argv.append(f"--git-dir={self.bare}")
        argv += args
        limit = timeout or self.local_timeout_s
        process = subprocess.Popen(argv, cwd=where, env=_git_env(self.worktrees), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                   umask=0o077)   # checkouts hold Secrets: 0600 files, 0700 directories
        try:
            out, err = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise SyncError(self._redact(f"{what}: git timed out after {limit:g} s")) from None
        if process.returncode != 0:
            text = err.decode("utf-8", "replace").strip() or f"exit status {process.returncode}"
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            raise SyncError(self._redact(f"{what} failed: {' / '.join(lines[-3:])}"))
        return out.decode("utf-8", "replace")


@dataclass(frozen=True)
class CommitPreview:
    """A commit as `GitSync.preview` found it: why it would be refused (None: it would be applied),
    and what the daemon would read from it through the manifests path."""

    commit: str
    problem: str | None
    snapshot: ManifestSnapshot | None


def render(directory: Path, *, read_as: Path | None = None) -> ManifestSnapshot:
    """What the daemon reads from a commit's manifests directory: the one step between a checkout
    and its validation, the same for a sync and for its preview (`read_as`: read as the manifests
    path, so that sources and UIDs are the pods' own)."""
    return scan(directory, read_as=read_as)


def backoff_delay(failures: int) -> float:
    """Seconds before the next attempt after `failures` consecutive failures: 1, 2, 4, … at most 300."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_INITIAL_S * 2 ** min(failures - 1, 30), BACKOFF_MAX_S)


def _clean_subdir(path: str) -> str:
    cleaned = os.path.normpath(path.strip("/")) if path.strip("/") else ""
    if cleaned == ".":
        cleaned = ""
    if cleaned == ".." or cleaned.startswith("../") or os.path.isabs(cleaned):
        raise SyncError(f"{path!r} leads outside the repository: name a directory inside it")
    return cleaned


def _git_env(worktrees: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false" if os.path.exists("/bin/false") else "false",
        "SSH_ASKPASS": "/bin/false" if os.path.exists("/bin/false") else "false",
        "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        "GIT_CEILING_DIRECTORIES": str(worktrees),
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
    })
    return env


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _drop_other_write(tree: Path) -> None:
    """A checkout holds Secret manifests: its files and directories are the owner's alone (0600/0700 at
    most; git already checks out under umask 077, this also covers a tree left by an older kubelite)."""
    for directory, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in [directory, *(os.path.join(directory, f) for f in files)]:
            statefiles.tighten(name, 0o700 if os.path.isdir(name) else 0o600)


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _pod_count(link: Path) -> int:
    """How many pods the manifests path holds now (valid files only); 0 when it holds nothing."""
    if not os.path.exists(link):
        return 0
    return len(resolve(scan(link), {}).pods)


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"


__all__ = ["BACKOFF_INITIAL_S", "BACKOFF_MAX_S", "CommitPreview", "GitSync", "SyncError", "SyncResult", "SyncStatus",
           "backoff_delay", "expand_path", "redact", "render", "setting_problems"]
