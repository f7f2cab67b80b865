"""`kubelite top pods|node`: the containers' and the node's CPU and memory, as `kubectl top` prints them.

Owns: reading the figures without the daemon's API — the running containers from the state
database (`store.reader`), their cgroups and the host through the runtime's `stats`, read twice a
short window apart (`stats.MIN_WINDOW_S`): CPU is the rate over that window, memory the working
set at its end, the same arithmetic the metrics API uses. Writes nothing. Its parser is built
with every command's, so the module loads only the standard library until it runs.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
               namespaced: argparse.ArgumentParser) -> None:
    top = sub.add_parser("top", help="show the CPU and memory of pods or of the node",
                         description="Show the CPU and memory of pods or of the node, as kubectl top.",
                         epilog="Examples:\n  # Every pod of the default namespace\n  kubelite top pods\n\n"
                                "  # Two pods, per container\n  kubelite top pods web db --containers\n\n"
                                "  # The node\n  kubelite top node",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    top_sub = top.add_subparsers(dest="resource", metavar="RESOURCE")
    top_sub.required = True
    pods = top_sub.add_parser("pods", aliases=["pod", "po"], parents=[common, namespaced],
                              help="CPU (cores) and memory (working set) of running pods")
    pods.add_argument("name", nargs="*", metavar="NAME", help="only these pods (default: all running)")
    pods.add_argument("--containers", action="store_true", help="one row per container")
    pods.add_argument("--no-headers", action="store_true", help="print the table without its header line")
    node = top_sub.add_parser("node", aliases=["nodes", "no"], parents=[common],
                              help="CPU and memory of this node, also as a share of its capacity")
    node.add_argument("name", nargs="?", help="this node's name")
    node.add_argument("--no-headers", action="store_true", help="print the table without its header line")


def run(args: argparse.Namespace) -> int:
    import socket
    import time

    from kubelite.cli import config
    from kubelite.errors import UsageError
    from kubelite.kubectl import top as printers
    from kubelite.runtime import stats, view
    from kubelite.store.reader import Reader, one_per_name

    root = config.root(args.root)
    reader = Reader(root)
    try:
        pods = one_per_name(reader.pods())
        node_name = reader.meta("node_name") or socket.gethostname()
    finally:
        reader.close()
    found = stats.targets(pods, view.instance_name(root))
    cgroups = [t.cgroup for t in found]
    before = stats.read(cgroups)
    time.sleep(stats.MIN_WINDOW_S)
    window = stats.Window(before, stats.read(cgroups))
    if args.resource in ("node", "nodes", "no"):
        if args.name not in (None, node_name):
            raise UsageError(f'nodes "{args.name}" not found')
        cpu = window.host_cpu() or 0
        sys.stdout.write(printers.format_node_top(
            node_name, cpu=cpu, memory=window.after.host.working_set, cpu_capacity_millis=(os.cpu_count() or 1) * 1000,
            memory_capacity=stats.host_memory_total(), no_headers=args.no_headers))
        return 0
    namespace = None if args.all_namespaces else (args.namespace or "default")
    names = args.name if args.resource in ("pods", "pod", "po") else []
    chosen = [t for t in found if namespace in (None, t.namespace) and (not names or t.pod in names)]
    rows = []
    for target in chosen:
        cpu, memory = window.cpu(target.cgroup), window.memory(target.cgroup)
        if cpu is not None and memory is not None:
            rows.append(printers.PodUsage(target.namespace, target.pod, target.container, cpu, memory))
    for name in names:
        if not any(r.pod == name for r in rows):
            if not any(p["metadata"]["name"] == name and p["metadata"].get("namespace") == (namespace or "default")
                       for p in pods):
                raise UsageError(f'pods "{name}" not found')
            raise UsageError(f"metrics not available for pod {namespace or 'default'}/{name}: no running container")
    if not rows:
        print("No resources found" + (f" in {namespace} namespace." if namespace else ""), file=sys.stderr)
        return 0
    sys.stdout.write(printers.format_pod_top(rows, containers=args.containers, all_namespaces=namespace is None,
                                             no_headers=args.no_headers))
    return 0
