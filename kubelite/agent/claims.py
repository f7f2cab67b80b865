"""PersistentVolumeClaims on local storage: provisioning, binding, reclaiming, and what pods mount.

Owns the volumes provisioned for claims, in memory and in the store (`persistent_volumes`), and
their directories `<root>/volumes/pvc-<claim uid>/` (0777, as k3s's local-path provisioner and an
emptyDir; unreachable for other users: `<root>` and `<root>/volumes` are 0700). A directory
outlives every pod that mounts it, and kubelite restarts. It is always found from the current
root and the volume's name (`directory`), never from the path stored in the database.

Once per manifest scan (`sync`), after the claims were accepted (`Configs.apply`), volumes whose
claim is gone are reclaimed first, then:

* a claim whose class exists (the built-in `local-path`, or a StorageClass document) is bound:
  its volume `pvc-<uid>` is provisioned if new (event ProvisioningSucceeded), status Bound; a
  claim naming a class that does not exist stays Pending (event ProvisioningFailed), and so does
  a claim whose uid names a volume of another claim (never shared, never taken over);
* a volume whose claim is gone stays Bound while a pod still refers to the claim (the claim
  protection of Kubernetes), then is reclaimed by its class's policy: `Retain` (the built-in
  class) keeps the directory and marks the volume Released — a claim of the same namespace and
  name binds to it again —; `Delete` removes it.

`mount_path` answers for a pod's `persistentVolumeClaim` volume with the directory, or with the
kubelet's reason to wait (missing claim, not bound, ReadWriteOncePod held by another pod).

Runs on the agent's thread; writes only through the node state (`nodestate.ObjectWriter`),
inside the agent's transaction.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import kubelite.statefiles as statefiles
from kubelite.agent.nodestate import ObjectWriter
from kubelite.api import claims, configobjects
from kubelite.core.status import rfc3339
from kubelite import layout
from kubelite.store.serial import dumps

log = logging.getLogger("kubelite.agent")

ClaimKey = tuple[str, str, str]   # (PersistentVolumeClaim, namespace, name)
#: Records an event: (namespace, kind, name, uid, type, reason, message).
EventSink = Callable[[str, str, str, str, str, str, str], None]


@dataclass(frozen=True)
class Volume:
    """A volume provisioned for a claim: a row of `persistent_volumes`."""

    name: str
    claim_namespace: str
    claim_name: str
    claim_uid: str
    storage_class: str
    reclaim_policy: str
    path: str
    phase: str                       # Bound | Released
    object: dict[str, Any]
    created_at: str
    resource_version: int

    @property
    def claim_key(self) -> ClaimKey:
        return (claims.CLAIM, self.claim_namespace, self.claim_name)


def claim_refs(pod: Any) -> dict[str, str]:
    """The pod's volume names → the names of the claims they mount."""
    return {v.name: v.persistent_volume_claim.claim_name or "" for v in pod.spec.volumes
            if v.persistent_volume_claim is not None}


