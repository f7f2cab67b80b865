"""`validate`, `apply -f`, `delete -f` / `delete pod`: the commands that judge or change manifests.

(What `apply -f` names — files, directories, standard input, URLs — is `cli.filenames`'.)

Owns: reporting manifest problems the way `kubectl` reports errors, and changing the manifests
directory safely. The directory is the source of truth, so `apply` writes a file into it
(validated first, written to a dotfile and renamed into place, so the watcher never sees half
a file) and `delete` removes the file that defines a pod. A file that defines other pods too is
never rewritten (that could lose its comments and formatting): the command says which file to
edit instead.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

import kubelite.statefiles as statefiles
from kubelite.cli import config
from kubelite.errors import UsageError
from kubelite.sources import manifests as sources


def run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        paths, version = _validate_arguments(args.paths, getattr(args, "kubernetes", None))
        return validate(paths, kubernetes=version)
    target = _manifests_dir(args)
    if args.command == "apply":
        from kubelite.cli import filenames

        with filenames.expand(args.filename, recursive=args.recursive) as found:
            status = 0
            for source in found:
                status = max(status, apply(source.path, target, name=source.name, shown=source.shown,
                                           root=source.root))
            return status
    return delete(args, target)


def _manifests_dir(args: argparse.Namespace) -> Path:
    from kubelite.store.reader import Reader

    reader = Reader(config.state_root(args.root, create=False))   # the path it records is written to
    try:
        recorded = reader.meta("manifests")
    finally:
        reader.close()
    return config.manifests(args.manifests, recorded=recorded)


def _print_problems(result_errors: list[sources.ManifestProblem], warnings: list[sources.ManifestProblem]) -> None:
    for problem in result_errors:
        print(f"error: {problem}", file=sys.stderr)
    for problem in warnings:
        print(f"warning: {problem}", file=sys.stderr)


def _validate_arguments(paths: list[str], kubernetes: str | None) -> tuple[list[str], str | None]:
    """`validate --kubernetes DIR` reads DIR as a path, not as the version (kubectl's optional values
    are written `--kubernetes=1.30`): the paths, and the version ('' for the default, None: no check)."""
    import re

    if kubernetes and not re.fullmatch(r"v?[0-9]+(\.[0-9]+){1,2}", kubernetes.strip()) and \
            (not paths or os.path.exists(kubernetes)):
        paths, kubernetes = [kubernetes, *paths], ""
    if not paths:
        raise UsageError("validate: give at least one FILE or DIR")
    return paths, kubernetes


def validate(paths: list[str], *, kubernetes: str | None = None) -> int:
    """Check files and directories; exit 1 if anything is invalid. With `kubernetes` (a version, ''
    for the default) every document is also checked against that version's Kubernetes schema."""
    schema = None
    if kubernetes is not None:
        from kubelite.sources import kubeschema

        schema = kubeschema.KubernetesSchema(kubeschema.pick_version(kubernetes))
    failed = False
    checked = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and _is_kustomization(path):
            bad, count = _validate_kustomization(path, raw, schema)
            failed |= bad
            checked += count
        elif path.is_dir():
            snapshot = sources.scan(path)
            resolution = sources.resolve(snapshot, {})
            _print_problems(snapshot.problems + resolution.problems, resolution.warnings)
            failed |= bool(snapshot.problems or resolution.problems)
            if schema is not None:
                for file in snapshot.files:
                    bad, count = _check_schema(Path(file), _display(file, path), schema)
                    failed |= bad
                    checked += count
            for key, pod in resolution.pods.items():
                print(f"pod/{pod.pod.metadata.name} valid ({_display(resolution.sources[key], path)})")
            for ckey, obj in resolution.configs.items():
                print(f"{obj.kind.lower()}/{obj.name} valid ({_display(resolution.config_sources[ckey], path)})")
            if not snapshot.files:
                print(f"{raw}: no manifest files (*.yaml, *.yml, *.json)")
        else:
            result = sources.read_file(path)
            _print_problems(result.errors, result.warnings)
            failed |= not result.ok
            if schema is not None and result.digest:
                bad, count = _check_schema(path, raw, schema)
                failed |= bad
                checked += count
            for pod in result.pods if result.ok else []:
                print(f"pod/{pod.pod.metadata.name} valid ({raw})")
            for obj in result.configs if result.ok else []:
                print(f"{obj.kind.lower()}/{obj.name} valid ({raw})")
    if schema is not None and not failed:
        print(f"{checked} object(s) valid for Kubernetes {schema.version} (its OpenAPI schema, strict)")
    return 1 if failed else 0


