"""`get pods|events|configmaps|secrets|pvc|pv|storageclasses`, `describe pod|configmap|secret|pvc`, `version`:
the read-only commands.

Owns: choosing what to print and in which form (table, wide, json, yaml, name, watch). Reads the
state through `store.reader` and formats through `kubelite.kubectl`; both use the standard library
only, which keeps these commands fast. PyYAML is imported for `-o yaml` alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

from kubelite.cli import config
from kubelite.clock import utcnow
from kubelite.errors import UsageError
from kubelite.kubectl import events as event_printers
from kubelite.kubectl import pods as pod_printers
from kubelite.store.reader import Reader, daemon_serving, one_per_name

WATCH_POLL_S = 0.25


def _namespace(args: argparse.Namespace) -> str | None:
    if getattr(args, "all_namespaces", False):
        return None
    return args.namespace or "default"


def _dump(obj: Any, output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(obj, indent=4, ensure_ascii=False) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True))


def _not_found(kind: str, name: str) -> int:
    print(f'Error from server (NotFound): {kind} "{name}" not found', file=sys.stderr)
    return 1


def _no_resources(namespace: str | None) -> None:
    print("No resources found" + (f" in {namespace} namespace." if namespace else ""), file=sys.stderr)


def _list_document(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "items": items, "metadata": {"resourceVersion": ""}}


def _select(args: argparse.Namespace, objects: list[dict[str, Any]], resource: str) -> list[dict[str, Any]]:
    """The objects `-l/--selector` and `--field-selector` keep (the API server's rules)."""
    label, field = getattr(args, "selector", None), getattr(args, "field_selector", None)
    if not label and not field:
        return objects
    from kubelite.kubectl import selectors

    try:
        match = selectors.matcher(label, field, resource)
    except selectors.SelectorError as exc:
        raise UsageError(str(exc)) from None
    return [o for o in objects if match(o)]


def _names(args: argparse.Namespace) -> list[str]:
    """The names given (`NAME...`); one name as a string too, as callers of the functions below pass it."""
    names = getattr(args, "name", None)
    return [names] if isinstance(names, str) else list(names or [])


def _named(fetch: Callable[[str | None], list[dict[str, Any]]], names: list[str],
           resource: str) -> tuple[list[dict[str, Any]], int]:
    """The objects of `names` in that order (all when none is named), and an exit status: 1 after
    a NotFound line for each name not found, as kubectl prints it."""
    if not names:
        return fetch(None), 0
    found: list[dict[str, Any]] = []
    status = 0
    for name in dict.fromkeys(names):
        objects = fetch(name)
        if not objects:
            status = _not_found(resource, name)
        found.extend(objects)
    return found, status


def _emit(args: argparse.Namespace, namespace: str | None, objects: list[dict[str, Any]], prefix: str,
          table: Callable[[], str], *, kind: str, single: bool) -> None:
    """Print `objects` in `-o`'s form: json|yaml (the object when one was named, else a `kind`), name
    (`<prefix>/<name>` lines), jsonpath=…, custom-columns=…, or the table; "No resources found" for
    an empty table."""
    output = args.output or ""
    document: Any = objects[0] if single and objects else _list_document(kind, objects)
    if output in ("json", "yaml"):
        _dump(document, output)
    elif output == "name":
        sys.stdout.write("".join(f"{prefix}/{o['metadata']['name']}\n" for o in objects))
    elif output.startswith("jsonpath="):
        from kubelite.kubectl import jsonpath

        try:
            sys.stdout.write(jsonpath.render(output.partition("=")[2], document))
        except jsonpath.JSONPathError as exc:
            raise UsageError(f"error parsing jsonpath {output.partition('=')[2]}: {exc}") from None
    elif output.startswith("custom-columns="):
        from kubelite.kubectl import columns

        try:
            spec = columns.parse_spec(output.partition("=")[2])
        except columns.jsonpath.JSONPathError as exc:
            raise UsageError(str(exc)) from None
        if objects:
            sys.stdout.write(columns.format_table(spec, objects, no_headers=args.no_headers))
        else:
            _no_resources(namespace)
    elif objects:
        sys.stdout.write(table())
    else:
        _no_resources(namespace)


def _check_output(args: argparse.Namespace) -> None:
    """A JSONPath template or column spec that cannot be parsed fails before anything prints."""
    output = getattr(args, "output", None) or ""
    if output.startswith(("jsonpath=", "custom-columns=")):
        from kubelite.kubectl import columns, jsonpath

        try:
            if output.startswith("jsonpath="):
                jsonpath.parse(output.partition("=")[2])
            else:
                columns.parse_spec(output.partition("=")[2])
        except jsonpath.JSONPathError as exc:
            raise UsageError(f"{output.partition('=')[0]}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    _check_output(args)
    if _names(args) and getattr(args, "selector", None):
        raise UsageError("name cannot be provided when a selector is specified")
    reader = Reader(config.root(args.root))
    try:
        storage = _STORAGE_KINDS.get(args.resource)
        if storage is not None:
            if args.command == "describe":
                return describe_claim(reader, args)
            return get_storage(reader, args, storage)
        kind = _CONFIG_KINDS.get(args.resource)
        if kind is not None:
            if args.command == "describe":
                return describe_config(reader, args, kind)
            return get_configs(reader, args, kind)
        if args.command == "describe":
            return describe_pod(reader, args)
        if args.resource in ("pods", "pod", "po"):
            return get_pods(reader, args)
        return get_events(reader, args)
    finally:
        reader.close()


_CONFIG_KINDS = {name: "ConfigMap" for name in ("configmaps", "configmap", "cm")} | \
    {name: "Secret" for name in ("secrets", "secret")}


_STORAGE_KINDS = {name: "PersistentVolumeClaim" for name in ("persistentvolumeclaims", "persistentvolumeclaim",
                                                               "pvc")} | \
    {name: "PersistentVolume" for name in ("persistentvolumes", "persistentvolume", "pv")} | \
    {name: "StorageClass" for name in ("storageclasses", "storageclass", "sc")}
_STORAGE_RESOURCES = {"PersistentVolumeClaim": "persistentvolumeclaims", "PersistentVolume": "persistentvolumes",
                      "StorageClass": "storageclasses.storage.k8s.io"}


def get_storage(reader: Reader, args: argparse.Namespace, kind: str) -> int:
    """`get pvc` (namespaced), `get pv` and `get storageclass` (cluster-wide), as kubectl prints them."""
    from kubelite.kubectl import storage as storageprinters

    namespace = _namespace(args) if kind == "PersistentVolumeClaim" else None
    if kind == "PersistentVolumeClaim":
        def fetch(name: str | None) -> list[dict[str, Any]]:
            return reader.config_objects(kind, namespace, name)
    elif kind == "PersistentVolume":
        fetch = reader.persistent_volumes
    else:
        fetch = reader.storage_classes
    objects, status = _named(fetch, _names(args), _STORAGE_RESOURCES[kind])
    objects = _select(args, objects, _STORAGE_RESOURCES[kind].partition(".")[0])
    prefix = {"PersistentVolumeClaim": "persistentvolumeclaim", "PersistentVolume": "persistentvolume",
              "StorageClass": "storageclass.storage.k8s.io"}[kind]

    def table() -> str:
        if kind == "PersistentVolumeClaim":
            return storageprinters.format_claims(objects, utcnow(), all_namespaces=namespace is None,
                                                 no_headers=args.no_headers)
        if kind == "PersistentVolume":
            return storageprinters.format_volumes(objects, utcnow(), no_headers=args.no_headers)
        return storageprinters.format_classes(objects, utcnow(), no_headers=args.no_headers)

    if objects or not status:
        _emit(args, namespace, objects, prefix, table, kind="List", single=len(_names(args)) == 1)
    return status


def _describe_each(args: argparse.Namespace, objects: list[dict[str, Any]], status: int,
                   describe: Callable[[dict[str, Any]], str]) -> int:
    """kubectl's describe of several objects: each in turn, a blank line between them."""
    sys.stdout.write("\n\n".join(describe(o) for o in objects))
    if not objects and not status and not _names(args):
        _no_resources(args.namespace or "default")
    return status


def describe_claim(reader: Reader, args: argparse.Namespace) -> int:
    from kubelite.kubectl import storage as storageprinters

    namespace = args.namespace or "default"
    objects, status = _named(lambda name: reader.config_objects("PersistentVolumeClaim", namespace, name),
                             _names(args), "persistentvolumeclaims")
    objects = _select(args, objects, "persistentvolumeclaims")
    pods = one_per_name(reader.pods(namespace)) if objects else []

    def one(claim: dict[str, Any]) -> str:
        name = claim["metadata"]["name"]
        used_by = [p["metadata"]["name"] for p in pods
                   if any((v.get("persistentVolumeClaim") or {}).get("claimName") == name
                          for v in p.get("spec", {}).get("volumes", []))]
        events = reader.events(namespace, uid=claim["metadata"].get("uid", ""))
        return storageprinters.describe_claim(claim, used_by, events, utcnow())

    return _describe_each(args, objects, status, one)


def get_configs(reader: Reader, args: argparse.Namespace, kind: str) -> int:
    """`get configmaps` / `get secrets`, as kubectl prints them (secrets: key counts, no values)."""
    from kubelite.kubectl import configs as configprinters

    namespace = _namespace(args)
    resource = "configmaps" if kind == "ConfigMap" else "secrets"
    objects, status = _named(lambda name: reader.config_objects(kind, namespace, name), _names(args), resource)
    objects = _select(args, objects, resource)
    if objects or not status:
        _emit(args, namespace, objects, kind.lower(),
              lambda: configprinters.format_table(kind, objects, utcnow(), all_namespaces=namespace is None,
                                                  no_headers=args.no_headers,
                                                  show_labels=getattr(args, "show_labels", False)),
              kind=f"{kind}List" if not _names(args) else "List", single=len(_names(args)) == 1)
    return status


def describe_config(reader: Reader, args: argparse.Namespace, kind: str) -> int:
    from kubelite.kubectl import configs as configprinters

    namespace = args.namespace or "default"
    resource = "configmaps" if kind == "ConfigMap" else "secrets"
    objects, status = _named(lambda name: reader.config_objects(kind, namespace, name), _names(args), resource)
    objects = _select(args, objects, resource)
    return _describe_each(args, objects, status, lambda obj: configprinters.describe(
        kind, obj, reader.events(namespace, uid=obj["metadata"].get("uid", "")), utcnow()))


def _visible(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per pod name: a pod being replaced shows its terminating predecessor until it is gone."""
    return one_per_name(pods)


def get_pods(reader: Reader, args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    if args.watch_only:
        args.watch = True
        _select(args, [], "pods")   # a bad selector fails now
        return _watch(reader, args, namespace, header=True)
    pods, status = _named(lambda name: _visible(reader.pods(namespace, name)), _names(args), "pods")
    pods = _select(args, pods, "pods")
    if not pods and status:
        return status
    output = args.output or ""
    if output in ("wide", "") and not pods and args.watch:
        pass   # kubectl's watch prints no "No resources found", only what comes
    elif output in ("wide", ""):
        if pods:
            sys.stdout.write(pod_printers.format_pod_table(pods, utcnow(), wide=output == "wide",
                                                           all_namespaces=namespace is None,
                                                           no_headers=args.no_headers,
                                                           show_labels=getattr(args, "show_labels", False)))
            _warn_stale(reader, pods)
        else:
            _no_resources(namespace)
    else:
        _emit(args, namespace, pods, "pod", lambda: "", kind="PodList" if not _names(args) else "List",
              single=len(_names(args)) == 1)
        return status
    _warn_problems(reader)
    sys.stdout.flush()
    if args.watch:
        return _watch(reader, args, namespace)
    return status


def _warn_stale(reader: Reader, shown: list[dict[str, Any]]) -> None:
    """Rows read while no daemon serves this state root are what it recorded last: say so."""
    if shown and not daemon_serving(reader.path.parent):
        print(f"Warning: kubelite is not running for {reader.path.parent}: this is the state it recorded last "
              "and may be stale (start it with kubelite serve)", file=sys.stderr)


def _warn_problems(reader: Reader) -> None:
    for problem in reader.problems():
        if problem["severity"] != "Warning":
            print(f"Warning: manifest {problem['text']}", file=sys.stderr)


def _watch(reader: Reader, args: argparse.Namespace, namespace: str | None, *, header: bool = False) -> int:
    """`-w`: print a row whenever a pod changes (as kubectl does), until interrupted; `header`: the
    table's header before the first row (`--watch-only`, where no table came before). Only the
    pods named and matching the selectors."""
    versions = reader.resource_versions()
    while True:
        time.sleep(WATCH_POLL_S)
        current = reader.resource_versions()
        changed = {uid for uid, rv in current.items() if versions.get(uid) != rv}
        gone = set(versions) - set(current)
        versions = current
        if not changed and not gone:
            continue
        rows = [p for p in reader.pods(namespace) if p["metadata"]["uid"] in changed
                and (not _names(args) or p["metadata"]["name"] in _names(args))]
        rows = _select(args, rows, "pods")
        if rows:
            sys.stdout.write(pod_printers.format_pod_table(rows, utcnow(), wide=args.output == "wide",
                                                           all_namespaces=namespace is None, no_headers=not header,
                                                           show_labels=getattr(args, "show_labels", False)))
            header = False
            sys.stdout.flush()


def _events_of(args: argparse.Namespace, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the objects named (by the involved object's name) that match the selectors."""
    if _names(args):
        events = [e for e in events if e["involvedObject"]["name"] in _names(args)]
    return _select(args, events, "events")


def get_events(reader: Reader, args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    with reader.snapshot():
        since = reader.resource_version()
        events = _events_of(args, reader.events(namespace))
    if args.watch_only:
        return _watch_events(reader, args, namespace, since, header=True)
    if args.watch and not events:
        pass   # kubectl's watch prints no "No resources found", only what comes
    elif args.watch and args.output is None:
        sys.stdout.write(event_printers.format_event_table(events, utcnow(), all_namespaces=namespace is None))
    else:
        _emit(args, namespace, events, "event",
              lambda: event_printers.format_event_table(events, utcnow(), all_namespaces=namespace is None),
              kind="EventList", single=False)
        if not args.watch:
            return 0
    sys.stdout.flush()
    return _watch_events(reader, args, namespace, since, header=not events)


def _watch_events(reader: Reader, args: argparse.Namespace, namespace: str | None, since: int, *,
                  header: bool) -> int:
    """`-w`: print each event as it is written, or counted again (every event write takes the next
    node-wide resourceVersion), until interrupted; the header before the first row when no table
    was printed before."""
    while True:
        time.sleep(WATCH_POLL_S)
        if reader.resource_version() == since:
            continue
        written = reader.events(namespace, since=since)
        if not written:
            continue
        since = max(int(e["metadata"]["resourceVersion"]) for e in written)
        found = _events_of(args, written)
        if not found:
            continue
        if args.output and args.output != "wide":   # each event on its own, in the form asked
            for event in found:
                _emit(args, namespace, [event], "event", lambda: "", kind="EventList", single=True)
        else:
            table = event_printers.format_event_table(found, utcnow(), all_namespaces=namespace is None)
            sys.stdout.write(table if header else table.split("\n", 1)[1])
            header = False
        sys.stdout.flush()


def describe_pod(reader: Reader, args: argparse.Namespace) -> int:
    namespace = args.namespace or "default"
    pods, status = _named(lambda name: _visible(reader.pods(namespace, name)), _names(args), "pods")
    pods = _select(args, pods, "pods")
    problems = reader.problems() if pods else []
    from kubelite.kubectl import describe

    def one(pod: dict[str, Any]) -> str:
        events = reader.events(namespace, uid=pod["metadata"]["uid"])
        source = pod["metadata"].get("annotations", {}).get("kubelite.io/source", "")
        extra = {"Source": source}
        mine = [p for p in problems if p["file"] == source]
        errors = [p["text"] for p in mine if p["severity"] != "Warning"]
        if errors:
            kept = any(p["severity"] == "Error" for p in mine)   # the file is invalid now
            extra["Manifest Errors"] = "\n".join(errors) + (
                "\n(the last valid version of the manifest keeps running)" if kept else "")
        warnings = [p["text"] for p in mine if p["severity"] == "Warning"]
        if warnings:
            extra["Manifest Warnings"] = "\n".join(warnings)
        return describe.describe_pod(pod, events, utcnow(), extra=extra)

    status = _describe_each(args, pods, status, one)
    _warn_stale(reader, pods)
    return status


def version(args: argparse.Namespace) -> int:
    from kubelite import __version__

    import platform

    major, minor = __version__.split(".")[:2]
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    info = {"major": major, "minor": minor, "gitVersion": f"v{__version__}",
            "platform": f"{sys.platform}/{machine}", "pythonVersion": sys.version.split()[0]}
    if args.output:
        _dump({"clientVersion": info}, args.output)
    else:
        print(f"kubelite v{__version__} (Python {info['pythonVersion']})")
    return 0