class Claims:
    """The claims' volumes on this machine."""

    def __init__(self, writer: ObjectWriter, root: Path, node_name: str) -> None:
        self.writer, self.root, self.node_name = writer, root, node_name
        self.volumes: dict[str, Volume] = {}
        self.status: dict[ClaimKey, dict[str, Any]] = {}      # claim → its status (and volumeName)
        self.pending: dict[ClaimKey, str] = {}               # claim → why it is not bound

    @property
    def base(self) -> Path:
        return layout.claim_volumes_dir(self.root)

    def directory(self, volume: Volume) -> Path:
        """The volume's directory under the current root (never the path stored with it: the root may
        have moved). Raises LookupError for a name that would lead outside `<root>/volumes`."""
        path = self.base / volume.name
        if not volume.name.startswith("pvc-") or path.parent != self.base or volume.name in (".", ".."):
            raise LookupError(f"volume {volume.name!r} has no directory under {self.base}")
        return path

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.volumes = {row["name"]: Volume(**{k: row[k] for k in (
            "name", "claim_namespace", "claim_name", "claim_uid", "storage_class", "reclaim_policy", "path", "phase",
            "created_at", "resource_version")}, object=json.loads(row["object"])) for row in rows}

    def write_all(self) -> None:
        for volume in self.volumes.values():
            self._write(volume)

    def _write(self, volume: Volume) -> None:
        obj = {**volume.object, "metadata": {**volume.object["metadata"], "creationTimestamp": volume.created_at,
                                             "resourceVersion": str(volume.resource_version)}}
        self.writer.put_persistent_volume({
            "name": volume.name, "claim_namespace": volume.claim_namespace, "claim_name": volume.claim_name,
            "claim_uid": volume.claim_uid, "storage_class": volume.storage_class,
            "reclaim_policy": volume.reclaim_policy, "path": volume.path, "phase": volume.phase,
            "object": dumps(obj), "created_at": volume.created_at, "resource_version": volume.resource_version})

    # ------------------------------------------------------------------ the pass

    def classes(self, objects: dict[tuple[str, str, str], Any]) -> dict[str, dict[str, Any]]:
        """StorageClass name → v1 object: the built-in `local-path`, unless a document redefines it."""
        found = {claims.DEFAULT_CLASS: claims.builtin_class()}
        for (kind, _ns, name), config in objects.items():
            if kind == claims.STORAGE_CLASS:
                found[name] = config.object
        return found

    def sync(self, objects: dict[tuple[str, str, str], Any], users: dict[ClaimKey, set[str]], now: datetime,
             event: EventSink) -> set[ClaimKey]:
        """Bind, provision and reclaim (see the module); returns the claims whose status changed.

        `objects`: the accepted objects by key (ConfigObjects); `users`: claim → UIDs of the pods that
        refer to it; `event(namespace, kind, name, uid, type, reason, message)` records an event."""
        classes = self.classes(objects)
        changed: set[ClaimKey] = set()
        # reclaimed first: a volume whose claim is gone is released (or deleted) before any claim binds
        for volume in list(self.volumes.values()):
            key = volume.claim_key
            claim = objects.get(key)
            if volume.phase != "Bound" or (claim is not None and claim.uid == volume.claim_uid):
                continue
            if users.get(key):
                continue   # still referred to by a pod: protected until it is gone
            self._reclaim(volume, now, event)
        for key, config in objects.items():
            if key[0] != claims.CLAIM:
                continue
            spec = config.object.get("spec", {})
            class_name = spec.get("storageClassName") or claims.DEFAULT_CLASS
            storage_class = classes.get(class_name)
            existing = self.volumes.get(f"pvc-{config.uid}")
            provisioned = existing is not None   # keeps its class's policy, even if the class goes
            if existing is not None and existing.claim_key != key:
                # the same uid in another claim (a copied manifest): its data is never shared nor taken over
                why = (f"volume {existing.name} belongs to claim {existing.claim_namespace}/{existing.claim_name}; "
                       "this claim needs a metadata.uid of its own")
                status = {"phase": "Pending"}
                if self.pending.get(key) != why:
                    log.warning("PersistentVolumeClaim %s/%s: %s", config.namespace, config.name, why)
                    event(config.namespace, claims.CLAIM, config.name, config.uid, "Warning", "ProvisioningFailed",
                          why)
                self.pending[key] = why
            elif storage_class is None and not provisioned:
                why = f'storageclass.storage.k8s.io "{class_name}" not found'
                status = {"phase": "Pending"}
                if self.pending.get(key) != why:
                    event(config.namespace, claims.CLAIM, config.name, config.uid, "Warning", "ProvisioningFailed", why)
                self.pending[key] = why
            else:
                self.pending.pop(key, None)
                volume = self._bind(config, storage_class or {}, now, event)
                status = {"phase": "Bound", "accessModes": list(spec.get("accessModes", [])),
                          "capacity": {"storage": claims.claim_capacity(config.object)},
                          "volumeName": volume.name}
            if self.status.get(key) != status:
                self.status[key] = status
                changed.add(key)
        for key in [k for k in self.status if k not in objects]:
            del self.status[key]
            self.pending.pop(key, None)
        return changed

    def _bind(self, config: Any, storage_class: dict[str, Any], now: datetime, event: EventSink) -> Volume:
        name = f"pvc-{config.uid}"
        volume = self.volumes.get(name)
        # fixed when the volume is provisioned, as a PersistentVolume's: a class edited later changes nothing
        policy = volume.reclaim_policy if volume is not None else storage_class.get("reclaimPolicy") or "Delete"
        spec = config.object.get("spec", {})
        if volume is None:
            path = self.base / name
            statefiles.make_dirs(self.base, base=self.root)
            path.mkdir(mode=0o777, exist_ok=True)
            os.chmod(path, 0o777)   # any user of the pod may write, as in an emptyDir
            volume = Volume(name=name, claim_namespace=config.namespace, claim_name=config.name,
                            claim_uid=config.uid, storage_class=storage_class["metadata"]["name"],
                            reclaim_policy=policy, path=str(path), phase="Bound", object={}, created_at=rfc3339(now),
                            resource_version=0)
            log.info("PersistentVolumeClaim %s/%s: provisioned volume %s in %s", config.namespace, config.name, name,
                     path)
            event(config.namespace, claims.CLAIM, config.name, config.uid, "Normal", "ProvisioningSucceeded",
                  f"Successfully provisioned volume {name}")
        elif volume.phase != "Bound":
            log.info("PersistentVolumeClaim %s/%s: bound again to its retained volume %s", config.namespace,
                     config.name, name)
        obj = self._volume_object(volume, spec, policy)
        if volume.phase != "Bound" or obj != volume.object:
            volume = replace(volume, phase="Bound", object=obj, resource_version=self.writer.next_resource_version())
            self.volumes[name] = volume
            self._write(volume)
        return volume

    def _volume_object(self, volume: Volume, spec: dict[str, Any], policy: str, phase: str = "Bound") -> dict[str, Any]:
        """The v1 PersistentVolume, as a local-path provisioner creates it."""
        return {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": volume.name, "uid": configobjects.object_uid("PersistentVolume", "", volume.name, ""),
                         "annotations": {"pv.kubernetes.io/provisioned-by": claims.PROVISIONERS[0]}},
            "spec": {"accessModes": list(spec.get("accessModes", [])),
                     "capacity": {"storage": claims.claim_capacity({"spec": spec})},
                     "claimRef": {"apiVersion": "v1", "kind": claims.CLAIM, "namespace": volume.claim_namespace,
                                  "name": volume.claim_name, "uid": volume.claim_uid},
                     "local": {"path": str(self.base / volume.name)},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.node_name]}]}]}},
                     "persistentVolumeReclaimPolicy": policy, "storageClassName": volume.storage_class,
                     "volumeMode": "Filesystem"},
            "status": {"phase": phase},
        }

    def _reclaim(self, volume: Volume, now: datetime, event: EventSink) -> None:
        ns, claim = volume.claim_namespace, volume.claim_name
        if volume.reclaim_policy == "Delete":
            try:
                shutil.rmtree(self.directory(volume), ignore_errors=True)
            except LookupError as exc:
                log.warning("PersistentVolume %s: not deleted: %s", volume.name, exc)
            del self.volumes[volume.name]
            self.writer.delete_persistent_volume(volume.name)
            log.info("PersistentVolumeClaim %s/%s gone: volume %s deleted (reclaim policy Delete)", ns, claim,
                     volume.name)
            event(ns, "PersistentVolume", volume.name, volume.object.get("metadata", {}).get("uid", ""), "Normal",
                  "VolumeDeleted", f"claim {ns}/{claim} is gone: volume deleted (reclaim policy Delete)")
            return
        obj = {**volume.object, "status": {"phase": "Released"}}
        released = replace(volume, phase="Released", object=obj, resource_version=self.writer.next_resource_version())
        self.volumes[volume.name] = released
        self._write(released)
        log.info("PersistentVolumeClaim %s/%s gone: volume %s released; its data is kept in %s", ns, claim,
                 volume.name, self.base / volume.name)
        event(ns, "PersistentVolume", volume.name, volume.object.get("metadata", {}).get("uid", ""), "Normal",
              "VolumeReleased", f"claim {ns}/{claim} is gone: volume released, its data kept in "
                                f"{self.base / volume.name} "
                                "(reclaim policy Retain)")

    # ------------------------------------------------------------------ pods

    def mount_path(self, namespace: str, claim: str, *, exists: bool, refused: str | None = None,
                   holder: str | None = None) -> str:
        """The directory of the claim's volume. Raises LookupError with the kubelet's reason to wait.

        `exists`: whether the claim is accepted; `refused`: why its manifest is invalid, if it is;
        `holder`: the pod (namespace/name) that holds a ReadWriteOncePod claim, if another does."""
        key = (claims.CLAIM, namespace, claim)
        if not exists:
            why = f'persistentvolumeclaim "{claim}" not found'
            raise LookupError(f"{why} (its manifest is invalid: {refused})" if refused else why)
        status = self.status.get(key, {})
        volume = self.volumes.get(status.get("volumeName", ""))
        if status.get("phase") != "Bound" or volume is None:
            why = self.pending.get(key, "waiting for its volume")
            raise LookupError(f'persistentvolumeclaim "{claim}" is not bound: {why}')
        if holder is not None:
            raise LookupError(f'persistentvolumeclaim "{claim}" has the ReadWriteOncePod access mode and is in use '
                              f"by pod {holder}")
        return str(self.directory(volume))

    def remember(self, key: ClaimKey, stored: dict[str, Any]) -> None:
        """A claim's binding as the store holds it (at start, before the first scan)."""
        status = dict(stored.get("status") or {})
        if stored.get("spec", {}).get("volumeName"):
            status["volumeName"] = stored["spec"]["volumeName"]
        if status:
            self.status[key] = status

    def decorate(self, key: ClaimKey, obj: dict[str, Any]) -> dict[str, Any]:
        """The claim's v1 object with its binding (`spec.volumeName`, `status`) and the protection
        finalizer a cluster adds (kubelite keeps a claim's volume while a pod refers to it)."""
        status = dict(self.status.get(key) or {"phase": "Pending"})
        volume_name = status.pop("volumeName", None)
        meta = {**obj.get("metadata", {}), "finalizers": ["kubernetes.io/pvc-protection"]}
        out = {**obj, "metadata": meta, "status": status}
        if volume_name:
            out["spec"] = {**obj.get("spec", {}), "volumeName": volume_name}
        return out
