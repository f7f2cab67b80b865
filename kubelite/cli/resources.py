"""How kubectl users name resources and objects on the command line, and `get`'s output formats.

Owns: the resource types and their aliases (`pods`, `pod`, `po`, …), `TYPE/NAME` (`pod/web`,
`pods/web`, `po/web`, `configmap/app`, what `-o name` prints) turned into the `TYPE NAME…` form
the parser takes (`rewrite`, before parsing) or into a pod's name (`pod_name`), and the `-o`
values `get` accepts (`output_format`). Standard library only: the parser uses it on every run.
"""

from __future__ import annotations

import argparse

from kubelite.errors import UsageError

#: Each alias (what kubectl accepts, `-o name`'s spelling too) → the resource the parser names.
RESOURCES: dict[str, str] = {
    **dict.fromkeys(("pods", "pod", "po"), "pods"),
    **dict.fromkeys(("events", "event", "ev"), "events"),
    **dict.fromkeys(("configmaps", "configmap", "cm"), "configmaps"),
    **dict.fromkeys(("secrets", "secret"), "secrets"),
    **dict.fromkeys(("persistentvolumeclaims", "persistentvolumeclaim", "pvc"), "persistentvolumeclaims"),
    **dict.fromkeys(("persistentvolumes", "persistentvolume", "pv"), "persistentvolumes"),
    **dict.fromkeys(("storageclasses", "storageclass", "sc", "storageclass.storage.k8s.io",
                     "storageclasses.storage.k8s.io"), "storageclasses"),
    **dict.fromkeys(("nodes", "node", "no"), "nodes"),
}
#: Commands whose positional arguments may be TYPE/NAME, several of them.
NAMING_COMMANDS = ("get", "describe", "delete", "top")
#: Options that take the next argument as their value (it is never a TYPE/NAME to rewrite).
VALUE_OPTIONS = frozenset({"--root", "--run-dir", "--manifests", "-n", "--namespace", "-o", "--output",
                           "-l", "--selector", "--field-selector", "-f", "--filename", "-c", "--container",
                           "--since", "--since-time", "--tail", "--server"})
OUTPUT_FORMATS = ("wide", "json", "yaml", "name", "jsonpath=TEMPLATE", "custom-columns=SPEC")


def takes_value(option: str) -> bool:
    """Whether `option` takes the next argument as its value: one of VALUE_OPTIONS, or a long one
    abbreviated (`--select` for `--selector`), as the parser (argparse) understands abbreviations."""
    if option in VALUE_OPTIONS:
        return True
    if not option.startswith("--") or "=" in option or len(option) < 4:
        return False
    return any(name.startswith(option) for name in VALUE_OPTIONS if name.startswith("--"))


def split(text: str) -> tuple[str, str] | None:
    """`pod/web` → ("pods", "web"); None when `text` is not TYPE/NAME of a known type."""
    kind, sep, name = text.partition("/")
    if not sep or not name or "/" in name or kind.lower() not in RESOURCES:
        return None
    return RESOURCES[kind.lower()], name


def rewrite(argv: list[str]) -> list[str]:
    """`get pod/web pod/db -o wide` → `get pod web db -o wide` (and so for describe, delete, top).

    UsageError for TYPE/NAME of several types at once, or beside a separate TYPE (as kubectl)."""
    command_at, positionals, expect_value = None, [], False
    for i, token in enumerate(argv):
        if token == "--":
            break
        if expect_value:
            expect_value = False
            continue
        if token.startswith("-") and token != "-":
            expect_value = takes_value(token)
            continue
        if command_at is None:
            if token not in NAMING_COMMANDS:
                return argv
            command_at = i
        else:
            positionals.append(i)
    named = {i: split(argv[i]) for i in positionals}
    slashed = [i for i, found in named.items() if found is not None]
    if not slashed:
        return argv
    kinds = {named[i][0] for i in slashed}   # type: ignore[index]
    if len(kinds) > 1:
        raise UsageError(f"{argv[command_at]} takes one resource type at a time, here: {', '.join(sorted(kinds))}")
    bare = [i for i in positionals if i not in slashed]
    if bare:
        raise UsageError("there is no need to specify a resource type as a separate argument when passing "
                         f"arguments in resource/name form (e.g. 'kubelite {argv[command_at]} resource/<name>' "
                         f"instead of 'kubelite {argv[command_at]} resource resource/<name>')")
    out: list[str] = []
    for i, token in enumerate(argv):
        if i in slashed:
            kind, name = named[i]   # type: ignore[misc]
            out.extend([kind, name] if i == slashed[0] else [name])
        else:
            out.append(token)
    return out


def pod_name(text: str) -> str:
    """A pod's name as `logs`, `exec`, `kill` and `attach` take it: NAME or pod/NAME (pods/, po/)."""
    if "/" not in text:
        return text
    found = split(text)
    if found is None or found[0] != "pods":
        raise UsageError(f"{text}: give a pod as NAME or pod/NAME")
    return found[1]


def output_format(value: str) -> str:
    """`-o`'s value, checked as kubectl checks it (argparse type)."""
    head, sep, rest = value.partition("=")
    if head in ("jsonpath", "custom-columns") and not rest.strip():
        what = "template" if head == "jsonpath" else "custom columns"
        raise argparse.ArgumentTypeError(f"{head} format specified but no {what} given")
    if (not sep and value in ("wide", "json", "yaml", "name")) or (sep and head in ("jsonpath", "custom-columns")):
        return value
    raise argparse.ArgumentTypeError(f"unable to match a printer suitable for the output format {value!r}, "
                                     f"allowed formats are: {', '.join(OUTPUT_FORMATS)}")
