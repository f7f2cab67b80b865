"""`kubelite diff -f FILE|DIR` and `kubelite sync --dry-run`: what manifests would do on this node, per pod.

Owns: the state before — the pods and configuration objects the node has accepted, with the files
they came from, read from the state database (no daemon needed) — and the state after: the given
files overlaid where `apply` puts them (`<manifests>/<file name>`; a directory's manifest files
each so), or a commit's tree in place of the manifests path, resolved by the daemon's own
`resolve` (the first file wins a name, an invalid file keeps its last valid version). Each pod's
effect is `core.change.change_effect` — the rules the agent follows — printed as a summary line
and a unified diff of the pod, or as JSON (`-o json`); each changed ConfigMap or Secret names the
pods that use it and what the change does to them (`core.change.config_effects`), never a value.

Exit status as `kubectl diff`: 0 when nothing would change, 1 when something would, 2 on an error
(an invalid file is reported as `validate` reports it, and nothing is previewed for it).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from kubelite.api.configobjects import ConfigObject, from_object
from kubelite.api.decode import DesiredPod
from kubelite.api.models import Pod
from kubelite.cli import config
from kubelite.core.change import Effect, PodChange, change_effect, config_effects
from kubelite.core.plan import active_containers
from kubelite.core.types import ContainerState, ObservedContainer, StopReason
from kubelite.errors import KubeliteError, UsageError
from kubelite.sources import manifests as sources

EXIT_SAME, EXIT_CHANGED, EXIT_ERROR = 0, 1, 2
ConfigKey = tuple[str, str, str]


@dataclass
class NodeState:
    """What the node has accepted: pods by `namespace/name` and configuration objects by key, each
    with its file; which containers of each pod run or will start again, and which pods have finished."""

    manifests: str
    node_name: str | None = None   # the name `kubelite serve` recorded, if any
    pods: dict[str, tuple[DesiredPod, str]] = field(default_factory=dict)
    configs: dict[ConfigKey, tuple[ConfigObject, str]] = field(default_factory=dict)
    running: dict[str, set[str]] = field(default_factory=dict)
    finished: dict[str, bool] = field(default_factory=dict)


@dataclass
class Preview:
    """The effects to print: per pod (key → change, before, after) and per configuration object."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(p["effect"] != Effect.UNCHANGED.value for p in self.pods) or \
            any(c["effect"] != Effect.UNCHANGED.value for c in self.configs)


# ------------------------------------------------------------------ the node's state


def node_state(args: argparse.Namespace) -> NodeState:
    """The accepted pods and objects of the state root `args.root`, and its manifests path."""
    from kubelite.store.reader import Reader

    reader = Reader(config.state_root(getattr(args, "root", None), create=False))
    try:
        with reader.snapshot():
            manifests = config.manifests(getattr(args, "manifests", None), recorded=reader.meta("manifests"))
            recorded_node = reader.meta("node_name")
            pods, configs = reader.accepted_pods(), reader.accepted_configs()
            containers = reader.containers()
    finally:
        reader.close()
    state = NodeState(os.path.abspath(manifests), node_name=recorded_node)
    observed: dict[str, list[ObservedContainer]] = {}
    for c in containers:
        observed.setdefault(c["uid"], []).append(ObservedContainer(
            id=c["id"], name=c["name"], attempt=c["attempt"], spec_hash=c["spec_hash"], state=ContainerState(c["state"]),
            created_at=datetime.fromisoformat(c["created_at"]), exit_code=c["exit_code"],
            stop_reason=StopReason(c["stop_reason"]) if c["stop_reason"] else None))
    for row in pods:
        pod = Pod.model_validate_json(row["manifest"])
        desired = DesiredPod(pod=pod, uid=row["uid"], pod_hash=row["pod_hash"], sandbox_hash=row["sandbox_hash"],
                             container_hashes=json.loads(row["container_hashes"]))
        key = desired.key
        state.pods[key] = (desired, row["source"])
        status = json.loads(row["object"]).get("status", {})
        # running, or to start again by its restart policy (the agent's rule): a new spec starts; else
        # (exited for good) nothing runs it again
        state.running[key] = active_containers(desired, observed.get(row["uid"], []))
        state.finished[key] = status.get("phase") in ("Succeeded", "Failed")
    for obj, source in configs:
        accepted = from_object(obj)
        state.configs[accepted.key] = (accepted, source)
    return state


