"""What kubelite does with every field of a Kubernetes 1.32 Pod: one table, one line per field.

Owns: `FIELDS`, the support status of each field of the Pod and the types a pod spec is made of
(`Type.field` → `implemented`, `warned` or `refused`), the wire paths those types sit at
(`PATHS`), the refusal message of an unsupported volume type, the annotations the kubelet acts on
(`ANNOTATIONS`) and the compute resources kubelite does not apply (`RESOURCE_NOTES`), and the
Markdown field table of docs/manifests.md (`python -m kubelite.api.fieldsupport --markdown`).

* `implemented`: kubelite acts on the field; the note names the test that proves it (a test
  function in tests/; tests/test_fieldsupport.py checks that it exists).
* `warned`: the pod runs, and a manifest that sets the field gets a warning with the note as its
  message (in `kubelite validate`, the daemon's log and a Warning event). A field left at its zero
  value (absent, null, false, empty) asks for nothing and is not warned about.
* `refused`: a manifest that sets the field is invalid; the note says why.

Where the list comes from: the Go types of k8s.io/api `core/v1/types.go` at Kubernetes 1.32
(`Pod`, `ObjectMeta` of apimachinery, `PodSpec`, `Container`, `PodSecurityContext`,
`SecurityContext`, `Probe`, `Lifecycle`, `LifecycleHandler`, `VolumeMount`, `Volume` and its
`VolumeSource`, `EnvVar`, …) as the v1.32 API reference lists them; a few fields of later
releases (1.33, 1.34) that kubelite already knows are marked so. Where kubelite's model class
names a type differently, `Type` is kubelite's name (`KeySelector` for `ConfigMapKeySelector`
and `SecretKeySelector`, `ObjectRef` for `ConfigMapEnvSource` and `SecretEnvSource`).
`EphemeralContainer` is not listed field by field: `spec.ephemeralContainers` is refused, as the
API server refuses it on create.

Edit a line to change what kubelite says about a field; `decode` reads the statuses from here.
Pure data: no files, no clock.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

IMPLEMENTED = "implemented"
WARNED = "warned"
REFUSED = "refused"
STATUSES = (IMPLEMENTED, WARNED, REFUSED)

#: Where each type sits in a Pod, as a wire path (`[]`: every item of a list).
PATHS = {
    "Pod": "",
    "ObjectMeta": "metadata",
    "PodSpec": "spec",
    "PodSecurityContext": "spec.securityContext",
    "Volume": "spec.volumes[]",
    "EmptyDirVolumeSource": "spec.volumes[].emptyDir",
    "HostPathVolumeSource": "spec.volumes[].hostPath",
    "ConfigMapVolumeSource": "spec.volumes[].configMap",
    "SecretVolumeSource": "spec.volumes[].secret",
    "KeyToPath": "spec.volumes[].configMap.items[]",
    "DownwardAPIVolumeSource": "spec.volumes[].downwardAPI",
    "DownwardAPIVolumeFile": "spec.volumes[].downwardAPI.items[]",
    "ProjectedVolumeSource": "spec.volumes[].projected",
    "PersistentVolumeClaimVolumeSource": "spec.volumes[].persistentVolumeClaim",
    "ImageVolumeSource": "spec.volumes[].image",
    "Container": "spec.containers[]",
    "ContainerPort": "spec.containers[].ports[]",
    "EnvVar": "spec.containers[].env[]",
    "EnvVarSource": "spec.containers[].env[].valueFrom",
    "ObjectFieldSelector": "spec.containers[].env[].valueFrom.fieldRef",
    "ResourceFieldSelector": "spec.containers[].env[].valueFrom.resourceFieldRef",
    "KeySelector": "spec.containers[].env[].valueFrom.configMapKeyRef",
    "EnvFromSource": "spec.containers[].envFrom[]",
    "ObjectRef": "spec.containers[].envFrom[].configMapRef",
    "ResourceRequirements": "spec.containers[].resources",
    "VolumeMount": "spec.containers[].volumeMounts[]",
    "Probe": "spec.containers[].livenessProbe",
    "ExecAction": "spec.containers[].livenessProbe.exec",
    "HTTPGetAction": "spec.containers[].livenessProbe.httpGet",
    "HTTPHeader": "spec.containers[].livenessProbe.httpGet.httpHeaders[]",
    "TCPSocketAction": "spec.containers[].livenessProbe.tcpSocket",
    "Lifecycle": "spec.containers[].lifecycle",
    "LifecycleHandler": "spec.containers[].lifecycle.preStop",
    "SecurityContext": "spec.containers[].securityContext",
    "Capabilities": "spec.containers[].securityContext.capabilities",
}

_NOT_YET = "not implemented yet; ignored"
_NOT_YET_REFUSED = "not implemented yet"
_SCHEDULING = "kubelite runs every pod on this machine (no scheduling); ignored"
_ONE_NODE = "kubelite runs on one machine and supports"
_WINDOWS = "Windows only; ignored on Linux"
_SELINUX = "SELinux labels are not applied; ignored"
_SECCOMP_ANNOTATION = ('deprecated (non-functional on the kubelet since v1.27); applied where the "seccompProfile" '
                       "field is absent, as a cluster's API server copies it into the field; use the "
                       '"seccompProfile" field instead')

#: One section per type (`[Type]`), one line per field: `field  status  note`; the note is the
#: test that proves an implemented field (a test function's name in tests/), else the message.
TABLE = f"""
[Pod]
apiVersion                    implemented test_wrong_kinds_are_errors
kind                          implemented test_wrong_kinds_are_errors
metadata                      implemented test_kubernetes_defaults_are_applied
spec                          implemented test_kubernetes_defaults_are_applied
status                        implemented test_status_is_the_agents_to_write

