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


def _print_list(args: argparse.Namespace, namespace: str | None, objects: list[dict[str, Any]], prefix: str,
                table: Callable[[], str], *, document: Any) -> int:
    """`-o json|yaml` (the `document`), `-o name` (`<prefix>/<name>` lines) or the table, as kubectl
    prints a list; "No resources found" for an empty one."""
    if args.output in ("json", "yaml"):
        _dump(document, args.output)
        return 0
    if args.output == "name":
        sys.stdout.write("".join(f"{prefix}/{o['metadata']['name']}\n" for o in objects))
        return 0
    if not objects:
        _no_resources(namespace)
        return 0
    sys.stdout.write(table())
    return 0


def run(args: argparse.Namespace) -> int:
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
        objects = reader.config_objects(kind, namespace, args.name)
    elif kind == "PersistentVolume":
        objects = reader.persistent_volumes(args.name)
    else:
        objects = reader.storage_classes(args.name)
    if args.name and not objects:
        return _not_found(_STORAGE_RESOURCES[kind], args.name)
    prefix = {"PersistentVolumeClaim": "persistentvolumeclaim", "PersistentVolume": "persistentvolume",
              "StorageClass": "storageclass.storage.k8s.io"}[kind]

    def table() -> str:
        if kind == "PersistentVolumeClaim":
            return storageprinters.format_claims(objects, utcnow(), all_namespaces=namespace is None,
                                                 no_headers=args.no_headers)
        if kind == "PersistentVolume":
            return storageprinters.format_volumes(objects, utcnow(), no_headers=args.no_headers)
        return storageprinters.format_classes(objects, utcnow(), no_headers=args.no_headers)

    return _print_list(args, namespace, objects, prefix, table,
                       document=objects[0] if args.name else _list_document("List", objects))


def describe_claim(reader: Reader, args: argparse.Namespace) -> int:
    from kubelite.kubectl import storage as storageprinters

    namespace = args.namespace or "default"
    objects = reader.config_objects("PersistentVolumeClaim", namespace, args.name)
    if not objects:
        return _not_found("persistentvolumeclaims", args.name)
    used_by = [p["metadata"]["name"] for p in one_per_name(reader.pods(namespace))
               if any((v.get("persistentVolumeClaim") or {}).get("claimName") == args.name
                      for v in p.get("spec", {}).get("volumes", []))]
    events = reader.events(namespace, uid=objects[0]["metadata"].get("uid", ""))
    sys.stdout.write(storageprinters.describe_claim(objects[0], used_by, events, utcnow()))
    return 0


def get_configs(reader: Reader, args: argparse.Namespace, kind: str) -> int:
    """`get configmaps` / `get secrets`, as kubectl prints them (secrets: key counts, no values)."""
    from kubelite.kubectl import configs as configprinters

    namespace = _namespace(args)
    objects = reader.config_objects(kind, namespace, args.name)
    resource = "configmaps" if kind == "ConfigMap" else "secrets"
    if args.name and not objects:
        return _not_found(resource, args.name)
    return _print_list(args, namespace, objects, kind.lower(),
                       lambda: configprinters.format_table(kind, objects, utcnow(), all_namespaces=namespace is None,
                                                           no_headers=args.no_headers),
                       document=objects[0] if args.name else _list_document(f"{kind}List", objects))


def describe_config(reader: Reader, args: argparse.Namespace, kind: str) -> int:
    from kubelite.kubectl import configs as configprinters

    namespace = args.namespace or "default"
    objects = reader.config_objects(kind, namespace, args.name)
    if not objects:
        return _not_found("configmaps" if kind == "ConfigMap" else "secrets", args.name)
    events = reader.events(namespace, uid=objects[0]["metadata"].get("uid", ""))
    sys.stdout.write(configprinters.describe(kind, objects[0], events, utcnow()))
    return 0


