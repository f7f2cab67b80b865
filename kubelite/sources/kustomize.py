"""Kustomize: a directory with a `kustomization.yaml` rendered into plain manifests.

Owns: telling a kustomization directory (`kustomization.yaml`, `kustomization.yml` or
`Kustomization`, as kustomize looks for them), checking that everything it builds from is a file
or directory of the same checkout (`check_references`: a remote base — a URL, `github.com/…`, any
name that is not a path of the tree — and a path that leads out of the tree, a symlink included,
are refused before kustomize runs: a commit is hostile input), and running kubectl's built-in
kustomize on it (`render`: `kubectl kustomize DIR`), bounded in time (its process group killed on
expiry) and in output, with an empty environment (a fresh HOME, no proxies, no kubeconfig), and —
as root, where `unshare` can — in a network namespace of its own with no interface but loopback,
so nothing it does reaches the network.

Raises `KustomizeError` (a ManifestError: the commit's content is at fault) for a kustomization
kubelite refuses or kustomize cannot build, and `SyncError` when kubectl itself is missing (the
machine is at fault). Reads files and runs processes; no clock.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kubelite import children
from kubelite.errors import ManifestError, SyncError
from kubelite.sources.documents import Unusable, decode_text, parse_documents, refuse_alias_bombs
from kubelite.sources.manifests import MAX_MANIFEST_BYTES, ManifestProblem

#: The names kustomize looks for in a directory, in its order.
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
#: One rendering: at most this long (its process group is killed then) and this much output — the
#: output becomes one manifest file, which the daemon reads only up to MAX_MANIFEST_BYTES.
RENDER_TIMEOUT_S = 60.0
MAX_OUTPUT_BYTES = MAX_MANIFEST_BYTES
#: What kustomize's stderr may fill in a message.
_STDERR_KEEP = 4096
#: Bounds of the reference walk: kustomization files, and the size of each.
MAX_KUSTOMIZATIONS = 500
MAX_KUSTOMIZATION_BYTES = 1024 * 1024

#: Fields whose entries are kustomizations or resource files (directories recurse).
_BUILD_FIELDS = ("resources", "bases", "components")
#: Fields whose entries name files to load (or are YAML written in place); a directory named there
#: is built by kustomize as a kustomization (generators, transformers, validators): it is walked too.
_FILE_FIELDS = ("patchesStrategicMerge", "crds", "configurations", "generators", "transformers", "validators")
_PATH_ITEM_FIELDS = ("patches", "patchesJson6902", "replacements")
_GENERATORS = ("configMapGenerator", "secretGenerator")


class KustomizeError(ManifestError):
    """A kustomization kubelite refuses to render, or that kustomize cannot build."""


def find(directory: Path) -> Path | None:
    """The kustomization file of `directory`, or None when it has none."""
    for name in KUSTOMIZATION_NAMES:
        candidate = directory / name
        if os.path.lexists(candidate):
            return candidate
    return None


def check_references(tree: Path, directory: Path) -> None:
    """Refuse a kustomization (and every one it builds from) that names anything outside `tree`."""
    real_tree = os.path.realpath(tree)
    pending = [Path(directory)]
    seen: set[str] = set()
    while pending:
        here = pending.pop()
        real_here = os.path.realpath(here)
        if real_here in seen:
            continue
        seen.add(real_here)
        if len(seen) > MAX_KUSTOMIZATIONS:
            raise KustomizeError(f"more than {MAX_KUSTOMIZATIONS} kustomizations; refused")
        file = find(here)
        if file is None:
            raise KustomizeError(f"{_shown(here, real_tree)}: no kustomization.yaml in this directory")
        _inside(file, real_tree, _shown(file, real_tree), "the kustomization file")
        shown = _shown(file, real_tree)
        data = _load(file, shown)
        for field in _BUILD_FIELDS:
            for index, entry in enumerate(_strings(data, field, shown)):
                where = f"{shown}: {field}[{index}]"
                target = _local(here, entry, real_tree, where)
                if os.path.isdir(target):
                    pending.append(target)
        for field in _FILE_FIELDS:
            for index, entry in enumerate(_entries(data, field, shown)):
                if isinstance(entry, str) and not _inline(entry):
                    target = _local(here, entry, real_tree, f"{shown}: {field}[{index}]")
                    if os.path.isdir(target):
                        pending.append(target)
        for field in _PATH_ITEM_FIELDS:
            for index, entry in enumerate(_entries(data, field, shown)):
                if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                    _local(here, entry["path"], real_tree, f"{shown}: {field}[{index}].path")
        for field in _GENERATORS:
            for index, generator in enumerate(_entries(data, field, shown)):
                if not isinstance(generator, dict):
                    continue
                for key in ("files", "envs", "env"):
                    values = generator.get(key)
                    for value in [values] if isinstance(values, str) else values if isinstance(values, list) else []:
                        if isinstance(value, str):
                            _local(here, value.split("=", 1)[-1], real_tree, f"{shown}: {field}[{index}].{key}")
        openapi = data.get("openapi")
        if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
            _local(here, openapi["path"], real_tree, f"{shown}: openapi.path")
        if data.get("helmCharts") or data.get("helmChartInflationGenerator"):
            raise KustomizeError(f"{shown}: helmCharts: Helm charts are not rendered (they would fetch charts "
                                 "and run helm); render them into the repository instead")


def _inline(entry: str) -> bool:
    """Whether an entry of a file list is a YAML document written in place (a patch), not a path."""
    return "\n" in entry or entry.lstrip().startswith(("{", "[")) or ": " in entry


def _load(file: Path, shown: str) -> dict[str, Any]:
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_KUSTOMIZATION_BYTES + 1)
        if len(raw) > MAX_KUSTOMIZATION_BYTES:
            raise KustomizeError(f"{shown}: larger than {MAX_KUSTOMIZATION_BYTES // 1024} KiB; refused")
        text = decode_text(raw)
        documents = parse_documents(text, json_file=False)
        refuse_alias_bombs(documents, len(text))
    except Unusable as exc:
        raise KustomizeError(f"{shown}: {exc}") from None
    except OSError as exc:
        raise KustomizeError(f"{shown}: {exc.strerror or exc}") from None
    documents = [d for d in documents if d is not None]
    if len(documents) > 1 or (documents and not isinstance(documents[0], dict)):
        raise KustomizeError(f"{shown}: a kustomization is one YAML mapping")
    return documents[0] if documents else {}


def _entries(data: dict[str, Any], field: str, shown: str) -> list[Any]:
    value = data.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise KustomizeError(f"{shown}: {field}: must be a list")
    return value


def _strings(data: dict[str, Any], field: str, shown: str) -> list[str]:
    values = _entries(data, field, shown)
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise KustomizeError(f"{shown}: {field}[{index}]: must be a path")
    return values


def _local(here: Path, entry: str, real_tree: str, where: str) -> Path:
    """`entry` as a path of the tree, relative to the kustomization's directory; refused otherwise."""
    if "://" in entry or entry.startswith(("git@", "github.com/", "gitlab.com/", "bitbucket.org/")) or "?ref=" in entry:
        raise KustomizeError(f"{where}: remote base {_quoted(entry)} refused: kubelite renders only what the commit "
                             "holds (vendor the base into the repository)")
    if os.path.isabs(entry):
        raise KustomizeError(f"{where}: absolute path {_quoted(entry)} refused: name a path of the repository")
    target = here / entry
    if not os.path.lexists(target):
        raise KustomizeError(f"{where}: {_quoted(entry)} is not a file or directory of this commit (remote bases "
                             "are refused)")
    _inside(target, real_tree, where, _quoted(entry))
    return target


