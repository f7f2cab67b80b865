"""What a manifest edit does to its pod: create, update in place, restart some containers, replace
the pod, delete — the rules of decision 0001 in one place, with the fields that decide.

Owns:

* `sandbox_changed` and `container_changed` — the two comparisons `plan()` acts on: a sandbox built
  from another pod-level spec is made again (the pod's containers with it), a container started
  from another container spec is stopped and started again;
* `change_effect(old, new)` — the effect of replacing one accepted version of a pod by another
  (either may be absent), as the agent carries it out: a new UID replaces the pod (the old one
  terminates, the new one starts once it is gone); the same UID with another sandbox hash makes
  the sandbox again; otherwise the app containers whose hash changed restart (added ones start,
  removed ones stop), and labels, annotations, the policy fields (`restartPolicy`,
  `terminationGracePeriodSeconds`, `activeDeadlineSeconds`) and the file a pod comes from change
  in place. The agent asks it whether a manifest changed; `kubelite diff` and `sync --dry-run`
  print it;
* `changed_fields` — the paths at which two JSON-shaped values differ (named list items by name:
  `spec.containers[web].image`), for the reasons;
* `config_effects(pod, key)` — what a ConfigMap or Secret created, changed or deleted does to a pod
  that uses it, from `podconfig.uses`: volume files change in place (not a file mounted with
  subPath), env only when a container is created again, a container waiting for it starts;
  nothing restarts.

What the runtime holds refines the effect: a changed container restarts when it runs or will start
again (waiting, CrashLoopBackOff: its new spec starts at once, with no backoff yet), not when it
has exited for good under its restart policy (`running`); a pod that has finished runs nothing
again under the same UID (`finished`). Pure: no clock, no files.
"""

from __future__ import annotations

import enum
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from kubelite.api.decode import DesiredPod, sandbox_spec
from kubelite.api.models import Pod
from kubelite.core import podconfig

#: Pod spec fields whose change takes effect without restarting anything (the others that are not
#: part of the sandbox are the app containers, compared one by one).
IN_PLACE_FIELDS = ("restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds")
NEW_UID = "a new UID: all containers stop, then start fresh with restart counts from 0"
SAME_UID = "same UID (metadata.uid): the sandbox is made again, all containers restart"


class Effect(str, enum.Enum):
    """What happens to one pod."""

    CREATE = "create"          # a new pod starts
    UNCHANGED = "unchanged"    # nothing to do
    UPDATE = "update"          # stored and in force; nothing restarts
    RESTART = "restart"        # some app containers stop and start again (or start, or stop)
    REPLACE = "replace"        # every container stops, the sandbox is made again, then they start fresh
    DELETE = "delete"          # the pod stops gracefully and is removed


@dataclass(frozen=True)
class ContainerChange:
    """One app container whose spec changed: `action` is restart, start (added), stop (removed) or
    `kept` (it has exited and its restart policy does not run it again: nothing runs)."""

    name: str
    action: str
    fields: tuple[str, ...] = ()     # container fields that differ: image, env, command, …

    def __str__(self) -> str:
        if self.action == "start":
            return f"{self.name} (added)"
        if self.action == "stop":
            return f"{self.name} (removed)"
        return f"{self.name} ({', '.join(self.fields)} changed)" if self.fields else self.name


@dataclass(frozen=True)
class PodChange:
    """The effect of one manifest change on one pod, with why."""

    effect: Effect
    reasons: tuple[str, ...] = ()                  # one line each: which field, and what it means
    containers: tuple[ContainerChange, ...] = ()
    fields: tuple[str, ...] = ()                   # every changed path of the pod (metadata and spec)
    new_uid: bool = False                          # REPLACE: the pod gets another UID

    @property
    def changed(self) -> bool:
        return self.effect is not Effect.UNCHANGED

    def summary(self) -> str:
        """One line: `restart containers app (image changed)`, `replace pod (spec.volumes changed: …)`."""
        if self.effect is Effect.RESTART:
            parts = []
            for action, word in (("restart", "restart"), ("start", "start"), ("stop", "stop")):
                named = [c for c in self.containers if c.action == action]
                if named:
                    parts.append(f"{word} container{'s' if len(named) > 1 else ''} {', '.join(map(str, named))}")
            return "; ".join(parts)
        if self.effect is Effect.REPLACE:
            return f"replace pod ({'; '.join(self.reasons)})"
        if self.effect is Effect.UPDATE:
            return f"update in place, nothing restarts ({'; '.join(self.reasons)})"
        return self.effect.value


