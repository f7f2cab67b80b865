"""`kubectl top`'s tables: what `kubelite top pods|node` prints.

Owns: the columns and cells of `top pod` (NAME CPU(cores) MEMORY(bytes); with containers POD NAME
...; with every namespace NAMESPACE first) and `top node` (NAME CPU(cores) CPU(%) MEMORY(bytes)
MEMORY(%)), with kubectl's rounding: CPU in millicores rounded up (resource.Quantity's
MilliValue), memory in whole Mi rounded down, percentages truncated; a pod's row sums its
containers. Rows come in the order given. Pure, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubelite.kubectl.common import _tabwrite

MI = 1024 * 1024


@dataclass(frozen=True)
class PodUsage:
    """One container's figures: CPU in nanocores over a window, memory as its working set in bytes."""
    namespace: str
    pod: str
    container: str
    nanocores: int
    memory: int


def millicores(nanocores: int) -> int:
    return -(-nanocores // 1_000_000)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """kubectl top's printer ends every cell with a tab, so the last column is padded too."""
    text = "".join("".join(f"{cell}\t" for cell in row) + "\n" for row in [headers, *rows])
    return _tabwrite(text, minwidth=6, padding=3)


def format_pod_top(rows: list[PodUsage], *, containers: bool = False, all_namespaces: bool = False,
                   no_headers: bool = False) -> str:
    headers = ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    if containers:
        headers.insert(0, "POD")
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    cells: list[list[str]] = []
    if containers:
        for row in rows:
            cells.append([row.pod, row.container, f"{millicores(row.nanocores)}m",
                          f"{row.memory // MI}Mi"])
            if all_namespaces:
                cells[-1].insert(0, row.namespace)
    else:
        pods: dict[tuple[str, str], list[int]] = {}
        for row in rows:
            total = pods.setdefault((row.namespace, row.pod), [0, 0])
            total[0] += row.nanocores   # kubectl adds the containers' quantities, then rounds
            total[1] += row.memory
        for (namespace, pod), (nanocores, memory) in pods.items():
            cells.append(([namespace] if all_namespaces else []) + [pod, f"{millicores(nanocores)}m",
                                                                     f"{memory // MI}Mi"])
    text = _table(headers, cells)
    return "\n".join(text.split("\n")[1:]) if no_headers else text


def format_node_top(name: str, *, cpu: int, memory: int, cpu_capacity_millis: int, memory_capacity: int,
                    no_headers: bool = False) -> str:
    """One node's row: `cpu` in nanocores, `memory` the working set in bytes, against its allocatable."""
    milli = millicores(cpu)
    cpu_pct = int(milli / cpu_capacity_millis * 100) if cpu_capacity_millis else 0
    mem_pct = int(memory / memory_capacity * 100) if memory_capacity else 0
    text = _table(["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
                  [[name, f"{milli}m", f"{cpu_pct}%", f"{memory // MI}Mi", f"{mem_pct}%"]])
    return "\n".join(text.split("\n")[1:]) if no_headers else text