def _inside(path: Path, real_tree: str, where: str, what: str) -> None:
    real = os.path.realpath(path)
    if real != real_tree and not real.startswith(real_tree.rstrip(os.sep) + os.sep):
        raise KustomizeError(f"{where}: {what} leads outside the repository; refused")


def _shown(path: Path, real_tree: str) -> str:
    """`nodes/edge-1/kustomization.yaml`: where a path is in the tree (its own name never resolved)."""
    try:
        return str(Path(os.path.realpath(path.parent)).relative_to(real_tree) / path.name)
    except ValueError:
        return path.name


def _quoted(text: str) -> str:
    return repr(text[:200]) if text.isprintable() else repr(text[:200].encode("unicode_escape").decode())


# ------------------------------------------------------------------ running kustomize


def kubectl_path() -> str:
    """The kubectl that renders, from PATH; SyncError when there is none."""
    found = shutil.which("kubectl")
    if found is None:
        raise SyncError("rendering a kustomization needs kubectl (its built-in kustomize): "
                        "apt-get install kubernetes-client")
    return found


@functools.lru_cache(maxsize=1)
def _isolated_prefix() -> tuple[str, ...]:
    """`unshare --net --` when this process may make a network namespace (root), else nothing.
    Asked once: whether `unshare` works does not change while kubelite runs."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return ()
    try:
        done = subprocess.run([unshare, "--net", "--", "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (unshare, "--net", "--") if done.returncode == 0 else ()


def isolated() -> bool:
    """Whether renderings run without network (a network namespace of their own)."""
    return bool(_isolated_prefix())


def render(directory: Path, *, workdir: Path, timeout_s: float = RENDER_TIMEOUT_S,
           max_bytes: int = MAX_OUTPUT_BYTES, kubectl: str | None = None) -> bytes:
    """The YAML stream `kubectl kustomize DIRECTORY` prints. `workdir` is an empty directory of the
    caller's, used as the current and home directory. Call `check_references` first."""
    argv = [*_isolated_prefix(), kubectl or kubectl_path(), "kustomize", os.path.abspath(directory)]
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": str(workdir), "LC_ALL": "C",
           "KUBECONFIG": str(Path(workdir) / "no-kubeconfig"), "XDG_CONFIG_HOME": str(workdir),
           "XDG_CACHE_HOME": str(workdir), "GIT_TERMINAL_PROMPT": "0"}
    try:
        finished = children.run_bounded(argv, timeout_s=timeout_s, max_output=max_bytes, stderr_keep=_STDERR_KEEP,
                                        cwd=workdir, env=env, umask=0o077)
    except OSError as exc:
        raise SyncError(f"kubectl kustomize could not start: {exc.strerror or exc}") from None
    if finished.exceeded == "time":
        raise KustomizeError(f"kustomize took longer than {timeout_s:g} s; refused")
    if finished.exceeded == "output":
        raise KustomizeError(f"kustomize printed more than {max_bytes // (1024 * 1024)} MiB"
                             + (" (the largest manifest file kubelite reads)" if max_bytes == MAX_MANIFEST_BYTES
                                else "") + "; refused")
    out, err = finished.out, finished.err
    if finished.code != 0:
        lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines()
                 if line.strip() and not line.startswith("# Warning:")]
        message = " / ".join(lines[-3:]) or f"exit status {finished.code}"
        raise KustomizeError(f"kustomize failed: {message[:1000]}")
    return out