def sandbox_changed(sandbox_hash: str, desired: DesiredPod) -> bool:
    """A sandbox made for another pod-level spec than `desired`'s must be made again."""
    return sandbox_hash != desired.sandbox_hash


def container_changed(spec_hash: str | None, name: str, desired: DesiredPod) -> bool:
    """A container started from another spec than `desired`'s container `name` is restarted."""
    return spec_hash != desired.container_hashes.get(name)


def change_effect(old: DesiredPod | None, new: DesiredPod | None, *, old_source: str = "", new_source: str = "",
                  running: AbstractSet[str] | None = None, finished: bool = False) -> PodChange:
    """What replacing the accepted version `old` of a pod by `new` does (None: absent).

    `old_source`/`new_source` are the files each comes from (a pod without `metadata.uid` that moves
    to another file gets another UID). `running` names the containers of `old` that run now or will
    start again (None: all of them); `finished` says the pod has reached Succeeded or Failed.
    """
    if old is None and new is None:
        raise ValueError("change_effect needs a version of the pod")
    if old is None:
        return PodChange(Effect.CREATE)
    if new is None:
        return PodChange(Effect.DELETE)
    same_meta = (old.pod.metadata.labels, old.pod.metadata.annotations) == \
        (new.pod.metadata.labels, new.pod.metadata.annotations)
    if old.uid == new.uid and old.pod_hash == new.pod_hash and same_meta and old_source == new_source:
        return PodChange(Effect.UNCHANGED)   # the agent's every pass: nothing to compare further
    old_spec, new_spec = old.pod.spec.to_dict(), new.pod.spec.to_dict()
    fields = tuple(changed_fields(_shown(old), _shown(new)))
    if old.uid != new.uid:
        why = _sandbox_reasons(old_spec, new_spec)
        if not why and old_source != new_source:
            why = [f"its manifest moved from {old_source} to {new_source}: the UID derives from the file"]
        elif not why:
            why = ["metadata.uid changed"]
        return PodChange(Effect.REPLACE, (*why, NEW_UID), fields=fields, new_uid=True)
    if sandbox_changed(old.sandbox_hash, new) and finished:
        return PodChange(Effect.UPDATE, ("the pod has finished: nothing of it runs again under its UID",),
                         fields=fields)
    if sandbox_changed(old.sandbox_hash, new):
        return PodChange(Effect.REPLACE, (*_sandbox_reasons(old_spec, new_spec), SAME_UID), fields=fields)
    containers = _container_changes(old, new, old_spec, new_spec, running)
    in_place = [f"spec.{name} changed" for name in IN_PLACE_FIELDS if old_spec.get(name) != new_spec.get(name)]
    in_place += [f"metadata.{part} changed" for part, a, b in (
        ("labels", old.pod.metadata.labels, new.pod.metadata.labels),
        ("annotations", old.pod.metadata.annotations, new.pod.metadata.annotations)) if a != b]
    if old_source != new_source:
        in_place.append(f"now defined in {new_source}")
    if finished and (containers or in_place):
        return PodChange(Effect.UPDATE, ("the pod has finished: nothing of it runs again", *in_place),
                         fields=fields)
    if any(c.action != "kept" for c in containers):
        return PodChange(Effect.RESTART, tuple(in_place), containers=containers, fields=fields)
    if containers or in_place or fields:
        notes = [f"container {c}: exited, not run again by its restart policy" for c in containers]
        return PodChange(Effect.UPDATE, tuple(in_place + notes) or ("spec.containers reordered",),
                         containers=containers, fields=fields)
    return PodChange(Effect.UNCHANGED)


