"""What kubelite does with every field of a Kubernetes 1.32 Pod: one table, one line per field.

Owns: `FIELDS`, the support status of each field of the Pod and the types a pod spec is made of
(`Type.field` → `implemented`, `warned` or `refused`), the wire paths those types sit at
(`PATHS`), the refusal message of an unsupported volume type, and the Markdown field table of
docs/manifests.md (`python -m kubelite.api.fieldsupport --markdown`).

* `implemented`: kubelite acts on the field; the note names the test that proves it
  (`tests/FILE::TEST`, checked by tests/test_fieldsupport.py).
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

#: One line per field: `Type.field  status  note` (the note: the test for implemented fields,
#: the message otherwise).
TABLE = f"""
Pod.apiVersion                              implemented  test_api.py::test_wrong_kinds_are_errors
Pod.kind                                    implemented  test_api.py::test_wrong_kinds_are_errors
Pod.metadata                                implemented  test_api.py::test_kubernetes_defaults_are_applied
Pod.spec                                    implemented  test_api.py::test_kubernetes_defaults_are_applied
Pod.status                                  implemented  test_fieldsupport.py::test_status_is_the_agents_to_write
ObjectMeta.name                             implemented  test_names.py::test_every_kind_of_name_is_checked_as_kubernetes_does
ObjectMeta.generateName                     warned       metadata.generateName needs the API server; a static pod needs metadata.name; ignored
ObjectMeta.namespace                        implemented  test_names.py::test_an_empty_namespace_is_the_default_one_as_for_a_static_pod
ObjectMeta.selfLink                         warned       set by the API server; ignored
ObjectMeta.uid                              implemented  test_api.py::test_an_explicit_uid_is_kept
ObjectMeta.resourceVersion                  warned       set by the API server; ignored
ObjectMeta.generation                       warned       set by the API server; ignored
ObjectMeta.creationTimestamp                warned       set by the API server; ignored
ObjectMeta.deletionTimestamp                warned       set by the API server; ignored
ObjectMeta.deletionGracePeriodSeconds       warned       set by the API server; ignored
ObjectMeta.labels                           implemented  test_api.py::test_policy_fields_change_neither_sandbox_nor_uid
ObjectMeta.annotations                      implemented  test_names.py::test_kubernetes_rules_and_messages
ObjectMeta.ownerReferences                  warned       kubelite has no garbage collector of owned objects; ignored
ObjectMeta.finalizers                       warned       kubelite deletes a pod when its manifest goes; ignored
ObjectMeta.managedFields                    warned       set by the API server; ignored
PodSpec.volumes                             implemented  test_volumes_real.py::test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
PodSpec.initContainers                      implemented  test_agent.py::test_init_containers_then_sidecar_then_app
PodSpec.containers                          implemented  test_agent.py::test_a_manifest_becomes_a_running_pod
PodSpec.ephemeralContainers                 refused      Forbidden: cannot be set on create (as the API server says)
PodSpec.restartPolicy                       implemented  test_agent.py::test_every_restart_policy_and_exit_code
PodSpec.terminationGracePeriodSeconds       implemented  test_agent.py::test_a_container_that_handles_sigterm_stops_without_sigkill
PodSpec.activeDeadlineSeconds               implemented  test_agent.py::test_active_deadline_fails_the_pod
PodSpec.dnsPolicy                           warned       {_NOT_YET}
PodSpec.nodeSelector                        warned       {_SCHEDULING}
PodSpec.serviceAccountName                  warned       readable through fieldRef; no token is mounted
PodSpec.serviceAccount                      warned       deprecated alias of serviceAccountName; no token is mounted; ignored
PodSpec.automountServiceAccountToken        warned       no service account token is mounted; ignored
PodSpec.nodeName                            warned       kubelite runs every pod on this machine, whatever node it names
PodSpec.hostNetwork                         implemented  test_network.py::test_pod_ip_comes_from_the_sandbox_and_host_network_pods_take_the_host_ip
PodSpec.hostPID                             warned       {_NOT_YET}
PodSpec.hostIPC                             warned       {_NOT_YET}
PodSpec.shareProcessNamespace               implemented  test_runtime_real.py::test_share_process_namespace_lets_containers_see_each_other
PodSpec.securityContext                     implemented  test_ocispec.py::test_user
PodSpec.imagePullSecrets                    warned       credentials come from the registry configuration (--registry-config); ignored
PodSpec.hostname                            implemented  test_ocispec.py::test_the_sandbox_is_catatonit_pausing_in_its_own_namespaces_with_the_pod_hostname
PodSpec.subdomain                           warned       {_NOT_YET}
PodSpec.affinity                            warned       {_SCHEDULING}
PodSpec.schedulerName                       warned       {_SCHEDULING}
PodSpec.tolerations                         warned       {_SCHEDULING}
PodSpec.hostAliases                         warned       {_NOT_YET}
PodSpec.priorityClassName                   warned       {_SCHEDULING}
PodSpec.priority                            warned       {_SCHEDULING}
PodSpec.dnsConfig                           warned       {_NOT_YET}
PodSpec.readinessGates                      warned       nothing on one machine sets custom conditions; ignored
PodSpec.runtimeClassName                    warned       kubelite has one runtime (runc); ignored
PodSpec.enableServiceLinks                  warned       there are no Services to link; ignored
PodSpec.preemptionPolicy                    warned       {_SCHEDULING}
PodSpec.overhead                            warned       {_SCHEDULING}
PodSpec.topologySpreadConstraints           warned       {_SCHEDULING}
PodSpec.setHostnameAsFQDN                   warned       {_NOT_YET}
PodSpec.os                                  warned       kubelite runs Linux pods; ignored
PodSpec.hostUsers                           warned       user namespaces are not implemented yet; ignored
PodSpec.schedulingGates                     warned       {_SCHEDULING}
PodSpec.resourceClaims                      warned       dynamic resource allocation needs a cluster; ignored
PodSpec.resources                           warned       pod-level resources are not implemented yet; ignored
PodSpec.hostnameOverride                    warned       (Kubernetes 1.34) {_NOT_YET}
PodSecurityContext.seLinuxOptions           warned       {_SELINUX}
PodSecurityContext.windowsOptions           warned       {_WINDOWS}
PodSecurityContext.runAsUser                implemented  test_ocispec.py::test_user
PodSecurityContext.runAsGroup               implemented  test_ocispec.py::test_user
PodSecurityContext.runAsNonRoot             implemented  test_ocispec.py::test_run_as_non_root_refuses_root_and_unverifiable_users
PodSecurityContext.supplementalGroups       implemented  test_ocispec.py::test_supplemental_groups_and_fs_group_become_additional_gids
PodSecurityContext.supplementalGroupsPolicy warned       {_NOT_YET}
PodSecurityContext.fsGroup                  warned       a supplementary group only: volume ownership is not changed yet
PodSecurityContext.sysctls                  warned       {_NOT_YET}
PodSecurityContext.fsGroupChangePolicy      warned       {_NOT_YET}
PodSecurityContext.seccompProfile           warned       {_NOT_YET}
PodSecurityContext.appArmorProfile          warned       {_NOT_YET}
PodSecurityContext.seLinuxChangePolicy      warned       {_SELINUX}
Volume.name                                 implemented  test_podconfig.py::test_invalid_env_sources_and_volumes_are_refused
Volume.emptyDir                             implemented  test_volumes_real.py::test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
Volume.hostPath                             implemented  test_volumes_real.py::test_hostpath_types_are_checked_with_the_kubelets_messages
Volume.configMap                            implemented  test_volumes_real.py::test_a_configmap_edit_shows_up_in_the_mounted_file_without_a_restart
Volume.secret                               implemented  test_volumes_real.py::test_env_and_files_from_a_secret_on_a_tmpfs
Volume.downwardAPI                          implemented  test_configs_agent.py::test_a_downward_api_volume_follows_label_edits_in_place
Volume.projected                            refused      not implemented yet
Volume.persistentVolumeClaim                refused      not implemented yet
Volume.ephemeral                            refused      a generic ephemeral volume needs a storage provisioner
Volume.image                                refused      not implemented yet
Volume.csi                                  refused      a CSI driver needs a cluster
Volume.gcePersistentDisk                    refused      a cloud disk needs a cluster
Volume.awsElasticBlockStore                 refused      a cloud disk needs a cluster
Volume.azureDisk                            refused      a cloud disk needs a cluster
Volume.azureFile                            refused      a cloud file share needs a cluster
Volume.cinder                               refused      a cloud disk needs a cluster
Volume.vsphereVolume                        refused      a cloud disk needs a cluster
Volume.photonPersistentDisk                 refused      a cloud disk needs a cluster
Volume.portworxVolume                       refused      a storage system's volume needs a cluster
Volume.scaleIO                              refused      a storage system's volume needs a cluster
Volume.storageos                            refused      a storage system's volume needs a cluster
Volume.quobyte                              refused      a storage system's volume needs a cluster
Volume.flocker                              refused      a storage system's volume needs a cluster
Volume.flexVolume                           refused      a volume plugin needs a cluster
Volume.nfs                                  refused      a network file system needs a cluster's storage
Volume.iscsi                                refused      a network disk needs a cluster's storage
Volume.fc                                   refused      a network disk needs a cluster's storage
Volume.rbd                                  refused      a network disk needs a cluster's storage
Volume.cephfs                               refused      a network file system needs a cluster's storage
Volume.glusterfs                            refused      a network file system needs a cluster's storage
Volume.gitRepo                              refused      deprecated and disabled in Kubernetes; clone in an init container
EmptyDirVolumeSource.medium                 implemented  test_volumes_real.py::test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit
EmptyDirVolumeSource.sizeLimit              implemented  test_volumes_real.py::test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit
HostPathVolumeSource.path                   implemented  test_volumes_real.py::test_hostpath_types_are_checked_with_the_kubelets_messages
HostPathVolumeSource.type                   implemented  test_volumes.py::test_host_path_types_are_checked_with_the_kubelets_messages
ConfigMapVolumeSource.name                  implemented  test_podconfig.py::test_a_configmap_volume_holds_every_key_with_the_default_mode_0644_binary_data_too
ConfigMapVolumeSource.items                 implemented  test_podconfig.py::test_items_pick_keys_to_paths_with_their_modes
ConfigMapVolumeSource.defaultMode           implemented  test_podconfig.py::test_a_configmap_volume_holds_every_key_with_the_default_mode_0644_binary_data_too
ConfigMapVolumeSource.optional              implemented  test_podconfig.py::test_optional_volumes_of_missing_objects_are_empty
SecretVolumeSource.secretName               implemented  test_volumes_real.py::test_env_and_files_from_a_secret_on_a_tmpfs
SecretVolumeSource.items                    implemented  test_podconfig.py::test_items_pick_keys_to_paths_with_their_modes
SecretVolumeSource.defaultMode              implemented  test_podconfig.py::test_items_pick_keys_to_paths_with_their_modes
SecretVolumeSource.optional                 implemented  test_podconfig.py::test_optional_volumes_of_missing_objects_are_empty
KeyToPath.key                               implemented  test_podconfig.py::test_items_pick_keys_to_paths_with_their_modes
KeyToPath.path                              implemented  test_podconfig.py::test_items_pick_keys_to_paths_with_their_modes
KeyToPath.mode                              implemented  test_podconfig.py::test_items_pick_keys_to_paths_with_their_modes
DownwardAPIVolumeSource.items               implemented  test_podconfig.py::test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
DownwardAPIVolumeSource.defaultMode         implemented  test_podconfig.py::test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
DownwardAPIVolumeFile.path                  implemented  test_podconfig.py::test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
DownwardAPIVolumeFile.fieldRef              implemented  test_podconfig.py::test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
DownwardAPIVolumeFile.resourceFieldRef      implemented  test_podconfig.py::test_resource_field_refs_divide_and_round_up_as_the_kubelet
DownwardAPIVolumeFile.mode                  implemented  test_podconfig.py::test_downward_api_files_hold_labels_annotations_name_namespace_and_uid
Container.name                              implemented  test_names.py::test_every_kind_of_name_is_checked_as_kubernetes_does
Container.image                             implemented  test_pulls.py::test_pull_policies
Container.command                           implemented  test_ocispec.py::test_command_and_args_merge_with_the_image_by_the_kubernetes_table
Container.args                              implemented  test_ocispec.py::test_command_and_args_merge_with_the_image_by_the_kubernetes_table
Container.workingDir                        implemented  test_ocispec.py::test_cwd_is_working_dir_else_the_image_working_dir_else_root
Container.ports                             implemented  test_network_real.py::test_a_pod_ip_answers_from_the_host_and_its_host_port_on_the_host
Container.envFrom                           implemented  test_podconfig.py::test_env_from_configmap_and_secret_keys_with_expansion_in_order
Container.env                               implemented  test_ocispec.py::test_env_values_expand_only_earlier_entries
Container.resources                         implemented  test_ocispec.py::test_resources_become_cgroup_settings_as_the_kubelet_computes_them
Container.resizePolicy                      warned       resources are not resized in place; an edit restarts the container
Container.restartPolicy                     implemented  test_core_plan.py::test_a_sidecar_is_restarted_whatever_the_pod_policy_while_the_app_runs
Container.restartPolicyRules                warned       (Kubernetes 1.34) {_NOT_YET}
Container.volumeMounts                      implemented  test_volumes_real.py::test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
Container.volumeDevices                     warned       block volumes need a PersistentVolumeClaim of volumeMode Block; ignored
Container.livenessProbe                     implemented  test_probes_real.py::test_a_hung_application_is_found_by_its_liveness_probe_and_restarted
Container.readinessProbe                    implemented  test_probes_real.py::test_readiness_flips_ready_without_restarts
Container.startupProbe                      implemented  test_probes_real.py::test_a_startup_probe_keeps_liveness_from_killing_a_slow_starter
Container.lifecycle                         implemented  test_runtime_real.py::test_prestop_runs_before_sigterm_and_a_failing_hook_is_reported
Container.terminationMessagePath            warned       the termination message is not read yet; ignored
Container.terminationMessagePolicy          warned       the termination message is not read yet; ignored
Container.imagePullPolicy                   implemented  test_pulls.py::test_pull_policies
Container.securityContext                   implemented  test_runtime_real.py::test_the_pod_shares_dev_shm_and_security_settings_apply
Container.stdin                             warned       the container gets no open stdin yet; ignored
Container.stdinOnce                         warned       the container gets no open stdin yet; ignored
Container.tty                               warned       the container gets no terminal yet; ignored
ContainerPort.name                          implemented  test_core_probes.py::test_targets_resolve_named_ports_hosts_paths_and_the_first_run
ContainerPort.containerPort                 implemented  test_network_real.py::test_a_pod_ip_answers_from_the_host_and_its_host_port_on_the_host
ContainerPort.hostPort                      implemented  test_network_real.py::test_a_pod_ip_answers_from_the_host_and_its_host_port_on_the_host
ContainerPort.hostIP                        implemented  test_network.py::test_host_ports_are_validated_as_kubernetes_validates_them
ContainerPort.protocol                      implemented  test_network.py::test_host_ports_are_validated_as_kubernetes_validates_them
EnvVar.name                                 implemented  test_ocispec.py::test_env_values_expand_only_earlier_entries
EnvVar.value                                implemented  test_ocispec.py::test_env_values_expand_only_earlier_entries
EnvVar.valueFrom                            implemented  test_podconfig.py::test_field_refs_read_the_pod_and_its_status
EnvVarSource.fieldRef                       implemented  test_podconfig.py::test_field_refs_read_the_pod_and_its_status
EnvVarSource.resourceFieldRef               implemented  test_podconfig.py::test_resource_field_refs_divide_and_round_up_as_the_kubelet
EnvVarSource.configMapKeyRef                implemented  test_configs_agent.py::test_env_is_resolved_when_the_container_is_created_and_an_edit_restarts_nothing
EnvVarSource.secretKeyRef                   implemented  test_volumes_real.py::test_env_and_files_from_a_secret_on_a_tmpfs
ObjectFieldSelector.fieldPath               implemented  test_podconfig.py::test_field_refs_read_the_pod_and_its_status
ObjectFieldSelector.apiVersion              implemented  test_podconfig.py::test_field_refs_read_the_pod_and_its_status
ResourceFieldSelector.containerName         implemented  test_podconfig.py::test_resource_field_refs_divide_and_round_up_as_the_kubelet
ResourceFieldSelector.resource              implemented  test_podconfig.py::test_resource_field_refs_divide_and_round_up_as_the_kubelet
ResourceFieldSelector.divisor               implemented  test_podconfig.py::test_resource_field_refs_divide_and_round_up_as_the_kubelet
KeySelector.name                            implemented  test_podconfig.py::test_a_missing_object_or_key_is_the_kubelets_message
KeySelector.key                             implemented  test_podconfig.py::test_a_missing_object_or_key_is_the_kubelets_message
KeySelector.optional                        implemented  test_podconfig.py::test_optional_references_to_missing_objects_or_keys_are_left_out
EnvFromSource.prefix                        implemented  test_podconfig.py::test_env_from_configmap_and_secret_keys_with_expansion_in_order
EnvFromSource.configMapRef                  implemented  test_podconfig.py::test_env_from_configmap_and_secret_keys_with_expansion_in_order
EnvFromSource.secretRef                     implemented  test_podconfig.py::test_env_from_configmap_and_secret_keys_with_expansion_in_order
ObjectRef.name                              implemented  test_podconfig.py::test_env_from_configmap_and_secret_keys_with_expansion_in_order
ObjectRef.optional                          implemented  test_podconfig.py::test_optional_references_to_missing_objects_or_keys_are_left_out
ResourceRequirements.limits                 implemented  test_ocispec.py::test_resources_become_cgroup_settings_as_the_kubelet_computes_them
ResourceRequirements.requests               implemented  test_ocispec.py::test_resources_become_cgroup_settings_as_the_kubelet_computes_them
ResourceRequirements.claims                 warned       dynamic resource allocation needs a cluster; ignored
VolumeMount.name                            implemented  test_volumes_real.py::test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
VolumeMount.readOnly                        implemented  test_volumes_real.py::test_a_configmap_edit_shows_up_in_the_mounted_file_without_a_restart
VolumeMount.recursiveReadOnly               warned       {_NOT_YET}
VolumeMount.mountPath                       implemented  test_volumes_real.py::test_two_containers_share_an_empty_dir_that_outlives_a_container_restart
VolumeMount.subPath                         implemented  test_volumes.py::test_a_sub_path_is_resolved_inside_the_volume_following_links_that_stay_inside
VolumeMount.mountPropagation                warned       {_NOT_YET}
VolumeMount.subPathExpr                     warned       {_NOT_YET}
Probe.exec                                  implemented  test_probes_real.py::test_http_tcp_and_exec_variants_give_the_kubelets_verdicts
Probe.httpGet                               implemented  test_probes_real.py::test_http_tcp_and_exec_variants_give_the_kubelets_verdicts
Probe.tcpSocket                             implemented  test_probes_real.py::test_http_tcp_and_exec_variants_give_the_kubelets_verdicts
Probe.grpc                                  warned       not implemented yet; the probe does not run
Probe.initialDelaySeconds                   implemented  test_probes_simulated.py::test_a_startup_probe_holds_liveness_back_until_it_succeeds
Probe.timeoutSeconds                        implemented  test_probes_real.py::test_an_exec_probe_that_hangs_past_its_timeout_fails_and_is_killed
Probe.periodSeconds                         implemented  test_core_probes.py::test_liveness_fails_only_after_failure_threshold_consecutive_failures_then_holds
Probe.successThreshold                      implemented  test_core_probes.py::test_readiness_needs_success_threshold_successes_and_never_holds
Probe.failureThreshold                      implemented  test_core_probes.py::test_liveness_fails_only_after_failure_threshold_consecutive_failures_then_holds
Probe.terminationGracePeriodSeconds         warned       a liveness kill uses the pod's grace period; ignored
ExecAction.command                          implemented  test_probes_real.py::test_http_tcp_and_exec_variants_give_the_kubelets_verdicts
HTTPGetAction.path                          implemented  test_prober_checks.py::test_http_200_succeeds_and_sends_the_kubelets_headers
HTTPGetAction.port                          implemented  test_core_probes.py::test_targets_resolve_named_ports_hosts_paths_and_the_first_run
HTTPGetAction.host                          implemented  test_core_probes.py::test_targets_resolve_named_ports_hosts_paths_and_the_first_run
HTTPGetAction.scheme                        implemented  test_prober_checks.py::test_https_is_not_verified
HTTPGetAction.httpHeaders                   implemented  test_prober_checks.py::test_http_headers_may_replace_host_user_agent_and_accept
HTTPHeader.name                             implemented  test_prober_checks.py::test_http_headers_may_replace_host_user_agent_and_accept
HTTPHeader.value                            implemented  test_prober_checks.py::test_http_headers_may_replace_host_user_agent_and_accept
TCPSocketAction.port                        implemented  test_prober_checks.py::test_tcp_open_and_closed_ports
TCPSocketAction.host                        implemented  test_core_probes.py::test_targets_resolve_named_ports_hosts_paths_and_the_first_run
Lifecycle.postStart                         warned       {_NOT_YET}
Lifecycle.preStop                           implemented  test_runtime_real.py::test_prestop_runs_before_sigterm_and_a_failing_hook_is_reported
Lifecycle.stopSignal                        implemented  test_ocispec.py::test_stop_signal_is_the_manifest_s_then_the_image_s_then_term
LifecycleHandler.exec                       implemented  test_agent.py::test_prestop_runs_before_sigterm
LifecycleHandler.httpGet                    warned       not implemented yet (only exec hooks run); ignored
LifecycleHandler.tcpSocket                  warned       deprecated; the kubelet does not run it either; ignored
LifecycleHandler.sleep                      warned       {_NOT_YET}
SecurityContext.capabilities                implemented  test_ocispec.py::test_capabilities
SecurityContext.privileged                  implemented  test_ocispec.py::test_a_privileged_container_gets_sysfs_and_cgroups_read_write
SecurityContext.seLinuxOptions              warned       {_SELINUX}
SecurityContext.windowsOptions              warned       {_WINDOWS}
SecurityContext.runAsUser                   implemented  test_ocispec.py::test_user
SecurityContext.runAsGroup                  implemented  test_ocispec.py::test_user
SecurityContext.runAsNonRoot                implemented  test_ocispec.py::test_run_as_non_root_accepts_a_non_root_uid
SecurityContext.readOnlyRootFilesystem      implemented  test_ocispec.py::test_root_is_read_only_only_when_the_manifest_says_so
SecurityContext.allowPrivilegeEscalation    implemented  test_ocispec.py::test_no_new_privileges_exactly_when_privilege_escalation_is_disallowed
SecurityContext.procMount                   warned       {_NOT_YET}
SecurityContext.seccompProfile              warned       {_NOT_YET}
SecurityContext.appArmorProfile             warned       {_NOT_YET}
Capabilities.add                            implemented  test_ocispec.py::test_capabilities
Capabilities.drop                           implemented  test_ocispec.py::test_capabilities
"""


@dataclass(frozen=True)
class FieldSupport:
    """What kubelite does with one field of one type."""

    type: str      # the Kubernetes type, as kubelite's model class names it: "PodSpec"
    field: str     # the wire name: "nodeSelector"
    status: str    # implemented | warned | refused
    note: str      # implemented: the test that proves it (FILE::TEST); otherwise the message

    @property
    def path(self) -> str:
        """The field's wire path in a Pod, `[]` standing for every item of a list."""
        parent = PATHS[self.type]
        return f"{parent}.{self.field}" if parent else self.field


def _parse(text: str) -> dict[tuple[str, str], FieldSupport]:
    fields: dict[tuple[str, str], FieldSupport] = {}
    for line in text.strip().splitlines():
        name, status, note = line.split(None, 2)
        type_, _, field = name.partition(".")
        if status not in STATUSES or type_ not in PATHS or (type_, field) in fields:
            raise ValueError(f"field table: bad line {line!r}")
        fields[(type_, field)] = FieldSupport(type_, field, status, note.strip())
    return fields


#: (type, wire name) → its support, in table order.
FIELDS = _parse(TABLE)


def lookup(type_: str, field: str) -> FieldSupport | None:
    return FIELDS.get((type_, field))


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
        note = f"`tests/{f.note}`" if f.status == IMPLEMENTED else \
            (refusal(f) if f.status == REFUSED else f.note)
        note = note.replace("|", "\\|")
        lines.append(f"| `{f.path}` | {f.status} | {note} |")
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