def _accepted_snapshot(state: NodeState) -> sources.ManifestSnapshot:
    """The node's accepted objects as the files they came from (what the next scan starts from)."""
    snapshot = sources.ManifestSnapshot(state.manifests)
    for desired, source in state.pods.values():
        snapshot.files.setdefault(source, sources.FileResult(source)).pods.append(desired)
    for obj, source in state.configs.values():
        snapshot.files.setdefault(source, sources.FileResult(source)).configs.append(obj)
    return snapshot


def _previous(state: NodeState) -> tuple[dict[str, list[DesiredPod]], dict[str, list[ConfigObject]]]:
    pods: dict[str, list[DesiredPod]] = {}
    configs: dict[str, list[ConfigObject]] = {}
    for desired, source in state.pods.values():
        pods.setdefault(source, []).append(desired)
    for obj, source in state.configs.values():
        configs.setdefault(source, []).append(obj)
    return pods, configs


# ------------------------------------------------------------------ kubelite diff


def read_given(paths: list[str], manifests: str) -> tuple[dict[str, sources.FileResult], list[str]]:
    """The files of `-f`, each read as the file `apply` would make of it in the manifests directory;
    the valid ones by that path, and the errors (validate's lines) of the others."""
    given: dict[str, sources.FileResult] = {}
    errors: list[str] = []
    origin: dict[str, str] = {}

    def take(target: str, result: sources.FileResult, shown: str) -> None:
        if target in origin:
            raise UsageError(f"{shown} and {origin[target]} would both become {target}")
        origin[target] = shown
        errors.extend(f"error: {p}" for p in result.errors)
        for problem in result.warnings:
            print(f"warning: {problem}", file=sys.stderr)
        if result.ok:
            given[target] = result

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            snapshot = sources.scan(path, read_as=Path(manifests))
            errors.extend(f"error: {raw}: {p}" for p in snapshot.problems)
            if not snapshot.files and not snapshot.problems:
                errors.append(f"error: {raw}: no manifest files (*.yaml, *.yml, *.json)")
            for target, result in snapshot.files.items():
                take(target, result, os.path.join(raw, os.path.basename(target)))
        elif not path.exists():
            raise UsageError(f"{raw}: no such file or directory")
        elif not sources.is_manifest_name(path.name):
            raise UsageError(f"{raw}: kubelite reads only *.yaml, *.yml and *.json files (and no dotfiles)")
        else:
            target = os.path.join(manifests, path.name)
            take(target, sources.read_file(path, source=target), raw)
    return given, errors


def diff_files(state: NodeState, paths: list[str]) -> Preview:
    """What `apply -f` of `paths` would do: the given files replace the files of their names."""
    given, errors = read_given(paths, state.manifests)
    snapshot = _accepted_snapshot(state)
    snapshot.files.update(given)
    previous, previous_configs = _previous(state)
    resolution = sources.resolve(snapshot, previous, previous_configs)
    errors += [f"error: {p}" for p in resolution.problems]
    keys = {k for k, path in resolution.sources.items() if path in given}
    keys |= {k for k, (_, source) in state.pods.items() if source in given}
    configs = {k for k, path in resolution.config_sources.items() if path in given}
    configs |= {k for k, (_, source) in state.configs.items() if source in given}
    preview = compare(state, resolution, keys, configs)
    preview.errors = errors
    return preview


def compare(state: NodeState, after: sources.Resolution, keys: set[str], config_keys: set[ConfigKey]) -> Preview:
    """Each pod of `keys` and object of `config_keys`, before (the node) and after (`after`)."""
    preview = Preview()
    for key in sorted(keys, key=_order):
        old, old_source = state.pods.get(key, (None, ""))
        new, new_source = after.pods.get(key), after.sources.get(key, "")
        change = change_effect(old, new, old_source=old_source, new_source=new_source,
                               running=state.running.get(key), finished=state.finished.get(key, False))
        preview.pods.append(_pod_entry(key, change, old, new, old_source, new_source, state.manifests))
    for ckey in sorted(config_keys):
        old_obj, _ = state.configs.get(ckey, (None, ""))
        new_obj = after.configs.get(ckey)
        preview.configs.append(_config_entry(ckey, old_obj, new_obj, state, after))
    return preview


