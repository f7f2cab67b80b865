"""Reading the manifest directory: which files count, what is in them, and which pods win.

Owns:

* the file rules (`is_manifest_name`): only `*.yaml`, `*.yml` and `*.json`; dotfiles, editor and
  backup files never count (the kubelet parses every non-dot file);
* reading one file safely (`read_file`): at most 10 MiB, regular files only, symlinks only to
  targets inside the directory, UTF-8, every YAML document (the kubelet reads only the first),
  each document parsed by `sources.documents` and decoded by `kubelite.api.decode`, every
  problem located by document, line and field;
* listing a directory into a `ManifestSnapshot` (`scan`), reading again only the files whose
  status (inode, size, times, mode, owner) changed since the last scan, as git's index does;
* `resolve`: from a snapshot and the pods last accepted from each file to the pods to run — the
  first file in sorted order wins a pod name, and a file edited into something invalid keeps its
  last valid version. ConfigMaps and Secrets (any file, any document) follow the same rules.

Reads files, and the wall clock only to tell a file changed too recently for its status to be
trusted (`RACY_S`); no threads. Messages never echo a file's content (manifests may hold
secrets): they name the file, document, line, field and rule only.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from kubelite.api import names
from kubelite.api.configobjects import ConfigObject
from kubelite.api.decode import CONFIG_KINDS, DesiredPod, decode_document
from kubelite.clock import utcnow
from kubelite.sources.documents import (
    LineFinder, Unusable, as_json, decode_text, parse_documents, refuse_alias_bombs,
)

#: The only file name endings read as manifests (case-sensitive).
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
#: Larger files are refused unread: the kubelet's `maxConfigLength`.
MAX_MANIFEST_BYTES = 10 * 1024 * 1024
#: A file whose status changed less than this long before a scan is read again at the next scan,
#: whatever its status then: a second write within the file system's timestamp granularity (a
#: clock tick; whole seconds, two for FAT's) may leave size and times as they were ("racy git").
RACY_S = 2.0


def is_manifest_name(name: str) -> bool:
    """Whether a directory entry called `name` is read as a manifest.

    Only `*.yaml`, `*.yml` and `*.json`, case-sensitive (`web.YAML` is not read), and never a
    dotfile (`.web.yaml.swp`, `.#web.yaml`). Editor and backup leftovers (`web.yaml~`, `.swp`,
    `.bak`, `.tmp`, `.orig`, `.rej`) do not end in a manifest suffix, so they never match.
    """
    return not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES)


@dataclass(frozen=True)
class ManifestProblem:
    """One error or warning about a manifest, located as precisely as known.

    `file` is relative to the manifest directory when inside it; `document` and `line` are 1-based.
    """

    file: str
    document: int | None
    line: int | None
    field: str | None
    message: str
    object: str | None = None   # `Service/web`: the object a document holds, when it is worth naming

    def __str__(self) -> str:
        """One line: `web.yaml: document 2, line 7: spec.containers[0].name: Required value`."""
        document = f"document {self.document}" if self.document is not None else ""
        if self.object:
            document = f"{document} ({self.object})" if document else f"({self.object})"
        where = ", ".join(part for part in (
            document,
            f"line {self.line}" if self.line is not None else "",
        ) if part)
        file = self.file if self.file.isprintable() else json.dumps(self.file)  # a name with a newline: one line
        return ": ".join(part for part in (file, where, self.field or "", self.message) if part)


@dataclass
class FileResult:
    """What one manifest file holds. The file is used only when `ok`; then `pods` are its pods."""

    path: str  # absolute, inside the directory, symlinks not resolved
    digest: str = ""  # sha256 of the bytes read; '' when the file was not read
    stamp: tuple[int, ...] | None = None  # its status before it was read (`_stamp`); None: read it again
    pods: list[DesiredPod] = field(default_factory=list)  # from the file's valid documents
    configs: list[ConfigObject] = field(default_factory=list)  # its ConfigMaps and Secrets
    refused_configs: dict[tuple[str, str, str], str] = field(default_factory=dict)  # key → first error
    errors: list[ManifestProblem] = field(default_factory=list)
    warnings: list[ManifestProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class ManifestSnapshot:
    """Every manifest file of the directory at one moment, by absolute path in sorted order."""

    root: str
    files: dict[str, FileResult] = field(default_factory=dict)
    problems: list[ManifestProblem] = field(default_factory=list)  # about the directory itself


@dataclass
class Resolution:
    """The pods to run, by `namespace/name` in file order, and everything to report about them."""

    pods: dict[str, DesiredPod] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # pod key → file path
    problems: list[ManifestProblem] = field(default_factory=list)
    warnings: list[ManifestProblem] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)  # invalid files whose last valid version still runs
    accepted: dict[str, list[DesiredPod]] = field(default_factory=dict)  # the `previous` of the next resolve
    configs: dict[tuple[str, str, str], ConfigObject] = field(default_factory=dict)  # (kind, ns, name) →
    config_sources: dict[tuple[str, str, str], str] = field(default_factory=dict)    # … and its file
    accepted_configs: dict[str, list[ConfigObject]] = field(default_factory=dict)
    refused_configs: dict[tuple[str, str, str], str] = field(default_factory=dict)   # invalid, never accepted
    uids: dict[str, str] = field(default_factory=dict)   # uid → key of the pod in `pods` that has it


# ------------------------------------------------------------------------------ the directory


def scan(directory: Path, *, previous: ManifestSnapshot | None = None,
         read_as: Path | None = None) -> ManifestSnapshot:
    """Read every manifest in `directory` (not recursive; a symlinked directory is followed).

    `directory` may also be a single regular file, as with the kubelet. A missing or unreadable
    directory gives an empty snapshot with one problem. With `previous` (the last snapshot), a
    regular file of the directory whose status is the one it had when it was last read (and had
    for `RACY_S` by then) is not read again, and a file whose bytes are unchanged is not parsed
    again: its earlier result is reused either way. A symlink is always read.

    With `read_as`, the files are read as if the directory were there (a preview of files before
    they land in the manifests directory): the snapshot's root and its files' paths, the pods'
    sources and so their UIDs, are those they get there.
    """
    earlier = previous.files if previous is not None else {}
    trusted_before = utcnow().timestamp() - RACY_S   # a status younger than this may hide a write
    root = os.path.abspath(directory)
    shown_root = os.path.abspath(read_as) if read_as is not None else root
    snapshot = ManifestSnapshot(shown_root)
    try:
        info = os.stat(root)
        mode = info.st_mode
        if unsafe := _others_may_write(info):
            snapshot.problems.append(_directory_problem(root, f"manifest {unsafe}: refused (anyone who can write "
                                                              "here decides what runs as root); run chmod o-w"))
            return snapshot
        if stat.S_ISREG(mode):
            snapshot.files[shown_root] = read_file(Path(root), previous=earlier.get(shown_root), source=shown_root)
        elif stat.S_ISDIR(mode):
            for name in _manifest_names(root):
                path, key = os.path.join(root, name), os.path.join(shown_root, name)
                if not _is_utf8(name):  # reported under a printable name; such a path cannot be stored
                    shown = os.fsencode(name).decode("utf-8", "backslashreplace")
                    result = FileResult(os.path.join(shown_root, shown))
                    result.errors.append(ManifestProblem(shown, None, None, None, "file name is not UTF-8: not read"))
                    snapshot.files[result.path] = result
                    continue
                prior, stamp = earlier.get(key), _stamp(path, trusted_before)
                if prior is not None and stamp is not None and prior.stamp == stamp:
                    snapshot.files[key] = prior   # unchanged since it was read: not opened
                    continue
                result = read_file(Path(path), root=Path(root), previous=prior, source=key)
                result.stamp = stamp if result.digest else None
                if result.ok or os.path.lexists(path):  # a file deleted while being listed is simply gone
                    snapshot.files[key] = result
        else:
            snapshot.problems.append(_directory_problem(root, "not a directory or a regular file"))
    except FileNotFoundError:
        snapshot.problems.append(_directory_problem(root, "manifest directory does not exist"))
    except OSError as exc:
        snapshot.problems.append(_directory_problem(root, exc.strerror or "cannot be listed"))
    return snapshot


def _others_may_write(info: os.stat_result) -> str | None:
    """Why a manifest file or directory is not safe to run from, or None: it must not be writable by
    all users, and must belong to root or to the user kubelite runs as."""
    if info.st_mode & stat.S_IWOTH:
        return f"{'directory' if stat.S_ISDIR(info.st_mode) else 'file'} is writable by all users " \
               f"(mode {stat.S_IMODE(info.st_mode):04o})"
    if info.st_uid not in (0, os.geteuid()):
        return f"{'directory' if stat.S_ISDIR(info.st_mode) else 'file'} belongs to another user (uid {info.st_uid})"
    return None


def _stamp(path: str, trusted_before: float) -> tuple[int, ...] | None:
    """What tells a change of the regular file at `path` without reading it: device, inode, mode,
    owner, size, modification and change times (the change time moves with every write, rename
    into place, chmod or chown, and no one can set it). None for a symlink (its target may change
    unseen), anything but a regular file, a file gone, or one changed at `trusted_before` or later."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_ctime_ns >= trusted_before * 1e9:
        return None
    return (info.st_dev, info.st_ino, info.st_mode, info.st_uid, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode kept undecodable bytes as surrogates
        return False
    return True


def _manifest_names(directory: str) -> list[str]:
    """Sorted names of the entries that are read as manifests; sub-directories are skipped."""
    with os.scandir(directory) as entries:
        return sorted(entry.name for entry in entries if is_manifest_name(entry.name) and not entry.is_dir())


def _directory_problem(root: str, message: str) -> ManifestProblem:
    return ManifestProblem(root, None, None, None, message)


def _display_path(path: str, root: str | None, *, default: str | None = None) -> str:
    """`path` relative to the directory `root` when it lies inside it, else `default` (or `path`)."""
    if root is not None and path.startswith(root.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, root)
    return path if default is None else default


# ---------------------------------------------------------------------------------- one file


def read_file(path: Path, *, root: Path | None = None, previous: FileResult | None = None,
              source: str | None = None) -> FileResult:
    """Read, decode and validate one manifest file of the directory `root`. Never raises for bad input.

    `previous` is this file's earlier result: returned as it is when the bytes have not changed.
    `source` is the path the file is read as (default: its own): the result's path and the pods'
    source, from which their UIDs derive — where `apply` would put a file that `diff` previews.
    Messages name the file read.
    """
    absolute = os.path.abspath(path)
    root_dir = os.path.abspath(root) if root is not None else None
    name = _display_path(absolute, root_dir, default=str(path))
    result = FileResult(source or absolute)
    try:
        data = _read_bytes(absolute, root_dir)
        result.digest = hashlib.sha256(data).hexdigest()
        if previous is not None and previous.digest == result.digest and previous.path == result.path:
            return previous
        text = decode_text(data)
        documents = parse_documents(text, json_file=absolute.endswith(".json"))
        refuse_alias_bombs(documents, len(text))  # before anything walks them: aliases multiply work
        documents = [as_json(doc, i + 1) for i, doc in enumerate(documents)]
    except Unusable as unusable:
        result.errors.append(ManifestProblem(name, unusable.document, unusable.line, None, str(unusable)))
        return result
    _decode_documents(documents, LineFinder(text), result, name)
    return result


def _read_bytes(path: str, root: str | None) -> bytes:
    """The file's bytes: at most `MAX_MANIFEST_BYTES`, from a regular file inside `root`."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            _check_symlink(path, root)
            mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise Unusable("not a regular file")
        with open(path, "rb", opener=_open_nonblocking) as file:
            return _read_bounded(file)
    except OSError as exc:
        raise Unusable(exc.strerror or "cannot be read") from None


def _check_symlink(path: str, root: str | None) -> None:
    target = os.path.realpath(path)
    if not os.path.exists(target):
        raise Unusable("dangling symlink: its target does not exist")
    if root is not None and not target.startswith(os.path.realpath(root).rstrip(os.sep) + os.sep):
        raise Unusable("symlink to a file outside the manifest directory; not read")


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)  # a FIFO swapped in must not block the open


def _read_bounded(file: BinaryIO) -> bytes:
    info = os.fstat(file.fileno())  # the file opened may differ from the one checked before
    if not stat.S_ISREG(info.st_mode):
        raise Unusable("not a regular file")
    if unsafe := _others_may_write(info):
        raise Unusable(f"{unsafe}: refused; run chmod o-w")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise _too_large()
    data: bytes = file.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:  # it grew since fstat
        raise _too_large()
    return data


def _too_large() -> Unusable:
    return Unusable(f"larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB; not read")


def _decode_documents(documents: list[Any], lines: LineFinder, result: FileResult, name: str) -> None:
    """Decode every non-empty document into `result`; a pod defined twice in the file is an error.

    A list document (`kind: List` or `PodList`, … with `items`, as `kubectl get -o yaml` writes
    them) is read item by item, as kubectl reads it, each item's fields located under `items[N]`.
    """
    seen: dict[str, int] = {}  # pod key → document that defined it first
    seen_configs: dict[tuple[str, str, str], int] = {}
    for index, document in enumerate(documents, 1):
        if document is None:
            continue
        kind = document.get("kind") if isinstance(document, dict) else None
        items = document.get("items") if isinstance(kind, str) and kind.endswith("List") else None
        if isinstance(items, list):
            for i, item in enumerate(items):
                _decode_one(item, index, f"items[{i}]", lines, result, name, seen, seen_configs)
        else:
            _decode_one(document, index, "", lines, result, name, seen, seen_configs)


def _decode_one(document: Any, index: int, prefix: str, lines: LineFinder, result: FileResult, name: str,
                seen: dict[str, int], seen_configs: dict[tuple[str, str, str], int]) -> None:
    """Decode one object (document `index`, or an item of it at `prefix`) into `result`."""
    def at(path: str) -> str:
        return f"{prefix}.{path}" if prefix and path else prefix or path

    decoded = decode_document(document, source=result.path)
    if decoded.ignored:   # a kind kubelite does not run: one warning for the whole object
        shown = "/".join(names.shown(part, limit=64) for part in (decoded.kind, decoded.name) if part)
        result.warnings.extend(ManifestProblem(name, index, lines.line(index, prefix) if prefix else None,
                                               prefix or None, issue.message, object=shown)
                               for issue in decoded.warnings)
        return
    for target, issues in ((result.errors, decoded.errors), (result.warnings, decoded.warnings)):
        target.extend(ManifestProblem(name, index, lines.line(index, at(issue.path)), at(issue.path) or None,
                                      issue.message) for issue in issues)
    if decoded.kind in CONFIG_KINDS and decoded.errors and decoded.name and isinstance(document, dict):
        meta = document.get("metadata")
        namespace = "" if decoded.kind == "StorageClass" else \
            (meta.get("namespace") if isinstance(meta, dict) else None) or "default"   # a class has no namespace
        if isinstance(namespace, str):   # so that a pod waiting for it can say why it is missing
            issue = decoded.errors[0]
            result.refused_configs[(decoded.kind, namespace, decoded.name)] = str(ManifestProblem(
                name, index, lines.line(index, at(issue.path)), at(issue.path) or None, issue.message))
    if decoded.config is not None:
        config = decoded.config
        if config.key in seen_configs:
            result.errors.append(ManifestProblem(
                name, index, lines.line(index, at("metadata.name")), at("metadata.name"),
                f"Duplicate value: {config.kind} {config.ref} is already defined in document "
                f"{seen_configs[config.key]} of this file"))
        else:
            seen_configs[config.key] = index
            result.configs.append(config)
        return
    if decoded.desired is None:
        return
    key = decoded.desired.key
    if key in seen:
        result.errors.append(ManifestProblem(
            name, index, lines.line(index, at("metadata.name")), at("metadata.name"),
            f"Duplicate value: pod {key} is already defined in document {seen[key]} of this file"))
        return
    seen[key] = index
    result.pods.append(decoded.desired)


# ----------------------------------------------------------------------------- which pods win


def resolve(snapshot: ManifestSnapshot, previous: Mapping[str, list[DesiredPod]],
            previous_configs: Mapping[str, list[ConfigObject]] | None = None) -> Resolution:
    """The pods to run, from `snapshot` and the pods last accepted from each file (`previous`).

    Files are taken in sorted order. A valid file contributes its pods; an invalid one reports its
    errors and keeps its last valid version (if it ever had one). A pod whose `namespace/name` an
    earlier file already claimed is not run and is reported on the later file. Files gone from
    the snapshot contribute nothing. ConfigMaps and Secrets (`previous_configs`: those last
    accepted from each file) follow the same rules, by kind, namespace and name. Pure.
    """
    resolution = Resolution(problems=list(snapshot.problems))
    earlier_configs = previous_configs or {}
    for path, result in sorted(snapshot.files.items()):
        resolution.warnings.extend(result.warnings)
        for key, problem in result.refused_configs.items():
            resolution.refused_configs.setdefault(key, problem)
        if result.ok:
            pods, configs = result.pods, result.configs
        else:
            resolution.problems.extend(result.errors)
            if path not in previous and path not in earlier_configs:
                continue
            pods, configs = previous.get(path, []), earlier_configs.get(path, [])
            resolution.kept.add(path)
        resolution.accepted[path] = list(pods)
        resolution.accepted_configs[path] = list(configs)
        for config in configs:
            owner = resolution.config_sources.get(config.key)
            twin = _uid_twin(resolution, config) if owner is None else None
            if twin is not None:   # a copied claim that kept `metadata.uid`: its volume would be shared
                resolution.problems.append(ManifestProblem(
                    _display_path(path, snapshot.root), None, None, "metadata.uid",
                    f"Duplicate value: {twin.kind} {twin.ref} already has this uid; {config.kind} {config.ref} "
                    "is ignored"))
            elif owner is None:
                resolution.configs[config.key] = config
                resolution.config_sources[config.key] = path
            else:
                resolution.problems.append(ManifestProblem(
                    _display_path(path, snapshot.root), None, None, None,
                    f"{config.kind} {config.ref} is already defined in {_display_path(owner, snapshot.root)}; "
                    "this definition is ignored"))
        for pod in pods:
            _claim(resolution, pod, path, snapshot.root)
    for key in resolution.configs:
        resolution.refused_configs.pop(key, None)   # a valid version of it is in use
    return resolution


def _uid_twin(resolution: Resolution, config: ConfigObject) -> ConfigObject | None:
    """An accepted PersistentVolumeClaim with the same uid (a claim's volume is named by its uid)."""
    if config.kind != "PersistentVolumeClaim":
        return None
    return next((other for other in resolution.configs.values()
                 if other.kind == config.kind and other.uid == config.uid), None)


def _claim(resolution: Resolution, pod: DesiredPod, path: str, root: str) -> None:
    owner = resolution.sources.get(pod.key)
    twin = resolution.uids.get(pod.uid)
    if owner is None and twin is not None:  # a copied manifest that kept `metadata.uid`
        resolution.problems.append(ManifestProblem(
            _display_path(path, root), None, None, "metadata.uid",
            f"Duplicate value: pod {twin} already has this uid; pod {pod.key} is ignored"))
        return
    if owner is None:
        resolution.pods[pod.key] = pod
        resolution.sources[pod.key] = path
        resolution.uids.setdefault(pod.uid, pod.key)
        return
    resolution.problems.append(ManifestProblem(
        _display_path(path, root), None, None, None,
        f"pod {pod.key} is already defined in {_display_path(owner, root)}; this definition is ignored"))