def _is_kustomization(path: Path) -> bool:
    from kubelite.sources import kustomize

    return kustomize.find(path) is not None


def _validate_kustomization(path: Path, raw: str, schema: object) -> tuple[bool, int]:
    """A directory with a kustomization.yaml, as git sync reads it: its references must stay in the
    repository it is in (the nearest directory above with `.git`; outside any, the directory itself),
    then kustomize's output is judged. (any error, objects checked by the schema)."""
    import tempfile

    from kubelite.sources import kustomize

    repository = next((p for p in (path.absolute(), *path.absolute().parents) if (p / ".git").exists()), None)
    with tempfile.TemporaryDirectory(prefix="kubelite-validate-") as work:
        try:
            kustomize.check_references(repository if repository is not None else path, path)
            data = kustomize.render(path, workdir=Path(work))
        except kustomize.KustomizeError as exc:
            alone = " (no git repository above it: its own directory is the repository)" if repository is None else ""
            print(f"error: {raw}: {exc}{alone}", file=sys.stderr)
            return True, 0
        output = Path(work) / "output"
        output.mkdir()
        (output / "kustomized.yaml").write_bytes(data)
        snapshot = sources.scan(output)
        resolution = sources.resolve(snapshot, {})
        label = raw.rstrip("/") or raw
        _print_problems([kustomize.output_problem(p, output / "kustomized.yaml", label)
                         for p in snapshot.problems + resolution.problems],
                        [kustomize.output_problem(p, output / "kustomized.yaml", label) for p in resolution.warnings])
        failed = bool(snapshot.problems or resolution.problems)
        for pod in resolution.pods.values():
            print(f"pod/{pod.pod.metadata.name} valid ({label}, kustomize output)")
        for obj in resolution.configs.values():
            print(f"{obj.kind.lower()}/{obj.name} valid ({label}, kustomize output)")
        count = 0
        if schema is not None:
            from kubelite.sources import kubeschema

            assert isinstance(schema, kubeschema.KubernetesSchema)
            errors, warnings, count = kubeschema.check_file(output / "kustomized.yaml", "", schema)
            _print_problems([kustomize.output_problem(p, output / "kustomized.yaml", label) for p in errors],
                            [kustomize.output_problem(p, output / "kustomized.yaml", label) for p in warnings])
            failed |= bool(errors)
    return failed, count


def _check_schema(path: Path, name: str, schema: object) -> tuple[bool, int]:
    """Print one line per schema problem of one file: (any error, objects checked)."""
    from kubelite.sources import kubeschema

    assert isinstance(schema, kubeschema.KubernetesSchema)
    errors, warnings, count = kubeschema.check_file(path, name, schema)
    _print_problems(errors, warnings)
    return bool(errors), count


def _display(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root.absolute()))
    except ValueError:
        return path


