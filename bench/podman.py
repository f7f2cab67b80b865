"""podman, the benchmarks' reference: a store, run root, configuration and bridge of the run's own.

Owns how a benchmark runs podman beside kubelite: `Podman.open()` finds the binary (None without
it: the cells then say "not installed"), writes a `containers.conf` and a `storage.conf` below the
run's temporary directory and points `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF` at them for
every podman command (and so for the conmon and `podman container cleanup` processes podman
starts). The store (graphroot), run root, libpod's tmp dir (its events log) and the network
configuration directory are therefore the run's own: the benchmark sees no image, pod, container
or network of anyone else and touches none, and nothing under /etc or /var/lib/containers is
edited. The busybox archive is loaded under a tag of the run, `localhost/kubelite-bench-<pid>:latest`.

Networks: `none` (as kubelite's `--network none` daemons) or `bridge`, a netavark bridge network of
the run's own, written as a file into that configuration directory (podman 4.3 cannot name the
bridge at `network create`): interface `kbp<hex>`, a free /24 of 10.223.0.0/16, DNS off, as podman's
default network `podman` (bridge `podman0`, 10.88.0.0/16, no DNS) but never sharing that bridge
(or its address leases) with another podman on the machine.

Only what podman needs to work on this machine is set: when the process lacks CAP_SYS_RESOURCE (a
container sandbox), runc cannot raise the open-files limit to the 1048576 podman asks for as root,
nor the process limit above the 32768 podman sets for itself, so `default_ulimits` names the hard
limits the benchmark has (capped at 32768 processes). cgroup manager and events logger stay
podman's own choice (cgroupfs and file when systemd is not PID 1).

`close()` removes every pod the run made (`podman pod rm -f` of its own names), the image tag and
the network, waits for podman's cleanup processes of the run, and returns what is left: mounts
below the directory, the bridge, processes naming the directory. netavark's own chains
(NETAVARK_FORWARD, NETAVARK-HOSTPORT-*) stay in iptables, empty, and libpod's lock segment
/dev/shm/libpod_lock stays, as after any use of podman.

Standard library, bench_runtime's archive retagging and tests.helpers' free subnet.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path

#: podman as root asks runc for this many open files (and processes) unless told otherwise.
PODMAN_RLIMIT = 1048576
#: podman lowers its own process limit to this; its containers cannot have more.
PODMAN_NPROC = 32768
#: CAP_SYS_RESOURCE's bit in /proc/self/status CapEff.
CAP_SYS_RESOURCE = 24
NETWORK_WITHIN = "10.223.0.0/16"
K8S_FILE_STREAMS = ("stdout", "stderr")


def has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def ulimits() -> list[str]:
    """`default_ulimits` podman needs here: [] when runc may raise the limits itself."""
    if has_cap_sys_resource():
        return []
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    out = []
    if nofile != resource.RLIM_INFINITY and nofile < PODMAN_RLIMIT:
        out.append(f"nofile={nofile}:{nofile}")
    cap = PODMAN_NPROC if nproc == resource.RLIM_INFINITY else min(nproc, PODMAN_NPROC)
    out.append(f"nproc={cap}:{cap}")
    return out


def toml_str(value: str) -> str:
    return json.dumps(value)   # a TOML basic string is a JSON string for these paths


class Podman:
    """podman on a store and configuration below `base`; see the module docstring."""

    def __init__(self, binary: str, base: Path) -> None:
        self.binary, self.base = binary, base
        self.image = f"localhost/kubelite-bench-{os.getpid()}:latest"
        self.network = f"kubelite-bench-{os.getpid()}"
        self.bridge = "kbp" + uuid.uuid4().hex[:8]
        self.subnet: str | None = None
        self.pods: set[str] = set()   # every pod name this run played
        self.failure = ""   # why podman could not do what a benchmark asked, for its note
        base.mkdir(parents=True, exist_ok=True)
        conf, storage = base / "containers.conf", base / "storage.conf"
        limits = ulimits()
        conf.write_text(
            "[engine]\n"
            f"tmp_dir = {toml_str(str(base / 'tmp'))}\n"
            "[network]\n"
            f"network_config_dir = {toml_str(str(base / 'networks'))}\n"
            + ("[containers]\n" f"default_ulimits = {json.dumps(limits)}\n" if limits else ""))
        storage.write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f"graphroot = {toml_str(str(base / 'storage'))}\n"
            f"runroot = {toml_str(str(base / 'run'))}\n")
        (base / "networks").mkdir(exist_ok=True)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}

    @classmethod
    def open(cls, base: Path) -> "Podman | None":
        binary = shutil.which("podman")
        return cls(binary, base) if binary else None

    # commands

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *args]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A podman command, its output captured (a container never inherits it: podman gives its
        containers their own stdio)."""
        out = subprocess.run(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])}: {out.stderr.strip()[-300:]}")
        return out

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    # set-up

    def load(self, archive: Path) -> None:
        """The busybox `docker save` archive, loaded under the run's own tag."""
        from bench.bench_runtime import retag

        tagged = self.base / "busybox.tar"
        retag(archive, tagged, [self.image])
        self.run("load", "-q", "-i", str(tagged))

    def make_bridge(self) -> str:
        """The run's bridge network (see the module docstring); its name."""
        from tests.helpers import free_subnet

        self.subnet = free_subnet(NETWORK_WITHIN)
        gateway = self.subnet.rsplit(".", 1)[0] + ".1"
        config = {"name": self.network, "id": hashlib.sha256(self.network.encode()).hexdigest(), "driver": "bridge",
                  "network_interface": self.bridge, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "subnets": [{"subnet": self.subnet, "gateway": gateway}], "ipv6_enabled": False,
                  "internal": False, "dns_enabled": False, "ipam_options": {"driver": "host-local"}}
        (self.base / "networks" / f"{self.network}.json").write_text(json.dumps(config, indent=1))
        self.run("network", "inspect", self.network)
        return self.network

    # pods

    def play_args(self, path: Path, network: str) -> list[str]:
        return ["kube", "play", "--network", network, str(path)]

    def play(self, path: Path, names: list[str], network: str) -> None:
        """`podman kube play` of a file holding the pods `names`."""
        self.pods.update(names)
        self.run(*self.play_args(path, network))

    def down(self, path: Path, names: list[str], timeout: float = 300) -> None:
        self.run("kube", "down", str(path), timeout=timeout, check=False)
        self.remove_pods(names)

    def remove_pods(self, names: list[str]) -> None:
        """`podman pod rm -f` of those of `names` podman still lists (our own names only)."""
        listed = self.run("pod", "ps", "--format", "{{.Name}}", check=False).stdout.split()
        mine = [n for n in names if n in listed]
        if mine:
            self.run("pod", "rm", "-f", "-t", "0", *mine, timeout=300, check=False)

    def logs(self, container: str) -> list[str]:
        out = self.run("logs", container, check=False).stdout
        return [line for line in out.split("\n") if line.strip()]

    def first_lines(self, containers: list[str]) -> dict[str, str]:
        """Each container's first line of output, read from its k8s-file log (one `podman inspect`
        for all of them, no `podman logs` each); containers without a line yet are left out."""
        template = "{{.Name}} {{.HostConfig.LogConfig.Path}}"
        out = self.run("container", "inspect", "--format", template, *containers).stdout
        found = {}
        for row in out.splitlines():
            name, _, path = row.partition(" ")
            try:
                with open(path, encoding="utf-8", errors="replace") as log:
                    for line in log:
                        # k8s-file: "<RFC 3339 time> <stream> <F|P> <text>"
                        parts = line.rstrip("\n").split(" ", 3)
                        if len(parts) == 4 and parts[1] in K8S_FILE_STREAMS:
                            found[name] = parts[3]
                            break
            except OSError:
                continue
        return found

    # the end

    def close(self) -> list[str]:
        """Remove everything the run made in podman; what is left (see the module docstring)."""
        left: list[str] = []
        self.remove_pods(sorted(self.pods))
        self.run("rmi", "-f", self.image, check=False)
        if (self.base / "networks" / f"{self.network}.json").exists():
            self.run("network", "rm", "-f", self.network, check=False)
        deadline = time.monotonic() + 30
        while True:
            procs = self.processes()
            if not procs or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        left += [f"podman process {p}" for p in procs]
        prefix = str(self.base) + "/"
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mount_point = line.split()[4]
            if mount_point.startswith(prefix):
                left.append(f"podman mount {mount_point}")
        if Path(f"/sys/class/net/{self.bridge}").exists():
            left.append(f"podman bridge {self.bridge}")
        return left

    def processes(self) -> list[str]:
        """Processes with the run's directory on their command line: conmon, `podman container cleanup`."""
        ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        return [line.strip() for line in ps.splitlines()[1:] if str(self.base) in line and "ps -eo" not in line]