[ObjectMeta]
name                          implemented test_every_kind_of_name_is_checked_as_kubernetes_does
generateName                  warned      generated names need the API server; metadata.name names the pod; ignored
namespace                     implemented test_an_empty_namespace_is_the_default_one_as_for_a_static_pod
selfLink                      warned      set by the API server; ignored
uid                           implemented test_an_explicit_uid_is_kept
resourceVersion               warned      set by the API server; ignored
generation                    warned      set by the API server; ignored
creationTimestamp             warned      set by the API server; ignored
deletionTimestamp             warned      set by the API server; ignored
deletionGracePeriodSeconds    warned      set by the API server; ignored
labels                        implemented test_policy_fields_change_neither_sandbox_nor_uid
annotations                   implemented test_kubernetes_rules_and_messages
ownerReferences               warned      kubelite has no garbage collector of owned objects; ignored
finalizers                    warned      kubelite deletes a pod when its manifest goes; ignored
managedFields                 warned      set by the API server; ignored

[PodSpec]
volumes                       implemented test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
initContainers                implemented test_init_containers_then_sidecar_then_app
containers                    implemented test_a_manifest_becomes_a_running_pod
ephemeralContainers           refused     Forbidden: cannot be set on create (as the API server says)
restartPolicy                 implemented test_every_restart_policy_and_exit_code
terminationGracePeriodSeconds implemented test_a_container_that_handles_sigterm_stops_without_sigkill
activeDeadlineSeconds         implemented test_active_deadline_fails_the_pod
dnsPolicy                     implemented test_dns_policy_and_dns_config_are_decided_as_the_kubelet_does
nodeSelector                  warned      {_SCHEDULING}
serviceAccountName            warned      readable through fieldRef; no token is mounted
serviceAccount                warned      deprecated alias of serviceAccountName; no token is mounted; ignored
automountServiceAccountToken  warned      no service account token is mounted; ignored
nodeName                      warned      kubelite runs every pod on this machine, whatever node it names
hostNetwork                   implemented test_pod_ip_comes_from_the_sandbox_and_host_network_pods_take_the_host_ip
hostPID                       warned      {_NOT_YET}
hostIPC                       warned      {_NOT_YET}
shareProcessNamespace         implemented test_share_process_namespace_lets_containers_see_each_other
securityContext               implemented test_user
imagePullSecrets              warned      credentials come from the registry configuration (--registry-config); ignored
hostname                      implemented test_spec_hostname_is_the_sandboxs_hostname
subdomain                     implemented test_the_agent_names_the_pod_by_hostname_subdomain_and_namespace
affinity                      warned      {_SCHEDULING}
schedulerName                 warned      {_SCHEDULING}
tolerations                   warned      {_SCHEDULING}
hostAliases                   implemented test_the_hosts_file_is_the_kubelet_s_managed_file
priorityClassName             warned      {_SCHEDULING}
priority                      warned      {_SCHEDULING}
dnsConfig                     implemented test_dns_policy_and_dns_config_are_decided_as_the_kubelet_does
readinessGates                warned      nothing on one machine sets custom conditions; ignored
runtimeClassName              warned      kubelite has one runtime (runc); ignored
enableServiceLinks            warned      there are no Services to link; ignored
preemptionPolicy              warned      {_SCHEDULING}
overhead                      warned      {_SCHEDULING}
topologySpreadConstraints     warned      {_SCHEDULING}
setHostnameAsFQDN             warned      {_NOT_YET}
os                            warned      kubelite runs Linux pods; ignored
hostUsers                     warned      user namespaces are not implemented yet; ignored
schedulingGates               warned      {_SCHEDULING}
resourceClaims                warned      dynamic resource allocation needs a cluster; ignored
resources                     implemented test_pod_level_resources_limit_the_pods_cgroup
hostnameOverride              warned      (Kubernetes 1.34) {_NOT_YET}