def _order(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


def _pod_entry(key: str, change: PodChange, old: DesiredPod | None, new: DesiredPod | None, old_source: str,
               new_source: str, manifests: str) -> dict[str, Any]:
    namespace, _, name = key.partition("/")
    before, after = _document(old), _document(new)
    lines = [] if not change.changed else list(difflib.unified_diff(
        before, after, f"pod/{name} (now{_from(old_source, manifests)})",
        f"pod/{name} (after{_from(new_source, manifests)})", n=3, lineterm=""))
    return {
        "kind": "Pod", "namespace": namespace, "name": name, "effect": change.effect.value,
        "summary": change.summary(), "reasons": list(change.reasons),
        "containers": [{"name": c.name, "action": c.action, "fields": list(c.fields)} for c in change.containers],
        "fields": list(change.fields),
        "uid": {"before": old.uid if old else None, "after": new.uid if new else None},
        "source": {"before": _shown(old_source, manifests), "after": _shown(new_source, manifests)},
        "diff": "\n".join(lines) + ("\n" if lines else ""),
    }


def _document(desired: DesiredPod | None) -> list[str]:
    """The pod as the diff shows it: what a manifest decides (defaults filled in, empty fields left
    out) and its UID."""
    if desired is None:
        return []
    meta = desired.pod.metadata
    shown: dict[str, Any] = {"name": meta.name, "namespace": meta.namespace, "uid": desired.uid}
    if meta.labels:
        shown["labels"] = meta.labels
    if meta.annotations:
        shown["annotations"] = meta.annotations
    text = yaml.safe_dump({"metadata": shown, "spec": _compact(desired.pod.spec.to_dict())}, sort_keys=False,
                          default_flow_style=False)
    return text.splitlines()


#: Maps that are empty by default in every container: left out when empty (`emptyDir: {}` stays).
_EMPTY_BY_DEFAULT = frozenset({"resources", "limits", "requests", "nodeSelector"})


def _compact(value: Any) -> Any:
    """`value` without the empty lists and default-empty maps every container has, as a manifest reads."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _compact(item)
            if item != [] and not (item == {} and key in _EMPTY_BY_DEFAULT):
                out[key] = item
        return out
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _shown(source: str, manifests: str) -> str | None:
    if not source:
        return None
    prefix = manifests.rstrip(os.sep) + os.sep
    return source.removeprefix(prefix)


def _from(source: str, manifests: str) -> str:
    shown = _shown(source, manifests)
    return f": {shown}" if shown else ""


def _config_entry(key: ConfigKey, old: ConfigObject | None, new: ConfigObject | None, state: NodeState,
                  after: sources.Resolution) -> dict[str, Any]:
    kind, namespace, name = key
    if old is None and new is None:
        effect, change = Effect.UNCHANGED, ""
    elif old is None:
        effect, change = Effect.CREATE, "create"
    elif new is None:
        effect, change = Effect.DELETE, "delete"
    elif old.hash == new.hash:
        effect, change = Effect.UNCHANGED, ""
    else:
        effect, change = Effect.UPDATE, "update"
    pods = []
    if change:
        users = {k: d.pod for k, (d, _) in state.pods.items()}
        users.update({k: d.pod for k, d in after.pods.items()})
        for pod_key in sorted(users, key=_order):
            if pod_key not in after.pods and change != "delete":
                continue   # a pod that goes away is not affected
            effects = config_effects(users[pod_key], key, change=change)
            if effects:
                pods.append({"namespace": users[pod_key].metadata.namespace, "name": users[pod_key].metadata.name,
                             "effects": effects})
    return {"kind": kind, "namespace": namespace, "name": name, "effect": effect.value,
            "keys": _key_changes(old, new), "pods": pods}


def _key_changes(old: ConfigObject | None, new: ConfigObject | None) -> dict[str, list[str]]:
    """Which keys a ConfigMap or Secret adds, changes and removes (names only, never values)."""
    before = old.values if old is not None else {}
    after = new.values if new is not None else {}
    return {"added": sorted(k for k in after if k not in before),
            "changed": sorted(k for k in after if k in before and before[k] != after[k]),
            "removed": sorted(k for k in before if k not in after)}


# ------------------------------------------------------------------ printing


def print_preview(preview: Preview, output: str | None) -> int:
    for line in preview.errors:
        print(line, file=sys.stderr)
    if output == "json":
        print(json.dumps({"pods": preview.pods, "configs": preview.configs, "changed": preview.changed,
                          "errors": [e.removeprefix("error: ") for e in preview.errors]}, indent=2))
    else:
        sys.stdout.write(format_text(preview))
    if preview.errors:
        return EXIT_ERROR
    return EXIT_CHANGED if preview.changed else EXIT_SAME


def format_text(preview: Preview) -> str:
    out = []
    for pod in preview.pods:
        out.append(f"{_name('pod', pod)}: {pod['summary']}\n")
        out.append(pod["diff"])
    for obj in preview.configs:
        keys = obj["keys"]
        detail = "; ".join(f"{what}: {', '.join(names)}" for what, names in keys.items() if names)
        if obj["kind"] == "Secret" and detail:
            detail = f"{detail} (values not shown)"
        out.append(f"{_name(obj['kind'].lower(), obj)}: {obj['effect']}{f' ({detail})' if detail else ''}\n")
        for pod in obj["pods"]:
            out.append(f"  {_name('pod', pod)}: {'; '.join(pod['effects'])}\n")
    return "".join(out)


def _name(kind: str, obj: dict[str, Any]) -> str:
    namespace = obj.get("namespace") or ""
    return f"{kind}/{obj['name']}" + (f" (namespace {namespace})" if namespace not in ("", "default") else "")


# ------------------------------------------------------------------ the commands


def run_diff(args: argparse.Namespace) -> int:
    """`kubelite diff -f FILE|DIR …`."""
    try:
        preview = diff_files(node_state(args), args.filename)
    except Exception as exc:  # noqa: BLE001 — exit 1 means "changes" here: every error is 2
        return _failed(exc, args)
    return print_preview(preview, args.output)


def run_sync_preview(args: argparse.Namespace) -> int:
    """`kubelite sync --dry-run`: fetch the ref's commit into a directory of its own (the running sync's
    repository and lock are left alone), judge it as the sync would, and preview it."""
    import tempfile

    from kubelite.cli.syncargs import check_flags, node_name
    from kubelite.sources.gitsync import GitSync

    try:
        state = node_state(args)
        node = node_name(args, state.node_name)
        check_flags(args, node)
        with tempfile.TemporaryDirectory(prefix="kubelite-dry-run-") as scratch:
            engine = GitSync(args.repo, ref=args.ref, path=args.path, root=Path(scratch),
                             link=Path(state.manifests), allow_empty=args.allow_empty, node=node)
            with engine.preview() as found:
                print(f"commit {found.commit} of {engine.status.repository} ({args.ref}), not applied:",
                      file=sys.stderr)
                if found.problem is not None or found.snapshot is None:
                    print(f"error: {found.problem}", file=sys.stderr)
                    return EXIT_ERROR
                after = sources.resolve(found.snapshot, {})
        preview = compare(state, after, set(state.pods) | set(after.pods), set(state.configs) | set(after.configs))
    except Exception as exc:  # noqa: BLE001 — exit 1 means "changes" here: every error is 2
        return _failed(exc, args)
    return print_preview(preview, getattr(args, "output", None))


def _failed(exc: Exception, args: argparse.Namespace) -> int:
    """One line and exit status 2, as `kubelite.cli.main` words errors (a traceback with --debug)."""
    if getattr(args, "debug", False):
        raise exc
    if isinstance(exc, KubeliteError):
        print(f"error: {exc}", file=sys.stderr)
    else:
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
    return EXIT_ERROR