def _visible(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per pod name: a pod being replaced shows its terminating predecessor until it is gone."""
    return one_per_name(pods)


def get_pods(reader: Reader, args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    if args.watch_only:
        args.watch = True
        return _watch(reader, args, namespace, header=True)
    pods = _visible(reader.pods(namespace, args.name))
    if args.name and not pods:
        return _not_found("pods", args.name)
    output = args.output
    if output in ("json", "yaml"):
        if args.name:
            _dump(pods[0], output)
        else:
            _dump({"apiVersion": "v1", "kind": "PodList", "items": pods, "metadata": {"resourceVersion": ""}}, output)
        return 0
    if output == "name":
        sys.stdout.write("".join(f"pod/{p['metadata']['name']}\n" for p in pods))
        return 0
    if not pods and not args.watch:
        _no_resources(namespace)
    else:
        sys.stdout.write(pod_printers.format_pod_table(pods, utcnow(), wide=output == "wide",
                                                   all_namespaces=namespace is None, no_headers=args.no_headers))
        _warn_stale(reader, pods)
    _warn_problems(reader)
    sys.stdout.flush()
    if args.watch:
        return _watch(reader, args, namespace)
    return 0


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
    table's header before the first row (`--watch-only`, where no table came before)."""
    versions = reader.resource_versions()
    while True:
        time.sleep(WATCH_POLL_S)
        current = reader.resource_versions()
        changed = {uid for uid, rv in current.items() if versions.get(uid) != rv}
        gone = set(versions) - set(current)
        versions = current
        if not changed and not gone:
            continue
        rows = [p for p in reader.pods(namespace, args.name) if p["metadata"]["uid"] in changed]
        if rows:
            sys.stdout.write(pod_printers.format_pod_table(rows, utcnow(), wide=args.output == "wide",
                                                       all_namespaces=namespace is None, no_headers=not header))
            header = False
            sys.stdout.flush()


def get_events(reader: Reader, args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    with reader.snapshot():
        since = reader.resource_version()
        events = reader.events(namespace, name=args.name)
    if args.watch_only:
        return _watch_events(reader, args, namespace, since, header=True)
    if args.watch and not events:
        pass   # kubectl's watch prints no "No resources found", only what comes
    elif args.watch and args.output is None:
        sys.stdout.write(event_printers.format_event_table(events, utcnow(), all_namespaces=namespace is None))
    else:
        code = _print_list(args, namespace, events, "event",
                           lambda: event_printers.format_event_table(events, utcnow(),
                                                                     all_namespaces=namespace is None),
                           document=_list_document("EventList", events))
        if not args.watch:
            return code
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
        found = reader.events(namespace, name=args.name, since=since)
        if not found:
            continue
        since = max(int(e["metadata"]["resourceVersion"]) for e in found)
        if args.output in ("json", "yaml"):
            for event in found:
                _dump(event, args.output)
        elif args.output == "name":
            sys.stdout.write("".join(f"event/{e['metadata']['name']}\n" for e in found))
        else:
            table = event_printers.format_event_table(found, utcnow(), all_namespaces=namespace is None)
            sys.stdout.write(table if header else table.split("\n", 1)[1])
            header = False
        sys.stdout.flush()


def describe_pod(reader: Reader, args: argparse.Namespace) -> int:
    namespace = args.namespace or "default"
    pods = _visible(reader.pods(namespace, args.name))
    if not pods:
        return _not_found("pods", args.name)
    pod = pods[0]
    events = reader.events(namespace, uid=pod["metadata"]["uid"])
    source = pod["metadata"].get("annotations", {}).get("kubelite.io/source", "")
    extra = {"Source": source}
    problems = [p for p in reader.problems() if p["file"] == source]
    errors = [p["text"] for p in problems if p["severity"] != "Warning"]
    if errors:
        kept = any(p["severity"] == "Error" for p in problems)   # the file is invalid now
        extra["Manifest Errors"] = "\n".join(errors) + (
            "\n(the last valid version of the manifest keeps running)" if kept else "")
    warnings = [p["text"] for p in problems if p["severity"] == "Warning"]
    if warnings:
        extra["Manifest Warnings"] = "\n".join(warnings)
    from kubelite.kubectl import describe

    sys.stdout.write(describe.describe_pod(pod, events, utcnow(), extra=extra))
    _warn_stale(reader, pods)
    return 0


def version(args: argparse.Namespace) -> int:
    from kubelite import __version__

    info = {"gitVersion": f"v{__version__}", "platform": sys.platform, "pythonVersion": sys.version.split()[0]}
    if args.output:
        _dump({"clientVersion": info}, args.output)
    else:
        print(f"kubelite v{__version__} (Python {info['pythonVersion']})")
    return 0