[PodSecurityContext]
seLinuxOptions                warned      {_SELINUX}
windowsOptions                warned      {_WINDOWS}
runAsUser                     implemented test_user
runAsGroup                    implemented test_user
runAsNonRoot                  implemented test_run_as_non_root_refuses_root_and_unverifiable_users
supplementalGroups            implemented test_supplemental_groups_and_fs_group_become_additional_gids
supplementalGroupsPolicy      warned      {_NOT_YET}
fsGroup                       implemented test_fs_group_owns_empty_dir_and_configmap_volumes_seen_from_inside
sysctls                       implemented test_safe_and_allowed_sysctls_are_set_in_the_pods_namespaces
fsGroupChangePolicy           implemented test_on_root_mismatch_skips_a_volume_whose_root_is_right_already
seccompProfile                implemented test_runtime_default_filters_syscalls_and_unconfined_does_not
appArmorProfile               implemented test_without_apparmor_a_pod_requiring_a_profile_fails_and_unconfined_runs
seLinuxChangePolicy           warned      {_SELINUX}

[Volume]
name                          implemented test_invalid_env_sources_and_volumes_are_refused
emptyDir                      implemented test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
hostPath                      implemented test_hostpath_types_are_checked_with_the_kubelets_messages
configMap                     implemented test_a_configmap_edit_shows_up_in_the_mounted_file_without_a_restart
secret                        implemented test_env_and_files_from_a_secret_on_a_tmpfs
downwardAPI                   implemented test_a_downward_api_volume_follows_label_edits_in_place
projected                     implemented test_a_projected_volume_of_configmap_secret_and_downward_api_is_updated_in_place
persistentVolumeClaim         implemented test_a_claim_is_bound_to_a_directory_under_the_state_root_and_a_pod_mounts_it
ephemeral                     refused     a generic ephemeral volume needs a storage provisioner
image                         implemented test_an_image_volume_is_read_only_with_the_images_files
csi                           refused     a CSI driver needs a cluster
gcePersistentDisk             refused     a cloud disk needs a cluster
awsElasticBlockStore          refused     a cloud disk needs a cluster
azureDisk                     refused     a cloud disk needs a cluster
azureFile                     refused     a cloud file share needs a cluster
cinder                        refused     a cloud disk needs a cluster
vsphereVolume                 refused     a cloud disk needs a cluster
photonPersistentDisk          refused     a cloud disk needs a cluster
portworxVolume                refused     a storage system's volume needs a cluster
scaleIO                       refused     a storage system's volume needs a cluster
storageos                     refused     a storage system's volume needs a cluster
quobyte                       refused     a storage system's volume needs a cluster
flocker                       refused     a storage system's volume needs a cluster
flexVolume                    refused     a volume plugin needs a cluster
nfs                           refused     a network file system needs a cluster's storage
iscsi                         refused     a network disk needs a cluster's storage
fc                            refused     a network disk needs a cluster's storage
rbd                           refused     a network disk needs a cluster's storage
cephfs                        refused     a network file system needs a cluster's storage
glusterfs                     refused     a network file system needs a cluster's storage
gitRepo                       refused     deprecated and disabled in Kubernetes; clone in an init container

