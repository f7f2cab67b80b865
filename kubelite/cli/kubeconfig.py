"""`kubelite kubeconfig`: print a kubeconfig that points kubectl at this node's API.

Owns: finding the API's URL (`--server`, else the one the serving daemon recorded) and token, and
naming the cluster, user and context after the node, so several machines merge into one kubeconfig
as several contexts; `--admin` prints the admin credential instead, as the user and context
`<node>-admin`; `--merge` writes them into an existing kubeconfig instead of printing them (the
file kubectl reads: `--merge FILE`, else the first of `$KUBECONFIG`, else `~/.kube/config`).
Standard library only, and PyYAML for `--merge`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from kubelite.cli import config
from kubelite import layout

#: The lists of a kubeconfig whose entries are keyed by `name`.
NAMED_LISTS = ("clusters", "users", "contexts")


def run(args: argparse.Namespace) -> int:
    from kubelite.apiserver import auth
    from kubelite.errors import UsageError
    from kubelite.store.reader import Reader

    root = config.root(args.root)
    admin = bool(getattr(args, "admin", False))
    try:
        token = auth.read_token(root, admin=admin)
    except PermissionError:
        raise UsageError(f"cannot read {auth.api_dir(root) / auth.token_file(admin)}: only the user that runs "
                         "kubelite may (try: sudo kubelite kubeconfig > ~/.kube/config)") from None
    if token is None:
        if layout.db_path(root).exists() and not auth.api_dir(root).exists():
            raise UsageError(f"no API token under {root}: start `kubelite serve` (without --no-api) once")
        raise UsageError(f"no API token under {root}: start `kubelite serve` once (as the user that will read "
                         "the token), or pass --root")
    server = args.server or auth.read_server(root)
    if server is None:
        raise UsageError("kubelite is not serving its API now (not started, or started with --no-api); start "
                         "`kubelite serve`, or give --server URL")
    reader = Reader(root)
    try:
        node = reader.meta("node_name") or "kubelite"
    finally:
        reader.close()
    ca = auth.ca_pem(auth.api_dir(root))
    if ca is None:
        raise UsageError(f"{auth.api_dir(root) / auth.CA_CERT} is missing: start `kubelite serve` once to make it")
    text = auth.kubeconfig(server=server, token=token, node=node, ca_pem=ca, admin=admin)
    merge = getattr(args, "merge", None)
    if merge is None:
        sys.stdout.write(text)
        return 0
    path = Path(merge) if merge else default_path(os.environ, root=os.geteuid() == 0)
    previous = merge_into(path, text, owner=sudo_owner(os.environ) if os.geteuid() == 0 else None)
    context = f"{node}-admin" if admin else node
    switched = ""
    if previous not in (None, context):
        switched = f" (was {previous!r}: kubectl config use-context {previous} goes back)"
    sys.stderr.write(f"merged the context {context!r} into {path}; it is the current context now{switched}\n")
    return 0


def default_path(environ: Any, *, root: bool = False) -> Path:
    """The kubeconfig kubectl reads: the first file of `$KUBECONFIG`, else `~/.kube/config` — under
    `sudo` (root with `$SUDO_USER`), the invoking user's, as `sudo kubelite kubeconfig --merge` means."""
    for entry in environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry:
            return Path(entry).expanduser()
    home = environ.get("HOME") or os.path.expanduser("~")
    if root and environ.get("SUDO_USER"):
        import pwd

        try:
            home = pwd.getpwnam(environ["SUDO_USER"]).pw_dir
        except KeyError:
            pass
    return Path(home) / ".kube" / "config"


def sudo_owner(environ: Any) -> tuple[int, int] | None:
    """The user and group `sudo` was run by (`$SUDO_UID`, `$SUDO_GID`); None outside sudo."""
    try:
        return int(environ["SUDO_UID"]), int(environ["SUDO_GID"])
    except (KeyError, ValueError):
        return None


def merged(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`existing` with the clusters, users and contexts of `new` added, each replacing an entry of
    the same name, and the current context set to `new`'s; everything else kept as it was. Pure."""
    out = dict(existing)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for key in NAMED_LISTS:
        entries = out.get(key) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"its {key} are not a list of named entries")
        for entry in new.get(key) or []:
            entries = [e for e in entries if e.get("name") != entry["name"]] + [entry]
        out[key] = entries
    out["current-context"] = new["current-context"]
    return out


def merge_into(path: Path, text: str, *, owner: tuple[int, int] | None = None) -> str | None:
    """Merge the kubeconfig `text` into the file at `path` (made, mode 0600, when missing): written
    whole and atomically, under kubectl's lock file (`<file>.lock`), a symlink's target replaced
    and its owner kept; a file or directory it makes gets `owner` (uid, gid) when given. Returns
    the current context it had."""
    import yaml

    from kubelite import statefiles
    from kubelite.errors import UsageError

    target = Path(os.path.realpath(path))
    if not target.parent.exists():
        target.parent.mkdir(mode=0o700, parents=True)
        if owner is not None:
            os.chown(target.parent, *owner)
    lock = target.with_name(target.name + ".lock")
    try:
        os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        raise UsageError(f"{lock} exists: kubectl or another kubelite is writing {path} (remove the lock file "
                         "if none is)") from None
    try:
        try:
            raw = target.read_text()
            owner = (target.stat().st_uid, target.stat().st_gid)
        except FileNotFoundError:
            raw = ""
        try:
            existing = yaml.safe_load(raw) or {}
            if not isinstance(existing, dict):
                raise ValueError("it is not a mapping")
            result = merged(existing, yaml.safe_load(text))
        except (yaml.YAMLError, ValueError) as exc:
            raise UsageError(f"{path} is not a kubeconfig kubelite can merge into ({exc}); it was left as it "
                             "is") from None
        statefiles.write_atomic(target, yaml.safe_dump(result, sort_keys=False, default_flow_style=False),
                                0o600, fsync=True)
        if owner is not None and os.geteuid() == 0:
            os.chown(target, *owner)
    finally:
        os.unlink(lock)
    previous = existing.get("current-context")
    return previous if isinstance(previous, str) else None
