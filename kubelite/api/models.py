"""Pydantic models of the Kubernetes v1 objects kubelite accepts: Pod (with its spec) and PodStatus.

Owns: field names and types (camelCase on the wire, snake_case in Python), and Kubernetes
defaulting (`SetDefaults_*` in k8s.io/kubernetes pkg/apis/core/v1/defaults.go) expressed as field
defaults plus model validators for `imagePullPolicy` and a volume without a source (an emptyDir).
It does not validate semantics (see `validation`), read files (see `kubelite.sources`) or know about the runtime.

Every model accepts fields it does not know (`extra="allow"`): `decode` turns them into warnings
that name the field, and then drops them, as the API server drops unknown fields.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator
from pydantic.alias_generators import to_camel

from kubelite.api import fieldsupport

Str = StrictStr
Int = StrictInt
Bool = StrictBool
IntOrString = Union[StrictInt, StrictStr]
Quantity = Union[StrictInt, float, StrictStr]


class K8sModel(BaseModel):
    """Base: camelCase aliases, unknown fields kept for reporting, assignment allowed."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        validate_default=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields omitted."""
        return self.model_dump(by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------------- metadata


class ObjectMeta(K8sModel):
    name: Optional[Str] = None
    namespace: Str = "default"
    labels: dict[Str, Str] = Field(default_factory=dict)
    annotations: dict[Str, Str] = Field(default_factory=dict)
    uid: Optional[Str] = None
    generate_name: Optional[Str] = None
    creation_timestamp: Optional[Str] = None
    deletion_timestamp: Optional[Str] = None
    resource_version: Optional[Str] = None


# --------------------------------------------------------------------------------- container parts


class ObjectFieldSelector(K8sModel):
    field_path: Str
    api_version: Optional[Str] = None


class ResourceFieldSelector(K8sModel):
    resource: Str
    container_name: Optional[Str] = None
    divisor: Optional[Quantity] = None


class KeySelector(K8sModel):
    """configMapKeyRef / secretKeyRef: one key of a ConfigMap or Secret in the pod's namespace."""

    name: Optional[Str] = None
    key: Str
    optional: Optional[Bool] = None


class EnvVarSource(K8sModel):
    field_ref: Optional[ObjectFieldSelector] = None
    resource_field_ref: Optional[ResourceFieldSelector] = None
    config_map_key_ref: Optional[KeySelector] = None
    secret_key_ref: Optional[KeySelector] = None


class ObjectRef(K8sModel):
    """envFrom's configMapRef / secretRef."""

    name: Optional[Str] = None
    optional: Optional[Bool] = None


class EnvFromSource(K8sModel):
    prefix: Optional[Str] = None
    config_map_ref: Optional[ObjectRef] = None
    secret_ref: Optional[ObjectRef] = None


class EnvVar(K8sModel):
    name: Str
    value: Optional[Str] = None
    value_from: Optional[EnvVarSource] = None


class ContainerPort(K8sModel):
    name: Optional[Str] = None
    container_port: Int
    host_port: Optional[Int] = None
    host_ip: Optional[Str] = Field(default=None, alias="hostIP")
    protocol: Str = "TCP"


class ResourceRequirements(K8sModel):
    limits: dict[Str, Quantity] = Field(default_factory=dict)
    requests: dict[Str, Quantity] = Field(default_factory=dict)


class VolumeMount(K8sModel):
    name: Str
    mount_path: Str
    read_only: Optional[Bool] = None
    sub_path: Optional[Str] = None
    sub_path_expr: Optional[Str] = None


class ExecAction(K8sModel):
    command: list[Str] = Field(default_factory=list)


class HTTPHeader(K8sModel):
    name: Str
    value: Str


class HTTPGetAction(K8sModel):
    path: Str = "/"
    port: IntOrString
    host: Optional[Str] = None
    scheme: Str = "HTTP"
    http_headers: list[HTTPHeader] = Field(default_factory=list)


class TCPSocketAction(K8sModel):
    port: IntOrString
    host: Optional[Str] = None


class GRPCAction(K8sModel):
    port: Int
    service: Optional[Str] = None


class SleepAction(K8sModel):
    seconds: Int


class Probe(K8sModel):
    exec_: Optional[ExecAction] = Field(default=None, alias="exec")
    http_get: Optional[HTTPGetAction] = None
    tcp_socket: Optional[TCPSocketAction] = None
    grpc: Optional[GRPCAction] = None
    initial_delay_seconds: Int = 0
    timeout_seconds: Int = 1
    period_seconds: Int = 10
    success_threshold: Int = 1
    failure_threshold: Int = 3
    termination_grace_period_seconds: Optional[Int] = None


class LifecycleHandler(K8sModel):
    exec_: Optional[ExecAction] = Field(default=None, alias="exec")
    http_get: Optional[HTTPGetAction] = None
    tcp_socket: Optional[TCPSocketAction] = None
    sleep: Optional[SleepAction] = None


class Lifecycle(K8sModel):
    post_start: Optional[LifecycleHandler] = None
    pre_stop: Optional[LifecycleHandler] = None
    stop_signal: Optional[Str] = None


class Capabilities(K8sModel):
    add: list[Str] = Field(default_factory=list)
    drop: list[Str] = Field(default_factory=list)


class SeccompProfile(K8sModel):
    """`seccompProfile`: RuntimeDefault, Localhost (with `localhostProfile`) or Unconfined."""

    type: Str
    localhost_profile: Optional[Str] = None


class AppArmorProfile(K8sModel):
    """`appArmorProfile`: RuntimeDefault, Localhost (with `localhostProfile`) or Unconfined."""

    type: Str
    localhost_profile: Optional[Str] = None


class Sysctl(K8sModel):
    name: Str
    value: Str


class SecurityContext(K8sModel):
    run_as_user: Optional[Int] = None
    run_as_group: Optional[Int] = None
    run_as_non_root: Optional[Bool] = None
    read_only_root_filesystem: Optional[Bool] = None
    allow_privilege_escalation: Optional[Bool] = None
    privileged: Optional[Bool] = None
    capabilities: Optional[Capabilities] = None
    seccomp_profile: Optional[SeccompProfile] = None
    app_armor_profile: Optional[AppArmorProfile] = None


class Container(K8sModel):
    name: Str
    image: Optional[Str] = None
    command: list[Str] = Field(default_factory=list)
    args: list[Str] = Field(default_factory=list)
    working_dir: Optional[Str] = None
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    liveness_probe: Optional[Probe] = None
    readiness_probe: Optional[Probe] = None
    startup_probe: Optional[Probe] = None
    lifecycle: Optional[Lifecycle] = None
    security_context: Optional[SecurityContext] = None
    restart_policy: Optional[Str] = None
    image_pull_policy: Optional[Str] = None
    termination_message_path: Str = "/dev/termination-log"
    termination_message_policy: Str = "File"
    stdin: Optional[Bool] = None
    stdin_once: Optional[Bool] = None
    tty: Optional[Bool] = None

    @model_validator(mode="after")
    def _default_image_pull_policy(self) -> "Container":
        # SetDefaults_Container: Always for ":latest" or no tag, IfNotPresent otherwise.
        if self.image_pull_policy is None and isinstance(self.image, str) and self.image:
            self.image_pull_policy = "Always" if image_tag(self.image) in (None, "latest") else "IfNotPresent"
        return self

    @property
    def is_sidecar(self) -> bool:
        """True for an init container with `restartPolicy: Always` (a restartable init container)."""
        return self.restart_policy == "Always"


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None; a digest reference counts as pinned ("@sha256")."""
    if "@" in image:
        return "@digest"
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


# --------------------------------------------------------------------------------- pod


class EmptyDirVolumeSource(K8sModel):
    medium: Optional[Str] = None
    size_limit: Optional[Quantity] = None


class HostPathVolumeSource(K8sModel):
    path: Str
    type: Optional[Str] = None


class KeyToPath(K8sModel):
    key: Str
    path: Str
    mode: Optional[Int] = None


class ConfigMapVolumeSource(K8sModel):
    name: Optional[Str] = None
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: Optional[Int] = None
    optional: Optional[Bool] = None


class SecretVolumeSource(K8sModel):
    secret_name: Optional[Str] = None
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: Optional[Int] = None
    optional: Optional[Bool] = None


class DownwardAPIVolumeFile(K8sModel):
    path: Str
    field_ref: Optional[ObjectFieldSelector] = None
    resource_field_ref: Optional[ResourceFieldSelector] = None
    mode: Optional[Int] = None


class DownwardAPIVolumeSource(K8sModel):
    items: list[DownwardAPIVolumeFile] = Field(default_factory=list)
    default_mode: Optional[Int] = None


class PersistentVolumeClaimVolumeSource(K8sModel):
    claim_name: Optional[Str] = None
    read_only: Optional[Bool] = None


class ConfigMapProjection(K8sModel):
    name: Optional[Str] = None
    items: list[KeyToPath] = Field(default_factory=list)
    optional: Optional[Bool] = None


class SecretProjection(K8sModel):
    name: Optional[Str] = None
    items: list[KeyToPath] = Field(default_factory=list)
    optional: Optional[Bool] = None


class DownwardAPIProjection(K8sModel):
    items: list[DownwardAPIVolumeFile] = Field(default_factory=list)


class ServiceAccountTokenProjection(K8sModel):
    audience: Optional[Str] = None
    expiration_seconds: Int = 3600
    path: Str = ""


class VolumeProjection(K8sModel):
    """One source of a projected volume; `clusterTrustBundle` and `podCertificate` are kept as
    given (kubelite refuses them whole, so their fields are not modelled)."""

    config_map: Optional[ConfigMapProjection] = None
    secret: Optional[SecretProjection] = None
    downward_api: Optional[DownwardAPIProjection] = Field(default=None, alias="downwardAPI")
    service_account_token: Optional[ServiceAccountTokenProjection] = None
    cluster_trust_bundle: Optional[dict[Str, Any]] = None
    pod_certificate: Optional[dict[Str, Any]] = None

    def kinds(self) -> list[str]:
        """The wire names of the sources this projection sets (exactly one when valid)."""
        return [wire for wire, value in (("configMap", self.config_map), ("secret", self.secret),
                                         ("downwardAPI", self.downward_api),
                                         ("serviceAccountToken", self.service_account_token),
                                         ("clusterTrustBundle", self.cluster_trust_bundle),
                                         ("podCertificate", self.pod_certificate)) if value is not None]


class ProjectedVolumeSource(K8sModel):
    sources: list[VolumeProjection] = Field(default_factory=list)
    default_mode: Optional[Int] = None


class ImageVolumeSource(K8sModel):
    reference: Optional[Str] = None
    pull_policy: Optional[Str] = None

    @model_validator(mode="after")
    def _default_pull_policy(self) -> "ImageVolumeSource":
        # SetDefaults_ImageVolumeSource: as a container's imagePullPolicy
        if self.pull_policy is None and isinstance(self.reference, str) and self.reference:
            self.pull_policy = "Always" if image_tag(self.reference) in (None, "latest") else "IfNotPresent"
        return self


class Volume(K8sModel):
    name: Str
    empty_dir: Optional[EmptyDirVolumeSource] = None
    host_path: Optional[HostPathVolumeSource] = None
    config_map: Optional[ConfigMapVolumeSource] = None
    secret: Optional[SecretVolumeSource] = None
    downward_api: Optional[DownwardAPIVolumeSource] = Field(default=None, alias="downwardAPI")
    persistent_volume_claim: Optional[PersistentVolumeClaimVolumeSource] = None
    projected: Optional[ProjectedVolumeSource] = None
    image: Optional[ImageVolumeSource] = None

    @model_validator(mode="after")
    def _default_empty_dir(self) -> "Volume":
        # SetDefaults_Volume: a volume that names no source of any Kubernetes type is an emptyDir
        extra = self.model_extra or {}
        if not self.sources() and not any(extra.get(t) is not None for t in fieldsupport.volume_types()):
            self.empty_dir = EmptyDirVolumeSource()
        return self

    def sources(self) -> list[str]:
        """The wire names of the volume sources this volume sets (exactly one when valid)."""
        return [wire for wire, value in (("emptyDir", self.empty_dir), ("hostPath", self.host_path),
                                         ("configMap", self.config_map), ("secret", self.secret),
                                         ("downwardAPI", self.downward_api),
                                         ("persistentVolumeClaim", self.persistent_volume_claim),
                                         ("projected", self.projected), ("image", self.image),
                                         ) if value is not None]


class PodSecurityContext(K8sModel):
    run_as_user: Optional[Int] = None
    run_as_group: Optional[Int] = None
    run_as_non_root: Optional[Bool] = None
    fs_group: Optional[Int] = None
    fs_group_change_policy: Optional[Str] = None
    supplemental_groups: list[Int] = Field(default_factory=list)
    sysctls: list[Sysctl] = Field(default_factory=list)
    seccomp_profile: Optional[SeccompProfile] = None
    app_armor_profile: Optional[AppArmorProfile] = None


class HostAlias(K8sModel):
    ip: Optional[Str] = None
    hostnames: list[Str] = Field(default_factory=list)


class PodDNSConfigOption(K8sModel):
    name: Optional[Str] = None
    value: Optional[Str] = None


class PodDNSConfig(K8sModel):
    nameservers: list[Str] = Field(default_factory=list)
    searches: list[Str] = Field(default_factory=list)
    options: list[PodDNSConfigOption] = Field(default_factory=list)


class PodSpec(K8sModel):
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list)
    restart_policy: Str = "Always"
    termination_grace_period_seconds: Int = 30
    active_deadline_seconds: Optional[Int] = None
    share_process_namespace: Optional[Bool] = None
    host_network: Optional[Bool] = None
    hostname: Optional[Str] = None
    volumes: list[Volume] = Field(default_factory=list)
    security_context: Optional[PodSecurityContext] = None
    node_name: Optional[Str] = None
    service_account_name: Optional[Str] = None
    # None where Kubernetes defaults a value, so that the spec hashes of pods without them stay as they were
    dns_policy: Optional[Str] = None            # None: ClusterFirst
    dns_config: Optional[PodDNSConfig] = None
    host_aliases: Optional[list[HostAlias]] = None
    subdomain: Optional[Str] = None
    resources: Optional[ResourceRequirements] = None   # pod-level resources (Kubernetes 1.34)

    @property
    def sidecars(self) -> list[Container]:
        return [c for c in self.init_containers if c.is_sidecar]

    def all_containers(self) -> list[Container]:
        """Init containers (sidecars included) in spec order, then app containers."""
        return [*self.init_containers, *self.containers]


class Pod(K8sModel):
    api_version: Optional[Str] = None
    kind: Optional[Str] = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)
    status: Optional["PodStatus"] = None

    @property
    def key(self) -> str:
        """`namespace/name`: the identity of a pod on this machine."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


# --------------------------------------------------------------------------------- status


class ContainerStateWaiting(K8sModel):
    reason: Optional[Str] = None
    message: Optional[Str] = None


class ContainerStateRunning(K8sModel):
    started_at: Optional[Str] = None


class ContainerStateTerminated(K8sModel):
    exit_code: Int
    signal: Optional[Int] = None
    reason: Optional[Str] = None
    message: Optional[Str] = None
    started_at: Optional[Str] = None
    finished_at: Optional[Str] = None
    container_id: Optional[Str] = Field(default=None, alias="containerID")


class ContainerState(K8sModel):
    waiting: Optional[ContainerStateWaiting] = None
    running: Optional[ContainerStateRunning] = None
    terminated: Optional[ContainerStateTerminated] = None


class ContainerStatus(K8sModel):
    name: Str
    state: ContainerState = Field(default_factory=ContainerState)
    last_state: ContainerState = Field(default_factory=ContainerState)
    ready: Bool = False
    restart_count: Int = 0
    image: Str = ""
    image_id: Str = Field(default="", alias="imageID")
    container_id: Optional[Str] = Field(default=None, alias="containerID")
    started: Optional[Bool] = None


class PodCondition(K8sModel):
    type: Str
    status: Literal["True", "False", "Unknown"]
    reason: Optional[Str] = None
    message: Optional[Str] = None
    last_probe_time: Optional[Str] = None
    last_transition_time: Optional[Str] = None


class PodIP(K8sModel):
    ip: Str


class PodStatus(K8sModel):
    phase: Optional[Str] = None
    conditions: list[PodCondition] = Field(default_factory=list)
    message: Optional[Str] = None
    reason: Optional[Str] = None
    host_ip: Optional[Str] = Field(default=None, alias="hostIP")
    pod_ip: Optional[Str] = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] = Field(default_factory=list, alias="podIPs")
    start_time: Optional[Str] = None
    init_container_statuses: list[ContainerStatus] = Field(default_factory=list)
    container_statuses: list[ContainerStatus] = Field(default_factory=list)
    qos_class: Optional[Str] = Field(default=None, alias="qosClass")


Pod.model_rebuild()
