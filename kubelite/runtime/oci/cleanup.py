"""What a kubelite instance leaves on the host once its pods are gone, found and removed (`kubelite reset`).

Owns the sweep that follows a reset's drain: the agent has stopped and removed every pod through the
runtime's own removal path (and `OCIRuntime`'s start has removed what a crash left: bundles without
records, unclaimed warm sandboxes, orphan layers and cgroups); what can still be there is what no
record names any more. The sweep only touches what is this instance's by construction, never by a
guess at a name another program could use — and what is below the run directory only when that run
directory is marked (or proven) this instance's (`oci.ownership`):

* runc containers under this instance's runc root (`<run-dir>/runc`), deleted with `--force`;
* conmon processes whose command line names this run directory (its exit and socket directories);
* network namespaces pinned below `<run-dir>/netns`, and the mounts kubelite makes (`kubelites_mounts`:
  container roots, volumes and subPaths inside `<root>/pods/<uid>/`, a sandbox's `shm`), deepest
  first — never a mount at the state root, the run directory or elsewhere below them;
* the instance's cgroup tree `/kubelite-<instance>` (the instance is derived from the state root);
* per network kubelite wrote a conflist for in the state root (`<root>/cni/kubelite-<bridge>.conflist`):
  pending CNI DELs, the iptables rules whose comment names that network (the bridge plugin's
  masquerade rules, portmap's DNAT rules) and the per-pod `CNI-…` chains they jump to, the firewall
  plugin's rules for addresses of that network's subnet, host-local's leases, the veths still on
  the bridge, the bridge itself and its lock file — unless another kubelite holds that bridge's lock.

CNI's shared chains (`CNI-HOSTPORT-*`, `CNI-FORWARD`, `CNI-ADMIN`) are left: other CNI users share them,
and they hold nothing of kubelite's once its rules are gone. The state root and the run directory
themselves stay (the caller removes them for `--purge`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from kubelite import layout
from kubelite.runtime import cni, linux
from kubelite.runtime.oci.process import instance_name

log = logging.getLogger("kubelite.runtime")

_SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
#: Chains the CNI plugins share between every network on the host: never removed.
SHARED_CHAINS = frozenset({"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK",
                           "CNI-FORWARD", "CNI-ADMIN"})


def sweep(root: Path, run_dir: Path, *, runc: str | None, run_dir_ours: bool = True) -> list[str]:
    """Remove what is left of the instance of `root` and `run_dir` on the host; what was removed, in words.
    `run_dir_ours` false (a run directory neither marked nor proven this instance's, `oci.ownership`):
    only what the state root names — its pods' mounts, its cgroup tree, its networks."""
    removed: list[str] = []
    if run_dir_ours:
        removed += _runc_containers(run_dir, runc)
        removed += _conmon_processes(run_dir)
    removed += _mounts(root, run_dir if run_dir_ours else None)
    removed += _cgroups(root)
    removed += _networks(root, run_dir if run_dir_ours else None)
    return removed


def _runc_containers(run_dir: Path, runc: str | None) -> list[str]:
    state = layout.runc_root(run_dir)
    if runc is None or not state.is_dir():
        return []
    listed = subprocess.run([runc, "--root", str(state), "list", "-q"], capture_output=True, text=True,
                            timeout=60, check=False).stdout.split()
    for container_id in listed:
        subprocess.run([runc, "--root", str(state), "delete", "--force", container_id], capture_output=True,
                       timeout=60, check=False)
    return [f"runc container {c}" for c in listed]


def conmon_pids(run_dir: Path) -> list[int]:
    """conmon processes of this instance: conmon by name, with an argument below the run directory."""
    prefix = str(run_dir).rstrip("/") + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or linux.process_comm(int(entry.name)) != "conmon":
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(os.fsdecode(a).startswith(prefix) for a in args):
            found.append(int(entry.name))
    return found


def _conmon_processes(run_dir: Path) -> list[str]:
    removed = []
    for pid in conmon_pids(run_dir):
        try:
            os.kill(pid, signal.SIGKILL)
            removed.append(f"conmon process {pid}")
        except ProcessLookupError:
            pass
    return removed


def _mounts(root: Path, run_dir: Path | None) -> list[str]:
    removed = []
    netns = layout.netns_dir(run_dir) if run_dir is not None else None
    if netns is not None and netns.is_dir():
        for path in netns.iterdir():
            linux.unmount(path)
            path.unlink(missing_ok=True)
            removed.append(f"network namespace {path.name}")
    for point in kubelites_mounts(linux.mount_points(), root, run_dir):
        linux.unmount(point)
        removed.append(f"mount {point}")
    return removed


def kubelites_mounts(points: list[Path], root: Path, run_dir: Path | None) -> list[Path]:
    """Of the host's mount points, those kubelite makes, deepest first: anything inside a pod's directory
    `<root>/pods/<uid>/` (container roots, volumes, subPaths, image volumes), a sandbox's
    `<run-dir>/sandboxes/<id>/shm` and a pinned namespace `<run-dir>/netns/<id>`. Never the state root,
    the run directory or another directory of theirs: a disk mounted there (the claims' data below
    `<root>/volumes`, the root itself) is the host's and stays."""
    root = Path(os.path.abspath(root))
    run_dir = Path(os.path.abspath(run_dir)) if run_dir is not None else None
    found = set()
    for point in points:
        if point.is_relative_to(root):
            parts = point.relative_to(root).parts
            if len(parts) >= 3 and parts[0] == layout.PODS_DIR:
                found.add(point)
        if run_dir is not None and point.is_relative_to(run_dir):
            parts = point.relative_to(run_dir).parts
            if (len(parts) == 3 and parts[0] == layout.SANDBOXES_DIR and parts[2] == "shm") \
                    or (len(parts) == 2 and parts[0] == layout.NETNS_DIR):
                found.add(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroups(root: Path) -> list[str]:
    """The instance's cgroup tree: what is still in it is a container's process (by construction), killed."""
    relative = f"/{instance_name(root)}"
    bases = linux.cgroup_dirs(relative)
    for procs in _procs_files(bases):
        try:
            pids = [int(p) for p in procs.read_text().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_read(p) for p in _procs_files(bases)):
        time.sleep(0.05)
    linux.remove_cgroup(relative)
    return [f"cgroup {base}" for base in bases if not base.exists()]


def _procs_files(bases: list[Path]) -> list[Path]:
    """Every `cgroup.procs` below `bases` (a cgroup removed meanwhile is skipped)."""
    found = []
    for base in bases:
        for dirpath, _, files in os.walk(base):
            if "cgroup.procs" in files:
                found.append(Path(dirpath) / "cgroup.procs")
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------- networks


def networks(root: Path) -> list[dict[str, object]]:
    """The networks kubelite wrote a conflist for in this state root (one per bridge it served on)."""
    pattern = layout.cni_conflist_path(root, "*")
    found = []
    for path in sorted(pattern.parent.glob(pattern.name)) if pattern.parent.is_dir() else []:
        try:
            config = json.loads(path.read_text())
            bridge = next(p for p in config["plugins"] if p.get("type") == "bridge")
            found.append({"path": path, "name": str(config["name"]), "bridge": str(bridge["bridge"]),
                          "subnet": str(bridge["ipam"]["ranges"][0][0]["subnet"]),
                          "data_dir": str(bridge["ipam"]["dataDir"])})
        except (OSError, ValueError, KeyError, IndexError, StopIteration, TypeError) as exc:
            log.warning("ignoring unreadable network configuration %s: %s", path, exc)
    return found


def _networks(root: Path, run_dir: Path | None) -> list[str]:
    removed = []
    pending = layout.cni_pending_dir(run_dir) if run_dir is not None else None
    for record in sorted(pending.glob("*.json")) if pending is not None and pending.is_dir() else []:
        try:
            cni.teardown(record)
            removed.append(f"pending network teardown {record.stem}")
        except cni.NetworkError as exc:
            log.warning("pod sandbox %s: removing its network: %s", record.stem, exc)
            record.unlink(missing_ok=True)
    for network in networks(root):
        name, bridge = str(network["name"]), str(network["bridge"])
        handle, holder = linux.try_lock(cni.bridge_lock_path(bridge), f"pid {os.getpid()}, kubelite reset")
        if handle is None:
            log.warning("bridge %s is in use by another kubelite (%s): left as it is", bridge, holder)
            continue
        try:
            removed += _iptables(name, ipaddress.ip_network(str(network["subnet"])))
            leases = Path(str(network["data_dir"])) / name
            if run_dir is not None and leases.is_dir() and leases.is_relative_to(run_dir):
                shutil.rmtree(leases, ignore_errors=True)
                removed.append(f"address leases of {name}")
            if Path("/sys/class/net", bridge).exists():
                ip = shutil.which("ip", path=_SBIN) or "ip"
                for veth in _ports_of(bridge):   # only this instance's pods join its bridge
                    subprocess.run([ip, "link", "delete", veth], capture_output=True, timeout=30, check=False)
                    removed.append(f"veth {veth}")
                subprocess.run([ip, "link", "delete", bridge], capture_output=True, timeout=30, check=False)
                removed.append(f"bridge {bridge}")
            Path(str(network["path"])).unlink(missing_ok=True)
        finally:
            cni.bridge_lock_path(bridge).unlink(missing_ok=True)
            handle.close()
    return removed


def _ports_of(bridge: str) -> list[str]:
    """The interfaces attached to `bridge` (its `brif` directory)."""
    brif = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def _iptables(network: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """Rules of `network` the plugins' DEL left (a pod whose namespace or record was lost), and their chains."""
    iptables = shutil.which("iptables", path=_SBIN)
    save = shutil.which("iptables-save", path=_SBIN)
    if iptables is None or save is None:
        return []
    removed = []
    for table in ("nat", "filter"):
        dump = subprocess.run([save, "-t", table], capture_output=True, text=True, timeout=30, check=False).stdout
        rules, chains = rules_of(dump, network, subnet)
        for rule in rules:
            subprocess.run([iptables, "-w", "-t", table, "-D", *rule[1:]], capture_output=True, timeout=30,
                           check=False)
            removed.append(f"iptables -t {table} {shlex.join(rule)}")
        for chain in chains:
            for action in ("-F", "-X"):
                subprocess.run([iptables, "-w", "-t", table, action, chain], capture_output=True, timeout=30,
                               check=False)
            removed.append(f"iptables -t {table} chain {chain}")
    return removed


def rules_of(dump: str, network: str,
             subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[list[list[str]], list[str]]:
    """In one table's `iptables-save`: the rules that are the network's (their `-A` arguments), and the
    per-pod chains they jump to. A rule is the network's when its comment names it (`name: "<net>" …`,
    the bridge plugin's and portmap's), or when it sits in the firewall plugin's `CNI-FORWARD` with a
    source or destination inside the network's subnet."""
    rules, chains = [], []
    existing = {line[1:].split()[0] for line in dump.splitlines() if line.startswith(":")}
    for line in dump.splitlines():
        if not line.startswith("-A "):
            continue
        try:
            args = shlex.split(line)
        except ValueError:
            continue
        comment = args[args.index("--comment") + 1] if "--comment" in args[:-1] else ""
        ours = f'name: "{network}" ' in comment + " "
        if not ours and args[1] == "CNI-FORWARD":
            ours = any(_inside(args[i + 1], subnet) for i, a in enumerate(args[:-1]) if a in ("-s", "-d"))
        if not ours:
            continue
        rules.append(args)
        target = args[args.index("-j") + 1] if "-j" in args[:-1] else ""
        if target.startswith("CNI-") and target not in SHARED_CHAINS and target in existing and target not in chains:
            chains.append(target)
    return rules, chains


def _inside(value: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return net.version == subnet.version and net.subnet_of(subnet)  # type: ignore[arg-type]
