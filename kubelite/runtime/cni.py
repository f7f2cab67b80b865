"""Pod networking through CNI: kubelite's own network, the plugins run as the CNI spec says, the
pods' pinned network namespaces, host ports, and the check that the pod subnet is free.

Owns these files, and the interfaces, addresses and iptables rules the plugins make for them:

    <root>/cni/kubelite-<bridge>.conflist    the network kubelite uses: its own file, never /etc/cni/net.d
    <run-dir>/cni/networks/<bridge>/         host-local's leases (its dataDir): one per pod address
    <run-dir>/netns/<sandbox id>             a pod's network namespace, pinned (a bind mount of nsfs)
    <sandbox dir>/network.json               what teardown needs: the netns, the port mappings, the ADD result
    <run-dir>/cni/pending/<sandbox id>.json  the same, for a removed sandbox whose DEL failed: retried until it works

The network: a `bridge` (`kubelite0`, the pods' gateway, outbound traffic masqueraded) with
`host-local` addresses from the pod subnet, `loopback`, `portmap` (hostPort: DNAT rules, also
from the host's own addresses and 127.0.0.1) and `firewall` (accepts the pod's traffic in the
FORWARD chain, for hosts whose FORWARD policy is DROP). The plugins are Debian's
containernetworking-plugins, spec 1.0.0; kubelite runs them itself, as libcni does: ADD plugin
by plugin with the previous result as `prevResult`, DEL in reverse with the ADD result.

Everything teardown needs is written before ADD runs, so a kubelite killed at any moment (and
started again) can still run DEL with the same container id, netns and port mappings. The
namespace is pinned rather than taken from the infra process: DEL must find the pod's interface
to remove its masquerade rules, also when the infra process died first (decision 0009). After a
reboot the run directory is empty: namespaces, leases and rules are all gone with it.

The pure parts (the conflist, each plugin's input, the route clash rule, chain names) are free
functions; `Network` runs processes.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import kubelite.statefiles as statefiles
from kubelite.errors import RuntimeError_
from kubelite import layout
from kubelite.runtime import linux
from kubelite.runtime.protocol import PortMapping

log = logging.getLogger("kubelite.runtime")

CNI_VERSION = "1.0.0"
DEFAULT_BRIDGE = "kubelite0"
#: A /24 as a Kubernetes node's podCIDR; chosen away from the defaults of docker (172.17/16),
#: podman (10.88/16), CRI-O (10.85/16), flannel (10.244/16), k3s (10.42/16) and libvirt (192.168.122/24).
DEFAULT_POD_CIDR = "10.217.0.0/24"
PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
PLUGINS = ("bridge", "host-local", "loopback", "portmap", "firewall")
IFNAME = "eth0"
PLUGIN_TIMEOUT_S = 60.0
_BRIDGE_NAME_MAX = 15   # IFNAMSIZ - 1
LOCK_DIR = Path("/run/lock")


class NetworkError(RuntimeError_):
    """Pod networking failed: a plugin, a host port, the subnet, a namespace."""


class HostPortInUse(NetworkError):
    """A hostPort is taken on this machine (by a process or by another pod)."""


# --------------------------------------------------------------------------------- pure


def validate_options(*, bridge: str, pod_cidr: str) -> ipaddress.IPv4Network:
    """The pod subnet as a network; NetworkError naming the flag when either value is unusable."""
    if not bridge or len(bridge) > _BRIDGE_NAME_MAX or not all((c.isascii() and c.isalnum()) or c in "-_." for c in bridge):
        raise NetworkError(f"--bridge {bridge!r}: an interface name of 1-15 letters, digits, '-', '_' or '.'")
    try:
        subnet = ipaddress.ip_network(pod_cidr, strict=True)
    except ValueError as exc:
        raise NetworkError(f"--pod-cidr {pod_cidr!r}: {exc}") from None
    if not isinstance(subnet, ipaddress.IPv4Network):
        raise NetworkError(f"--pod-cidr {pod_cidr}: only IPv4 pod subnets are supported")
    if subnet.prefixlen > 29:
        raise NetworkError(f"--pod-cidr {pod_cidr}: too small (at most /29: a gateway and a few pods)")
    if subnet.is_loopback or subnet.is_multicast or subnet.is_link_local or subnet.is_unspecified:
        raise NetworkError(f"--pod-cidr {pod_cidr}: not a usable unicast subnet")
    return subnet


def conflist(*, bridge: str, subnet: str, data_dir: str) -> dict[str, Any]:
    """kubelite's network configuration list (the CNI `.conflist` format)."""
    return {
        "cniVersion": CNI_VERSION,
        "name": bridge,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": data_dir}},
            {"type": "loopback"},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall"},
        ],
    }


