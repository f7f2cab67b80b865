"""`kubelite reset`: stop every pod and remove what kubelite made on this host, as `kubeadm reset` does.

Owns the command: its confirmation (asked on a terminal; without one, refused unless `-y`), asking
a serving daemon to drain (`daemon.RESET_SIGNAL`, or `RESET_FORCE_SIGNAL` with `--force`, sent to the
pid in the state root's lock) and waiting for it to stop, then `daemon.reset_node` — the same drain
in this process for whatever is left, the sweep of the host, and `--purge`. The manifests directory
is the user's and is never touched. Standard library only when loaded (the parser is built on every
command).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from kubelite.cli import config

#: While waiting for a daemon to drain, how often a line says how many pods are left.
PROGRESS_EVERY_S = 5.0

EPILOG = """\
Without --purge the image store, the database (events), the API's credentials and the data of
PersistentVolumeClaims stay; the manifests directory always stays. Ctrl-C or `systemctl stop`
stop kubelite and leave the pods running, as a kubelet does: reset is how to stop them.

Examples:
  kubelite reset                 # asks first; each pod gets its grace period
  kubelite reset --force -y      # every container killed at once, no question
  kubelite reset --purge -y      # and the state root (images too) and the run directory
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    reset = sub.add_parser("reset", parents=[common], epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           help="stop every pod and remove what kubelite made on this host (containers, mounts, "
                                "cgroups, network namespaces, veths, leases, iptables rules, the bridge)")
    reset.add_argument("--force", action="store_true",
                       help="kill every container at once instead of giving each pod its grace period")
    reset.add_argument("--purge", action="store_true",
                       help="also remove the state root — the database, logs, the image store (images too), "
                            "claims' data, the API's credentials — and the run directory")
    reset.add_argument("-y", "--yes", action="store_true",
                       help="do not ask for confirmation (needed without a terminal)")


def run(args: argparse.Namespace) -> int:
    import kubelite.statefiles as statefiles

    from kubelite.daemon import check_dirs, check_reset_dirs

    root, run_dir = config.root(args.root), config.run_dir(args.run_dir)
    check_dirs(root, run_dir)   # /run, /tmp…: refused before anything else is said of them
    for path, what in ((root, "state root"), (run_dir, "run directory")):
        if os.path.lexists(path):   # the checks `serve` makes: nothing removed through another user's link
            statefiles.check_owned(path, what)
    check_reset_dirs(root, run_dir)   # a shared directory, another instance's run directory: nothing is asked
    confirm(args, root, run_dir)
    pid = serving_daemon(root)
    if pid is not None:
        stop_daemon(pid, root, force=args.force)
    import logging
    import socket

    from kubelite.daemon import ResetOptions, configure_logging, reset_node

    configure_logging(args.debug)
    if not args.debug:
        logging.getLogger("kubelite").setLevel(logging.WARNING)   # the runtime's own lines only when they matter
    removed = reset_node(ResetOptions(root=root, run_dir=run_dir, force=args.force, purge=args.purge,
                                      node_name=socket.gethostname().lower()),
                         progress=lambda line: print(line, flush=True))
    for what in removed:
        print(f"removed {what}")
    print("kubelite reset: done" + ("" if args.purge else f"; the image store in {root} is kept (--purge removes it)"))
    return 0


def confirm(args: argparse.Namespace, root: Path, run_dir: Path) -> None:
    from kubelite.errors import UsageError

    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("kubelite reset: refusing without a terminal to confirm on; give -y to reset anyway")
    what = "kill every container at once" if args.force else "stop every pod, each with its grace period,"
    purge = f", then delete the state root {root} (images too) and the run directory {run_dir}" if args.purge else ""
    print(f"kubelite reset will {what} and remove what kubelite made on this host: containers, mounts, cgroups, "
          f"network namespaces, veths, address leases, iptables rules and its bridge{purge}. The manifests stay.",
          file=sys.stderr)
    answer = input("Are you sure you want to proceed? [y/N]: ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("kubelite reset: aborted")


def serving_daemon(root: Path) -> int | None:
    """The pid of the daemon serving `root` (the holder of its lock), or None."""
    from kubelite import layout
    from kubelite.runtime import linux

    path = layout.lock_path(root)
    if not path.exists():
        return None
    handle, holder = linux.try_lock(path, f"{os.getpid()} (kubelite reset)")
    if handle is not None:
        handle.close()
        return None
    try:
        return int(holder.split()[0])
    except (ValueError, IndexError):
        from kubelite.errors import UsageError

        raise UsageError(f"the kubelite serving {root} left no pid in {path} ({holder!r}): stop it first") from None


def stop_daemon(pid: int, root: Path, *, force: bool) -> None:
    """Ask the daemon to drain and stop, and wait until it has (its lock is free)."""
    from kubelite.daemon import RESET_FORCE_SIGNAL, RESET_SIGNAL

    try:
        os.kill(pid, RESET_FORCE_SIGNAL if force else RESET_SIGNAL)
    except PermissionError:
        from kubelite.errors import UsageError

        raise UsageError(f"kubelite (pid {pid}) serves {root} as another user: run kubelite reset as that user "
                         "(root)") from None
    except ProcessLookupError:
        return   # it ended meanwhile
    print(f"asked kubelite (pid {pid}) to stop every pod{' at once' if force else ''}, then itself", flush=True)
    shown = time.monotonic()
    try:
        while serving_daemon(root) == pid:
            time.sleep(0.1)
            if time.monotonic() - shown > PROGRESS_EVERY_S:
                print(f"waiting for kubelite (pid {pid}): {pods_left(root)} pod(s) left", flush=True)
                shown = time.monotonic()
    except KeyboardInterrupt:
        print(f"\nkubelite (pid {pid}) goes on stopping the pods; `kubelite reset --force` kills them at once",
              file=sys.stderr)
        raise


def pods_left(root: Path) -> int:
    from kubelite.store.reader import Reader

    reader = Reader(root)
    try:
        return len(reader.pods(None))
    finally:
        reader.close()
