"""The OCI spec builders: Kubernetes container fields → runc config.json, conmon argv, signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.models import Container, PodSecurityContext
from kubelite.errors import RuntimeError_
from kubelite.runtime import ocispec
from kubelite.runtime.ocispec import SandboxNamespaces, SpecError
from kubelite.runtime.protocol import ContainerConfig, SandboxConfig


@dataclass(frozen=True)
class Image:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("sh",)
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str | None = None


def container(**fields: Any) -> Container:
    return Container.model_validate({"name": "app", "image": "busybox:1.36", **fields})


NS = SandboxNamespaces(net="/run/netns/p1", ipc="/proc/42/ns/ipc", uts="/proc/42/ns/uts")


def spec(c: Container | None = None, *, image: Image = Image(), namespaces: SandboxNamespaces = NS,
         **kw: Any) -> dict[str, Any]:
    config = ContainerConfig(uid="u1", pod_name="web", namespace="default", container=c or container(),
                             attempt=0, spec_hash="h")
    return ocispec.build_container_spec(config=config, image=image, rootfs="/r/rootfs", namespaces=namespaces,
                                        cgroups_path="/kubelite/podu1/c1", hostname="web",
                                        annotations={"io.kubelite.uid": "u1"}, **kw)


def caps_of(s: dict[str, Any]) -> list[str]:
    caps = s["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert "inheritable" not in caps and "ambient" not in caps
    return caps["bounding"]


# --------------------------------------------------------------------------------- command


DOCS_IMAGE = Image(entrypoint=("/ep-1",), cmd=("foo", "bar"))


@pytest.mark.parametrize("command, args, expected", [
    # The table of "Define a Command and Arguments for a Container" (kubernetes.io).
    ([], [], ["/ep-1", "foo", "bar"]),          # neither: the image's ENTRYPOINT and CMD
    (["/ep-2"], [], ["/ep-2"]),                 # command only: image CMD is ignored too
    ([], ["zoo", "boo"], ["/ep-1", "zoo", "boo"]),  # args only: the image's ENTRYPOINT with them
    (["/ep-2"], ["zoo", "boo"], ["/ep-2", "zoo", "boo"]),  # both: the image is ignored
], ids=["neither", "command-only", "args-only", "both"])
def test_command_and_args_merge_with_the_image_by_the_kubernetes_table(command, args, expected):
    assert ocispec.resolve_command(container(command=command, args=args), DOCS_IMAGE) == expected


def test_a_container_with_nothing_to_run_is_a_spec_error():
    with pytest.raises(SpecError, match="no command specified") as raised:
        ocispec.resolve_command(container(), Image(cmd=()))
    assert isinstance(raised.value, RuntimeError_)


def test_an_empty_string_entrypoint_counts_as_no_entrypoint():
    assert ocispec.resolve_command(container(), Image(entrypoint=("",), cmd=("sh",))) == ["sh"]


def test_command_and_args_expand_from_the_container_env_not_the_image_env():
    c = container(command=["echo", "$(GREETING)"], args=["$(NAME)", "$$(GREETING)", "$(FROM_IMAGE)"],
                  env=[{"name": "GREETING", "value": "hello"}, {"name": "NAME", "value": "$(GREETING) world"}])
    argv = ocispec.resolve_command(c, Image(env=("FROM_IMAGE=img",)))
    assert argv == ["echo", "hello", "hello world", "$(GREETING)", "$(FROM_IMAGE)"]


def test_env_values_expand_only_earlier_entries():
    c = container(env=[{"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-$(C)"},
                       {"name": "C", "value": "c"}, {"name": "A", "value": "[$(A)]"}])
    assert ocispec.expanded_env(c) == {"A": "[a]", "B": "a-$(C)", "C": "c"}


# --------------------------------------------------------------------------------- env


def test_env_is_defaults_then_image_then_container_each_replacing_by_name_in_place():
    image = Image(env=("PATH=/img/bin", "A=image", "B=image", "GONE"))
    c = container(env=[{"name": "A", "value": "container"}, {"name": "C", "value": "$(A)"},
                       {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    assert ocispec.container_env(c, image, hostname="web") == [
        "PATH=/img/bin", "HOSTNAME=web", "A=container", "B=image", "C=container"]


def test_env_has_a_default_path_and_the_manifest_may_override_hostname():
    c = container(env=[{"name": "HOSTNAME", "value": "mine"}, {"name": "EMPTY"}])
    assert ocispec.container_env(c, Image(), hostname="web") == [
        f"PATH={ocispec.DEFAULT_PATH}", "HOSTNAME=mine", "EMPTY="]


def test_an_image_entry_without_equals_unsets_the_name():
    assert ocispec.container_env(container(), Image(env=("PATH",)), hostname="web") == ["HOSTNAME=web"]


# --------------------------------------------------------------------------------- capabilities


WITHOUT_SYS_TIME = [c for c in ocispec.ALL_CAPABILITIES if c != "CAP_SYS_TIME"]


@pytest.mark.parametrize("security, expected", [
    (None, sorted(ocispec.DEFAULT_CAPABILITIES, key=ocispec.ALL_CAPABILITIES.index)),
    ({"capabilities": {"drop": ["ALL"]}}, []),
    ({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}, ["CAP_NET_BIND_SERVICE"]),
    ({"capabilities": {"drop": ["all", "CHOWN"], "add": ["chown"]}}, []),     # named drop wins over named add
    ({"capabilities": {"add": ["ALL"], "drop": ["SYS_TIME"]}}, WITHOUT_SYS_TIME),
    ({"capabilities": {"drop": ["NET_RAW", "CAP_MKNOD"]}},
     sorted(ocispec.DEFAULT_CAPABILITIES - {"CAP_NET_RAW", "CAP_MKNOD"}, key=ocispec.ALL_CAPABILITIES.index)),
    ({"privileged": True}, list(ocispec.ALL_CAPABILITIES)),
    ({"privileged": True, "capabilities": {"drop": ["ALL"]}}, list(ocispec.ALL_CAPABILITIES)),
], ids=["default", "drop-all", "drop-all-add-one", "drop-beats-add", "all-but-sys-time", "drop-some",
        "privileged", "privileged-ignores-drop"])
def test_capabilities(security, expected):
    assert caps_of(spec(container(securityContext=security))) == expected


def test_the_default_set_never_lets_a_container_set_the_clock():
    assert "CAP_SYS_TIME" not in caps_of(spec())
    assert len(caps_of(spec())) == 14


@pytest.mark.parametrize("name", ["SYS_TIME", "sys_time", "CAP_SYS_TIME"])
def test_sys_time_only_when_the_manifest_adds_it(name):
    caps = caps_of(spec(container(securityContext={"capabilities": {"add": [name]}})))
    assert "CAP_SYS_TIME" in caps and len(caps) == 15


def test_capability_mask_reads_a_proc_status_bit_mask():
    assert ocispec.capability_mask("000001fffeffffff") == set(ocispec.ALL_CAPABILITIES) - {"CAP_SYS_RESOURCE"}
    assert ocispec.capability_mask(0b100001) == {"CAP_CHOWN", "CAP_KILL"}


HOST = ocispec.capability_mask("000001fffeffffff") - {"CAP_MKNOD"}   # a runtime without SYS_RESOURCE and MKNOD


@pytest.mark.parametrize("security, expected", [
    ({"privileged": True}, [c for c in ocispec.ALL_CAPABILITIES if c in HOST]),
    ({"capabilities": {"add": ["ALL"]}}, [c for c in ocispec.ALL_CAPABILITIES if c in HOST]),
    (None, sorted(ocispec.DEFAULT_CAPABILITIES - {"CAP_MKNOD"}, key=ocispec.ALL_CAPABILITIES.index)),
], ids=["privileged", "add-all", "default"])
def test_all_capabilities_means_those_the_runtime_holds(security, expected):
    s = spec(container(securityContext=security), host_capabilities=HOST)
    assert caps_of(s) == expected


def test_adding_a_capability_the_runtime_lacks_is_a_spec_error():
    with pytest.raises(SpecError, match="CAP_SYS_RESOURCE"):
        spec(container(securityContext={"capabilities": {"add": ["SYS_RESOURCE"]}}), host_capabilities=HOST)


def test_an_unknown_capability_is_a_spec_error():
    with pytest.raises(SpecError, match="NOT_A_CAP"):
        spec(container(securityContext={"capabilities": {"add": ["NOT_A_CAP"]}}))


@pytest.mark.parametrize("allow, expected", [(None, False), (True, False), (False, True)])
def test_no_new_privileges_exactly_when_privilege_escalation_is_disallowed(allow, expected):
    s = spec(container(securityContext={"allowPrivilegeEscalation": allow}))
    assert s["process"]["noNewPrivileges"] is expected


# --------------------------------------------------------------------------------- user, root, cwd


@pytest.mark.parametrize("security, pod, image_user, passwd, expected", [
    (None, None, "", None, (0, 0)),
    ({"runAsUser": 1000}, None, "", None, (1000, 0)),
    ({"runAsUser": 1000, "runAsGroup": 3000}, None, "", None, (1000, 3000)),
    ({"runAsUser": 1000}, None, "5:5", None, (1000, 0)),           # runAsUser replaces the image user
    (None, {"runAsUser": 7, "runAsGroup": 8}, "", None, (7, 8)),    # from the pod's securityContext
    ({"runAsUser": 1}, {"runAsUser": 7, "runAsGroup": 8}, "", None, (1, 8)),  # container wins per field
    (None, None, "1000", None, (1000, 0)),
    (None, None, "1000:50", None, (1000, 50)),
    (None, None, "1000", "app:x:1000:77::/:/bin/sh\n", (1000, 77)),  # primary group from passwd
    (None, None, "nobody", "nobody:x:65534:65534::/:/bin/false\n", (65534, 65534)),
    ({"runAsGroup": 9}, None, "1000:50", None, (1000, 9)),
], ids=["root", "run-as-user", "user-and-group", "overrides-image", "pod-level", "container-over-pod",
        "image-uid", "image-uid-gid", "image-uid-passwd-gid", "image-name-via-passwd", "run-as-group-only"])
def test_user(security, pod, image_user, passwd, expected):
    s = spec(container(securityContext=security), image=Image(user=image_user),
             pod_security=PodSecurityContext.model_validate(pod) if pod else None, etc_passwd=passwd)
    assert (s["process"]["user"]["uid"], s["process"]["user"]["gid"]) == expected


def test_an_image_user_name_that_cannot_be_resolved_is_an_error_not_root():
    with pytest.raises(SpecError, match="unable to find user nobody"):
        spec(image=Image(user="nobody"))


def test_supplemental_groups_and_fs_group_become_additional_gids():
    pod = PodSecurityContext.model_validate({"supplementalGroups": [5, 6], "fsGroup": 2000})
    assert spec(pod_security=pod)["process"]["user"]["additionalGids"] == [5, 6, 2000]


@pytest.mark.parametrize("security, image_user, message", [
    ({"runAsNonRoot": True}, "", "image will run as root"),
    ({"runAsNonRoot": True}, "0", "image will run as root"),
    ({"runAsNonRoot": True, "runAsUser": 0}, "1000", "runAsUser breaks non-root policy"),
    ({"runAsNonRoot": True}, "app", "non-numeric user"),
])
def test_run_as_non_root_refuses_root_and_unverifiable_users(security, image_user, message):
    with pytest.raises(SpecError, match=message):
        spec(container(securityContext=security), image=Image(user=image_user))


@pytest.mark.parametrize("security, image_user", [({"runAsNonRoot": True, "runAsUser": 1}, ""),
                                                  ({"runAsNonRoot": True}, "1000")])
def test_run_as_non_root_accepts_a_non_root_uid(security, image_user):
    assert spec(container(securityContext=security), image=Image(user=image_user))["process"]["user"]["uid"] > 0


@pytest.mark.parametrize("readonly", [None, False, True])
def test_root_is_read_only_only_when_the_manifest_says_so(readonly):
    s = spec(container(securityContext={"readOnlyRootFilesystem": readonly}))
    assert s["root"] == {"path": "/r/rootfs", "readonly": bool(readonly)}


@pytest.mark.parametrize("working_dir, image_dir, expected", [
    (None, "", "/"), (None, "/srv", "/srv"), ("/work", "/srv", "/work")])
def test_cwd_is_working_dir_else_the_image_working_dir_else_root(working_dir, image_dir, expected):
    assert spec(container(workingDir=working_dir), image=Image(working_dir=image_dir))["process"]["cwd"] == expected


def test_a_relative_working_dir_is_a_spec_error():
    with pytest.raises(SpecError, match="absolute"):
        spec(container(workingDir="rel"))


# --------------------------------------------------------------------------------- resources


@pytest.mark.parametrize("resources, expected", [
    ({}, {"cpu": {"shares": 2}}),
    ({"limits": {"cpu": "500m"}}, {"cpu": {"shares": 512, "quota": 50000, "period": 100000}}),
    ({"limits": {"cpu": 0.5}, "requests": {"cpu": "100m"}},
     {"cpu": {"shares": 102, "quota": 50000, "period": 100000}}),
    ({"requests": {"cpu": "100m"}}, {"cpu": {"shares": 102}}),
    ({"requests": {"cpu": "1m"}, "limits": {"cpu": "1m"}}, {"cpu": {"shares": 2, "quota": 1000, "period": 100000}}),
    ({"limits": {"cpu": "2"}}, {"cpu": {"shares": 2048, "quota": 200000, "period": 100000}}),
    ({"limits": {"memory": "64Mi"}}, {"cpu": {"shares": 2}, "memory": {"limit": 64 * 2**20}}),
    ({"limits": {"memory": "1G"}, "requests": {"memory": "10M"}}, {"cpu": {"shares": 2}, "memory": {"limit": 10**9}}),
], ids=["best-effort", "half-cpu-limit", "limit-and-request", "request-only", "tiny-cpu", "two-cpus",
        "memory-mi", "memory-g"])
def test_resources_become_cgroup_settings_as_the_kubelet_computes_them(resources, expected):
    got = spec(container(resources=resources))["linux"]["resources"]
    assert {k: v for k, v in got.items() if k not in ("devices", "pids")} == expected
    assert got["pids"] == {"limit": 4096}


def test_pids_limit_and_nofile_come_from_the_caller():
    s = spec(pids_limit=100, nofile=20000)
    assert s["linux"]["resources"]["pids"] == {"limit": 100}
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]
    assert "pids" not in spec(pids_limit=None)["linux"]["resources"]
    assert spec()["process"]["rlimits"][0]["hard"] == 1024


def test_devices_are_denied_except_the_standard_set_unless_privileged():
    rules = spec()["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r["type"], r.get("major"), r.get("minor")) for r in rules[1:] if r["access"] == "rwm"}
    assert allowed == {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 2),
                       ("c", 136, None)}
    assert spec(container(securityContext={"privileged": True}))["linux"]["resources"]["devices"] == [
        {"allow": True, "access": "rwm"}]


# --------------------------------------------------------------------------------- namespaces, paths, mounts


@pytest.mark.parametrize("namespaces, expected", [
    (NS, [{"type": "pid"}, {"type": "mount"}, {"type": "ipc", "path": "/proc/42/ns/ipc"},
          {"type": "uts", "path": "/proc/42/ns/uts"}, {"type": "network", "path": "/run/netns/p1"}]),
    (SandboxNamespaces(net="/run/netns/p1", ipc="/i", uts="/u", pid="/proc/42/ns/pid"),
     [{"type": "pid", "path": "/proc/42/ns/pid"}, {"type": "mount"}, {"type": "ipc", "path": "/i"},
      {"type": "uts", "path": "/u"}, {"type": "network", "path": "/run/netns/p1"}]),
    (SandboxNamespaces(net=None, ipc="/i", uts="/u"),
     [{"type": "pid"}, {"type": "mount"}, {"type": "ipc", "path": "/i"}, {"type": "uts", "path": "/u"}]),
], ids=["own-pid", "share-process-namespace", "host-network"])
def test_namespaces(namespaces, expected):
    assert spec(namespaces=namespaces)["linux"]["namespaces"] == expected


def test_a_container_has_no_hostname_of_its_own_and_carries_path_and_annotations():
    s = spec()
    assert "hostname" not in s
    assert s["ociVersion"] == "1.0.2"
    assert s["linux"]["cgroupsPath"] == "/kubelite/podu1/c1"
    assert s["annotations"] == {"io.kubelite.uid": "u1"}
    assert s["process"]["terminal"] is False
    assert "HOSTNAME=web" in s["process"]["env"]
    json.dumps(s)  # plain JSON data


def test_masked_and_readonly_paths_unless_privileged():
    s = spec()
    assert "/proc/kcore" in s["linux"]["maskedPaths"] and "/sys/firmware" in s["linux"]["maskedPaths"]
    assert s["linux"]["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    privileged = spec(container(securityContext={"privileged": True}))
    assert "maskedPaths" not in privileged["linux"] and "readonlyPaths" not in privileged["linux"]


def mounts_by_destination(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in s["mounts"]}


def test_standard_mounts_and_a_private_shm_without_a_sandbox_shm():
    mounts = mounts_by_destination(spec())
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert mounts["/dev/shm"]["type"] == "tmpfs"
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert "newinstance" in mounts["/dev/pts"]["options"]


def test_the_sandbox_shm_and_etc_files_are_bound_and_follow_a_read_only_root():
    ns = SandboxNamespaces(net=None, ipc="/i", uts="/u", shm_path="/pods/u1/shm", etc_hostname="/pods/u1/hostname",
                           etc_hosts="/pods/u1/hosts", resolv_conf="/pods/u1/resolv.conf")
    extra = [{"destination": "/data", "type": "bind", "source": "/pods/u1/volumes/data", "options": ["rbind"]}]
    mounts = mounts_by_destination(spec(namespaces=ns, extra_mounts=extra))
    assert mounts["/dev/shm"]["source"] == "/pods/u1/shm" and mounts["/dev/shm"]["type"] == "bind"
    assert mounts["/etc/hosts"] == {"destination": "/etc/hosts", "type": "bind", "source": "/pods/u1/hosts",
                                    "options": ["rbind", "rprivate", "rw"]}
    assert mounts["/etc/resolv.conf"]["source"] == "/pods/u1/resolv.conf"
    assert mounts["/etc/hostname"]["source"] == "/pods/u1/hostname"
    assert list(mounts)[-1] == "/data"
    readonly = mounts_by_destination(spec(container(securityContext={"readOnlyRootFilesystem": True}), namespaces=ns))
    assert readonly["/etc/hosts"]["options"][-1] == "ro"


def test_a_privileged_container_gets_sysfs_and_cgroups_read_write():
    mounts = mounts_by_destination(spec(container(securityContext={"privileged": True})))
    assert "rw" in mounts["/sys"]["options"] and "rw" in mounts["/sys/fs/cgroup"]["options"]


# --------------------------------------------------------------------------------- sandbox


def sandbox(**kw: Any) -> dict[str, Any]:
    config_fields = {k: kw.pop(k) for k in ("host_network", "share_process_namespace") if k in kw}
    config = SandboxConfig(uid="u1", name="web", namespace="default", attempt=0, sandbox_hash="s",
                           hostname="web-host", **config_fields)
    return ocispec.build_sandbox_spec(config=config, rootfs="/r/sb", catatonit_host_path="/usr/bin/catatonit",
                                      cgroups_path="/kubelite/podu1/sandbox", annotations={"a": "b"}, **kw)


def test_the_sandbox_is_catatonit_pausing_in_its_own_namespaces_with_the_pod_hostname():
    s = sandbox()
    assert s["process"]["args"] == ["/catatonit", "-P"]
    assert s["hostname"] == "web-host"
    assert s["linux"]["namespaces"] == [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
                                        {"type": "network"}]
    assert s["process"]["capabilities"] == {"bounding": [], "effective": [], "permitted": []}
    assert s["process"]["noNewPrivileges"] is True
    assert s["root"] == {"path": "/r/sb", "readonly": True}
    assert {"destination": "/catatonit", "type": "bind", "source": "/usr/bin/catatonit",
            "options": ["rbind", "ro", "nosuid", "nodev"]} in s["mounts"]
    assert s["linux"]["maskedPaths"] and s["linux"]["readonlyPaths"]
    assert s["linux"]["cgroupsPath"] == "/kubelite/podu1/sandbox" and s["annotations"] == {"a": "b"}
    json.dumps(s)


def test_the_sandbox_joins_a_pinned_network_namespace_when_given():
    assert {"type": "network", "path": "/run/netns/p1"} in sandbox(net_path="/run/netns/p1")["linux"]["namespaces"]


def test_a_host_network_sandbox_uses_the_host_network_and_uts_and_sets_no_hostname():
    s = sandbox(host_network=True, net_path="/ignored")
    assert [ns["type"] for ns in s["linux"]["namespaces"]] == ["pid", "mount", "ipc"]
    assert "hostname" not in s


def test_the_pause_binary_path_is_configurable():
    s = sandbox(pause_binary_path_in_rootfs="/pause")
    assert s["process"]["args"][0] == "/pause" and mounts_by_destination(s)["/pause"]["source"] == "/usr/bin/catatonit"


# --------------------------------------------------------------------------------- conmon, signals


CONMON = dict(conmon="/usr/bin/conmon", runtime="/usr/sbin/runc", runtime_root="/run/kubelite/runc",
              container_id="c1", name="default_web_app_0", bundle="/pods/u1/c1", pidfile="/pods/u1/c1/pidfile",
              conmon_pidfile="/pods/u1/c1/conmon.pid", exit_dir="/run/kubelite/exits",
              persist_dir="/pods/u1/c1", log_path="/logs/default_web_u1/app/0.log", socket_dir="/run/kubelite/sock")


def test_conmon_argv_is_the_verified_command_line():
    assert ocispec.conmon_argv(**CONMON, log_size_max=None) == [
        "/usr/bin/conmon", "--api-version", "1", "-c", "c1", "-u", "c1", "-n", "default_web_app_0",
        "-r", "/usr/sbin/runc", "-b", "/pods/u1/c1", "-p", "/pods/u1/c1/pidfile", "-P", "/pods/u1/c1/conmon.pid",
        "--exit-dir", "/run/kubelite/exits", "--persist-dir", "/pods/u1/c1",
        "-l", "k8s-file:/logs/default_web_u1/app/0.log", "--socket-dir-path", "/run/kubelite/sock",
        "--log-level", "info", "--runtime-arg", "--root=/run/kubelite/runc"]


def test_conmon_argv_caps_the_log_and_runs_an_exec_with_a_timeout():
    argv = ocispec.conmon_argv(**CONMON, log_size_max=10_000_000, exec_=True, exec_process_spec="/x/process.json",
                               timeout=5)
    assert argv[:-7] == ocispec.conmon_argv(**CONMON, log_size_max=None)
    assert argv[-7:] == ["--log-size-max", "10000000", "-e", "--exec-process-spec", "/x/process.json", "-T", "5"]
    with pytest.raises(ValueError):
        ocispec.conmon_argv(**CONMON, log_size_max=None, exec_=True)


@pytest.mark.parametrize("name, number", [
    ("TERM", 15), ("SIGTERM", 15), ("sigterm", 15), ("15", 15), ("KILL", 9), ("SIGKILL", 9), ("HUP", 1),
    ("INT", 2), ("QUIT", 3), ("USR1", 10), ("USR2", 12), ("winch", 28), ("RTMIN+3", int(signal.SIGRTMIN) + 3),
    ("SIGRTMAX", int(signal.SIGRTMAX)), (" term ", 15)])
def test_signal_names_and_numbers(name, number):
    assert ocispec.signal_number(name) == number


@pytest.mark.parametrize("name", ["", "0", "99", "NOPE", "SIG", "-9", "RTMAX+1", "TERM!"])
def test_an_invalid_signal_is_a_value_error(name):
    with pytest.raises(ValueError):
        ocispec.signal_number(name)


def test_stop_signal_is_the_manifest_s_then_the_image_s_then_term():
    assert ocispec.stop_signal(container(), Image()) == 15
    assert ocispec.stop_signal(container(), Image(stop_signal="SIGQUIT")) == 3
    assert ocispec.stop_signal(container(lifecycle={"stopSignal": "SIGUSR1"}), Image(stop_signal="SIGQUIT")) == 10


# --------------------------------------------------------------------------------- the real runc


RUNC, CATATONIT, BUSYBOX = Path("/usr/sbin/runc"), Path("/usr/bin/catatonit"), Path("/bin/busybox")


@pytest.mark.skipif(os.geteuid() != 0 or not all(p.exists() for p in (RUNC, CATATONIT, BUSYBOX)),
                    reason="needs root, runc, catatonit and busybox-static")
def test_runc_runs_a_container_inside_a_sandbox_from_the_generated_specs(tmp_path):
    """runc 1.1.5 accepts both specs: a catatonit sandbox is created, and a busybox container joins it."""
    state, tag = tmp_path / "state", uuid.uuid4().hex[:8]
    sb_id, ctr_id = f"ocispec-test-sb-{tag}", f"ocispec-test-ctr-{tag}"
    sb_bundle, ctr_bundle = tmp_path / "sb", tmp_path / "ctr"
    (sb_bundle / "rootfs").mkdir(parents=True)
    (ctr_bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, ctr_bundle / "rootfs" / "bin" / "busybox")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    runc = [str(RUNC), "--root", str(state)]
    status = Path("/proc/self/status").read_text()
    host_caps = ocispec.capability_mask(status.split("CapBnd:")[1].split()[0])

    sb_config = SandboxConfig(uid="u1", name="web", namespace="default", attempt=0, sandbox_hash="s",
                              hostname="ocispec-test")
    (sb_bundle / "config.json").write_text(json.dumps(ocispec.build_sandbox_spec(
        config=sb_config, rootfs=str(sb_bundle / "rootfs"), catatonit_host_path=str(CATATONIT),
        cgroups_path=f"/{sb_id}", annotations={"io.kubelite.test": "1"})))
    try:
        # The created init keeps runc's stdio open: a pipe would never reach EOF, so stderr goes to a file.
        with open(tmp_path / "create.err", "w+") as err:
            created = subprocess.run([*runc, "create", "--bundle", str(sb_bundle), "--pid-file",
                                      str(tmp_path / "sb.pid"), sb_id], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, timeout=30)
        assert created.returncode == 0, (tmp_path / "create.err").read_text()
        pid = int((tmp_path / "sb.pid").read_text())
        ns = SandboxNamespaces(net=f"/proc/{pid}/ns/net", ipc=f"/proc/{pid}/ns/ipc", uts=f"/proc/{pid}/ns/uts",
                               etc_hosts=str(hosts))
        c = container(command=["/bin/busybox", "sh", "-c",
                               "id -u; hostname; echo $HOSTNAME; grep CapBnd /proc/self/status; "
                               "cat /etc/hosts; touch /x 2>/dev/null || echo read-only"],
                      securityContext={"runAsUser": 1234, "readOnlyRootFilesystem": True,
                                       "allowPrivilegeEscalation": False},
                      resources={"limits": {"cpu": "500m", "memory": "32Mi"}})
        config = ContainerConfig(uid="u1", pod_name="web", namespace="default", container=c, attempt=0,
                                 spec_hash="h")
        (ctr_bundle / "config.json").write_text(json.dumps(ocispec.build_container_spec(
            config=config, image=Image(cmd=()), rootfs=str(ctr_bundle / "rootfs"), namespaces=ns,
            cgroups_path=f"/{ctr_id}", hostname="ocispec-test", annotations={}, host_capabilities=host_caps)))
        ran = subprocess.run([*runc, "run", "--bundle", str(ctr_bundle), ctr_id], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=30)
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert lines[:3] == ["1234", "ocispec-test", "ocispec-test"]
        assert int(lines[3].split()[1], 16) & (1 << 25) == 0   # CAP_SYS_TIME is bit 25: not in the bounding set
        assert lines[4:] == ["127.0.0.1 localhost", "read-only"]

        # Started, catatonit is PID 1 of the pod's PID namespace; a privileged container joins it.
        started = subprocess.run([*runc, "start", sb_id], capture_output=True, text=True, timeout=30)
        assert started.returncode == 0, started.stderr
        shared = SandboxNamespaces(net=ns.net, ipc=ns.ipc, uts=ns.uts, pid=f"/proc/{pid}/ns/pid")
        script = "tr '\\0' ' ' </proc/1/cmdline; echo; grep CapBnd /proc/self/status"
        c = container(command=["/bin/busybox", "sh", "-c", script], securityContext={"privileged": True})
        config = ContainerConfig(uid="u1", pod_name="web", namespace="default", container=c, attempt=0, spec_hash="h")
        (ctr_bundle / "config.json").write_text(json.dumps(ocispec.build_container_spec(
            config=config, image=Image(cmd=()), rootfs=str(ctr_bundle / "rootfs"), namespaces=shared,
            cgroups_path=f"/{ctr_id}", hostname="ocispec-test", annotations={}, host_capabilities=host_caps)))
        ran = subprocess.run([*runc, "run", "--bundle", str(ctr_bundle), ctr_id + "-p"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=30)
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert lines[0].split() == ["/catatonit", "-P"]
        assert ocispec.capability_mask(lines[1].split()[1]) == host_caps   # privileged: all the runtime holds
    finally:
        for cid in (ctr_id + "-p", ctr_id, sb_id):
            subprocess.run([*runc, "delete", "--force", cid], capture_output=True, timeout=30)
