"""Which Kubernetes Pod fields kubelite knows but does not implement (yet).

Owns: the two tables that let kubelite tell "unknown field" (a typo, or a field from another
kind) apart from "known, not implemented" (valid Kubernetes that kubelite ignores for now).
Both are reported as warnings: never silently ignored. Shrink these tables as features land.
"""

from __future__ import annotations

from kubelite.api import models
from kubelite.api.validation import FieldIssue

#: Wire names of Kubernetes fields that the model class does not carry; they are accepted,
#: dropped, and reported as not implemented.
KNOWN_UNMODELLED: dict[type, frozenset[str]] = {
    models.ObjectMeta: frozenset({
        "ownerReferences", "finalizers", "generation", "managedFields", "selfLink",
        "deletionGracePeriodSeconds",
    }),
    models.PodSpec: frozenset({
        "nodeSelector", "affinity", "tolerations", "serviceAccount",
        "automountServiceAccountToken", "dnsPolicy", "dnsConfig", "hostPID", "hostIPC", "hostAliases",
        "imagePullSecrets", "priority", "priorityClassName", "schedulerName", "readinessGates",
        "runtimeClassName", "enableServiceLinks", "preemptionPolicy", "overhead",
        "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates",
        "resourceClaims", "subdomain", "ephemeralContainers", "hostnameOverride",
    }),
    models.Container: frozenset({"resizePolicy", "restartPolicyRules", "stdinOnce", "volumeDevices"}),
    models.VolumeMount: frozenset({"mountPropagation", "subPathExpr", "recursiveReadOnly"}),
    models.Volume: frozenset({"projected", "persistentVolumeClaim", "nfs", "iscsi", "csi", "ephemeral", "image",
                              "gitRepo", "fc", "rbd", "cephfs", "glusterfs", "awsElasticBlockStore",
                              "gcePersistentDisk", "azureDisk", "azureFile", "vsphereVolume", "flexVolume",
                              "cinder", "quobyte", "flocker", "portworxVolume", "scaleIO", "storageos",
                              "photonPersistentDisk"}),
    models.SecurityContext: frozenset({"seLinuxOptions", "procMount", "windowsOptions"}),
    models.PodSecurityContext: frozenset({"seLinuxOptions", "fsGroupChangePolicy", "windowsOptions",
                                          "supplementalGroupsPolicy", "seLinuxChangePolicy"}),
}

_NOT_YET = "not implemented yet; ignored"


def unimplemented_fields(pod: models.Pod) -> list[FieldIssue]:
    """Fields that kubelite models and accepts but does not act on yet, as warnings."""
    found: list[FieldIssue] = []
    spec = pod.spec
    for field, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, c in enumerate(containers):
            path = f"spec.{field}[{i}]"
            for name, probe in (("livenessProbe", c.liveness_probe), ("readinessProbe", c.readiness_probe),
                                ("startupProbe", c.startup_probe)):
                if probe is not None and probe.grpc is not None:
                    found.append(FieldIssue(f"{path}.{name}.grpc", "not implemented yet; the probe does not run"))
            if c.lifecycle is not None and c.lifecycle.post_start is not None:
                found.append(FieldIssue(f"{path}.lifecycle.postStart", _NOT_YET))
    return found
