"""The OCI runtime: runc runs the containers, conmon monitors each one, catatonit holds a pod's namespaces.

Owns: the runtime's files and processes below its two directories, and nothing else.

    <run-dir>/runc/                 runc's state (--root): this instance's containers only
    <run-dir>/exits/<id>            conmon's exit files (decimal exit code; 128+N for signal N)
    <run-dir>/sockets/              conmon's socket directory
    <run-dir>/sandboxes/<id>/       an infra container's bundle and record.json
    <run-dir>/containers/<id>/      a container's bundle, pid files, conmon's persist dir, record.json
    <run-dir>/cni/pending/<id>.json a removed sandbox's network record while its CNI DEL keeps failing
    <root>/pods/<uid>/containers/<id>/{upper,work,rootfs}   overlay: writable layer and mount point
    <root>/pods/<uid>/containers/<id>/termination-log       the container's terminationMessagePath
                                    (`<root>/pods/<uid>/volumes*` belong to the volume host)
    <root>/seccomp/                 Localhost seccomp profiles (read only; the kubelet's
                                    --seccomp-profile-root); RuntimeDefault is containers-common's

A sandbox is an infra container (catatonit as PID 1, bind-mounted into an empty read-only root)
that owns the pod's IPC and UTS namespaces, and its PID namespace when the pod shares one;
containers join those namespaces through `/proc/<infra pid>/ns/*` (decision 0006). With pod
networking (`cni.Network`) the network namespace is pinned at `<run-dir>/netns/<sandbox id>`,
set up by the CNI plugins before the infra container joins it, and torn down when the sandbox
stops (decision 0009); without it the infra container makes a loopback-only one.
Containers are created through conmon, which holds their stdio, writes CRI-format logs and the
exit file, and outlives kubelite; `runc start` runs the application as the container's PID 1.

Truth comes from the exit files and from /proc (a PID together with its start time), read on
every relist; inotify on the exit directory only wakes the agent. cgroups live below
`/kubelite-<instance>/pod<uid>/`, where the instance is derived from the state root, so two
kubelite instances never share a cgroup, a runc root or a directory. Every conmon is moved into
`/kubelite-<instance>/conmon` before it forks (decision 0023): nothing a pod needs stays in
kubelite's own cgroup, which a service manager may kill whole.

With a pool (`OCIRuntime(warm_sandboxes=N)`, `serve --warm-sandboxes`), sandboxes are made ahead of
any pod under `/kubelite-<instance>/warm<id>/` with records marked `warm`; `run_sandbox` gives an
eligible pod one of them (decision 0020). Unclaimed ones are torn down at `close()` and at start.

One module per responsibility:

* `runtime` — `OCIRuntime`: the records loaded at start, runc under this instance's root, images,
  exit hints and the clean-up of what a crash left behind;
* `sandboxes` — pod sandboxes, their /etc files, network and host ports; making, claiming and
  tearing down warm sandboxes;
* `warm` — the pool of warm sandboxes: its thread, refills, backoff, which pods are eligible;
* `containers` — containers through conmon: create, start, signal, observe, exec, remove;
* `profiles` — seccomp and AppArmor profiles;
* `records` — the `record.json` of each sandbox and container;
* `process` — runc and conmon as programs (finding them, bounded calls, conmon's pipes).

What callers use is importable from here.
"""

from __future__ import annotations

from kubelite.runtime.oci.containers import LOG_SIZE_MAX
from kubelite.runtime.oci.process import (
    CREATE_TIMEOUT_S, REQUIRED_BINARIES, MissingDependency, find_binaries, instance_name, run, run_conmon,
)
from kubelite.runtime.oci.records import ContainerRecord, SandboxRecord
from kubelite.runtime.oci.runtime import OCIRuntime
from kubelite.runtime.oci.sandboxes import SHM_SIZE, TEARDOWN_RETRY_S

#: The records' earlier names.
_Sandbox, _Container = SandboxRecord, ContainerRecord

__all__ = ["CREATE_TIMEOUT_S", "LOG_SIZE_MAX", "REQUIRED_BINARIES", "SHM_SIZE", "TEARDOWN_RETRY_S", "ContainerRecord",
           "MissingDependency", "OCIRuntime", "SandboxRecord", "find_binaries", "instance_name", "run", "run_conmon"]