[EmptyDirVolumeSource]
medium                        implemented test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit
sizeLimit                     implemented test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit

[HostPathVolumeSource]
path                          implemented test_hostpath_types_are_checked_with_the_kubelets_messages
type                          implemented test_host_path_types_are_checked_with_the_kubelets_messages

[ConfigMapVolumeSource]
name                          implemented test_a_configmap_edit_shows_up_in_the_mounted_file_without_a_restart
items                         implemented test_items_pick_keys_to_paths_with_their_modes
defaultMode                   implemented test_items_pick_keys_to_paths_with_their_modes
optional                      implemented test_optional_volumes_of_missing_objects_are_empty

[SecretVolumeSource]
secretName                    implemented test_env_and_files_from_a_secret_on_a_tmpfs
items                         implemented test_items_pick_keys_to_paths_with_their_modes
defaultMode                   implemented test_items_pick_keys_to_paths_with_their_modes
optional                      implemented test_optional_volumes_of_missing_objects_are_empty

[KeyToPath]
key                           implemented test_items_pick_keys_to_paths_with_their_modes
path                          implemented test_items_pick_keys_to_paths_with_their_modes
mode                          implemented test_items_pick_keys_to_paths_with_their_modes

[ProjectedVolumeSource]
sources                       implemented test_a_projected_volume_merges_its_sources_with_items_modes_and_default_mode
defaultMode                   implemented test_a_projected_volume_merges_its_sources_with_items_modes_and_default_mode

[PersistentVolumeClaimVolumeSource]
claimName                     implemented test_a_claim_is_bound_to_a_directory_under_the_state_root_and_a_pod_mounts_it
readOnly                      implemented test_read_only_claim_volume_is_mounted_read_only

[ImageVolumeSource]
reference                     implemented test_an_image_volume_is_read_only_with_the_images_files
pullPolicy                    implemented test_an_image_volume_is_pulled_by_its_policy_and_mounted_read_only

[DownwardAPIVolumeSource]
items                         implemented test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
defaultMode                   implemented test_downward_api_files_hold_labels_annotations_name_namespace_and_uid

[DownwardAPIVolumeFile]
path                          implemented test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
fieldRef                      implemented test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
resourceFieldRef              implemented test_resource_field_refs_divide_and_round_up_as_the_kubelet
mode                          implemented test_downward_api_files_hold_labels_annotations_name_namespace_and_uid

[Container]
name                          implemented test_every_kind_of_name_is_checked_as_kubernetes_does
image                         implemented test_pull_policies
command                       implemented test_command_and_args_merge_with_the_image_by_the_kubernetes_table
args                          implemented test_command_and_args_merge_with_the_image_by_the_kubernetes_table
workingDir                    implemented test_cwd_is_working_dir_else_the_image_working_dir_else_root
ports                         implemented test_a_pod_ip_answers_from_the_host_and_its_host_port_on_the_host
envFrom                       implemented test_env_from_configmap_and_secret_keys_with_expansion_in_order
env                           implemented test_env_values_expand_only_earlier_entries
resources                     implemented test_resources_become_cgroup_settings_as_the_kubelet_computes_them
resizePolicy                  warned      resources are not resized in place; an edit restarts the container
restartPolicy                 implemented test_a_sidecar_is_restarted_whatever_the_pod_policy_while_the_app_runs
restartPolicyRules            warned      (Kubernetes 1.34) {_NOT_YET}
volumeMounts                  implemented test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
volumeDevices                 warned      block volumes need a PersistentVolumeClaim of volumeMode Block; ignored
livenessProbe                 implemented test_a_hung_application_is_found_by_its_liveness_probe_and_restarted
readinessProbe                implemented test_readiness_flips_ready_without_restarts
startupProbe                  implemented test_a_startup_probe_keeps_liveness_from_killing_a_slow_starter
lifecycle                     implemented test_prestop_runs_before_sigterm_and_a_failing_hook_is_reported
terminationMessagePath        implemented test_termination_messages_from_the_file_and_from_the_log
terminationMessagePolicy      implemented test_termination_messages_from_the_file_and_from_the_log
imagePullPolicy               implemented test_pull_policies
securityContext               implemented test_the_pod_shares_dev_shm_and_security_settings_apply
stdin                         implemented test_tty_gives_a_terminal_and_stdin_stays_open
stdinOnce                     implemented test_stdin_once_closes_the_containers_stdin_when_the_first_attach_ends
tty                           implemented test_tty_gives_a_terminal_and_stdin_stays_open

