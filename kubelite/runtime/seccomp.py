"""Seccomp profiles: from the profile files people write to runc's `linux.seccomp`.

Owns the translation of a profile in Docker's format — the format of the RuntimeDefault profile
that Debian's `golang-github-containers-common` installs as `/usr/share/containers/seccomp.json`
(the profile podman and CRI-O use), and of most Localhost profiles — into the OCI runtime
spec's form, by the rules of containers/common's `setupSeccomp`:

* `archMap`: the entry of this machine's architecture, with its sub-architectures, becomes
  `architectures` (a profile may give `architectures` directly instead, never both);
* each `syscalls` rule is kept only when its `includes` hold (every listed capability is in the
  container's set, this architecture is listed, the kernel is at least `minKernel`) and its
  `excludes` do not (no listed capability in the set, this architecture not listed);
* `name` or `names`, `action`, `errnoRet` and `args` carry over; comments and `errno` names go.

A profile already in the OCI form (no includes, excludes or archMap) passes through the same
rules unchanged. Purely computational: the file is read by the caller. Errors: `ProfileError`.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

from kubelite.runtime.linux import kernel_version

#: Where Debian's golang-github-containers-common puts the default profile.
DEFAULT_PROFILE_PATH = "/usr/share/containers/seccomp.json"

#: `uname -m` → (libseccomp's name, Go's name, as profiles write them in `includes.arches`).
ARCHITECTURES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "i686": ("SCMP_ARCH_X86", "386"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
}
ACTIONS = frozenset({"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                     "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"})
OPERATORS = frozenset({"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                       "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"})


class ProfileError(ValueError):
    """A seccomp profile that cannot be applied (malformed, or using what runc does not know)."""


def _included(rule: Mapping[str, Any], *, go_arch: str, caps: Collection[str], kernel: Sequence[int] | None) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("arches") and go_arch not in includes["arches"]:
        return False
    if any(cap not in caps for cap in includes.get("caps") or ()):
        return False
    min_kernel = includes.get("minKernel")
    if min_kernel and kernel is not None and tuple(kernel) < kernel_version(str(min_kernel)):
        return False
    if excludes.get("arches") and go_arch in excludes["arches"]:
        return False
    if any(cap in caps for cap in excludes.get("caps") or ()):
        return False
    return True


def _action(value: Any, where: str) -> str:
    if value not in ACTIONS:
        raise ProfileError(f"{where}: unknown action {value!r}")
    return str(value)


def oci_seccomp(profile: Mapping[str, Any], *, machine: str, capabilities: Collection[str],
                kernel: Sequence[int] | None = None) -> dict[str, Any]:
    """The OCI `linux.seccomp` for a container with these capabilities on this architecture."""
    if not isinstance(profile, Mapping):
        raise ProfileError("a seccomp profile is a JSON object")
    if machine not in ARCHITECTURES:
        raise ProfileError(f"unknown architecture {machine}")
    native, go_arch = ARCHITECTURES[machine]
    if profile.get("architectures") and profile.get("archMap"):
        raise ProfileError("'architectures' and 'archMap' were specified in the seccomp profile, use either "
                           "'architectures' or 'archMap'")
    out: dict[str, Any] = {"defaultAction": _action(profile.get("defaultAction"), "defaultAction")}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = int(profile["defaultErrnoRet"])
    arches: list[str] = []
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            arches += [entry["architecture"], *(entry.get("subArchitectures") or ())]
    if not profile.get("archMap"):
        arches = list(profile.get("architectures") or ())
    if arches:
        out["architectures"] = arches
    rules = []
    for i, rule in enumerate(profile.get("syscalls") or ()):
        where = f"syscalls[{i}]"
        if not isinstance(rule, Mapping):
            raise ProfileError(f"{where}: a rule is a JSON object")
        if rule.get("name") and rule.get("names"):
            raise ProfileError(f"{where}: use either 'name' or 'names'")
        if not _included(rule, go_arch=go_arch, caps=capabilities, kernel=kernel):
            continue
        names = [rule["name"]] if rule.get("name") else list(rule.get("names") or ())
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ProfileError(f"{where}: no syscall names")
        syscall: dict[str, Any] = {"names": names, "action": _action(rule.get("action"), f"{where}.action")}
        if rule.get("errnoRet") is not None:
            syscall["errnoRet"] = int(rule["errnoRet"])
        args = []
        for arg in rule.get("args") or ():
            if arg.get("op") not in OPERATORS:
                raise ProfileError(f"{where}: unknown operator {arg.get('op')!r}")
            args.append({"index": int(arg.get("index", 0)), "value": int(arg.get("value", 0)),
                         "valueTwo": int(arg.get("valueTwo", 0)), "op": arg["op"]})
        if args:
            syscall["args"] = args
        rules.append(syscall)
    if rules:
        out["syscalls"] = rules
    return out
