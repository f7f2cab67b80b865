"""kubelite's systemd unit (`packaging/kubelite.service` is `render()` with its defaults): pure.

Owns: the unit's text. `Type=notify` (the daemon sends READY=1 once its first reconcile pass has
run), `KillMode=process` (a stop signals kubelite alone), `Delegate=yes`, `Restart=on-failure`, and
the limits containerd's unit sets, for the same reason: kubelite starts the processes of every pod.
conmon and the containers live in cgroups of their own beside the service's (see docs/runtime.md),
so even a `KillMode=control-group` stop leaves the pods running, as the kubelet does.
"""

from __future__ import annotations

NAME = "kubelite.service"
#: Where `kubelite install-service` writes the unit: the administrator's units.
UNIT_DIR = "/etc/systemd/system"
#: The `ExecStart` program of the packaged unit (pip's and a package's usual place).
DEFAULT_EXECUTABLE = "/usr/local/bin/kubelite"

_TEMPLATE = """\
[Unit]
Description=kubelite node agent: runs the Kubernetes Pod manifests of /etc/kubelite/manifests
Documentation=https://kubernetes.io/docs/tasks/configure-pod-container/static-pod/
Wants=network-online.target
After=network-online.target local-fs.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
KillMode=process
Delegate=yes
Restart=on-failure
RestartSec=5
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
"""


def quote(argument: str) -> str:
    """One word of a systemd command line: `%` and `$` escaped (specifiers, variables), double
    quotes around a word with a blank, a quote or a backslash."""
    word = argument.replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(*, command: tuple[str, ...] = (DEFAULT_EXECUTABLE,), config: str | None = None) -> str:
    """The unit that runs `COMMAND serve` (`command`: the kubelite program, or Python with
    `-m kubelite.cli.main`), with `--config FILE` when a configuration file is given."""
    argv = [*command, "serve", *(("--config", config) if config else ())]
    return _TEMPLATE.format(exec_start=" ".join(quote(a) for a in argv))