[ContainerPort]
name                          implemented test_targets_resolve_named_ports_hosts_paths_and_the_first_run
containerPort                 implemented test_a_pod_ip_answers_from_the_host_and_its_host_port_on_the_host
hostPort                      implemented test_a_pod_ip_answers_from_the_host_and_its_host_port_on_the_host
hostIP                        implemented test_host_ports_are_validated_as_kubernetes_validates_them
protocol                      implemented test_host_ports_are_validated_as_kubernetes_validates_them

[EnvVar]
name                          implemented test_env_values_expand_only_earlier_entries
value                         implemented test_env_values_expand_only_earlier_entries
valueFrom                     implemented test_field_refs_read_the_pod_and_its_status

[EnvVarSource]
fieldRef                      implemented test_field_refs_read_the_pod_and_its_status
resourceFieldRef              implemented test_resource_field_refs_divide_and_round_up_as_the_kubelet
configMapKeyRef               implemented test_a_configmap_edit_shows_up_in_the_mounted_file_without_a_restart
secretKeyRef                  implemented test_env_and_files_from_a_secret_on_a_tmpfs

[ObjectFieldSelector]
fieldPath                     implemented test_field_refs_read_the_pod_and_its_status
apiVersion                    implemented test_field_refs_read_the_pod_and_its_status

[ResourceFieldSelector]
containerName                 implemented test_resource_field_refs_divide_and_round_up_as_the_kubelet
resource                      implemented test_resource_field_refs_divide_and_round_up_as_the_kubelet
divisor                       implemented test_resource_field_refs_divide_and_round_up_as_the_kubelet

[KeySelector]
name                          implemented test_a_missing_object_or_key_is_the_kubelets_message
key                           implemented test_a_missing_object_or_key_is_the_kubelets_message
optional                      implemented test_optional_references_to_missing_objects_or_keys_are_left_out

[EnvFromSource]
prefix                        implemented test_env_from_configmap_and_secret_keys_with_expansion_in_order
configMapRef                  implemented test_env_from_configmap_and_secret_keys_with_expansion_in_order
secretRef                     implemented test_env_from_configmap_and_secret_keys_with_expansion_in_order

[ObjectRef]
name                          implemented test_env_from_configmap_and_secret_keys_with_expansion_in_order
optional                      implemented test_optional_references_to_missing_objects_or_keys_are_left_out

[ResourceRequirements]
limits                        implemented test_resources_become_cgroup_settings_as_the_kubelet_computes_them
requests                      implemented test_resources_become_cgroup_settings_as_the_kubelet_computes_them
claims                        warned      dynamic resource allocation needs a cluster; ignored

[VolumeMount]
name                          implemented test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
readOnly                      implemented test_a_configmap_edit_shows_up_in_the_mounted_file_without_a_restart
recursiveReadOnly             warned      {_NOT_YET}
mountPath                     implemented test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
subPath                       implemented test_a_sub_path_is_resolved_inside_the_volume_following_links_that_stay_inside
mountPropagation              warned      {_NOT_YET}
subPathExpr                   implemented test_sub_path_expr_gives_each_pod_its_own_directory_by_pod_name

[Probe]
exec                          implemented test_http_tcp_and_exec_variants_give_the_kubelets_verdicts
httpGet                       implemented test_http_tcp_and_exec_variants_give_the_kubelets_verdicts
tcpSocket                     implemented test_http_tcp_and_exec_variants_give_the_kubelets_verdicts
grpc                          warned      not implemented yet; the probe does not run
initialDelaySeconds           implemented test_a_startup_probe_holds_liveness_back_until_it_succeeds
timeoutSeconds                implemented test_an_exec_probe_that_hangs_past_its_timeout_fails_and_is_killed
periodSeconds                 implemented test_a_hung_application_is_found_by_its_liveness_probe_and_restarted
successThreshold              implemented test_readiness_needs_success_threshold_successes_and_never_holds
failureThreshold              implemented test_a_hung_application_is_found_by_its_liveness_probe_and_restarted
terminationGracePeriodSeconds warned      a liveness kill uses the pod's grace period; ignored

