"""`kubelite kubeconfig`: print a kubeconfig that points kubectl at this node's API.

Owns: finding the API's URL (`--server`, else the one the serving daemon recorded) and token, and
naming the cluster, user and context after the node, so several machines merge into one kubeconfig
as several contexts; `--admin` prints the admin credential instead, as the user and context
`<node>-admin`. Standard library only.
"""

from __future__ import annotations

import argparse
import sys

from kubelite.cli import config
from kubelite import layout


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
    sys.stdout.write(auth.kubeconfig(server=server, token=token, node=node, ca_pem=ca, admin=admin))
    return 0
