"""`kubelite`: the command line — argument parsing and dispatch only.

Owns: the command tree, global flags, and turning errors into one line and an exit code
(a traceback only with `--debug`). Each command's module is imported when that command runs,
so `kubelite get pods` loads neither pydantic nor SQLAlchemy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

EXIT_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    common, namespaced = _common_flags(), _namespaced_flags()
    parser = argparse.ArgumentParser(prog="kubelite", parents=[common],
                                     description="Run Kubernetes Pod manifests on this machine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    registry_flags = _registry_flags()
    _add_serve(sub, common, registry_flags)
    _add_install_service(sub, common)
    kubeconfig = sub.add_parser("kubeconfig", parents=[common],
                                help="print a kubeconfig for kubectl, k9s and client libraries")
    kubeconfig.add_argument("--server", default=None, metavar="URL",
                            help="the API's URL (default: where the running kubelite serves it)")
    kubeconfig.add_argument("--admin", action="store_true",
                            help="the admin credential (may also exec, attach, cp and port-forward), as the "
                                 "user and context <node>-admin; default: the read-only one")

    _add_get(sub, common, namespaced)
    _add_describe(sub, common, namespaced)
    _add_manifest_commands(sub, common)
    _add_container_commands(sub, common)
    _add_port_forward(sub, common)
    _add_image(sub, common, registry_flags)

    from kubelite.cli import top  # standard library only when loaded

    top.add_parser(sub, common, namespaced)

    version = sub.add_parser("version", parents=[common], help="print the version")
    version.add_argument("-o", "--output", choices=["json", "yaml"], default=None)

    from kubelite.cli import sync  # standard library only when loaded: the read path stays fast

    sync.add_parser(sub, common)  # `sync` and `get sync`
    return parser


def _common_flags() -> argparse.ArgumentParser:
    # SUPPRESS: a flag given before or after the command is kept (argparse sub-parsers would
    # otherwise overwrite it with their own default).
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--root", help="state directory (env KUBELITE_ROOT; default /var/lib/kubelite)")
    common.add_argument("--run-dir", help="runtime directory (env KUBELITE_RUN_DIR; default /run/kubelite)")
    common.add_argument("--manifests", help="manifests directory (env KUBELITE_MANIFESTS; "
                                            "default /etc/kubelite/manifests)")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return common


def _namespaced_flags() -> argparse.ArgumentParser:
    namespaced = argparse.ArgumentParser(add_help=False)
    namespaced.add_argument("-n", "--namespace", default=None, help="namespace (default: default)")
    namespaced.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    return namespaced


def _registry_flags() -> argparse.ArgumentParser:
    registry_flags = argparse.ArgumentParser(add_help=False)
    registry_flags.add_argument("--authfile", default=None, metavar="FILE",
                                help="registry credentials, Docker config.json format (env KUBELITE_AUTHFILE; "
                                     "default /etc/kubelite/auth.json, else ~/.docker/config.json)")
    registry_flags.add_argument("--certs-dir", default=None, metavar="DIR",
                                help="CA certificates per registry: DIR/HOST[:PORT]/*.crt "
                                     "(env KUBELITE_CERTS_DIR; default /etc/kubelite/certs.d)")
    registry_flags.add_argument("--insecure-registry", action="append", default=None, metavar="HOST[:PORT]",
                                help="reach this registry over plain HTTP, certificates unchecked (repeatable; "
                                     "loopback registries always are; env KUBELITE_INSECURE_REGISTRIES)")
    registry_flags.add_argument("--image-max-layer-size", default="64Gi", metavar="QUANTITY",
                                help="a pulled layer that unpacks to more fails the pull (a quantity such as "
                                     "64Gi, 500Mi; default 64Gi)")
    return registry_flags


def _add_install_service(sub: Any, common: argparse.ArgumentParser) -> None:
    service = sub.add_parser(
        "install-service", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="install kubelite's systemd unit (kubelite.service) and reload systemd",
        description="Write kubelite's systemd unit to /etc/systemd/system/kubelite.service and run "
                    "'systemctl daemon-reload' where systemd runs. It does not enable or start the service.",
        epilog="Examples:\n  kubelite install-service && systemctl enable --now kubelite\n"
               "  kubelite install-service --print            # show the unit, write nothing\n"
               "  kubelite install-service --config /etc/kubelite/config.yaml")
    service.add_argument("--config", default=None, metavar="FILE",
                         help="the unit runs 'kubelite serve --config FILE' (default: plain 'kubelite serve')")
    service.add_argument("--print", action="store_true", help="print the unit on stdout instead of installing it")
    service.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR",
                         help="where the unit is written (default /etc/systemd/system)")


def _add_serve(sub: Any, common: argparse.ArgumentParser, registry_flags: argparse.ArgumentParser) -> None:
    serve = sub.add_parser("serve", parents=[common, registry_flags], help="run the node agent in the foreground")
    serve.add_argument("--runtime", choices=["runc", "fake"], default="runc",
                       help="container runtime: 'runc' (real containers, needs root) or 'fake' (a simulated dry "
                            "run, no root needed)")
    serve.add_argument("--node-name", default=None, help="this node's name (default: the host name)")
    serve.add_argument("--node-ip", default=None, metavar="IP",
                       help="this node's IP: status.hostIP (default: the source address of the default route)")
    serve.add_argument("--resolv-conf", default="/etc/resolv.conf", metavar="FILE",
                       help="the resolver configuration pods with dnsPolicy Default (and ClusterFirst, as this node "
                            "has no cluster DNS) get (default /etc/resolv.conf; systemd-resolved's upstream file "
                            "when it points only at the 127.0.0.53 stub)")
    serve.add_argument("--network", choices=["cni", "none"], default="cni",
                       help="pod networking: 'cni' (each pod an IP on kubelite's bridge, hostPort, outbound NAT; "
                            "needs containernetworking-plugins) or 'none' (loopback-only pods)")
    serve.add_argument("--pod-cidr", default=None, metavar="CIDR",
                       help="the pods' IPv4 subnet (default 10.217.0.0/24); must not overlap the host's routes")
    serve.add_argument("--bridge", default=None, metavar="NAME", help="the pods' bridge (default kubelite0)")
    serve.add_argument("--warm-sandboxes", type=int, default=2, metavar="N",
                       help="pod sandboxes kept ready for new pods without hostNetwork, hostPort or sysctls: "
                            "infra container running, network set up (default 2; 0 turns the pool off; runc "
                            "runtime only)")
    serve.add_argument("--relist-period", type=float, default=20.0, metavar="SECONDS",
                       help="full re-read of the manifests directory (default 20)")
    serve.add_argument("--backoff-initial", type=float, default=10.0, metavar="SECONDS",
                       help="first CrashLoopBackOff delay (default 10)")
    serve.add_argument("--backoff-max", type=float, default=300.0, metavar="SECONDS",
                       help="maximum CrashLoopBackOff delay (default 300)")
    serve.add_argument("--image-gc-high-threshold", type=int, default=85, metavar="PERCENT",
                       help="image GC starts when the image filesystem is this full (default 85)")
    serve.add_argument("--image-gc-low-threshold", type=int, default=80, metavar="PERCENT",
                       help="image GC frees space down to this (default 80)")
    serve.add_argument("--max-parallel-image-pulls", type=int, default=3, metavar="N",
                       help="image pulls at once (default 3)")
    serve.add_argument("--pod-workers", type=int, default=None, metavar="N",
                       help="pods synced at once (default: two per core, 2 to 8; 0: one after another)")
    serve.add_argument("--sync-repo", default=None, metavar="URL",
                       help="follow this git repository: the manifests path becomes a symlink kubelite swaps")
    serve.add_argument("--sync-ref", default="HEAD", metavar="REF", help="branch, tag or commit (default HEAD)")
    serve.add_argument("--sync-path", default="", metavar="SUBDIR", help="the manifests' directory in the repository")
    serve.add_argument("--sync-interval", default="30s", metavar="DURATION", help="how often to fetch (default 30s)")
    serve.add_argument("--allow-empty", action="store_true", help="apply a commit that removes every pod")
    serve.add_argument("--api-address", default="127.0.0.1:10280", metavar="HOST:PORT",
                       help="serve the read-only Kubernetes API (HTTPS, bearer token) here (default "
                            "127.0.0.1:10280; port 0 picks a free one)")
    serve.add_argument("--no-api", action="store_true", help="do not serve the Kubernetes API")
    serve.add_argument("--seccomp-default", action="store_true",
                       help="run containers that set no seccompProfile under RuntimeDefault (as the kubelet's flag)")
    serve.add_argument("--allowed-unsafe-sysctls", default="", metavar="LIST",
                       help="comma-separated namespaced sysctls (or prefix*) pods may set beyond the safe set")
    serve.add_argument("--log-format", choices=["text", "json"], default="text",
                       help="log lines on stderr (the journal under systemd): 'text' (default) or 'json', one "
                            "object per line with ts, level, logger, msg and pod, container, reason where known")


def _add_get(sub: Any, common: argparse.ArgumentParser, namespaced: argparse.ArgumentParser) -> None:
    get = sub.add_parser("get", help="list pods, events, configmaps, secrets, persistentvolumeclaims, "
                                     "persistentvolumes or storageclasses")
    get_sub = get.add_subparsers(dest="resource", metavar="RESOURCE")
    get_sub.required = True
    for names in (("pods", "pod", "po"), ("events", "event", "ev")):
        p = get_sub.add_parser(names[0], aliases=list(names[1:]), parents=[common, namespaced])
        p.add_argument("name", nargs="?", help="a single object by name")
        p.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"], default=None)
        p.add_argument("--no-headers", action="store_true")
        p.add_argument("-w", "--watch", action="store_true", help="after listing, print changes as they happen")
        p.add_argument("--watch-only", action="store_true", help="print changes as they happen, without the list")

    for names in (("configmaps", "configmap", "cm"), ("secrets", "secret"),
                  ("persistentvolumeclaims", "persistentvolumeclaim", "pvc"),
                  ("persistentvolumes", "persistentvolume", "pv"), ("storageclasses", "storageclass", "sc")):
        p = get_sub.add_parser(names[0], aliases=list(names[1:]), parents=[common, namespaced])
        p.add_argument("name", nargs="?", help="a single object by name")
        p.add_argument("-o", "--output", choices=["json", "yaml", "name"], default=None)
        p.add_argument("--no-headers", action="store_true")


def _add_describe(sub: Any, common: argparse.ArgumentParser, namespaced: argparse.ArgumentParser) -> None:
    describe = sub.add_parser("describe", help="show a pod, ConfigMap, Secret or PersistentVolumeClaim in detail")
    describe_sub = describe.add_subparsers(dest="resource", metavar="RESOURCE")
    describe_sub.required = True
    p = describe_sub.add_parser("pod", aliases=["pods", "po"], parents=[common, namespaced])
    p.add_argument("name")
    for names in (("configmap", "configmaps", "cm"), ("secret", "secrets"),
                  ("persistentvolumeclaim", "persistentvolumeclaims", "pvc")):
        p = describe_sub.add_parser(names[0], aliases=list(names[1:]), parents=[common, namespaced])
        p.add_argument("name")


def _add_manifest_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """validate, apply and delete: the commands that read or change the manifests directory."""
    validate = sub.add_parser("validate", parents=[common], help="check manifest files or directories")
    validate.add_argument("paths", nargs="+", metavar="FILE|DIR")

    apply = sub.add_parser("apply", parents=[common], help="validate a manifest file and put it in the manifests "
                                                          "directory")
    apply.add_argument("-f", "--filename", required=True, metavar="FILE")

    delete = sub.add_parser("delete", parents=[common], help="remove pods by removing their manifests")
    delete.add_argument("resource", nargs="?", choices=["pod", "pods", "po"], help="'pod' to delete by name")
    delete.add_argument("name", nargs="?")
    delete.add_argument("-f", "--filename", metavar="FILE")
    delete.add_argument("-n", "--namespace", default=None)


def _add_container_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """logs, exec, cp and kill: the commands that reach one container of a pod."""
    logs = _container_command(sub, "logs", common, "print a container's log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-p", "--previous", action="store_true", help="the previous attempt's log")
    logs.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    logs.add_argument("--timestamps", action="store_true", help="prefix each line with its time")

    exec_ = _container_command(sub, "exec", common, "run a command in a container")
    exec_.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    exec_.add_argument("-i", "--stdin", action="store_true", help="pass stdin (always on)")
    exec_.add_argument("command_args", nargs="*", metavar="-- COMMAND")

    cp = sub.add_parser("cp", parents=[common], help="copy files into or out of a container (it needs tar)")
    cp.add_argument("source", metavar="SRC", help="a local path, or [NAMESPACE/]POD:PATH")
    cp.add_argument("dest", metavar="DEST", help="a local path, or [NAMESPACE/]POD:PATH")
    cp.add_argument("-c", "--container", default=None)
    cp.add_argument("-n", "--namespace", default=None)

    kill = _container_command(sub, "kill", common, "send a signal to a container's PID 1")
    kill.add_argument("-s", "--signal", default="TERM", help="signal name or number (default TERM)")

    attach = _container_command(sub, "attach", common, "attach to a container's main process: its output, "
                                                       "its stdin with -i, its terminal with -t")
    attach.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the container (stdin: true)")
    attach.add_argument("-t", "--tty", action="store_true",
                        help="stdin is a terminal (tty: true); Ctrl-P Ctrl-Q detaches with -i")


def _add_port_forward(sub: Any, common: argparse.ArgumentParser) -> None:
    forward = sub.add_parser("port-forward", parents=[common],
                             help="forward local ports to a pod (dialled inside the pod's network namespace)")
    forward.add_argument("pod", metavar="POD", help="POD or pod/POD")
    forward.add_argument("ports", nargs="+", metavar="[LOCAL:]REMOTE",
                         help="LOCAL:REMOTE, or REMOTE alone (the same port here), or :REMOTE (a free port)")
    forward.add_argument("--address", default="localhost", metavar="ADDRESSES",
                         help="addresses to listen on, comma-separated: IPs or localhost (default localhost: "
                              "127.0.0.1 and ::1)")
    forward.add_argument("-n", "--namespace", default=None)


def _container_command(sub: Any, name: str, common: argparse.ArgumentParser, help: str) -> argparse.ArgumentParser:
    """A command on one container: POD, -c/--container and -n/--namespace."""
    command = sub.add_parser(name, parents=[common], help=help)
    command.add_argument("pod", metavar="POD")
    command.add_argument("-c", "--container", default=None)
    command.add_argument("-n", "--namespace", default=None)
    return command


def _add_image(sub: Any, common: argparse.ArgumentParser, registry_flags: argparse.ArgumentParser) -> None:
    image = sub.add_parser("image", help="manage the local image store")
    image_sub = image.add_subparsers(dest="image_command", metavar="COMMAND")
    image_sub.required = True
    load = image_sub.add_parser("load", parents=[common], help="load a docker-save or OCI archive")
    load.add_argument("-i", "--input", required=True, metavar="FILE")
    image_sub.add_parser("ls", aliases=["list"], parents=[common], help="list images")
    rm = image_sub.add_parser("rm", parents=[common], help="remove images")
    rm.add_argument("refs", nargs="+", metavar="IMAGE")
    pull = image_sub.add_parser("pull", parents=[common, registry_flags], help="pull an image from a registry")
    pull.add_argument("ref", metavar="IMAGE")
    pull.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    pull.add_argument("--image-gc-high-threshold", type=int, default=85, metavar="PERCENT",
                      help="a layer that would fill the image filesystem past this fails the pull, as in serve "
                           "(default 85)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    for name in ("root", "run_dir", "manifests", "debug"):
        if not hasattr(args, name):
            setattr(args, name, False if name == "debug" else None)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 — the CLI's one place that turns errors into a line
        from kubelite.errors import KubeliteError

        if args.debug:
            raise
        if isinstance(exc, KubeliteError):
            print(f"error: {exc}", file=sys.stderr)
        else:
            print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return EXIT_ERROR


def _parse(argv: list[str]) -> argparse.Namespace:
    """Everything after the first `--` of `exec` is the command, as with kubectl: options of `exec`
    may stand before or after POD (`exec web -c app -- ls -l`)."""
    cut = argv.index("--") if "--" in argv else 0
    if "exec" in argv[:cut]:
        args = _parser().parse_args(argv[:cut])
        if args.command == "exec":
            args.command_args = args.command_args + argv[cut + 1:]
            return args
    return _parser().parse_args(argv)


def _dispatch(args: argparse.Namespace) -> int:
    sync_run = getattr(args, "sync_run", None)
    if sync_run is not None:
        return sync_run(args)
    command = args.command
    if command == "serve":
        from kubelite.cli import serve
        return serve.run(args)
    if command in ("get", "describe"):
        from kubelite.cli import show
        return show.run(args)
    if command in ("validate", "apply", "delete"):
        from kubelite.cli import manage
        return manage.run(args)
    if command in ("logs", "exec", "kill", "cp"):
        from kubelite.cli import containers
        return containers.run(args)
    if command == "port-forward":
        from kubelite.cli import portforward
        return portforward.run(args)
    if command == "attach":
        from kubelite.cli import attach
        return attach.run(args)
    if command == "image":
        from kubelite.cli import image
        return image.run(args)
    if command == "top":
        from kubelite.cli import top
        return top.run(args)
    if command == "install-service":
        from kubelite.cli import service
        return service.run(args)
    if command == "kubeconfig":
        from kubelite.cli import kubeconfig
        return kubeconfig.run(args)
    if command == "version":
        from kubelite.cli import show
        return show.version(args)
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