def runtime_port_mappings(mappings: Iterable[PortMapping]) -> list[dict[str, Any]]:
    """The `portMappings` capability's runtimeConfig, as the kubelet's CRI runtimes pass it."""
    return [{"hostPort": m.host_port, "containerPort": m.container_port, "protocol": m.protocol.lower(),
             "hostIP": m.host_ip or ""} for m in mappings]


def plugin_input(network: dict[str, Any], plugin: dict[str, Any], *, prev_result: dict[str, Any] | None,
                 runtime_config: dict[str, Any]) -> dict[str, Any]:
    """One plugin's stdin: the network's name and version, the plugin's own keys, its capabilities'
    runtimeConfig (only those it declares), and the previous plugin's result."""
    data: dict[str, Any] = {"cniVersion": network["cniVersion"], "name": network["name"]}
    data.update(plugin)
    wanted = {k: v for k, v in runtime_config.items() if plugin.get("capabilities", {}).get(k)}
    if wanted:
        data["runtimeConfig"] = wanted
    if prev_result is not None:
        data["prevResult"] = prev_result
    return data


def route_clash(subnet: ipaddress.IPv4Network, routes: Iterable[tuple[str, str]], *, bridge: str) -> str | None:
    """The first host route (dst, device) that overlaps the pod subnet, as text; None if there is none.

    The default route and routes through kubelite's own bridge do not count.
    """
    for dst, dev in routes:
        if dev == bridge or dst in ("default", "0.0.0.0/0"):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.overlaps(subnet):
            return f"{dst} dev {dev}" if dev else dst
    return None


def masquerade_chain(network: str, container_id: str) -> str:
    """The bridge plugin's per-pod nat chain name (utils.FormatChainName): CNI- and 24 hex digits."""
    return "CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest()[:24]


def masquerade_comment(network: str, container_id: str) -> str:
    return f'name: "{network}" id: "{container_id}"'


def result_ip(result: dict[str, Any] | None) -> str | None:
    """The pod's IPv4 address from a CNI result (the first one), without its prefix length."""
    for entry in (result or {}).get("ips", []):
        address = str(entry.get("address", "")).split("/")[0]
        if address and ":" not in address:
            return address
    return None


@dataclass
class Attachment:
    """One pod's attachment to the network, as recorded before ADD: what DEL needs."""

    container_id: str
    netns: str
    port_mappings: list[dict[str, Any]] = field(default_factory=list)
    network: dict[str, Any] = field(default_factory=dict)    # the conflist used at ADD
    plugin_dir: str = PLUGIN_DIRS[0]
    result: dict[str, Any] | None = None

    @property
    def ip(self) -> str | None:
        return result_ip(self.result)


# --------------------------------------------------------------------------------- host facts


