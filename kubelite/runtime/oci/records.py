"""The OCI runtime's records: one `record.json` per sandbox and per container, below their bundles.

Owns: the records' fields and their JSON form. They are the runtime's truth about what it made;
what a container is doing now is read from conmon's exit file and /proc (`oci.containers`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import kubelite.statefiles as statefiles


def write_json(path: Path, data: Any) -> None:
    statefiles.write_atomic(path, json.dumps(data, separators=(",", ":")), 0o600)



def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None



@dataclass
class SandboxRecord:
    id: str
    uid: str
    name: str
    namespace: str
    attempt: int
    sandbox_hash: str
    created_at: str
    host_network: bool
    share_pid: bool
    cgroup_parent: str
    pid: int = 0
    pid_start: int = 0
    stopped: bool = False
    netns: str = ""             # the pinned network namespace (pod networking), else ""
    ip: str | None = None
    host_ports: list[list[Any]] = field(default_factory=list)   # [hostPort, protocol, hostIP] held
    warm: bool = False          # a warm sandbox no pod has claimed yet (`oci.warm`): no pod's identity


@dataclass
class ContainerRecord:
    id: str
    sandbox_id: str
    uid: str
    name: str
    pod_name: str
    namespace: str
    attempt: int
    spec_hash: str
    image: str
    created_at: str
    log_path: str
    pid: int = 0
    pid_start: int = 0
    conmon_pid: int = 0
    conmon_start: int = 0
    started_at: str | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    reason: str | None = None
    message: str | None = None
    termination_log: str = ""      # the host file bound at terminationMessagePath ("" without one)
    message_policy: str = "File"   # terminationMessagePolicy
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