[ExecAction]
command                       implemented test_http_tcp_and_exec_variants_give_the_kubelets_verdicts

[HTTPGetAction]
path                          implemented test_http_200_succeeds_and_sends_the_kubelets_headers
port                          implemented test_targets_resolve_named_ports_hosts_paths_and_the_first_run
host                          implemented test_targets_resolve_named_ports_hosts_paths_and_the_first_run
scheme                        implemented test_https_is_not_verified
httpHeaders                   implemented test_http_headers_may_replace_host_user_agent_and_accept

[HTTPHeader]
name                          implemented test_http_headers_may_replace_host_user_agent_and_accept
value                         implemented test_http_headers_may_replace_host_user_agent_and_accept

[TCPSocketAction]
port                          implemented test_tcp_open_and_closed_ports
host                          implemented test_targets_resolve_named_ports_hosts_paths_and_the_first_run

[Lifecycle]
postStart                     implemented test_poststart_hook_finishes_before_the_container_is_reported_running
preStop                       implemented test_prestop_runs_before_sigterm_and_a_failing_hook_is_reported
stopSignal                    implemented test_stop_signal_is_the_manifest_s_then_the_image_s_then_term

[LifecycleHandler]
exec                          implemented test_prestop_runs_before_sigterm
httpGet                       implemented test_prestop_httpget_reaches_the_pod_before_sigterm_and_the_termination_message_shows_it
tcpSocket                     warned      deprecated and never run: the hook fails when it is due, as with the kubelet
sleep                         implemented test_a_prestop_sleep_delays_sigterm_within_the_grace_period

[SecurityContext]
capabilities                  implemented test_capabilities
privileged                    implemented test_a_privileged_container_gets_sysfs_and_cgroups_read_write
seLinuxOptions                warned      {_SELINUX}
windowsOptions                warned      {_WINDOWS}
runAsUser                     implemented test_user
runAsGroup                    implemented test_user
runAsNonRoot                  implemented test_run_as_non_root_accepts_a_non_root_uid
readOnlyRootFilesystem        implemented test_root_is_read_only_only_when_the_manifest_says_so
allowPrivilegeEscalation      implemented test_no_new_privileges_exactly_when_privilege_escalation_is_disallowed
procMount                     warned      {_NOT_YET}
seccompProfile                implemented test_a_localhost_profile_below_the_seccomp_root_blocks_mkdir
appArmorProfile               implemented test_apparmor_profile_choice_on_a_host_with_apparmor

[Capabilities]
add                           implemented test_capabilities
drop                          implemented test_capabilities
"""


@dataclass(frozen=True)
class FieldSupport:
    """What kubelite does with one field of one type."""

    type: str      # the Kubernetes type, as kubelite's model class names it: "PodSpec"
    field: str     # the wire name: "nodeSelector"
    status: str    # implemented | warned | refused
    note: str      # implemented: the name of the test (in tests/) that proves it; otherwise the message

    @property
    def path(self) -> str:
        """The field's wire path in a Pod, `[]` standing for every item of a list."""
        parent = PATHS[self.type]
        return f"{parent}.{self.field}" if parent else self.field


def _parse(text: str) -> dict[tuple[str, str], FieldSupport]:
    """`[Type]` starts a section; each line below it is `field  status  note`."""
    fields: dict[tuple[str, str], FieldSupport] = {}
    type_ = ""
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        if line.startswith("["):
            type_ = line.strip("[] ")
            continue
        field, status, note = line.split(None, 2)
        if status not in STATUSES or type_ not in PATHS or (type_, field) in fields:
            raise ValueError(f"field table: bad line {line!r}")
        fields[(type_, field)] = FieldSupport(type_, field, status, note.strip())
    return fields


#: (type, wire name) → its support, in table order.
FIELDS = _parse(TABLE)


def lookup(type_: str, field: str) -> FieldSupport | None:
    return FIELDS.get((type_, field))