def host_routes() -> list[tuple[str, str]]:
    """The host's IPv4 routes in every table, as (dst, device)."""
    ip = shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if ip is None:
        raise NetworkError("checking the pod subnet needs the 'ip' command (iproute2)")
    out = subprocess.run([ip, "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                         timeout=10, check=False).stdout
    try:
        return [(str(r.get("dst", "")), str(r.get("dev", ""))) for r in json.loads(out or "[]")]
    except ValueError:
        return []


def host_ip() -> str | None:
    """This machine's primary IPv4 address (the source of its default route), as the kubelet's node IP.

    No packet is sent: connecting a UDP socket only picks a route. Without a default route, the
    host name's first non-loopback address; else None.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))   # TEST-NET-1: any routable address would do
            address = probe.getsockname()[0]
            if address and not address.startswith("127."):
                return str(address)
        except OSError:
            pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            address = str(info[4][0])
            if not address.startswith("127."):
                return address
    except OSError:
        pass
    return None


def check_host_port_free(mapping: PortMapping) -> None:
    """HostPortInUse if a socket on this machine already holds the port (a listener, for TCP)."""
    kind = socket.SOCK_DGRAM if mapping.protocol.upper() == "UDP" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:   # TIME_WAIT leftovers are no conflict; a listener still is
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((mapping.host_ip or "0.0.0.0", mapping.host_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise HostPortInUse(f"host port {describe_port(mapping)} is already in use on this machine") \
                    from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise NetworkError(f"hostIP {mapping.host_ip} of host port {describe_port(mapping)} is not an "
                                   "address of this machine") from None
            raise NetworkError(f"host port {describe_port(mapping)}: {exc.strerror}") from None


def describe_port(mapping: PortMapping) -> str:
    where = f"{mapping.host_ip}:" if mapping.host_ip else ""
    return f"{where}{mapping.host_port}/{mapping.protocol.upper()}"


# --------------------------------------------------------------------------------- the network


def bridge_lock_path(bridge: str, lock_dir: Path = LOCK_DIR) -> Path:
    """The lock a serving kubelite holds on its bridge (`Network.claim`)."""
    return lock_dir / f"kubelite-{bridge}.lock"


class Network:
    """kubelite's CNI network on this machine: `setup` adds a pod (the module's `teardown` removes it)."""

    def __init__(self, *, root: Path, run_dir: Path, bridge: str = DEFAULT_BRIDGE, pod_cidr: str = DEFAULT_POD_CIDR,
                 plugin_dirs: Sequence[str] = PLUGIN_DIRS) -> None:
        self.subnet = validate_options(bridge=bridge, pod_cidr=pod_cidr)
        self.bridge = bridge
        self.plugin_dir = find_plugin_dir(plugin_dirs)
        self.netns_dir = layout.netns_dir(run_dir)
        self.data_dir = layout.cni_networks_dir(run_dir)
        statefiles.make_dirs(self.netns_dir, base=run_dir)
        statefiles.make_dirs(self.data_dir, base=run_dir)
        self.config = conflist(bridge=bridge, subnet=str(self.subnet), data_dir=str(self.data_dir))
        self.conflist_path = layout.cni_conflist_path(root, bridge)
        statefiles.make_dirs(self.conflist_path.parent, base=root)
        statefiles.write_atomic(self.conflist_path, json.dumps(self.config, indent=2) + "\n")
        self.unshare = shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin") or "unshare"
        self._lock: IO[str] | None = None

    @property
    def name(self) -> str:
        return str(self.config["name"])

    def claim(self, lock_dir: Path = LOCK_DIR) -> None:
        """Hold `<lock_dir>/kubelite-<bridge>.lock` while kubelite serves: two instances on one bridge
        would hand out the same addresses from their own leases. NetworkError naming the holder."""
        handle, holder = linux.try_lock(bridge_lock_path(self.bridge, lock_dir),
                                        f"pid {os.getpid()}, state {self.conflist_path.parent.parent}")
        if handle is None:
            raise NetworkError(f"bridge {self.bridge} is in use by another kubelite ({holder}): give each instance "
                               "its own --bridge and --pod-cidr")
        self._lock = handle

    def release(self) -> None:
        """Give the bridge up (kubelite stops; its pods keep their addresses and rules)."""
        if self._lock is not None:
            Path(self._lock.name).unlink(missing_ok=True)   # nobody waits on it: claims never block
            self._lock.close()
            self._lock = None

    def check_subnet(self) -> None:
        """NetworkError when the pod subnet overlaps one of the host's routes (checked at start)."""
        clash = route_clash(self.subnet, host_routes(), bridge=self.bridge)
        if clash is not None:
            raise NetworkError(f"--pod-cidr {self.subnet} clashes with the host route {clash}: pods would be "
                               "unreachable or shadow that network; choose a free subnet with --pod-cidr")

    # ------------------------------------------------------------------ namespaces

    def pin_netns(self, sandbox_id: str) -> str:
        """A new network namespace, pinned at `<run-dir>/netns/<sandbox id>`; its path."""
        path = self.netns_dir / sandbox_id
        path.touch()
        result = subprocess.run([self.unshare, f"--net={path}", "true"], capture_output=True, text=True,
                                timeout=30, check=False)
        if result.returncode != 0:
            path.unlink(missing_ok=True)
            raise NetworkError(f"creating the pod's network namespace: {result.stderr.strip() or 'unshare failed'}")
        return str(path)

    # ------------------------------------------------------------------ ADD and DEL

    def setup(self, record_path: Path, *, sandbox_id: str, port_mappings: Sequence[PortMapping]) -> Attachment:
        """Pin a namespace and ADD the pod to the network; the attachment is recorded at
        `record_path` before ADD runs. On failure everything made so far is undone."""
        netns = self.pin_netns(sandbox_id)
        attachment = Attachment(sandbox_id, netns, runtime_port_mappings(port_mappings), network=self.config,
                                plugin_dir=str(self.plugin_dir))
        try:
            save_attachment(record_path, attachment)
            result: dict[str, Any] | None = None
            for plugin in self.config["plugins"]:
                result = _run_plugin("ADD", plugin, attachment, netns, prev_result=result)
            attachment.result = result
            save_attachment(record_path, attachment)
            if attachment.ip is None:
                raise NetworkError(f"the {self.name} network gave the pod no IPv4 address")
        except BaseException:
            try:
                teardown(record_path, attachment)
            except NetworkError as exc:
                log.warning("pod network of %s after a failed setup: %s", sandbox_id, exc)
            raise
        return attachment

def teardown(record_path: Path, attachment: Attachment | None = None) -> None:
    """DEL a pod from the network it was added to — with the configuration, container id, port
    mappings and ADD result recorded then, whatever kubelite's options are now — in reverse plugin
    order; remove the masquerade rules DEL leaves when the namespace is already gone; unpin the
    namespace; forget the attachment. Idempotent; NetworkError (record kept) when a plugin fails."""
    attachment = attachment or load_attachment(record_path)
    if attachment is None:
        return
    netns_gone = not linux.is_mountpoint(Path(attachment.netns))
    errors = []
    for plugin in reversed(attachment.network.get("plugins", [])):
        try:
            _run_plugin("DEL", plugin, attachment, "" if netns_gone else attachment.netns,
                        prev_result=attachment.result)
        except NetworkError as exc:
            errors.append(str(exc))
    if netns_gone and attachment.ip:   # the bridge plugin keeps its masquerade rules then
        _remove_masquerade(attachment)
    linux.unmount(Path(attachment.netns))
    Path(attachment.netns).unlink(missing_ok=True)
    if errors:
        raise NetworkError("; ".join(errors))
    record_path.unlink(missing_ok=True)


def _run_plugin(command: str, plugin: dict[str, Any], attachment: Attachment, netns: str, *,
                prev_result: dict[str, Any] | None) -> dict[str, Any] | None:
    """Run one plugin as the CNI spec says; its result (ADD), or `prev_result` passed on."""
    kind = str(plugin["type"])
    data = plugin_input(attachment.network, plugin, prev_result=prev_result,
                        runtime_config={"portMappings": attachment.port_mappings})
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": attachment.container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": IFNAME, "CNI_PATH": attachment.plugin_dir,
           "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    try:
        proc = subprocess.run([os.path.join(attachment.plugin_dir, kind)], input=json.dumps(data).encode(), env=env,
                              capture_output=True, timeout=PLUGIN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"CNI plugin {kind} {command} timed out after {PLUGIN_TIMEOUT_S:.0f}s") from None
    except OSError as exc:
        raise NetworkError(f"CNI plugin {kind} {command}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise NetworkError(f"CNI plugin {kind} {command}: {_plugin_error(proc.stdout, proc.stderr)}")
    if command != "ADD" or not proc.stdout.strip():
        return prev_result
    try:
        return dict(json.loads(proc.stdout))
    except ValueError:
        raise NetworkError(f"CNI plugin {kind} {command} printed no JSON result") from None


def _remove_masquerade(attachment: Attachment) -> None:
    """The bridge plugin's nat rule and chain of a pod whose namespace vanished (DEL leaves them)."""
    iptables = shutil.which("iptables", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if iptables is None:
        return
    name = str(attachment.network.get("name", ""))
    chain = masquerade_chain(name, attachment.container_id)
    rule = ["-s", f"{attachment.ip}/32", "-m", "comment", "--comment",
            masquerade_comment(name, attachment.container_id), "-j", chain]
    for args in (["-D", "POSTROUTING", *rule], ["-F", chain], ["-X", chain]):
        subprocess.run([iptables, "-w", "-t", "nat", *args], capture_output=True, timeout=30, check=False)


def find_plugin_dir(dirs: Sequence[str]) -> Path:
    """The first directory holding every plugin kubelite's network uses; MissingDependency-like error if none."""
    for directory in dirs:
        if all(os.access(os.path.join(directory, p), os.X_OK) for p in PLUGINS):
            return Path(directory)
    raise NetworkError(f"pod networking needs the CNI plugins {', '.join(PLUGINS)} in {' or '.join(dirs)}: run "
                       "'apt-get install containernetworking-plugins' (or scripts/run as root), name their directory "
                       "with --cni-bin-dir, or start kubelite with --network none for loopback-only pods")


def _plugin_error(stdout: bytes, stderr: bytes) -> str:
    """A plugin's error: CNI's JSON error object on stdout ({"msg", "details"}), else its stderr."""
    try:
        err = json.loads(stdout)
        text = str(err.get("msg", "")) + (f": {err['details']}" if err.get("details") else "")
    except (ValueError, AttributeError):
        text = ""
    return text or stderr.decode(errors="replace").strip() or "failed"


def save_attachment(path: Path, attachment: Attachment) -> None:
    statefiles.write_atomic(path, json.dumps(asdict(attachment), separators=(",", ":")))


def load_attachment(path: Path) -> Attachment | None:
    try:
        data = json.loads(path.read_text())
        return Attachment(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring unreadable network record %s: %s", path, exc)
        return None
