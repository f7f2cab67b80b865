"""The agent's ConfigMaps, Secrets and claims, and what pods take from them: env, volumes, subPaths.

Owns: the accepted configuration objects in memory and in the store (`config_objects`:
ConfigMaps, Secrets, PersistentVolumeClaims and StorageClasses), which pods must be looked at
again when one changes, and the container-side steps of `sync_pod` that depend on them:

* `set_up_volumes` — before a pod's containers start: every volume ready on the host, its
  claims' directories bound by `claims` and ReadWriteOncePod claims taken (a failure is a
  `FailedMount` event, and the containers wait in ContainerCreating with its message);
* `container_settings` — when a container is created: its env (`envFrom`, `valueFrom`) and its
  mounts (subPaths prepared); a missing object or key, or a bad subPath, is a `ConfigError`
  (CreateContainerConfigError);
* `refresh_projections` — while a pod runs: configMap, secret, downwardAPI and projected volume
  files kept current (an edited ConfigMap shows up in place, env does not change).

A mount's `subPathExpr` is expanded from the container's resolved env; an image volume is
mounted when the first container that uses it is created (the agent has pulled its image).

Runs on the agent's thread; writes only through the node state (`nodestate.ObjectWriter`),
inside the agent's transaction. One piece of its memory is written from a pod's sync: the
ReadWriteOncePod claim holders (`claim_holders`), taken in `set_up_volumes` and given back in
`tear_down`. It is shared by every pod: parallel pod workers must serialise these two steps
(one lock around taking and releasing claims, as the kubelet's volume manager owns attachments).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubelite.agent.claims import Claims, ClaimKey, EventSink, claim_refs
from kubelite.agent.nodestate import ObjectWriter
from kubelite.api import claims as claim_objects
from kubelite.api.configobjects import ConfigObject, from_object
from kubelite.api.models import Container, Pod
from kubelite.core import podconfig
from kubelite.core.status import rfc3339
from kubelite.runtime.protocol import Mount
from kubelite.runtime.volumes import SubPathError, VolumeError, VolumeHost, fs_group_of

__all__ = ["Configs", "ConfigEntry", "VolumeError", "VolumeHost", "node_allocatable"]
from kubelite.sources.manifests import Resolution
from kubelite.store.serial import dumps

log = logging.getLogger("kubelite.agent")

ConfigKey = tuple[str, str, str]


@dataclass
class ConfigEntry:
    config: ConfigObject
    source: str
    created_at: str
    resource_version: int


def node_allocatable() -> podconfig.NodeAllocatable:
    """This machine's CPUs and memory: what `limits.*` reads when a container sets no limit."""
    memory = 0
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return podconfig.NodeAllocatable(cpu_millis=(os.cpu_count() or 1) * 1000, memory_bytes=memory)