def apply(source: Path, directory: Path, *, name: str | None = "", shown: str | None = None,
          root: Path | None = None) -> int:
    """Validate `source`, then write it into the manifests directory under `name` (default: its own
    file name; None: `<first object's name>.yaml`, for what came from standard input or a URL).
    `root`: the directory `source` was listed from, which a symlink must not lead out of."""
    shown = shown or str(source)
    if not source.is_file():
        raise UsageError(f"{shown}: no such file")
    if name == "":
        name = source.name
    if name is not None and not sources.is_manifest_name(name):
        raise UsageError(f"{shown}: kubelite reads only *.yaml, *.yml and *.json files (and no dotfiles)")
    result = sources.read_file(source, root=root)
    _print_problems(result.errors, result.warnings)
    if not result.ok:
        return 1
    if not result.pods and not result.configs:
        raise UsageError(f"{shown}: no pods, ConfigMaps or Secrets in this file")
    if not directory.is_dir():
        raise UsageError(f"manifests directory {directory} does not exist")
    keys = {p.key for p in result.pods}
    if name is None:
        name = f"{(result.pods[0].pod.metadata.name if result.pods else result.configs[0].name)}.yaml"
        defined = _pods_by_file(directory).get(str((directory / name).absolute()))
        if defined is not None and {p.key for p in defined} - keys:
            raise UsageError(f"{directory / name} defines other pods too; save {shown} under a name of its own "
                             "and apply that file")
    target = directory / name
    for other, pods in _pods_by_file(directory).items():
        if Path(other) != target.absolute() and keys & {p.key for p in pods}:
            clash = sorted(keys & {p.key for p in pods})[0]
            raise UsageError(f"pod {clash} is already defined in {other}; edit or delete that file instead")
    data = source.read_bytes()
    existed = target.exists()
    if existed and target.read_bytes() == data:
        statefiles.tighten(target, _mode_for(source, result))
        for line in _names(result):
            print(f"{line} unchanged")
        return 0
    statefiles.write_atomic(target, data, _mode_for(source, result), fsync=True)
    for line in _names(result):
        print(f"{line} {'configured' if existed else 'created'}")
    return 0


def _names(result: sources.FileResult) -> list[str]:
    """`pod/web`, `configmap/app-config`, `secret/db`: what a file defines, as kubectl names it."""
    return [f"pod/{p.pod.metadata.name}" for p in result.pods] + \
        [f"{'storageclass.storage.k8s.io' if c.kind == 'StorageClass' else c.kind.lower()}/{c.name}"
         for c in result.configs]


def _mode_for(source: Path, result: sources.FileResult) -> int:
    """The written file's mode: no looser than its source's, and 0600 when it holds a Secret."""
    try:
        mode = stat.S_IMODE(source.stat().st_mode) & 0o666
    except OSError:   # standard input
        mode = 0o644
    if any(c.kind == "Secret" for c in result.configs):
        mode &= 0o600
    return mode | 0o600   # the owner (root, who runs the pods) keeps reading and writing it




def _pods_by_file(directory: Path) -> dict[str, list[sources.DesiredPod]]:
    snapshot = sources.scan(directory)
    return {path: result.pods for path, result in snapshot.files.items()}


def delete(args: argparse.Namespace, directory: Path) -> int:
    if args.filename:
        result = sources.read_file(Path(args.filename))
        if not result.ok:
            _print_problems(result.errors, [])
            return 1
        keys = [p.key for p in result.pods]
    elif args.resource and args.name:
        keys = [f"{args.namespace or 'default'}/{name}" for name in dict.fromkeys(args.name)]
    else:
        raise UsageError("give -f FILE or 'pod NAME'")
    by_file = _pods_by_file(directory)
    status = 0
    removed: set[str] = set()
    for key in keys:
        owner = next((f for f, pods in by_file.items() if key in {p.key for p in pods}), None)
        name = key.split("/", 1)[1]
        if owner is None:
            print(f'Error from server (NotFound): pods "{name}" not found', file=sys.stderr)
            status = 1
            continue
        others = {p.key for p in by_file[owner]} - set(keys)
        if others:
            raise UsageError(f"pod {key} is defined in {owner} together with {', '.join(sorted(others))}; "
                             "edit that file to remove it")
        if owner not in removed:
            Path(owner).unlink()
            removed.add(owner)
        print(f'pod "{name}" deleted')
    return status
