"""What `kubelite sync` and `kubelite sync --dry-run` take from their flags alike.

Owns: the node's name that `{node}` in `--path` stands for (`node_name`: `--node-name`, else the
name `kubelite serve` recorded in the state root, else the host name) and the check of `--repo`,
`--ref` and `--path` by the git sync's own rules, naming the flag (`check_flags`). One place, so
that a dry run judges exactly the directory the sync would follow.
"""

from __future__ import annotations

import argparse
import socket


def node_name(args: argparse.Namespace, recorded: str | None) -> str:
    """The node's name for `{node}` in --path: --node-name, else the name `kubelite serve` recorded
    in the state root (`recorded`), else the host name."""
    return getattr(args, "node_name", None) or recorded or socket.gethostname().lower()


def check_flags(args: argparse.Namespace, node: str) -> None:
    """UsageError naming the flag when --repo, --ref or --path is one the sync would refuse."""
    from kubelite.errors import UsageError
    from kubelite.sources.gitsync import setting_problems

    problems = setting_problems(args.repo, ref=args.ref, path=args.path, node=node)
    if problems:
        raise UsageError("; ".join(f"--{name}: {why}" for name, why in problems.items()))
