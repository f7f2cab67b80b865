"""`$(VAR)` references in env values, command, args and `subPathExpr` — the one expander, pure.

Owns: `expand`, exactly Kubernetes' third_party/forked/golang/expansion `Expand`: `$$` is a
literal `$` (so `$$(VAR)` gives `$(VAR)`); an unknown or unterminated reference stays as written;
a `$` not followed by `(` or `$` is kept with its next character. With `missing`, unknown or
empty references become empty and are collected instead (the kubelet's `subPathExpr` rule). And
a container's own env with earlier entries expanded into later ones (`expanded_env`), which the
OCI config builder and the exec probes both use.
"""

from __future__ import annotations

from typing import Mapping

from kubelite.api.models import Container


def expand(text: str, env: Mapping[str, str], missing: set[str] | None = None) -> str:
    """`text` with its `$(VAR)` references replaced from `env`."""
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, advance = _read_reference(text, cursor + 1, env, missing)
            out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _read_reference(text: str, start: int, env: Mapping[str, str], missing: set[str] | None) -> tuple[str, int]:
    """What the `$` before `text[start]` stands for, and how many characters it consumed."""
    if text[start] == "$":
        return "$", 1
    if text[start] == "(":
        close = text.find(")", start + 1)
        if close >= 0:
            name = text[start + 1:close]
            if missing is not None:
                if not env.get(name):
                    missing.add(name)
                return env.get(name, ""), close - start + 1
            return env.get(name, f"$({name})"), close - start + 1
        return "$(", 1
    return "$" + text[start], 1


def expanded_env(container: Container) -> dict[str, str]:
    """The container's own env with `$(VAR)` in values expanded from earlier entries (kubelet order).

    `valueFrom` entries are skipped (the agent resolves them: see `core.podconfig`); a later
    duplicate name wins.
    """
    resolved: dict[str, str] = {}
    for var in container.env:
        if var.value_from is not None and not var.value:
            continue
        resolved[var.name] = expand(var.value, resolved) if var.value else ""
    return resolved
