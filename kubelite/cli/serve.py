"""`kubelite serve`: turn the command line and the configuration file into `ServeOptions` and run the
daemon, which asks `reload` for new options on SIGHUP."""

from __future__ import annotations

import argparse
import socket
from typing import TYPE_CHECKING, Callable

from kubelite.cli import config

if TYPE_CHECKING:
    from kubelite.daemon import ApiOptions, ServeOptions


def run(args: argparse.Namespace) -> int:
    """`serve`: the settings from flags, environment, `--config` file and defaults (`cli.serveconfig`),
    then the daemon; `--print-config` prints them instead. A SIGHUP reads the file again (`reload`)."""
    import sys

    from kubelite.cli import serveconfig

    sources = serveconfig.sources_of(args)
    settings = serveconfig.effective(sources)
    if args.print_config:
        sys.stdout.write(serveconfig.to_yaml(settings))
        return 0
    from kubelite.daemon import configure_logging, serve

    configure_logging(settings.debug, settings.log_format)
    running = [settings]

    def reload() -> "ServeOptions":
        """The file read again: what changes live, as ServeOptions; UsageError when it cannot be used."""
        running[0] = serveconfig.reload(running[0], sources)
        return options(serveconfig.as_args(running[0], args))

    return serve(options(serveconfig.as_args(settings, args), reload=reload if sources.file else None))


def options(args: argparse.Namespace, *, reload: Callable[[], "ServeOptions"] | None = None) -> "ServeOptions":
    """The daemon's options from `serve`'s settings (checked by `cli.serveconfig`'s model)."""
    from kubelite.agent.config import AgentConfig
    from kubelite.core.types import BackoffPolicy
    from kubelite.daemon import ServeOptions, SyncOptions
    from kubelite.errors import UsageError

    api = None if args.no_api else api_options(args.api_address)
    try:
        backoff = BackoffPolicy(initial_s=args.backoff_initial, max_s=args.backoff_max)
    except ValueError as exc:
        raise UsageError(f"--backoff-initial/--backoff-max: {exc}") from None
    from kubelite.runtime import cni

    node_ip = args.node_ip or cni.host_ip()
    cni_bin_dirs = cni_bin_dir_list(args.cni_bin_dir)
    from kubelite.agent import workers

    pod_workers = workers.default_size() if args.pod_workers is None else args.pod_workers
    from kubelite.core import security

    try:
        unsafe = tuple(security.check_allowed_unsafe(args.allowed_unsafe_sysctls.split(",")))
    except ValueError as exc:
        raise UsageError(f"--allowed-unsafe-sysctls: {exc}") from None
    agent = AgentConfig(manifests=config.manifests(args.manifests), root=config.root(args.root),
                        node_name=args.node_name or socket.gethostname().lower(),
                        relist_period_s=args.relist_period, backoff=backoff, node_ip=node_ip,
                        image_pull_workers=args.max_parallel_image_pulls, pod_workers=pod_workers,
                        image_gc_high_percent=args.image_gc_high_threshold,
                        image_gc_low_percent=args.image_gc_low_threshold, resolv_conf=args.resolv_conf,
                        seccomp_default=args.seccomp_default, allowed_unsafe_sysctls=unsafe)
    sync = None
    if args.sync_repo:
        from kubelite.cli.sync import parse_duration

        sync = SyncOptions(repo=args.sync_repo, ref=args.sync_ref, path=args.sync_path,
                           interval_s=parse_duration(args.sync_interval), allow_empty=args.allow_empty)
    from kubelite.cli.image import registry_config

    return ServeOptions(agent=agent, run_dir=config.run_dir(args.run_dir), runtime=args.runtime, sync=sync,
                        network=args.network, bridge=args.bridge or cni.DEFAULT_BRIDGE,
                        pod_cidr=args.pod_cidr or cni.DEFAULT_POD_CIDR, cni_bin_dirs=cni_bin_dirs,
                        registry=registry_config(args),
                        api=api, warm_sandboxes=args.warm_sandboxes, debug=args.debug, reload=reload)


def cni_bin_dir_list(text: str) -> tuple[str, ...]:
    """`--cni-bin-dir DIR[,DIR...]`: full paths, searched in order for the CNI plugins (empty items skipped)."""
    from kubelite.errors import UsageError

    dirs = tuple(d.strip() for d in text.split(",") if d.strip())
    if not dirs:
        raise UsageError("--cni-bin-dir needs at least one directory")
    relative = [d for d in dirs if not d.startswith("/")]
    if relative:
        raise UsageError(f"--cni-bin-dir takes full paths: {', '.join(relative)} is not one")
    return dirs


def api_options(address: str) -> "ApiOptions":
    """`--api-address HOST:PORT`: an IP address of this machine (loopback by default) and a port."""
    from kubelite.cli.serveconfig import split_address
    from kubelite.daemon import ApiOptions
    from kubelite.errors import UsageError

    try:
        host, port = split_address(address)
    except ValueError as exc:
        raise UsageError(f"--api-address {address}: {exc}") from None
    return ApiOptions(host=host, port=port)
