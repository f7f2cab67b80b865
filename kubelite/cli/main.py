"""`kubelite`: the command line — argument parsing and dispatch only.

Owns: the command tree, global flags, and turning errors into one line and an exit code
(a traceback only with `--debug`). Each command's module is imported when that command runs,
so `kubelite get pods` loads neither pydantic nor SQLAlchemy.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Sequence

from kubelite import __version__

EXIT_ERROR = 1


def _remember_translations() -> None:
    """argparse asks gettext for the translation of its own messages ("usage: ", "options", "show
    this help message and exit") again for every parser it makes, and each ask searches the locale
    directories on disk: about 120 searches for kubelite's 40 parsers, half the time it takes to
    build them on every start. The answer cannot change within one run: remember it."""
    if not hasattr(argparse._, "cache_info"):
        argparse._ = functools.lru_cache(maxsize=None)(argparse._)  # type: ignore[attr-defined]


def _parser() -> argparse.ArgumentParser:
    _remember_translations()
    common, namespaced = _common_flags(), _namespaced_flags()
    parser = argparse.ArgumentParser(prog="kubelite", parents=[common],
                                     description="Run Kubernetes Pod manifests on this machine.",
                                     epilog=_examples(
                                         ("Run the pods of a directory", "kubelite serve --manifests ./manifests"),
                                         ("List them", "kubelite get pods"),
                                         ("Show every flag of a command", "kubelite get pods --help")),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kubelite v{__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    registry_flags = _registry_flags()
    _add_serve(sub, common, _registry_flags())   # its own copy: serve's defaults are moved aside
    _add_config_flags(sub.choices["serve"])
    _add_install_service(sub, common)
    kubeconfig = _command(sub, "kubeconfig", common,
                          help="print a kubeconfig for kubectl, k9s and client libraries",
                          examples=(("Use kubectl on this node", "kubelite kubeconfig > ~/.kube/kubelite\n"
                                     "  KUBECONFIG=~/.kube/kubelite kubectl get pods"),
                                    ("The admin credential (exec, attach, cp, port-forward; as root)",
                                     "kubelite kubeconfig --admin > ~/.kube/kubelite-admin")))
    kubeconfig.add_argument("--server", default=None, metavar="URL",
                            help="the API's URL (default: where the running kubelite serves it)")
    kubeconfig.add_argument("--admin", action="store_true",
                            help="the admin credential (may also exec, attach, cp and port-forward), as the "
                                 "user and context <node>-admin; default: the read-only one")
    kubeconfig.add_argument("--merge", nargs="?", const="", default=None, metavar="FILE",
                            help="merge into an existing kubeconfig instead of printing: FILE, else the first "
                                 "file of $KUBECONFIG, else ~/.kube/config (entries of the same name replaced, "
                                 "everything else kept, the current context switched to this node's; written "
                                 "atomically, mode 0600)")

    _add_get(sub, common, namespaced)
    _add_describe(sub, common, namespaced)
    _add_manifest_commands(sub, common)
    _add_container_commands(sub, common)
    _add_port_forward(sub, common)
    _add_image(sub, common, registry_flags)

    from kubelite.cli import top  # standard library only when loaded

    top.add_parser(sub, common, namespaced)

    version = _command(sub, "version", common, help="print the version",
                       examples=(("The version", "kubelite version"),
                                 ("As kubectl version -o json prints it", "kubelite version -o json")))
    version.add_argument("-o", "--output", choices=["json", "yaml"], default=None,
                         help="print the version information as json or yaml")

    completion = _command(sub, "completion", common, help="print a shell completion script (bash or zsh)",
                          examples=(("Complete kubelite in this bash", "source <(kubelite completion bash)"),
                                    ("For every new bash",
                                     "kubelite completion bash > /etc/bash_completion.d/kubelite"),
                                    ("For zsh (a directory on $fpath)",
                                     "kubelite completion zsh > \"${fpath[1]}/_kubelite\"")))
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell: bash or zsh")

    from kubelite.cli import sync  # standard library only when loaded: the read path stays fast

    sync.add_parser(sub, common)  # `sync` and `get sync`

    from kubelite.cli import reset  # standard library only when loaded

    reset.add_parser(sub, common)
    return parser


def _examples(*examples: tuple[str, str]) -> str:
    """An epilog as kubectl's: `Examples:`, each a comment and the command."""
    return "Examples:\n" + "\n\n".join(f"  # {what}\n  {command}" for what, command in examples)


def _command(sub: Any, name: str, *parents: argparse.ArgumentParser, help: str,
             examples: tuple[tuple[str, str], ...] = (), **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command with its help, its description and kubectl-style examples in its epilog."""
    return sub.add_parser(name, parents=list(parents), help=help, description=help[:1].upper() + help[1:] + ".",
                          epilog=_examples(*examples) if examples else None,
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


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
    namespaced.add_argument("-n", "--namespace", default=None, help="the namespace (default: default)")
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
    serve = _command(sub, "serve", common, registry_flags, help="run the node agent in the foreground",
                     examples=(("Real containers (as root), the manifests of /etc/kubelite/manifests",
                                "kubelite serve"),
                               ("A dry run of a directory without root", "kubelite serve --runtime fake "
                                "--manifests ./manifests"),
                               ("Follow a git repository", "kubelite serve --sync-repo https://example.com/fleet.git "
                                "--sync-path nodes/edge-1")))
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
    serve.add_argument("--cni-bin-dir", default="/usr/lib/cni,/opt/cni/bin", metavar="DIRS",
                       help="comma-separated full paths of directories to search, in order, for the CNI plugins "
                            "(bridge, host-local, loopback, portmap, firewall), as the kubelet's flag (default "
                            "/usr/lib/cni, where Debian installs them, then /opt/cni/bin)")
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
    serve.add_argument("--sync-path", default="", metavar="SUBDIR",
                       help="the manifests' directory in the repository; {node} stands for the node's name "
                            "(nodes/{node}); a directory with a kustomization.yaml is rendered with kustomize")
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


#: `get`'s table flags, shared by every resource it lists.
_GET_EXAMPLES = (
    ("All pods of the default namespace; -A: of every namespace", "kubelite get pods"),
    ("Several pods, by name or as TYPE/NAME", "kubelite get pods web db\n  kubelite get pod/web pod/db"),
    ("Pods by label and by field", "kubelite get pods -l app=web,tier!=cache --field-selector status.phase=Running"),
    ("With their labels", "kubelite get pods --show-labels"),
    ("Names only, as JSONPath", "kubelite get pods -o jsonpath='{.items[*].metadata.name}'"),
    ("One line per pod", "kubelite get pods -o jsonpath='{range .items[*]}{.metadata.name}{\"\\t\"}"
     "{.status.podIP}{\"\\n\"}{end}'"),
    ("Columns of your choice", "kubelite get pods -o custom-columns=NAME:.metadata.name,NODE:.spec.nodeName"),
    ("Watch the pods change", "kubelite get pods -w"),
)


def _get_flags(parser: argparse.ArgumentParser, resource: str, *, watch: bool = False,
               show_labels: bool = False) -> None:
    from kubelite.cli.resources import output_format

    parser.add_argument("name", nargs="*", metavar="NAME", help=f"only these {resource} (default: all)")
    parser.add_argument("-o", "--output", type=output_format, default=None, metavar="FORMAT",
                        help=("wide, " if resource == "pods" else "") +
                             "json, yaml, name, jsonpath=TEMPLATE (kubectl's JSONPath, e.g. "
                             "'{.items[*].metadata.name}') or custom-columns=HEADER:PATH,... "
                             "(e.g. NAME:.metadata.name)")
    parser.add_argument("--no-headers", action="store_true", help="print the table without its header line")
    parser.add_argument("-l", "--selector", default=None, metavar="SELECTOR",
                        help="only objects whose labels match, e.g. app=web, 'tier in (db,cache)', "
                             "'!canary', app!=web")
    parser.add_argument("--field-selector", default=None, metavar="SELECTOR",
                        help="only objects whose fields match, e.g. status.phase=Running, metadata.name!=web "
                             "(the fields kubectl allows for this resource)")
    if show_labels:
        parser.add_argument("--show-labels", action="store_true", help="add a LABELS column to the table")
    if watch:
        parser.add_argument("-w", "--watch", action="store_true", help="after listing, print changes as they happen")
        parser.add_argument("--watch-only", action="store_true",
                            help="print changes as they happen, without the list")


def _add_config_flags(serve: argparse.ArgumentParser) -> None:
    """`serve --config FILE` and `--print-config`. A flag given overrides the file, so no serve flag has
    a default the parser fills in: the defaults are kept aside (`flag_defaults`), and `serve` asks
    `cli.serveconfig` for each setting's value (flag, environment, file, default)."""
    serve.add_argument("--config", default=None, metavar="FILE",
                       help="read the settings from this KubeliteConfiguration file (YAML or JSON); flags given "
                            "override it; SIGHUP reloads what can change live (see docs/configuration.md)")
    serve.add_argument("--print-config", action="store_true",
                       help="print the effective configuration (flags, environment, --config file, defaults) as a "
                            "configuration file, and exit")
    flag_defaults = {}
    for action in serve._actions:
        if action.dest not in ("help", "config", "print_config") and action.default is not argparse.SUPPRESS:
            flag_defaults[action.dest] = action.default
            action.default = argparse.SUPPRESS
    serve.set_defaults(flag_defaults=flag_defaults)


def _add_get(sub: Any, common: argparse.ArgumentParser, namespaced: argparse.ArgumentParser) -> None:
    get = _command(sub, "get", help="list pods, events, configmaps, secrets, persistentvolumeclaims, "
                                    "persistentvolumes or storageclasses", examples=_GET_EXAMPLES)
    get_sub = get.add_subparsers(dest="resource", metavar="RESOURCE")
    get_sub.required = True
    for names, what in ((("pods", "pod", "po"), "list pods, as kubectl get pods"),
                        (("events", "event", "ev"), "list events, oldest first")):
        p = _command(get_sub, names[0], common, namespaced, help=what, aliases=list(names[1:]),
                     examples=_GET_EXAMPLES if names[0] == "pods" else (
                         ("Events of every namespace", "kubelite get events -A"),
                         ("Warnings only, as they come", "kubelite get events --field-selector type=Warning -w")))
        _get_flags(p, names[0], watch=True, show_labels=names[0] == "pods")

    for names, what in ((("configmaps", "configmap", "cm"), "list ConfigMaps"), (("secrets", "secret"),
                        "list Secrets (key counts, never values)"),
                        (("persistentvolumeclaims", "persistentvolumeclaim", "pvc"), "list PersistentVolumeClaims"),
                        (("persistentvolumes", "persistentvolume", "pv"), "list PersistentVolumes"),
                        (("storageclasses", "storageclass", "sc"), "list StorageClasses")):
        p = _command(get_sub, names[0], common, namespaced, help=what, aliases=list(names[1:]),
                     examples=((what[:1].upper() + what[1:], f"kubelite get {names[0]}"),
                               ("One of them as YAML", f"kubelite get {names[-1]} NAME -o yaml")))
        _get_flags(p, names[0], show_labels=names[0] in ("configmaps", "secrets"))


def _add_describe(sub: Any, common: argparse.ArgumentParser, namespaced: argparse.ArgumentParser) -> None:
    describe = _command(sub, "describe", help="show a pod, ConfigMap, Secret or PersistentVolumeClaim in detail",
                        examples=(("A pod", "kubelite describe pod web"),
                                  ("Several, or as TYPE/NAME", "kubelite describe pods web db\n"
                                   "  kubelite describe pod/web"),
                                  ("Every pod labelled app=web", "kubelite describe pods -l app=web")))
    describe_sub = describe.add_subparsers(dest="resource", metavar="RESOURCE")
    describe_sub.required = True
    for names, what in ((("pod", "pods", "po"), "pods"), (("configmap", "configmaps", "cm"), "ConfigMaps"),
                        (("secret", "secrets"), "Secrets (value sizes, never values)"),
                        (("persistentvolumeclaim", "persistentvolumeclaims", "pvc"), "PersistentVolumeClaims")):
        p = _command(describe_sub, names[0], common, namespaced, help=f"describe {what}", aliases=list(names[1:]),
                     examples=(("One by name", f"kubelite describe {names[0]} NAME"),
                               ("All of the namespace", f"kubelite describe {names[1]}")))
        p.add_argument("name", nargs="*", metavar="NAME", help="these objects (default: every one that matches -l)")
        p.add_argument("-l", "--selector", default=None, metavar="SELECTOR",
                       help="only objects whose labels match, e.g. app=web")


def _add_manifest_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """validate, apply, diff and delete: the commands that read, preview or change the manifests directory."""
    validate = _command(sub, "validate", common, help="check manifest files or directories",
                        examples=(("A file and a directory", "kubelite validate web.yaml manifests/"),
                                  ("Also against the Kubernetes 1.32 schema, as an API server would take them",
                                   "kubelite validate --kubernetes pods/web.yaml"),
                                  ("Against the schema of 1.30", "kubelite validate --kubernetes=1.30 manifests/")))
    validate.add_argument("paths", nargs="*", metavar="FILE|DIR", help="manifest files or directories to check")
    validate.add_argument("--kubernetes", nargs="?", const="", default=None, metavar="VERSION",
                          help="also check every document against the official Kubernetes OpenAPI schema of "
                               "VERSION (default 1.32), strictly, as an API server would take it; write "
                               "--kubernetes=VERSION")

    apply = _command(sub, "apply", common,
                     help="validate manifests and put them in the manifests directory",
                     examples=(("A file", "kubelite apply -f web.yaml"),
                               ("Every *.yaml, *.yml and *.json of a directory; -R: of its sub-directories too",
                                "kubelite apply -f manifests/"),
                               ("From standard input (written as stdin.yaml unless named)",
                                "cat web.yaml | kubelite apply -f -"),
                               ("From an https URL", "kubelite apply -f https://example.com/web.yaml"),
                               ("Several at once", "kubelite apply -f web.yaml -f db.yaml")))
    apply.add_argument("-f", "--filename", required=True, action="append", metavar="FILE|DIR|URL|-",
                       help="a manifest file, a directory of them, an https URL, or - for standard input "
                            "(repeatable)")
    apply.add_argument("-R", "--recursive", action="store_true",
                       help="with a directory: its sub-directories too")

    diff = _command(sub, "diff", common,
                    help="show what applying manifests would do to each pod: create, restart containers, replace, "
                         "delete",
                    examples=(("What apply -f web.yaml would do, e.g. 'pod/web: restart container app (image "
                               "changed)'", "kubelite diff -f web.yaml"),
                              ("Every manifest file of a directory, for a script", "kubelite diff -f ./pods -o json")))
    diff.epilog = (diff.epilog or "") + "\n\nExit status: 0 nothing would change, 1 something would, 2 an error."
    diff.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR",
                      help="a manifest file, or a directory of them, as apply -f would place it in the manifests "
                           "directory (repeatable)")
    diff.add_argument("-o", "--output", choices=["json"], default=None,
                      help="json: the preview as one JSON document (default: a line per pod and a unified diff)")

    delete = _command(sub, "delete", common, help="remove pods by removing their manifests",
                      examples=(("A pod", "kubelite delete pod web"),
                                ("Several, or as TYPE/NAME", "kubelite delete pod web db\n  kubelite delete pod/web"),
                                ("The pods of a file", "kubelite delete -f web.yaml")))
    delete.add_argument("resource", nargs="?", choices=["pod", "pods", "po"], help="'pod' to delete by name")
    delete.add_argument("name", nargs="*", metavar="NAME", help="the pods to delete")
    delete.add_argument("-f", "--filename", metavar="FILE", help="delete the pods this manifest file defines")
    delete.add_argument("-n", "--namespace", default=None, help="the pods' namespace (default: default)")


def _add_container_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """logs, exec, cp and kill: the commands that reach one container of a pod."""
    logs = _container_command(sub, "logs", common, "print a container's log", examples=(
        ("The pod's (first) container", "kubelite logs web"),
        ("One container, as TYPE/NAME", "kubelite logs pod/web -c app\n  kubelite logs web app"),
        ("Every container, each line prefixed [pod/web/app]", "kubelite logs web --all-containers --prefix"),
        ("The last 5 minutes, then follow", "kubelite logs web --since 5m -f"),
        ("Since a time", "kubelite logs web --since-time 2026-01-02T15:04:05Z"),
        ("The crashed attempt before this one", "kubelite logs crashy --previous")))
    logs.add_argument("container_arg", nargs="?", metavar="CONTAINER", help="the container (as -c)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-p", "--previous", action="store_true", help="the previous attempt's log")
    logs.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines (per container)")
    logs.add_argument("--timestamps", action="store_true", help="prefix each line with its time")
    logs.add_argument("--all-containers", action="store_true",
                      help="the logs of every container: init containers first, in the pod's order")
    logs.add_argument("--prefix", action="store_true",
                      help="prefix each line with its source, [pod/NAME/CONTAINER]")
    logs.add_argument("--since", default=None, metavar="DURATION",
                      help="only lines newer than this, e.g. 30s, 5m, 1h, 1h30m")
    logs.add_argument("--since-time", default=None, metavar="TIME",
                      help="only lines at or after this RFC 3339 time, e.g. 2026-01-02T15:04:05Z")

    exec_ = _container_command(sub, "exec", common, "run a command in a container", examples=(
        ("A command in the pod's (first) container", "kubelite exec web -- ls /"),
        ("In one container, as TYPE/NAME", "kubelite exec pod/web -c app -- cat /etc/hostname"),
        ("A shell", "kubelite exec -it web -- sh")))
    exec_.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    exec_.add_argument("-i", "--stdin", action="store_true", help="pass stdin (always on)")
    exec_.add_argument("command_args", nargs="*", metavar="-- COMMAND", help="the command and its arguments")

    cp = _command(sub, "cp", common, help="copy files into or out of a container (it needs tar)",
                  examples=(("Into a container", "kubelite cp ./site web:/srv"),
                            ("Out of one container of a pod in another namespace",
                             "kubelite cp -c app shop/web:/var/log/app.log ./app.log")))
    cp.add_argument("source", metavar="SRC", help="a local path, or [NAMESPACE/]POD:PATH")
    cp.add_argument("dest", metavar="DEST", help="a local path, or [NAMESPACE/]POD:PATH")
    cp.add_argument("-c", "--container", default=None, help="the container (default: the pod's first)")
    cp.add_argument("-n", "--namespace", default=None, help="the pod's namespace (default: default)")

    kill = _container_command(sub, "kill", common, "send a signal to a container's PID 1", examples=(
        ("Make the pod's container crash (watch it restart)", "kubelite kill web -s KILL"),))
    kill.add_argument("-s", "--signal", default="TERM", help="signal name or number (default TERM)")

    attach = _container_command(sub, "attach", common, "attach to a container's main process: its output, "
                                                       "its stdin with -i, its terminal with -t", examples=(
        ("Its output", "kubelite attach web"),
        ("Its terminal (the container has stdin and tty: true); Ctrl-P Ctrl-Q detaches", "kubelite attach -it web")))
    attach.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the container (stdin: true)")
    attach.add_argument("-t", "--tty", action="store_true",
                        help="stdin is a terminal (tty: true); Ctrl-P Ctrl-Q detaches with -i")


def _add_port_forward(sub: Any, common: argparse.ArgumentParser) -> None:
    forward = _command(sub, "port-forward", common,
                       help="forward local ports to a pod (dialled inside the pod's network namespace)",
                       examples=(("Local port 18080 to the pod's 8080", "kubelite port-forward web 18080:8080"),
                                 ("A free local port, on every address", "kubelite port-forward pod/web :8080 "
                                  "--address 0.0.0.0")))
    forward.add_argument("pod", metavar="POD", help="POD or pod/POD")
    forward.add_argument("ports", nargs="+", metavar="[LOCAL:]REMOTE",
                         help="LOCAL:REMOTE, or REMOTE alone (the same port here), or :REMOTE (a free port)")
    forward.add_argument("--address", default="localhost", metavar="ADDRESSES",
                         help="addresses to listen on, comma-separated: IPs or localhost (default localhost: "
                              "127.0.0.1 and ::1)")
    forward.add_argument("-n", "--namespace", default=None, help="the pod's namespace (default: default)")


def _container_command(sub: Any, name: str, common: argparse.ArgumentParser, help: str,
                       examples: tuple[tuple[str, str], ...] = ()) -> argparse.ArgumentParser:
    """A command on one container: POD, -c/--container and -n/--namespace."""
    command = _command(sub, name, common, help=help, examples=examples)
    command.add_argument("pod", metavar="POD", help="the pod: NAME or pod/NAME")
    command.add_argument("-c", "--container", default=None,
                         help="the container (default: the pod's first, with a note when it has several)")
    command.add_argument("-n", "--namespace", default=None, help="the pod's namespace (default: default)")
    return command


def _add_image(sub: Any, common: argparse.ArgumentParser, registry_flags: argparse.ArgumentParser) -> None:
    image = _command(sub, "image", help="manage the local image store",
                     examples=(("List images", "kubelite image ls"),
                               ("Pull one", "kubelite image pull docker.io/library/busybox:1.36")))
    image_sub = image.add_subparsers(dest="image_command", metavar="COMMAND")
    image_sub.required = True
    load = _command(image_sub, "load", common,
                    help="load a docker-save or OCI archive (from FILE, -i FILE or a pipe on stdin)",
                    examples=(("An archive docker save or podman save wrote", "kubelite image load busybox.tar"),
                              ("The same with -i, compressed", "kubelite image load -i busybox.tar.gz"),
                              ("From a pipe", "docker save busybox | kubelite image load\n"
                                              "  ssh host kubelite image save web | kubelite image load")))
    load.add_argument("file", nargs="?", default=None, metavar="FILE",
                      help="the archive: a tar (plain, gzip, bzip2 or xz); '-' or none: stdin, when it is not "
                           "a terminal")
    load.add_argument("-i", "--input", default=None, metavar="FILE", help="the archive (the same as FILE)")
    save = _command(image_sub, "save", common, help="write images to a docker-save archive (docker-archive)",
                    examples=(("To a file", "kubelite image save busybox -o busybox.tar"),
                              ("To another machine", "kubelite image save busybox web:1 | ssh other kubelite image load"),
                              ("To podman", "kubelite image save busybox | podman load")))
    save.add_argument("refs", nargs="+", metavar="IMAGE", help="an image by name (saved with that name) or by id")
    save.add_argument("-o", "--output", default=None, metavar="FILE",
                      help="write the archive here (default: stdout, when it is not a terminal)")
    _command(image_sub, "ls", common, help="list images", aliases=["list"],
             examples=(("Every image of the store", "kubelite image ls"),))
    rm = _command(image_sub, "rm", common, help="remove images",
                  examples=(("One image", "kubelite image rm busybox:1.36"),))
    rm.add_argument("refs", nargs="+", metavar="IMAGE", help="images by reference or id")
    pull = _command(image_sub, "pull", common, registry_flags, help="pull an image from a registry",
                    examples=(("By tag", "kubelite image pull docker.io/library/busybox:1.36"),
                              ("Print only its id", "kubelite image pull -q registry.local:5000/app:v2")))
    pull.add_argument("ref", metavar="IMAGE", help="the image reference, e.g. docker.io/library/busybox:1.36")
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
    may stand before or after POD (`exec web -c app -- ls -l`). TYPE/NAME arguments (`pod/web`)
    become the TYPE NAME… the parser takes (`cli.resources`)."""
    from kubelite.cli import resources
    from kubelite.errors import UsageError

    try:
        argv = resources.rewrite(argv)
    except UsageError as exc:
        _parser().error(str(exc))
    cut = argv.index("--") if "--" in argv else 0
    args = None
    if "exec" in argv[:cut]:
        args = _parser().parse_args(argv[:cut])
        if args.command == "exec":
            args.command_args = args.command_args + argv[cut + 1:]
        else:
            args = None
    if args is None:
        args = _parser().parse_args(argv)
    if args.command in ("logs", "exec", "kill", "attach", "port-forward"):
        try:
            args.pod = resources.pod_name(args.pod)
        except UsageError as exc:
            _parser().error(str(exc))
    if args.command == "logs" and args.container_arg is not None:
        if args.container is not None and args.container != args.container_arg:
            _parser().error(f"container {args.container_arg} given twice, also as -c {args.container}")
        args.container = args.container_arg
    return args


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
    if command == "diff":
        from kubelite.cli import preview
        return preview.run_diff(args)
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
    if command == "reset":
        from kubelite.cli import reset
        return reset.run(args)
    if command == "install-service":
        from kubelite.cli import service
        return service.run(args)
    if command == "kubeconfig":
        from kubelite.cli import kubeconfig
        return kubeconfig.run(args)
    if command == "version":
        from kubelite.cli import show
        return show.version(args)
    if command == "completion":
        from kubelite.cli import completion
        return completion.run(args, _parser())
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
