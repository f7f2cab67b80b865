"""`kubelite sync` (follow a git repository) and `kubelite get sync` (what it runs).

Owns: the two commands' flags, the long-running loop around `kubelite.sources.gitsync.GitSync`
(one pass, persist the status in the state database's `meta` table under "sync" plus an event,
sleep until the next attempt — the interval, or the backoff after a failure), one sync process per
state root (a lock file), and printing the status; `sync --dry-run` is `kubelite.cli.preview`'s
(a commit previewed, not applied). Standard library only at import time: `get
sync` reads through `kubelite.store.reader`; the engine and the store are imported when `sync` runs.

Wiring into `kubelite.cli.main`: `add_parser(sub, common)` in `_parser()`, and
`if getattr(args, "sync_run", None): return args.sync_run(args)` at the top of `_dispatch()`.
`python -m kubelite.cli.sync ...` runs the same commands standalone.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import datetime
from typing import Any, Sequence

from kubelite.api import duration
from kubelite.cli import config
from kubelite.clock import utcnow


def parse_duration(text: str) -> float:
    """`30s`, `1m30s`, `500ms`, `2h` or plain seconds (`1.5`) → seconds; must be positive."""
    try:
        value = duration.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 30s, 1m30s, 500ms)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the interval must be positive")
    return value


def add_parser(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    """Add `sync` to the top-level commands and `sync` to the resources of `get` (when present)."""
    sync = subparsers.add_parser("sync", parents=[common_parent],
                                 help="make the manifests path follow a git repository")
    sync.add_argument("--repo", required=True, metavar="URL", help="repository URL (https, ssh, file or a path)")
    sync.add_argument("--ref", default="HEAD", help="branch, tag or commit to follow (default: the remote's HEAD)")
    sync.add_argument("--path", default="", metavar="SUBDIR", help="directory of the manifests in the repository "
                                                                   "(default: its top); {node} stands for the node's "
                                                                   "name (nodes/{node}); a directory with a "
                                                                   "kustomization.yaml is rendered with kustomize")
    sync.add_argument("--node-name", default=None, metavar="NAME",
                      help="the node's name for {node} in --path (default: the one kubelite serve recorded in the "
                           "state root, else the host name)")
    sync.add_argument("--interval", type=parse_duration, default=30.0, metavar="DURATION",
                      help="how often to poll (default 30s)")
    sync.add_argument("--once", action="store_true", help="one pass, then exit (status 1 if it failed)")
    sync.add_argument("--allow-empty", action="store_true",
                      help="apply a commit even when it would remove every pod")
    sync.add_argument("--dry-run", action="store_true",
                      help="fetch the ref's commit and print what it would do to each pod (as kubelite diff), "
                           "without applying it; exit 0 nothing would change, 1 something would, 2 an error")
    sync.add_argument("-o", "--output", choices=["json"], default=None,
                      help="with --dry-run: the preview as one JSON document")
    sync.set_defaults(sync_run=run)

    get = subparsers.choices.get("get")
    if get is None:
        return
    for action in get._actions:  # the `get RESOURCE` sub-commands
        if isinstance(action, argparse._SubParsersAction):
            p = action.add_parser("sync", parents=[common_parent], help="show what kubelite sync runs")
            p.add_argument("-o", "--output", choices=["json", "yaml"], default=None,
                           help="print the status as json or yaml")
            p.set_defaults(sync_run=run)
            break


def run(args: argparse.Namespace) -> int:
    if getattr(args, "command", None) == "get":
        return get_sync(args)
    if getattr(args, "dry_run", False):
        from kubelite.cli import preview

        return preview.run_sync_preview(args)
    return sync(args)


# ------------------------------------------------------------------ get sync


def get_sync(args: argparse.Namespace) -> int:
    from kubelite.store.reader import SYNC_META_KEY, Reader

    reader = Reader(config.root(getattr(args, "root", None)))
    try:
        raw = reader.meta(SYNC_META_KEY)
    finally:
        reader.close()
    if raw is None:
        print("No sync status: kubelite sync has not run with this state root.", file=sys.stderr)
        return 1
    status = json.loads(raw)
    output = getattr(args, "output", None)
    if output == "json":
        print(json.dumps(status, indent=2, sort_keys=True))
    elif output == "yaml":
        import yaml
        sys.stdout.write(yaml.safe_dump(status, sort_keys=True, default_flow_style=False))
    else:
        sys.stdout.write(format_status(status, utcnow()))
    return 0


def format_status(status: dict[str, Any], now: datetime) -> str:
    """`describe`-style lines: Repository, Ref, Path, Commit, Applied, Last Error, Next Attempt, Drift."""
    commit = status.get("commit")
    rows = [
        ("Repository", status.get("repository") or ""),
        ("Ref", status.get("ref") or ""),
        ("Path", status.get("path") or "/"),
        ("Commit", commit or "<none>"),
        ("Applied", _when(status.get("applied_at"), now) if commit else "<never>"),
        ("Last Sync", _when(status.get("last_sync_at"), now)),
        ("Last Error", status.get("last_error") or "<none>"),
    ]
    if status.get("last_error"):
        rows.append(("Error Since", _when(status.get("last_error_at"), now)))
    if status.get("rejected_commit"):
        rows.append(("Rejected Commit", status["rejected_commit"]))
    if status.get("failures"):
        rows.append(("Failures", str(status["failures"])))
    rows.append(("Next Attempt", _when(status.get("next_attempt"), now)))
    if status.get("drift"):
        rows.append(("Last Drift", f"{', '.join(status['drift'])} ({_when(status.get('drift_at'), now)})"))
    width = max(len(label) for label, _ in rows) + 2
    return "".join(f"{label + ':':<{width}}{value}\n" for label, value in rows)


def _when(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "<unknown>"
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    seconds = int((moment - now).total_seconds())
    span = _span(abs(seconds))
    return f"{stamp} ({'in ' + span if seconds > 0 else span + ' ago' if seconds < 0 else 'now'})"


def _span(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


# ------------------------------------------------------------------ sync


def sync(args: argparse.Namespace) -> int:
    import logging

    from kubelite.cli import syncargs
    from kubelite.errors import UsageError
    from kubelite.sources.gitsync import GitSync, SyncError, SyncStatus, hold_sync_lock
    from kubelite.store.reader import SYNC_META_KEY
    from kubelite.store.store import Store

    logging.basicConfig(level=logging.DEBUG if getattr(args, "debug", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    log = logging.getLogger("kubelite.sync")
    root = config.state_root(getattr(args, "root", None), create=True)
    lock = hold_sync_lock(root)

    store = Store(root)
    try:
        # the flag, the environment, else the path serve recorded (as diff, apply and delete take it)
        link = config.manifests(getattr(args, "manifests", None), recorded=store.get_meta("manifests"))
        previous = store.get_meta(SYNC_META_KEY)
        status = SyncStatus.from_json(previous) if previous else None
        node = syncargs.node_name(args, store.get_meta("node_name"))
        syncargs.check_flags(args, node)
        try:
            engine = GitSync(args.repo, ref=args.ref, path=args.path, root=root, link=link,
                             allow_empty=args.allow_empty, interval_s=args.interval, status=status, node=node)
        except SyncError as exc:
            raise UsageError(str(exc)) from None
        log.info("following %s ref %s path %s into %s (every %gs)", engine.status.repository, args.ref,
                 engine.path or "/", link, args.interval)
        stop = threading.Event()
        if not args.once:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        while True:
            result = engine.sync_once()
            _record(store, result)
            level = logging.WARNING if result.outcome in ("failed", "rejected", "drift") else logging.INFO
            if result.outcome != "unchanged" or args.once:
                log.log(level, "%s: %s%s", result.outcome, result.message,
                        f" (retry in {result.delay_s:g}s)" if result.outcome == "failed" else "")
            if args.once:
                return 1 if result.outcome in ("failed", "rejected") else 0
            if stop.wait(result.delay_s):
                log.info("stopping")
                return 0
    finally:
        store.close()
        lock.close()


def _record(store: Any, result: Any) -> None:
    """The status into meta "sync", and an event for anything but "unchanged": written as the
    agent writes a sync's result (`agent.nodestate.write_sync_result`), in one transaction."""
    from kubelite.agent.nodestate import write_sync_result

    with store.transaction():
        write_sync_result(store, result, utcnow())


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (`python -m kubelite.cli.sync sync …` / `… get sync`), before main.py wires it."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--root")
    common.add_argument("--manifests")
    common.add_argument("--debug", action="store_true")
    parser = argparse.ArgumentParser(prog="kubelite", parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    get = sub.add_parser("get")
    get_sub = get.add_subparsers(dest="resource", metavar="RESOURCE")
    get_sub.required = True
    add_parser(sub, common)
    args = parser.parse_args(argv)
    for name in ("root", "manifests", "debug"):
        if not hasattr(args, name):
            setattr(args, name, False if name == "debug" else None)
    from kubelite.errors import KubeliteError
    try:
        return int(args.sync_run(args))
    except KubeliteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