class Configs:
    """The ConfigMaps and Secrets the agent serves to its pods."""

    def __init__(self, writer: ObjectWriter, volumes: VolumeHost, node_name: str) -> None:
        self.writer, self.volumes, self.node_name = writer, volumes, node_name
        self.entries: dict[ConfigKey, ConfigEntry] = {}
        self.refused: dict[ConfigKey, str] = {}              # objects whose manifest is invalid: why
        self.generation = 0                                 # bumped on any change
        self.volume_paths: dict[str, dict[str, str]] = {}  # uid → volume name → host path
        self.refreshed: dict[str, tuple[Any, ...]] = {}    # uid → what its projections were written from
        self.node = node_allocatable()
        self.orphans_checked = False
        self.claims = Claims(writer, volumes.root, node_name)
        # ReadWriteOncePod claim → (uid, pod key): written from pod syncs, shared by all (see above)
        self.claim_holders: dict[ClaimKey, tuple[str, str]] = {}

    def remove_orphan_volumes(self, known_uids: set[str]) -> None:
        """Once, after the first relist: tear down the volumes of pods removed while kubelite was down.
        Not earlier: a database moved aside is rebuilt from the manifests, and its pods' volumes stay."""
        if not self.orphans_checked:
            self.volumes.remove_orphans(known_uids)
            self.orphans_checked = True

    # ------------------------------------------------------------------ the objects

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.entries = {}
        for row in rows:
            stored = json.loads(row["object"])
            config = from_object(stored)
            self.entries[config.key] = ConfigEntry(config, row["source"], row["created_at"], row["resource_version"])
            if config.kind == claim_objects.CLAIM:   # its binding, until the next scan confirms it
                self.claims.remember(config.key, stored)
        self.generation += 1

    def previous(self) -> dict[str, list[ConfigObject]]:
        """The objects last accepted from each file (what an invalid edit keeps)."""
        by_file: dict[str, list[ConfigObject]] = {}
        for entry in self.entries.values():
            by_file.setdefault(entry.source, []).append(entry.config)
        return by_file

    def apply(self, resolution: Resolution, now: datetime) -> set[ConfigKey]:
        """Make the objects match the resolution; returns the keys that were added, changed or removed."""
        changed: set[ConfigKey] = set()
        refused, self.refused = self.refused, dict(resolution.refused_configs)
        changed.update(k for k in refused.keys() | self.refused.keys() if refused.get(k) != self.refused.get(k))
        for key, config in resolution.configs.items():
            source = resolution.config_sources[key]
            entry = self.entries.get(key)
            if entry is not None and entry.config.hash == config.hash and entry.source == source:
                continue
            if entry is None:
                entry = ConfigEntry(config, source, rfc3339(now), self.writer.next_resource_version())
                log.info("%s %s: accepted from %s", config.kind, config.ref, source)
            else:
                entry = ConfigEntry(config, source, entry.created_at, self.writer.next_resource_version())
                log.info("%s %s: changed (%s)", config.kind, config.ref, source)
            self.entries[key] = entry
            self.write(entry)
            changed.add(key)
        for key in [k for k in self.entries if k not in resolution.configs]:
            log.info("%s %s/%s: manifest gone", key[0], key[1], key[2])
            del self.entries[key]
            self.writer.delete_config_object(*key)
            changed.add(key)
        if changed:
            self.generation += 1
        return changed

    def write(self, entry: ConfigEntry) -> None:
        config = entry.config
        obj = dict(config.object)
        if config.kind == claim_objects.CLAIM:
            obj = self.claims.decorate(config.key, obj)
        obj["metadata"] = {**obj.get("metadata", {}), "creationTimestamp": entry.created_at,
                           "resourceVersion": str(entry.resource_version)}
        self.writer.put_config_object({
            "kind": config.kind, "namespace": config.namespace, "name": config.name, "uid": config.uid,
            "source": entry.source, "object": dumps(obj), "created_at": entry.created_at,
            "resource_version": entry.resource_version})

    def write_all(self) -> None:
        for entry in self.entries.values():
            self.write(entry)
        self.claims.write_all()

    def sync_claims(self, users: dict[ClaimKey, set[str]], now: datetime, event: EventSink) -> set[ClaimKey]:
        """Bind, provision and reclaim the claims' volumes (`Claims.sync`); a claim whose status changed
        is written again with a new resourceVersion. Returns those claims."""
        changed = self.claims.sync({k: e.config for k, e in self.entries.items()}, users, now, event)
        for key in changed:
            entry = self.entries.get(key)
            if entry is not None:
                entry.resource_version = self.writer.next_resource_version()
                self.write(entry)
        return changed

    def lookup(self) -> dict[ConfigKey, ConfigObject]:
        return {key: entry.config for key, entry in self.entries.items()}

    # ------------------------------------------------------------------ pods

    def facts(self, uid: str, status: dict[str, Any], *, pod_ip: str | None = None,
              host_ip: str | None = None) -> podconfig.PodFacts:
        """What fieldRefs read; `pod_ip`/`host_ip` when the caller knows them better than the status."""
        return podconfig.PodFacts(uid=uid, node_name=self.node_name, pod_ip=pod_ip or status.get("podIP") or "",
                                  host_ip=host_ip or status.get("hostIP") or "", node=self.node)

    def payloads(self, uid: str, pod: Pod, status: dict[str, Any]) -> dict[str, dict[str, tuple[bytes, int]]]:
        """The files of the pod's projected volumes. Raises VolumeError naming the volume."""
        lookup, facts = self.lookup(), self.facts(uid, status)
        out = {}
        for volume in pod.spec.volumes:
            if not podconfig.is_projected(volume):
                continue
            try:
                files = podconfig.volume_payload(pod, volume, configs=lookup, facts=facts)
            except podconfig.ConfigError as exc:
                raise VolumeError(volume.name, self.explain(exc)) from None
            out[volume.name] = {path: (f.data, f.mode) for path, f in files.items()}
        return out

    def claim_paths(self, uid: str, pod: Pod) -> dict[str, str]:
        """The directories of the pod's persistentVolumeClaim volumes, by volume name. Raises
        VolumeError with the kubelet's reason to wait (a missing or unbound claim, a ReadWriteOncePod
        claim in use by another pod); takes the ReadWriteOncePod claims for this pod."""
        ns, paths = pod.metadata.namespace, {}
        taken = []
        for volume, claim in claim_refs(pod).items():
            key = (claim_objects.CLAIM, ns, claim)
            entry = self.entries.get(key)
            holder = self.claim_holders.get(key)
            modes = entry.config.object.get("spec", {}).get("accessModes", []) if entry is not None else []
            rwop = "ReadWriteOncePod" in modes
            try:
                paths[volume] = self.claims.mount_path(
                    ns, claim, exists=entry is not None, refused=self.refused.get(key),
                    holder=holder[1] if rwop and holder is not None and holder[0] != uid else None)
            except LookupError as exc:
                raise VolumeError(volume, str(exc)) from None
            if rwop:
                taken.append(key)
        for key in taken:
            self.claim_holders[key] = (uid, pod.key)
        return paths

    def restore_claim_holders(self, pods: list[tuple[str, Pod]]) -> None:
        """At start: the ReadWriteOncePod claims held by the pods that were set up before the restart
        (those with a sandbox or a container left), the oldest first, as they took them."""
        self.claim_holders = {}
        for uid, pod in pods:
            for claim in claim_refs(pod).values():
                key = (claim_objects.CLAIM, pod.metadata.namespace, claim)
                entry = self.entries.get(key)
                modes = entry.config.object.get("spec", {}).get("accessModes", []) if entry is not None else []
                if "ReadWriteOncePod" in modes:
                    self.claim_holders.setdefault(key, (uid, pod.key))

    def set_up_volumes(self, uid: str, pod: Pod, status: dict[str, Any]) -> None:
        """Every volume of the pod ready on the host. Raises VolumeError (FailedMount)."""
        payloads = self.payloads(uid, pod, status)
        claim_paths = self.claim_paths(uid, pod)
        self.volume_paths[uid] = self.volumes.set_up(uid, pod, payloads, claims=claim_paths)
        self.refreshed[uid] = self._projection_inputs(pod)

    def container_settings(self, uid: str, pod: Pod, container: Container, status: dict[str, Any], *,
                           pod_ip: str | None = None, host_ip: str | None = None,
                           ) -> tuple[podconfig.ResolvedEnv, tuple[Mount, ...]]:
        """The container's resolved env and its mounts. Raises ConfigError (CreateContainerConfigError).

        `pod_ip`: the sandbox's IP, which a pod's first containers are created with before any
        status holds it (as the kubelet takes it from the sandbox status)."""
        facts = self.facts(uid, status, pod_ip=pod_ip, host_ip=host_ip)
        try:
            env = podconfig.container_env(pod, container, configs=self.lookup(), facts=facts)
        except podconfig.ConfigError as exc:
            raise podconfig.ConfigError(self.explain(exc), missing=exc.missing) from None
        if not container.volume_mounts:
            return env, ()
        paths = self.volume_paths.get(uid)
        if paths is None:
            raise podconfig.ConfigError("the pod's volumes are not set up")
        sub_paths = {i: podconfig.sub_path_from_expr(vm.sub_path_expr, env.env)
                     for i, vm in enumerate(container.volume_mounts) if vm.sub_path_expr}
        try:
            return env, self.volumes.container_mounts(uid, pod, container, paths, sub_paths)
        except SubPathError as exc:
            raise podconfig.ConfigError(str(exc)) from None

    def explain(self, exc: podconfig.ConfigError) -> str:
        """The kubelet's message, and why the object is missing when its manifest was refused."""
        refused = self.refused.get(exc.missing) if exc.missing is not None else None
        return f"{exc} (its manifest is invalid: {refused})" if refused else str(exc)

    def _projection_inputs(self, pod: Pod) -> tuple[Any, ...]:
        meta = pod.metadata
        return (self.generation, dumps(meta.labels), dumps(meta.annotations))

    def refresh_projections(self, uid: str, pod: Pod, status: dict[str, Any]) -> list[str]:
        """Rewrite the projected volumes of a running pod whose inputs changed; returns FailedMount messages."""
        if not any(podconfig.is_projected(v) for v in pod.spec.volumes):
            return []
        inputs = self._projection_inputs(pod)
        if self.refreshed.get(uid) == inputs:
            return []
        self.refreshed[uid] = inputs
        problems = []
        lookup, facts = self.lookup(), self.facts(uid, status)
        for volume in pod.spec.volumes:
            if not podconfig.is_projected(volume):
                continue
            try:
                files = podconfig.volume_payload(pod, volume, configs=lookup, facts=facts)
                if self.volumes.refresh(uid, volume, {p: (f.data, f.mode) for p, f in files.items()},
                                        fs_group=fs_group_of(pod)):
                    log.info("pod %s/%s: volume %s updated", pod.metadata.namespace, pod.metadata.name, volume.name)
            except podconfig.ConfigError as exc:   # the files keep their last content, as with the kubelet
                problems.append(str(VolumeError(volume.name, str(exc))))
            except OSError as exc:
                problems.append(str(VolumeError(volume.name, exc.strerror or str(exc))))
        return problems

    def tear_down(self, uid: str) -> None:
        for key in [k for k, (holder, _) in self.claim_holders.items() if holder == uid]:
            del self.claim_holders[key]
        self.volumes.tear_down(uid)
        self.volume_paths.pop(uid, None)
        self.refreshed.pop(uid, None)