#: Annotations the kubelet acts on, by key (a trailing `/`: every key with that prefix), with their
#: status and message: a pod that sets one is told what kubelite does with it.
ANNOTATIONS: dict[str, tuple[str, str]] = {
    "container.apparmor.security.beta.kubernetes.io/": (
        WARNED, 'deprecated since v1.30; use the "appArmorProfile" field instead'),
    "seccomp.security.alpha.kubernetes.io/pod": (WARNED, _SECCOMP_ANNOTATION),
    "container.seccomp.security.alpha.kubernetes.io/": (WARNED, _SECCOMP_ANNOTATION),
}
#: Compute resources of `resources.limits` and `requests` that kubelite applies to the container's
#: cgroup; any other resource is warned about with `RESOURCE_NOTES` (by name or prefix).
APPLIED_RESOURCES = ("cpu", "memory")
RESOURCE_NOTES = {
    "ephemeral-storage": "local ephemeral storage is not limited; ignored",
    "hugepages-": "huge pages are not allocated; ignored",
    "": "extended resources are not allocated (kubelite has no device plugins); ignored",
}


def annotation_support(key: str) -> tuple[str, str] | None:
    """(status, message) for an annotation the kubelet acts on, or None for any other annotation."""
    for known, support in ANNOTATIONS.items():
        if key == known or (known.endswith("/") and key.startswith(known)):
            return support
    return None


def resource_note(name: str, kind: str) -> str | None:
    """The warning for a resource of `kind` (limits, requests) that kubelite does not apply, or None:
    for cpu and memory, and for an ephemeral-storage request (a promise to a scheduler, met here)."""
    if name in APPLIED_RESOURCES or (name == "ephemeral-storage" and kind == "requests"):
        return None
    return next(note for prefix, note in RESOURCE_NOTES.items() if name.startswith(prefix))


def volume_types() -> tuple[str, ...]:
    """Every volume source of Kubernetes 1.32, by wire name."""
    return tuple(f.field for f in FIELDS.values() if f.type == "Volume" and f.field != "name")


def supported_volume_types() -> tuple[str, ...]:
    return tuple(f.field for f in FIELDS.values() if f.type == "Volume" and f.field != "name"
                 and f.status == IMPLEMENTED)


def refusal(support: FieldSupport) -> str:
    """The error message for a refused field that a manifest sets."""
    if support.type == "Volume":
        supported = ", ".join(supported_volume_types())
        if support.note == _NOT_YET_REFUSED:
            return f'Unsupported value: "{support.field}": {_NOT_YET_REFUSED}; kubelite supports {supported}'
        return f'Unsupported value: "{support.field}": {_ONE_NODE} {supported} ({support.note})'
    return support.note


# ---------------------------------------------------------------------------------- the docs

_STATUS_WORDS = {IMPLEMENTED: "implemented", WARNED: "warned: runs, ignoring the field",
                 REFUSED: "refused: the pod is invalid"}


def markdown() -> str:
    """The field table of docs/manifests.md, one row per field in table order."""
    lines = ["| field | status | test, or what kubelite says |", "|---|---|---|"]
    for f in FIELDS.values():
        note = f"`{f.note}`" if f.status == IMPLEMENTED else \
            (refusal(f) if f.status == REFUSED else f.note)
        note = note.replace("|", "\\|")
        lines.append(f"| `{f.path}` | {f.status} | {note} |")
    for key, (status, note) in ANNOTATIONS.items():
        lines.append(f"| `metadata.annotations[{key}{'*' if key.endswith('/') else ''}]` | {status} | {note} |")
    for kind in ("limits", "requests"):
        for prefix, note in RESOURCE_NOTES.items():
            name = {"": "*", "hugepages-": "hugepages-*"}.get(prefix, prefix)
            if resource_note(prefix or "example.com/device", kind) is None:
                continue
            lines.append(f"| `{PATHS['ResourceRequirements']}.{kind}[{name}]` | {WARNED} | {note} |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- field table: generated by python -m kubelite.api.fieldsupport --markdown -->"
END = "<!-- end of the field table -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubelite.api.fieldsupport",
                                     description="Print kubelite's Pod field table.")
    parser.add_argument("--markdown", action="store_true", help="as the Markdown table of docs/manifests.md")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
    else:
        for f in FIELDS.values():
            sys.stdout.write(f"{f.path}\t{f.status}\t{f.note}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