def _container_changes(old: DesiredPod, new: DesiredPod, old_spec: dict[str, Any], new_spec: dict[str, Any],
                       running: AbstractSet[str] | None) -> tuple[ContainerChange, ...]:
    """The app containers that restart, start, stop, or changed but are not run again (spec order)."""
    before = {c["name"]: c for c in old_spec.get("containers", [])}
    after = {c["name"]: c for c in new_spec.get("containers", [])}
    found = []
    for name, spec in after.items():
        if name not in before:
            found.append(ContainerChange(name, "start"))
        elif container_changed(old.container_hashes.get(name), name, new):
            live = running is None or name in running
            found.append(ContainerChange(name, "restart" if live else "kept",
                                         tuple(changed_fields(before[name], spec, depth=1))))
    for name in before:
        if name not in after and (running is None or name in running):
            found.append(ContainerChange(name, "stop"))
    return tuple(found)


def _sandbox_reasons(old_spec: dict[str, Any], new_spec: dict[str, Any]) -> list[str]:
    paths = changed_fields(sandbox_spec(old_spec), sandbox_spec(new_spec), "spec", depth=3)
    if not paths:
        return []
    shown = ", ".join(p.replace("spec.hostPorts", "spec.containers[].ports[].hostPort") for p in paths[:4])
    more = f" and {len(paths) - 4} more" if len(paths) > 4 else ""
    return [f"{'field' if len(paths) == 1 else 'fields'} {shown}{more} changed: the pod's sandbox must be made again"]


def _shown(desired: DesiredPod) -> dict[str, Any]:
    meta = desired.pod.metadata
    return {"metadata": {"labels": meta.labels, "annotations": meta.annotations}, "spec": desired.pod.spec.to_dict()}


def changed_fields(old: Any, new: Any, prefix: str = "", *, depth: int = 6) -> list[str]:
    """The paths at which `old` and `new` differ, in order: mappings by key, lists of named items
    (containers, volumes, env) by name, other lists as a whole; at most `depth` levels down."""
    if old == new:
        return []
    if depth <= 0:
        return [prefix]
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            path = f"{prefix}.{key}" if prefix else str(key)
            found += changed_fields(old.get(key), new.get(key), path, depth=depth - 1) \
                if key in old and key in new else [path]
        return found
    if _named(old) and _named(new):
        a, b = {i["name"]: i for i in old}, {i["name"]: i for i in new}
        found = []
        for name in [*a, *(n for n in b if n not in a)]:
            path = f"{prefix}[{name}]"
            found += changed_fields(a[name], b[name], path, depth=depth - 1) if name in a and name in b else [path]
        return found or [prefix]   # same items, another order
    return [prefix]


def _named(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    names = [i.get("name") for i in value if isinstance(i, dict)]
    return len(names) == len(value) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)


def config_effects(pod: Pod, key: tuple[str, str, str], *, change: str = "update") -> list[str]:
    """What a ConfigMap or Secret `key` that is created, updated or deleted (`change`) does to `pod`;
    empty when the pod does not use it. Nothing restarts either way."""
    uses = podconfig.uses(pod).get(key, set())
    if not uses:
        return []
    if change == "create":
        return ["a container waiting for it starts"]
    deleted = change == "delete"
    found = []
    if podconfig.USE_VOLUME in uses:
        found.append("its volume files keep their last content" if deleted else "volume files change in place")
    if podconfig.USE_SUBPATH in uses:
        found.append("files mounted with subPath keep their content")
    if podconfig.USE_ENV in uses:
        found.append("containers created again from now on wait for it (unless optional)" if deleted
                     else "env changes only when a container is created again")
    return found
