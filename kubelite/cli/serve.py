"""`kubelite serve`: turn the command line into `ServeOptions` and run the daemon."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from typing import TYPE_CHECKING

from kubelite.cli import config

if TYPE_CHECKING:
    from kubelite.daemon import ApiOptions


def run(args: argparse.Namespace) -> int:
    from kubelite.agent.config import AgentConfig
    from kubelite.core.types import BackoffPolicy
    from kubelite.daemon import ServeOptions, SyncOptions, configure_logging, serve
    from kubelite.errors import UsageError

    api = None if args.no_api else api_options(args.api_address)
    configure_logging(args.debug, args.log_format)
    try:
        backoff = BackoffPolicy(initial_s=args.backoff_initial, max_s=args.backoff_max)
    except ValueError as exc:
        raise UsageError(f"--backoff-initial/--backoff-max: {exc}") from None
    if args.relist_period <= 0:
        raise UsageError("--relist-period must be positive")
    from kubelite.runtime import cni

    node_ip = args.node_ip or cni.host_ip()
    if args.node_ip:
        try:
            ipaddress.ip_address(args.node_ip)
        except ValueError:
            raise UsageError(f"--node-ip {args.node_ip!r} is not an IP address") from None
    if not 0 <= args.image_gc_low_threshold <= args.image_gc_high_threshold <= 100:
        raise UsageError("--image-gc-low-threshold and --image-gc-high-threshold: need 0 <= low <= high <= 100")
    if args.warm_sandboxes < 0:
        raise UsageError("--warm-sandboxes must be 0 (no pool) or more")
    if args.max_parallel_image_pulls < 1:
        raise UsageError("--max-parallel-image-pulls must be at least 1")
    if args.pod_workers is not None and not 0 <= args.pod_workers <= 64:
        raise UsageError("--pod-workers must be between 0 and 64")
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

    return serve(ServeOptions(agent=agent, run_dir=config.run_dir(args.run_dir), runtime=args.runtime, sync=sync,
                              network=args.network, bridge=args.bridge or cni.DEFAULT_BRIDGE,
                              pod_cidr=args.pod_cidr or cni.DEFAULT_POD_CIDR, registry=registry_config(args),
                              api=api, warm_sandboxes=args.warm_sandboxes))


def api_options(address: str) -> "ApiOptions":
    """`--api-address HOST:PORT`: an IP address of this machine (loopback by default) and a port."""
    import ipaddress

    from kubelite.daemon import ApiOptions
    from kubelite.errors import UsageError

    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        if not sep:
            raise ValueError
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise UsageError(f"--api-address {address}: give an IP address and a port, such as 127.0.0.1:10280 "
                         "(port 0 picks a free one)") from None
    return ApiOptions(host=host, port=number)
