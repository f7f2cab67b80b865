"""Seccomp and AppArmor profiles, sysctls and pod-level resources: the rules, without containers.

Precedence (container over pod, fields over the deprecated annotations, --seccomp-default,
privileged containers unconfined), validation messages, the node's sysctl and AppArmor
admission, the Docker-format → OCI seccomp conversion, and what reaches the OCI specs.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.decode import decode_document
from kubelite.api.models import Pod, ResourceRequirements
from kubelite.core import security
from kubelite.core.plan import plan
from kubelite.core.status import qos_class
from kubelite.core.types import PodRecord, SecurityProfile
from kubelite.runtime import ocispec, seccomp
from kubelite.runtime.protocol import ContainerConfig, SandboxConfig
from tests.helpers import T0, desired, observed, pod_doc, running

RD, UN = SecurityProfile("RuntimeDefault"), SecurityProfile("Unconfined")


def decode(doc: dict[str, Any]):
    return decode_document(doc, source="/m/p.yaml")


def security_doc(*, pod_sc: dict | None = None, sc: dict | None = None, annotations: dict | None = None,
                 **spec: Any) -> dict:
    """A pod document with the given pod and container security contexts and annotations."""
    doc = pod_doc(**spec)
    if pod_sc is not None:
        doc["spec"]["securityContext"] = pod_sc
    if sc is not None:
        doc["spec"]["containers"][0]["securityContext"] = sc
    if annotations:
        doc["metadata"]["annotations"] = annotations
    return doc


def make_pod(*, pod_sc: dict | None = None, sc: dict | None = None, annotations: dict | None = None,
             **spec: Any) -> Pod:
    decoded = decode(security_doc(pod_sc=pod_sc, sc=sc, annotations=annotations, **spec))
    assert decoded.desired is not None, decoded.errors
    return decoded.desired.pod


def errors(doc: dict[str, Any]) -> list[str]:
    return [str(e) for e in decode(doc).errors]


def seccomp_of(pod: Pod, *, default: bool = False) -> SecurityProfile:
    return security.seccomp_profile(pod, pod.spec.containers[0], seccomp_default=default)


# ------------------------------------------------------------------------------ seccomp precedence

LOCAL = {"type": "Localhost", "localhostProfile": "profiles/a.json"}
POD_ANN = "seccomp.security.alpha.kubernetes.io/pod"
CTR_ANN = "container.seccomp.security.alpha.kubernetes.io/app"


@pytest.mark.parametrize("pod_sc, sc, annotations, default, expected", [
    (None, None, None, False, UN),                                             # nothing: Unconfined
    (None, None, None, True, RD),                                              # --seccomp-default
    ({"seccompProfile": {"type": "RuntimeDefault"}}, None, None, False, RD),   # the pod's
    ({"seccompProfile": {"type": "RuntimeDefault"}}, {"seccompProfile": {"type": "Unconfined"}}, None, False, UN),
    ({"seccompProfile": {"type": "Unconfined"}}, {"seccompProfile": LOCAL}, None, True,
     SecurityProfile("Localhost", "profiles/a.json")),                        # the container's wins
    (None, {"seccompProfile": {"type": "Unconfined"}}, None, True, UN),       # opting out of the default
    (None, None, {POD_ANN: "runtime/default"}, False, RD),                     # the annotation, no field
    (None, None, {POD_ANN: "docker/default"}, False, RD),
    (None, None, {CTR_ANN: "localhost/b.json"}, False, SecurityProfile("Localhost", "b.json")),
    (None, None, {POD_ANN: "runtime/default", CTR_ANN: "unconfined"}, False, UN),  # container's annotation first
    ({"seccompProfile": {"type": "Unconfined"}}, None, {CTR_ANN: "runtime/default"}, False, RD),
    (None, {"privileged": True, "seccompProfile": {"type": "RuntimeDefault"}}, None, True, UN),  # privileged
])
def test_seccomp_profile_precedence(pod_sc, sc, annotations, default, expected):
    assert seccomp_of(make_pod(pod_sc=pod_sc, sc=sc, annotations=annotations), default=default) == expected


# ------------------------------------------------------------------------------ AppArmor


def test_apparmor_on_a_host_without_it_refuses_pods_that_require_a_profile():
    policy = security.SysctlPolicy(kernel=(6, 1))
    required = make_pod(sc={"appArmorProfile": {"type": "RuntimeDefault"}})
    assert security.admission(required, sysctls=policy, apparmor_enabled=False) == (
        "AppArmor", "Cannot enforce AppArmor: AppArmor is not enabled on the host")
    by_annotation = make_pod(annotations={"container.apparmor.security.beta.kubernetes.io/app": "localhost/x"})
    assert security.admission(by_annotation, sysctls=policy, apparmor_enabled=False)[0] == "AppArmor"
    unconfined = make_pod(pod_sc={"appArmorProfile": {"type": "Unconfined"}})
    assert security.admission(unconfined, sysctls=policy, apparmor_enabled=False) is None
    assert security.admission(make_pod(), sysctls=policy, apparmor_enabled=False) is None
    assert security.admission(required, sysctls=policy, apparmor_enabled=True) is None
    assert security.apparmor_profile(required, required.spec.containers[0], apparmor_enabled=False) is None


@pytest.mark.parametrize("pod_sc, sc, annotations, required", [
    # the pod's field counts even when the container sets its own (kubelet isRequired)
    ({"appArmorProfile": {"type": "RuntimeDefault"}}, {"appArmorProfile": {"type": "Unconfined"}}, None, True),
    ({"appArmorProfile": {"type": "Unconfined"}}, None, None, False),
    (None, None, {"container.apparmor.security.beta.kubernetes.io/app": "runtime/default"}, True),
    # any container annotation other than unconfined, even with the field saying Unconfined
    (None, {"appArmorProfile": {"type": "Unconfined"}},
     {"container.apparmor.security.beta.kubernetes.io/other": "localhost/x"}, True),
    (None, None, {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}, False),
])
def test_apparmor_is_required_as_the_kubelet_decides_it(pod_sc, sc, annotations, required):
    doc = pod_doc()
    if pod_sc:
        doc["spec"]["securityContext"] = pod_sc
    if sc:
        doc["spec"]["containers"][0]["securityContext"] = sc
    if annotations:
        doc["metadata"]["annotations"] = annotations
    decoded = decode(doc)
    pod = decoded.desired.pod if decoded.desired is not None else Pod.model_validate(doc)
    assert security.apparmor_required(pod) is required


def test_the_default_apparmor_profile_holds_the_container_runtimes_rules_and_parses():
    from kubelite.runtime import apparmor

    text = apparmor.default_profile("kubelite-test")
    lines = {line.strip() for line in text.splitlines()}
    for rule in ("deny mount,", "deny @{PROC}/* w,", "deny @{PROC}/sys/[^k]** w,",
                 "deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,", "deny @{PROC}/sysrq-trigger rwklx,",
                 "deny @{PROC}/kcore rwklx,", "deny @{PROC}/mem rwklx,", "deny @{PROC}/kmem rwklx,",
                 "deny /sys/[^f]*/** wklx,", "deny /sys/fs/cg[^r]*/** wklx,", "deny /sys/firmware/** rwklx,",
                 "deny /sys/devices/virtual/powercap/** rwklx,", "deny /sys/kernel/security/** rwklx,",
                 "ptrace (trace,read,tracedby,readby) peer=kubelite-test,"):
        assert rule in lines, rule
    assert any(line.startswith("deny @{PROC}/{[^1-9],") and line.endswith("}/** w,") for line in lines)
    assert text.count("{") == text.count("}") and text.rstrip().endswith("}")
    parser = shutil.which("apparmor_parser")
    if parser is not None and Path("/etc/apparmor.d/tunables/global").exists():
        # parse and compile only (-Q: never loaded into a kernel)
        result = subprocess.run([parser, "-Q", "-K", "--skip-cache"], input=text, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr


def test_apparmor_profile_choice_on_a_host_with_apparmor():
    def choice(**kw: Any) -> SecurityProfile | None:
        p = make_pod(**kw)
        return security.apparmor_profile(p, p.spec.containers[0], apparmor_enabled=True)

    assert choice() == RD                                      # the runtime's default for an unconfigured one
    assert choice(sc={"privileged": True}) is None             # never for a privileged one
    assert choice(pod_sc={"appArmorProfile": {"type": "Unconfined"}}) is None
    assert choice(pod_sc={"appArmorProfile": {"type": "Unconfined"}},
                  sc={"appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-deny-write"}}) == \
        SecurityProfile("Localhost", "k8s-deny-write")
    assert choice(annotations={"container.apparmor.security.beta.kubernetes.io/app": "localhost/p"},
                  pod_sc={"appArmorProfile": {"type": "Unconfined"}}) == SecurityProfile("Localhost", "p")


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("pod_sc, sc, annotations, expected", [
    ({"seccompProfile": {"type": "Strict"}}, None, None,
     'spec.securityContext.seccompProfile.type: Unsupported value: supported values: "Localhost", '
     '"RuntimeDefault", "Unconfined"'),
    ({"seccompProfile": {"type": "Localhost"}}, None, None,
     "spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is "
     "Localhost"),
    (None, {"seccompProfile": {"type": "RuntimeDefault", "localhostProfile": "a.json"}}, None,
     "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: can only be set when "
     "seccomp type is Localhost"),
    (None, {"seccompProfile": {"type": "Localhost", "localhostProfile": "../etc/a.json"}}, None,
     "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: must not contain '..'"),
    (None, {"seccompProfile": {"type": "Localhost", "localhostProfile": "/etc/a.json"}}, None,
     "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: must be a relative path"),
    (None, {"appArmorProfile": {"type": "Localhost"}}, None,
     "spec.containers[0].securityContext.appArmorProfile.localhostProfile: Required value: must be set when "
     "AppArmor type is Localhost"),
    ({"seccompProfile": {"type": "RuntimeDefault"}}, None, {POD_ANN: "unconfined"},
     "spec.securityContext.seccompProfile.type: Forbidden: seccomp type in annotation and field must match"),
    (None, {"appArmorProfile": {"type": "RuntimeDefault"}},
     {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"},
     "spec.containers[0].securityContext.appArmorProfile.type: Forbidden: apparmor type in annotation and field "
     "must match"),
    (None, {"appArmorProfile": {"type": "Localhost", "localhostProfile": " padded "}}, None,
     "spec.containers[0].securityContext.appArmorProfile.localhostProfile: Invalid value: must not be padded with "
     "whitespace"),
    (None, None, {POD_ANN: "localhost/../../etc/a.json"},
     f"metadata.annotations[{POD_ANN}]: Invalid value: must not contain '..'"),
    (None, None, {CTR_ANN: "localhost//etc/a.json"},
     f"metadata.annotations[{CTR_ANN}]: Invalid value: must be a relative path"),
    (None, None, {POD_ANN: "strict"},
     f"metadata.annotations[{POD_ANN}]: Invalid value: must be runtime/default, unconfined or localhost/<profile>"),
    ({"sysctls": [{"name": "Net.IPv4.foo", "value": "1"}]}, None, None,
     "spec.securityContext.sysctls[0].name: Invalid value: must have at most 253 characters and match regex "
     r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?"),
    ({"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                  {"name": "kernel/shm_rmid_forced", "value": "0"}]}, None, None,
     "spec.securityContext.sysctls[1].name: Duplicate value"),
])
def test_security_validation_messages(pod_sc, sc, annotations, expected):
    assert expected in errors(security_doc(pod_sc=pod_sc, sc=sc, annotations=annotations))


def test_matching_annotations_and_fields_are_valid_and_the_fields_are_not_warned_about():
    doc = pod_doc()
    doc["metadata"]["annotations"] = {POD_ANN: "runtime/default"}
    doc["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"},
                                      "appArmorProfile": {"type": "RuntimeDefault"},
                                      "sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}
    doc["spec"]["containers"][0]["securityContext"] = {"seccompProfile": LOCAL}
    decoded = decode(doc)
    assert decoded.errors == []
    assert not [w for w in decoded.warnings if w.path.startswith("spec.")]


def test_a_net_sysctl_with_host_network_is_invalid():
    doc = pod_doc(hostNetwork=True)
    doc["spec"]["securityContext"] = {"sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 2048"}]}
    assert errors(doc) == ["spec.securityContext.sysctls[0].name: Invalid value: may not be specified when "
                           "'hostNetwork' is true"]


# ------------------------------------------------------------------------------ sysctl admission


def sysctl_pod(*names: str, host_network: bool = False) -> Pod:
    return make_pod(pod_sc={"sysctls": [{"name": n, "value": "1"} for n in names]}) if not host_network else \
        Pod.model_validate({"metadata": {"name": "p"}, "spec": {
            "hostNetwork": True, "containers": [{"name": "app", "image": "busybox"}],
            "securityContext": {"sysctls": [{"name": n, "value": "1"} for n in names]}}})


@pytest.mark.parametrize("names, kernel, allowed, expected", [
    (["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ping_group_range",
      "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies"], (3, 10), (), None),
    (["net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_rmem"], (6, 1), (), None),
    (["net.ipv4.tcp_keepalive_time"], (4, 4), (), 'forbidden sysctl: "net.ipv4.tcp_keepalive_time" not allowlisted'),
    (["net.ipv4.tcp_rmem"], (4, 14), (), 'forbidden sysctl: "net.ipv4.tcp_rmem" not allowlisted'),
    (["net/ipv4/ip_local_port_range"], (6, 1), (), None),                      # slashes normalized
    (["kernel.msgmax"], (6, 1), (), 'forbidden sysctl: "kernel.msgmax" not allowlisted'),
    (["kernel.msgmax"], (6, 1), ("kernel.msg*",), None),
    (["net.core.somaxconn"], (6, 1), ("net.core.somaxconn",), None),
    (["net.core.rmem_max"], (6, 1), ("net.core.somaxconn",), 'forbidden sysctl: "net.core.rmem_max" not allowlisted'),
    (["vm.swappiness"], (6, 1), (), 'forbidden sysctl: "vm.swappiness" not allowlisted'),
])
def test_sysctl_admission(names, kernel, allowed, expected):
    policy = security.SysctlPolicy(kernel=kernel, allowed_unsafe=allowed)
    found = security.admission(sysctl_pod(*names), sysctls=policy, apparmor_enabled=False)
    assert found == (None if expected is None else ("SysctlForbidden", expected))


def test_a_net_sysctl_with_host_network_is_refused_by_the_node_too():
    policy = security.SysctlPolicy(kernel=(6, 1))
    assert security.sysctl_rejection(sysctl_pod("net.ipv4.tcp_syncookies", host_network=True), policy) == \
        'forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with host net enabled'


@pytest.mark.parametrize("patterns, ok", [
    (["kernel.msg*", "net.core.somaxconn", "fs.mqueue.*", "kernel.sem"], True),
    (["vm.swappiness"], False), (["kernel.*"], False), (["net.*.foo"], False), ([""], True),
])
def test_allowed_unsafe_sysctls_must_be_namespaced(patterns, ok):
    if ok:
        assert security.check_allowed_unsafe(patterns) == [p for p in patterns if p]
    else:
        with pytest.raises(ValueError, match="not known to be namespaced"):
            security.check_allowed_unsafe(patterns)


def test_a_refused_pod_fails_before_anything_starts_and_a_running_pod_is_never_refused():
    d = desired()
    refusal = ("SysctlForbidden", 'forbidden sysctl: "kernel.msgmax" not allowlisted')
    actions = plan(d, observed(d, sb=None), record=PodRecord(start_time=T0), backoff={}, now=T0, rejection=refusal)
    assert actions.fail_pod == refusal and actions.fail_warning and actions.terminal_phase == "Failed"
    assert not actions.create_sandbox and not actions.to_start
    started = plan(d, observed(d, running(d, "app")), record=PodRecord(start_time=T0), backoff={}, now=T0,
                   rejection=refusal)
    assert started.fail_pod is None and not started.to_kill


# ------------------------------------------------------------------------------ seccomp conversion

DOCKER_STYLE = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "", "includes": {}, "excludes": {}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "errno": "EPERM",
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.8"}},
    ],
}


def test_docker_format_profile_is_filtered_by_architecture_capabilities_and_kernel():
    out = seccomp.oci_seccomp(DOCKER_STYLE, machine="x86_64", capabilities={"CAP_CHOWN"}, kernel=(5, 4))
    assert out["defaultAction"] == "SCMP_ACT_ERRNO" and out["defaultErrnoRet"] == 38
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = [(s["names"], s["action"]) for s in out["syscalls"]]
    assert names == [(["read", "write"], "SCMP_ACT_ALLOW"), (["personality"], "SCMP_ACT_ALLOW"),
                     (["arch_prctl"], "SCMP_ACT_ALLOW"), (["bpf"], "SCMP_ACT_ERRNO")]
    assert out["syscalls"][1]["args"] == [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]
    assert out["syscalls"][3]["errnoRet"] == 1 and "errno" not in out["syscalls"][3]
    admin = seccomp.oci_seccomp(DOCKER_STYLE, machine="aarch64", capabilities={"CAP_SYS_ADMIN"}, kernel=(6, 1))
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [(s["names"], s["action"]) for s in admin["syscalls"]][2:] == [
        (["bpf"], "SCMP_ACT_ALLOW"), (["newer"], "SCMP_ACT_ALLOW")]


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["SCMP_ARCH_X86_64"]}, "use either 'architectures' or 'archMap'"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown action"),
    ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_XX"}]}]},
     "unknown operator"),
    ({"syscalls": [{"action": "SCMP_ACT_ALLOW"}]}, "no syscall names"),
])
def test_malformed_profiles_are_refused(change, message):
    with pytest.raises(seccomp.ProfileError, match=message):
        seccomp.oci_seccomp({**copy.deepcopy(DOCKER_STYLE), **change}, machine="x86_64", capabilities=())


def test_an_oci_format_profile_passes_through():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    assert seccomp.oci_seccomp(profile, machine="x86_64", capabilities=()) == profile


@pytest.mark.skipif(not Path(seccomp.DEFAULT_PROFILE_PATH).exists(), reason="containers-common not installed")
def test_the_containers_common_default_profile_converts_and_gates_by_capability():
    profile = json.loads(Path(seccomp.DEFAULT_PROFILE_PATH).read_text())
    default = seccomp.oci_seccomp(profile, machine="x86_64", capabilities=ocispec.DEFAULT_CAPABILITIES)
    allowed = {n for s in default["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" and "args" not in s
               for n in s["names"]}
    denied = {n for s in default["syscalls"] if s["action"] == "SCMP_ACT_ERRNO" for n in s["names"]}
    assert {"read", "openat", "chroot", "arch_prctl"} <= allowed
    assert {"swapon", "kexec_load", "bpf", "setns"} <= denied and "bpf" not in allowed
    admin = seccomp.oci_seccomp(profile, machine="x86_64",
                                capabilities={*ocispec.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"})
    assert "bpf" in {n for s in admin["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" for n in s["names"]}


# ------------------------------------------------------------------------------ OCI specs


class _Image:
    entrypoint: tuple[str, ...] = ()
    cmd = ("sh",)
    env: tuple[str, ...] = ()
    working_dir = ""
    user = ""
    stop_signal = None


def _spec(pod: Pod, **kw: Any) -> dict[str, Any]:
    c = pod.spec.containers[0]
    config = ContainerConfig(uid="u", pod_name="p", namespace="default", container=c, attempt=0, spec_hash="h")
    return ocispec.build_container_spec(
        config=config, image=_Image(), rootfs="/r", namespaces=ocispec.SandboxNamespaces(net=None, ipc="i", uts="u"),
        cgroups_path="/c", hostname="p", annotations={}, **kw)


def test_the_container_spec_carries_the_seccomp_filter_and_apparmor_profile():
    spec = _spec(make_pod(), seccomp_profile=DOCKER_STYLE, machine="x86_64", apparmor_profile="kubelite-default")
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec["process"]["apparmorProfile"] == "kubelite-default"
    assert "seccomp" not in _spec(make_pod())["linux"] and "apparmorProfile" not in _spec(make_pod())["process"]
    with pytest.raises(ocispec.SpecError, match="invalid seccomp profile"):
        _spec(make_pod(), seccomp_profile={"defaultAction": "SCMP_ACT_WHATEVER"})


def test_the_sandbox_spec_sets_the_pods_sysctls():
    config = SandboxConfig(uid="u", name="p", namespace="default", attempt=0, sandbox_hash="h", hostname="p",
                           sysctls=(("net.ipv4.ip_local_port_range", "1024 2048"), ("kernel.shm_rmid_forced", "1")))
    spec = ocispec.build_sandbox_spec(config=config, rootfs="/r", catatonit_host_path="/c", cgroups_path="/g",
                                      annotations={})
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_local_port_range": "1024 2048", "kernel.shm_rmid_forced": "1"}
    plain = ocispec.build_sandbox_spec(config=SandboxConfig(uid="u", name="p", namespace="default", attempt=0,
                                                            sandbox_hash="h", hostname="p"),
                                       rootfs="/r", catatonit_host_path="/c", cgroups_path="/g", annotations={})
    assert "sysctl" not in plain["linux"] and "seccomp" not in plain["linux"]
    filtered = ocispec.build_sandbox_spec(config=config, rootfs="/r", catatonit_host_path="/c", cgroups_path="/g",
                                          annotations={}, seccomp_profile=DOCKER_STYLE, machine="x86_64")
    rules = [(s["names"], s["action"]) for s in filtered["linux"]["seccomp"]["syscalls"]]
    assert (["bpf"], "SCMP_ACT_ERRNO") in rules and (["bpf"], "SCMP_ACT_ALLOW") not in rules   # no capabilities
    assert security.sandbox_seccomp_profile(make_pod(sc={"seccompProfile": {"type": "RuntimeDefault"}})) == UN
    assert security.sandbox_seccomp_profile(make_pod(), seccomp_default=True) == RD
    assert security.sandbox_seccomp_profile(make_pod(annotations={POD_ANN: "localhost/a.json"})) == \
        SecurityProfile("Localhost", "a.json")
    assert security.pod_sysctls(make_pod(pod_sc={"sysctls": [{"name": "net/ipv4/tcp_syncookies", "value": "1"}]})) \
        == {"net.ipv4.tcp_syncookies": "1"}


# ------------------------------------------------------------------------------ pod-level resources


def resources_doc(pod_resources: dict, *containers: dict, init: list[dict] | None = None) -> dict[str, Any]:
    doc = pod_doc(containers=[f"c{i}" for i in range(len(containers))] or ["c0"])
    for c, res in zip(doc["spec"]["containers"], containers):
        c["resources"] = res
    if init:
        doc["spec"]["initContainers"] = [{"name": f"i{j}", "image": "busybox:1.36", **extra}
                                         for j, extra in enumerate(init)]
    doc["spec"]["resources"] = pod_resources
    return doc


@pytest.mark.parametrize("pod_resources, containers, init, expected", [
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, [{}], None, []),
    ({"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}, [{"requests": {"cpu": "200m"}}], None, []),
    ({"limits": {"nvidia.com/gpu": "1"}}, [{}], None,
     ['spec.resources.limits.nvidia.com/gpu: Unsupported value: supported values: "cpu", "memory"']),
    ({"limits": {"memory": "lots"}}, [{}], None,
     ["spec.resources.limits.memory: Invalid value: must be a quantity such as 500m, 2 or 64Mi"]),
    ({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}, [{}], None,
     ["spec.resources.requests.cpu: Invalid value: must be less than or equal to cpu limit"]),
    ({"requests": {"cpu": "300m"}}, [{"requests": {"cpu": "200m"}}, {"requests": {"cpu": "200m"}}], None,
     ["spec.resources.requests: Invalid value: cpu must be greater than or equal to aggregate container requests"]),
    # KEP-2837 example 2: containers' limits default their requests; 60+60 > the pod's limit of 100
    ({"limits": {"memory": "100Gi"}}, [{"limits": {"memory": "60Gi"}}, {"limits": {"memory": "60Gi"}}], None,
     ["spec.resources.requests.memory: Invalid value: must be less than or equal to memory limit"]),
    ({"limits": {"memory": "1Gi"}}, [{"limits": {"memory": "2Gi"}}], None,
     ["spec.resources.requests.memory: Invalid value: must be less than or equal to memory limit",
      "spec.containers[0].resources.limits.memory: Invalid value: must be less than or equal to pod limits"]),
    # an init container counts alone (it runs before the app containers): max(300, 100+100) fits 300
    ({"requests": {"cpu": "300m"}}, [{"requests": {"cpu": "100m"}}, {"requests": {"cpu": "100m"}}],
     [{"resources": {"requests": {"cpu": "300m"}}}], []),
    # a sidecar runs beside them: 100 + 100 + 200 > 300
    ({"requests": {"cpu": "300m"}}, [{"requests": {"cpu": "100m"}}, {"requests": {"cpu": "100m"}}],
     [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}}],
     ["spec.resources.requests: Invalid value: cpu must be greater than or equal to aggregate container requests"]),
])
def test_pod_level_resources_validation(pod_resources, containers, init, expected):
    assert errors(resources_doc(pod_resources, *containers, init=init)) == expected


@pytest.mark.parametrize("pod_resources, containers, qos", [
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, [{}], "Guaranteed"),                   # requests default to limits
    ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}, [{}], "Guaranteed"),
    ({"limits": {"memory": "1Gi"}}, [{}], "Burstable"),
    ({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}, [{}], "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, [{"requests": {"cpu": "100m"}}], "Burstable"),  # derived request
    ({}, [{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),                    # container-level rules
])
def test_qos_class_with_pod_level_resources(pod_resources, containers, qos):
    decoded = decode(resources_doc(pod_resources, *containers))
    assert decoded.errors == []
    assert qos_class(decoded.desired.pod) == qos


def test_pod_level_resources_reach_the_pod_cgroup_and_cap_containers_without_a_limit():
    limited = decode(resources_doc({"limits": {"cpu": "500m", "memory": "64Mi"}})).desired.pod
    values = ocispec.pod_cgroup_resources(security.pod_cgroup_requirements(limited))
    assert values == {"memory_limit": 64 << 20, "cpu_quota": 50_000, "cpu_period": 100_000, "cpu_shares": 512}
    assert ocispec.pod_cgroup_resources(ResourceRequirements(requests={"cpu": "250m"})) == {"cpu_shares": 256}
    assert ocispec.pod_cgroup_resources(None) == {}
    pod = make_pod()
    capped = _spec(pod, pod_resources=ResourceRequirements(limits={"memory": "64Mi", "cpu": "500m"}))
    assert capped["linux"]["resources"]["memory"] == {"limit": 64 << 20}
    assert capped["linux"]["resources"]["cpu"]["quota"] == 50_000
    own = make_pod(sc=None)
    own.spec.containers[0].resources.limits["memory"] = "32Mi"
    assert _spec(own, pod_resources=ResourceRequirements(limits={"memory": "64Mi"}))["linux"]["resources"][
        "memory"] == {"limit": 32 << 20}


def test_the_pod_cgroup_s_cpu_shares_follow_the_defaulted_request_the_containers_aggregate():
    pod = decode(resources_doc({"limits": {"cpu": "2"}}, {"requests": {"cpu": "100m"}},
                               {"requests": {"cpu": "150m"}})).desired.pod
    defaulted = security.pod_cgroup_requirements(pod)
    assert defaulted is not None and defaulted.requests == {"cpu": "250m"}
    assert ocispec.pod_cgroup_resources(defaulted)["cpu_shares"] == 256     # not 2048, the limit's
    assert security.pod_cgroup_requirements(make_pod()) is None


def test_a_container_without_a_request_takes_the_pod_limit_as_its_maximum_not_as_its_request():
    pod = make_pod(sc=None)
    cpu = _spec(pod, pod_resources=ResourceRequirements(limits={"cpu": "4"}))["linux"]["resources"]["cpu"]
    assert cpu == {"shares": 2, "quota": 400_000, "period": 100_000}
    pod.spec.containers[0].resources.limits["cpu"] = "1"   # its own limit is its request
    assert _spec(pod, pod_resources=ResourceRequirements(limits={"cpu": "4"}))["linux"]["resources"]["cpu"][
        "shares"] == 1024


def test_the_deprecated_annotations_are_warned_about():
    doc = pod_doc()
    doc["metadata"]["annotations"] = {POD_ANN: "runtime/default",
                                      "container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
    warnings = [str(w) for w in decode(doc).warnings]
    assert any(w.startswith(f"metadata.annotations[{POD_ANN}]: deprecated") and "seccompProfile" in w
               for w in warnings)
    assert "metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]: deprecated since v1.30; " \
           'use the "appArmorProfile" field instead' in warnings


# ------------------------------------------------------------------------------ the agent, on the fake runtime


def test_the_dry_run_refuses_an_unsafe_sysctl_and_passes_the_profiles_to_the_runtime(tmp_path):
    from tests.simulated import simulated_node

    with simulated_node(tmp_path, seccomp_default=True, allowed_unsafe_sysctls=("net.core.somaxconn",),
                        apparmor_enabled=False) as node:
        refused = pod_doc("refused")
        refused["spec"]["securityContext"] = {"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}
        allowed = pod_doc("allowed")
        allowed["spec"]["securityContext"] = {"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}
        allowed["spec"]["containers"].append({"name": "loose", "image": "busybox:1.36",
                                              "securityContext": {"seccompProfile": {"type": "Unconfined"}}})
        node.write("refused.yaml", refused)
        node.write("allowed.yaml", allowed)
        node.settle()
        assert node.pod("refused")["status"]["phase"] == "Failed"
        assert node.row("refused").status == "SysctlForbidden"
        [event] = node.events("SysctlForbidden")
        assert event["type"] == "Warning" and event["message"] == \
            'forbidden sysctl: "kernel.msgmax" not allowlisted'
        assert node.row("allowed").status == "Running"
        by_name = {c.container.name: c for c in node.runtime.configs.values()}
        assert set(by_name) == {"app", "loose"}, "nothing of the refused pod was created"
        assert by_name["app"].seccomp == RD and by_name["loose"].seccomp == UN
        assert by_name["app"].apparmor is None


def test_serve_refuses_allowed_unsafe_sysctls_that_are_not_namespaced(tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "KUBELITE_ROOT": str(tmp_path / "state"), "KUBELITE_RUN_DIR": str(tmp_path / "run"),
           "KUBELITE_MANIFESTS": str(tmp_path / "m"), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    result = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake", "--no-api",
                             "--allowed-unsafe-sysctls", "kernel.msg*,vm.swappiness"],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "--allowed-unsafe-sysctls: the sysctls vm.swappiness are not known to be namespaced" in result.stderr


@pytest.mark.parametrize("release, expected", [
    ("6.1.0-13-amd64", (6, 1, 0)), ("6.0-13-amd64", (6, 0)), ("5.15.0-91-generic", (5, 15, 0)),
    ("4.14", (4, 14)), ("6.8.0+rc1", (6, 8, 0)),
])
def test_one_kernel_version_parser_reads_releases_and_min_kernel_alike(release, expected):
    from kubelite.runtime import linux

    assert linux.kernel_version(release) == expected
    rule = {"names": ["membarrier"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.0-13-amd64"}}
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule]}
    kept = seccomp.oci_seccomp(profile, machine="x86_64", capabilities=(), kernel=(6, 0, 5))["syscalls"]
    assert [r["names"] for r in kept] == [["membarrier"]]   # 6.0 >= 6.0, not 6.13
    assert not seccomp.oci_seccomp(profile, machine="x86_64", capabilities=(), kernel=(5, 19)).get("syscalls")
