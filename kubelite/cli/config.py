"""Where kubelite's state is: the one rule every command uses to find it.

Owns: the defaults and the precedence flag > environment > default for `--root`
(`KUBELITE_ROOT`), `--run-dir` (`KUBELITE_RUN_DIR`) and `--manifests` (`KUBELITE_MANIFESTS`), and
for the registry settings `--authfile` (`KUBELITE_AUTHFILE`), `--certs-dir` (`KUBELITE_CERTS_DIR`)
and `--insecure-registry` (`KUBELITE_INSECURE_REGISTRIES`, comma-separated).
As root the defaults are the system paths `/var/lib/kubelite`, `/run/kubelite` and
`/etc/kubelite/manifests`; any other user gets per-user paths, so a dry run needs no root.
Commands other than `serve` take the manifests directory that the serving daemon recorded in
the state database when neither flag nor environment names one. Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path


def _is_root() -> bool:
    return os.geteuid() == 0


def default_root() -> Path:
    if _is_root():
        return Path("/var/lib/kubelite")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "kubelite"


def default_run_dir() -> Path:
    if _is_root():
        return Path("/run/kubelite")
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/kubelite-{os.getuid()}"
    return Path(base) / "kubelite" if os.environ.get("XDG_RUNTIME_DIR") else Path(base)


def default_manifests() -> Path:
    if _is_root():
        return Path("/etc/kubelite/manifests")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "kubelite" / "manifests"


def resolve(flag: str | None, env: str, default: Path) -> Path:
    value = flag or os.environ.get(env)
    return Path(value).absolute() if value else default


def root(flag: str | None) -> Path:
    return resolve(flag, "KUBELITE_ROOT", default_root())


def run_dir(flag: str | None) -> Path:
    return resolve(flag, "KUBELITE_RUN_DIR", default_run_dir())


def state_root(flag: str | None, *, create: bool) -> Path:
    """The state root for a command that makes state under it (`create`: made owner-only when missing)
    or trusts what it records: refused in one line (UsageError) when another user could change it or
    redirect the way to it — the same checks `serve` makes at start (`statefiles.check_owned`)."""
    import kubelite.statefiles as statefiles

    path = root(flag)
    if create:
        statefiles.prepare_top(path, "state root")
    else:
        statefiles.check_owned(path, "state root")
    return path


def manifests(flag: str | None, *, recorded: str | None = None) -> Path:
    """The manifests directory: flag, environment, what the daemon recorded, the default."""
    if flag or os.environ.get("KUBELITE_MANIFESTS"):
        return resolve(flag, "KUBELITE_MANIFESTS", default_manifests())
    return Path(recorded) if recorded else default_manifests()


def config_dir() -> Path:
    """Where kubelite's own configuration lives: /etc/kubelite for root, else ~/.config/kubelite."""
    if _is_root():
        return Path("/etc/kubelite")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "kubelite"


def auth_file(flag: str | None) -> Path:
    """Registry credentials (Docker config.json format): flag, environment, `<config dir>/auth.json`
    when it exists, else the user's `~/.docker/config.json` (which may not exist either)."""
    value = flag or os.environ.get("KUBELITE_AUTHFILE")
    if value:
        return Path(value).absolute()
    own = config_dir() / "auth.json"
    return own if own.exists() else Path(os.path.expanduser("~")) / ".docker" / "config.json"


def certs_dir(flag: str | None) -> Path:
    """Per-registry TLS trust, `<dir>/<host[:port]>/*.crt` (as containerd and Docker read certs.d)."""
    return resolve(flag, "KUBELITE_CERTS_DIR", config_dir() / "certs.d")


def insecure_registries(flags: list[str] | None) -> frozenset[str]:
    """Registries reached over plain HTTP (besides loopback ones): flags, else the environment."""
    values = flags or [v for v in os.environ.get("KUBELITE_INSECURE_REGISTRIES", "").split(",")]
    return frozenset(v.strip() for v in values if v.strip())