def output_problem(problem: ManifestProblem, output: Path, directory: str) -> ManifestProblem:
    """A problem of kustomize's output file `output`, rendered from `directory`, told as
    `DIRECTORY (kustomize output): document 3 (Pod/web): …` — the object named, no line of a file
    the user never wrote."""
    named = _output_objects(output).get(problem.document or 0)
    return dataclasses.replace(problem, file=f"{directory} (kustomize output)", line=None,
                               object=problem.object or named)


def _output_objects(file: Path) -> dict[int, str]:
    """Document number → `Kind/name` of kustomize's output (bounded by `render`, read whole)."""
    found: dict[int, str] = {}
    try:
        text = file.read_text()
        for index, document in enumerate(parse_documents(text, json_file=False), 1):
            if isinstance(document, dict):
                meta = document.get("metadata")
                name = meta.get("name") if isinstance(meta, dict) else None
                if isinstance(document.get("kind"), str) and isinstance(name, str):
                    found[index] = f"{document['kind']}/{name}"[:130]
    except (OSError, UnicodeDecodeError, Unusable):
        pass
    return found


__all__ = ["KUSTOMIZATION_NAMES", "KustomizeError", "MAX_OUTPUT_BYTES", "RENDER_TIMEOUT_S", "check_references",
           "find", "isolated", "kubectl_path", "output_problem", "render"]
