"""`kubelite serve --config FILE`: kubelite's configuration file, `kind: KubeliteConfiguration`.

Owns: the file's model (`KubeliteConfiguration`: one field per `serve` setting, camelCase as in the
kubelet's KubeletConfiguration, durations as text such as "30s"), read strictly — an unknown field is
an error, as the kubelet decodes its file — with errors that name the file, the line and the field;
the table of settings (`SETTINGS`: the flag and the environment variable each field answers to, and
whether a SIGHUP applies a change live); the precedence flag > environment > file > default; the
effective configuration (`serve --print-config`); and what a reload keeps (`reload`: a change to a
setting that needs a restart is logged and left alone).

Imported by `serve` only, when it runs: pydantic and PyYAML stay off the CLI's read path.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, \
    ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from kubelite.cli import config
from kubelite.errors import UsageError

API_VERSION = "kubelite.io/v1alpha1"
KIND = "KubeliteConfiguration"
DEFAULT_POD_CIDR = "10.217.0.0/24"   # runtime.cni's defaults, spelled here so the model loads without it
DEFAULT_BRIDGE = "kubelite0"

log = logging.getLogger("kubelite")


@dataclass(frozen=True)
class Setting:
    """One `serve` setting: its flag's argparse dest, its field in the file, how a flag's value is
    written in the file (`form`), its environment variable, and whether a SIGHUP applies a change."""

    dest: str
    path: str
    live: bool = False
    #: how the flag writes the value: same | seconds (float seconds; the file: "30s") | duration (both
    #: "30s"; the flag also plain seconds, "30") | csv (the flag "a,b", the file a list) | list (a repeated flag, the environment "a,b") | negated
    form: str = "same"
    env: str | None = None


#: Every `serve` flag and the field that holds it (a test walks the parser: a flag without a row fails).
SETTINGS: tuple[Setting, ...] = (
    Setting("manifests", "manifests", env="KUBELITE_MANIFESTS"),
    Setting("root", "root", env="KUBELITE_ROOT"),
    Setting("run_dir", "runDir", env="KUBELITE_RUN_DIR"),
    Setting("debug", "debug", live=True),
    Setting("log_format", "logFormat"),
    Setting("runtime", "runtime"),
    Setting("node_name", "nodeName"),
    Setting("node_ip", "nodeIP"),
    Setting("resolv_conf", "resolvConf", live=True),
    Setting("network", "network"),
    Setting("pod_cidr", "podCIDR"),
    Setting("bridge", "bridge"),
    Setting("cni_bin_dir", "cniBinDir", form="csv"),
    Setting("warm_sandboxes", "warmSandboxes"),
    Setting("relist_period", "relistPeriod", live=True, form="seconds"),
    Setting("backoff_initial", "backoffInitial", live=True, form="seconds"),
    Setting("backoff_max", "backoffMax", live=True, form="seconds"),
    Setting("image_gc_high_threshold", "imageGCHighThresholdPercent", live=True),
    Setting("image_gc_low_threshold", "imageGCLowThresholdPercent", live=True),
    Setting("max_parallel_image_pulls", "maxParallelImagePulls"),
    Setting("pod_workers", "podWorkers"),
    Setting("image_max_layer_size", "imageMaxLayerSize", live=True),
    Setting("sync_repo", "sync.repo"),
    Setting("sync_ref", "sync.ref", live=True),
    Setting("sync_path", "sync.path", live=True),
    Setting("sync_interval", "sync.interval", live=True, form="duration"),
    Setting("allow_empty", "sync.allowEmpty", live=True),
    Setting("api_address", "apiAddress"),
    Setting("no_api", "enableAPI", form="negated"),
    Setting("seccomp_default", "seccompDefault", live=True),
    Setting("allowed_unsafe_sysctls", "allowedUnsafeSysctls", form="csv"),
    Setting("authfile", "registry.authFile", live=True, env="KUBELITE_AUTHFILE"),
    Setting("certs_dir", "registry.certsDir", live=True, env="KUBELITE_CERTS_DIR"),
    Setting("insecure_registry", "registry.insecureRegistries", live=True, form="list",
            env="KUBELITE_INSECURE_REGISTRIES"),
)
#: `serve` flags that are not settings: they say where the file is and what to do with it.
NOT_SETTINGS = {"config", "print_config", "help"}
BY_DEST = {s.dest: s for s in SETTINGS}
BY_PATH = {s.path: s for s in SETTINGS}


# ------------------------------------------------------------------------------ durations


def parse_duration(value: Any) -> float:
    """A duration in the file: text with a unit (`30s`, `1m`, `500ms`, `2h`), positive → seconds."""
    from kubelite.cli.sync import parse_duration as parse

    if not isinstance(value, str) or not value.strip() or value.strip()[-1].isdigit():
        raise ValueError(f"invalid duration {json.dumps(value)}: give text with a unit, such as \"30s\", \"1m\" "
                         "or \"500ms\"")
    if value.strip().startswith("-"):
        raise ValueError(f"invalid duration {json.dumps(value)}: must be positive")
    try:
        return parse(value)
    except argparse.ArgumentTypeError:
        raise ValueError(f"invalid duration {json.dumps(value)}: a positive number with a unit, such as "
                         "\"30s\", \"1m\" or \"500ms\"") from None


def format_duration(seconds: float) -> str:
    """Seconds as the file writes them: `1h`, `5m`, `20s`, `500ms` (or `1.25s`), read back the same."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    if round(seconds * 1000, 6).is_integer():
        return f"{round(seconds * 1000)}ms"
    return f"{seconds!r}s"


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


# ------------------------------------------------------------------------------ the model


class _Strict(BaseModel):
    """camelCase fields; an unknown field is an error (the kubelet's strict decoding)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=False)


class SyncConfiguration(_Strict):
    """`sync`: follow a git repository into the manifests path (`serve --sync-*`)."""

    repo: Optional[str] = None
    ref: str = "HEAD"
    path: str = ""
    interval: Duration = 30.0
    allow_empty: bool = False


class RegistryConfiguration(_Strict):
    """`registry`: how images are pulled (`serve --authfile`, `--certs-dir`, `--insecure-registry`)."""

    auth_file: Optional[str] = None              # None: <config dir>/auth.json if present, else ~/.docker/config.json
    certs_dir: Optional[str] = None
    insecure_registries: list[str] = []


class KubeliteConfiguration(_Strict):
    """Every `serve` setting. None where the default is found at start (the host's name, its address,
    the number of cores, the user's directories)."""

    api_version: Literal["kubelite.io/v1alpha1"]
    kind: Literal["KubeliteConfiguration"]
    manifests: Optional[str] = None
    root: Optional[str] = None
    run_dir: Optional[str] = None
    debug: bool = False
    log_format: Literal["text", "json"] = "text"
    runtime: Literal["runc", "fake"] = "runc"
    node_name: Optional[str] = None
    node_ip: Optional[str] = Field(default=None, alias="nodeIP")
    resolv_conf: str = "/etc/resolv.conf"
    network: Literal["cni", "none"] = "cni"
    pod_cidr: str = Field(default=DEFAULT_POD_CIDR, alias="podCIDR")
    bridge: str = DEFAULT_BRIDGE
    cni_bin_dir: list[str] = ["/usr/lib/cni", "/opt/cni/bin"]
    warm_sandboxes: int = 2
    relist_period: Duration = 20.0
    backoff_initial: Duration = 10.0
    backoff_max: Duration = 300.0
    image_gc_high_threshold_percent: int = Field(default=85, alias="imageGCHighThresholdPercent")
    image_gc_low_threshold_percent: int = Field(default=80, alias="imageGCLowThresholdPercent",
                                                validate_default=True)   # checked against high, default or not
    max_parallel_image_pulls: int = 3
    pod_workers: Optional[int] = None
    image_max_layer_size: str = "64Gi"
    sync: SyncConfiguration = SyncConfiguration()
    api_address: str = "127.0.0.1:10280"
    enable_api: bool = Field(default=True, alias="enableAPI")
    seccomp_default: bool = False
    allowed_unsafe_sysctls: list[str] = []
    registry: RegistryConfiguration = RegistryConfiguration()

    @field_validator("node_ip")
    @classmethod
    def _an_ip(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
        return value

    @field_validator("pod_cidr")
    @classmethod
    def _an_ipv4_subnet(cls, value: str) -> str:
        try:
            subnet = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(subnet, ipaddress.IPv4Network):
            raise ValueError(f"{value}: only IPv4 pod subnets are supported")
        return value

    @field_validator("warm_sandboxes")
    @classmethod
    def _a_pool(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (no pool) or more")
        return value

    @field_validator("max_parallel_image_pulls")
    @classmethod
    def _some_pulls(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("pod_workers")
    @classmethod
    def _workers(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 64:
            raise ValueError("must be between 0 and 64 (0: one pod after another on the loop)")
        return value

    @field_validator("image_gc_high_threshold_percent", "image_gc_low_threshold_percent")
    @classmethod
    def _a_percentage(cls, value: int) -> int:
        if not 0 <= value <= 100:
            raise ValueError("give a percentage from 0 to 100")
        return value

    @field_validator("image_gc_low_threshold_percent")
    @classmethod
    def _low_not_above_high(cls, value: int, info: ValidationInfo) -> int:
        high = info.data.get("image_gc_high_threshold_percent")
        if high is not None and value > high:
            raise ValueError(f"{value} is above imageGCHighThresholdPercent ({high})")
        return value

    @field_validator("image_max_layer_size")
    @classmethod
    def _a_size(cls, value: str) -> str:
        from kubelite.cli.image import layer_size_bytes

        try:
            layer_size_bytes(value)
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return value

    @field_validator("api_address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("allowed_unsafe_sysctls")
    @classmethod
    def _namespaced_sysctls(cls, value: list[str]) -> list[str]:
        if not value:
            return value
        from kubelite.core import security   # it loads the Pod model: only for a list to check

        return security.check_allowed_unsafe(value)


def split_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` for the API: an IP address (`localhost`: 127.0.0.1) and a port (0: any free one)."""
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
        raise ValueError("give an IP address and a port, such as 127.0.0.1:10280 (port 0 picks a free one)") \
            from None
    return host, number


# ------------------------------------------------------------------------------ reading the file


@dataclass(frozen=True)
class FileContent:
    """The file's one document as JSON data, and where its fields are."""

    path: str
    data: dict[str, Any]
    lines: Any   # sources.documents.LineFinder


def read_file(path: str) -> FileContent:
    """The file's document; UsageError naming the file (and the line) when it cannot be read."""
    from kubelite.sources import documents

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    try:
        text = documents.decode_text(raw)
        docs = [d for d in documents.parse_documents(text, json_file=path.endswith(".json")) if d is not None]
        documents.refuse_alias_bombs(docs, len(text))
        if len(docs) != 1:
            raise documents.Unusable(f"holds {len(docs)} documents; a configuration file holds one {KIND}")
        data = documents.as_json(docs[0], 1)
    except documents.Unusable as exc:
        raise UsageError(f"{path}:{exc.line}: {exc}" if exc.line else f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}:1: a configuration file is a mapping (apiVersion: {API_VERSION}, kind: {KIND}, …)")
    return FileContent(path, data, documents.LineFinder(text))


def _field_path(loc: tuple[Any, ...]) -> str:
    """An error's location as the file names it (a default's error comes with the Python name)."""
    steps, model = [], KubeliteConfiguration
    for step in loc:
        field = model.model_fields.get(str(step)) if model is not None else None
        steps.append(field.alias if field is not None and field.alias else str(step))
        annotation = field.annotation if field is not None else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return ".".join(steps)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    found = []
    for error in exc.errors():
        where = _field_path(error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required" + (f": {API_VERSION}" if where == "apiVersion" else f": {KIND}" if where == "kind"
                                    else "")
        elif error["type"] == "literal_error" and where in ("apiVersion", "kind"):
            message = f"{json.dumps(error['input'])}: must be {API_VERSION if where == 'apiVersion' else KIND}"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        found.append((where, message))
    return found


# ------------------------------------------------------------------------------ precedence


def _get(data: dict[str, Any], path: str) -> Any:
    for step in path.split("."):
        if not isinstance(data, dict) or step not in data:
            return None
        data = data[step]
    return data


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    """Set the field at `path`; where the file holds something else than a mapping on the way
    (`sync: 5`), nothing: the model reports the file's value."""
    *parents, last = path.split(".")
    for step in parents:
        data = data.setdefault(step, {})
        if not isinstance(data, dict):
            return
    data[last] = value


def _to_file(setting: Setting, value: Any) -> Any:
    """A flag's value as the file writes it."""
    if setting.form == "seconds":
        return format_duration(value) if value > 0 else f"{value}s"
    if setting.form == "duration" and isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value.strip()):
        return f"{value.strip()}s"   # the flag (and the environment) take plain seconds as well; the file wants a unit
    if setting.form in ("csv", "list"):
        items = value.split(",") if isinstance(value, str) else value
        return [item.strip() for item in items if item.strip()]
    if setting.form == "negated":
        return not value
    return value


_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)")


def _to_flag(setting: Setting, value: Any) -> Any:
    """A field's validated value, as the file writes it, as `serve` reads its flag."""
    if setting.form == "seconds":
        return parse_duration(value)
    if setting.form == "csv":
        return ",".join(value)
    if setting.form == "negated":
        return not value
    return value


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The `serve` settings given on the command line (a flag not given is absent, or None or False)."""
    return {dest: value for dest, value in vars(args).items()
            if dest in BY_DEST and value is not None and value is not False}


def environment() -> dict[str, str]:
    """The settings' environment variables that are set."""
    return {s.dest: os.environ[s.env] for s in SETTINGS if s.env and os.environ.get(s.env)}


@dataclass(frozen=True)
class Sources:
    """Where `serve` takes its settings from: flags given, environment, the file (if any)."""

    flags: dict[str, Any]
    env: dict[str, str]
    file: str | None = None


def sources_of(args: argparse.Namespace) -> Sources:
    return Sources(flags=given_flags(args), env=environment(), file=getattr(args, "config", None))


def effective(sources: Sources) -> KubeliteConfiguration:
    """The settings `serve` runs with: each from its flag, else its environment variable, else the
    file, else the default; paths and the node's name resolved as `serve` resolves them."""
    data: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND}
    content = read_file(sources.file) if sources.file else None
    if content is not None:
        data = json.loads(json.dumps(content.data))
    origin: dict[str, str] = {}
    for dest, value in sources.env.items():
        setting = BY_DEST[dest]
        if dest not in sources.flags:
            _put(data, setting.path, _to_file(setting, value))
            origin[setting.path] = f"{setting.env}={value}"
    for dest, value in sources.flags.items():
        setting = BY_DEST[dest]
        _put(data, setting.path, _to_file(setting, value))
        # the flag and its value; a list's message names the items it refuses
        shown = "" if isinstance(value, bool) or setting.form in ("csv", "list") else f" {value}"
        origin[setting.path] = f"--{dest.replace('_', '-')}{shown}"
    try:
        model = KubeliteConfiguration.model_validate(data)
    except ValidationError as exc:
        raise UsageError("\n".join(_located(_problems(exc), origin, content))) from None
    resolved = _resolved(model)
    problems = sync_problems(resolved)
    if problems:
        raise UsageError("\n".join(_located(problems, origin, content)))
    return resolved


def sync_problems(model: KubeliteConfiguration) -> list[tuple[str, str]]:
    """(field, why) for each setting of `sync` the git sync would refuse (`gitsync.setting_problems`:
    the very rules it applies when it starts), `sync.path`'s `{node}` taken as the model's node name.
    Only with a repository to follow: without one the settings are not used (and the sync is not loaded)."""
    if not model.sync.repo:
        return []
    from kubelite.sources import gitsync

    found = gitsync.setting_problems(model.sync.repo, ref=model.sync.ref, path=model.sync.path, node=model.node_name)
    return [(f"sync.{name}", why) for name, why in found.items()]


def _located(problems: list[tuple[str, str]], origin: dict[str, str], content: FileContent | None) -> list[str]:
    """Each problem where it comes from: the flag or variable that set the field, else the file's line
    (`FILE:LINE: FIELD: message`, in the order of the lines)."""
    located: list[tuple[int, str]] = []
    for where, message in problems:
        if where in origin:
            located.append((0, f"{origin[where]}: {message}"))
        elif content is not None:
            line = content.lines.line(1, where)
            located.append((line, f"{content.path}:{line}: {where}: {message}"))
        else:
            located.append((0, f"{where}: {message}"))
    return [text for _, text in sorted(located, key=lambda item: item[0])]


def _resolved(model: KubeliteConfiguration) -> KubeliteConfiguration:
    """The defaults that depend on the user and the host, written out (the environment is applied)."""
    registry = model.registry.model_copy(update={"certs_dir": str(config.certs_dir(model.registry.certs_dir))})
    return model.model_copy(update={
        "root": str(config.root(model.root)), "run_dir": str(config.run_dir(model.run_dir)),
        "manifests": str(config.manifests(model.manifests)),
        "node_name": model.node_name or socket.gethostname().lower(), "registry": registry})


def as_args(model: KubeliteConfiguration, args: argparse.Namespace) -> argparse.Namespace:
    """`args` with every `serve` setting taken from `model`; a flag with no field (yet) keeps what was
    given, else the parser's default."""
    merged = argparse.Namespace(**vars(args))
    for dest, default in getattr(args, "flag_defaults", {}).items():
        if not hasattr(merged, dest):
            setattr(merged, dest, default)
    data = model.model_dump(mode="json", by_alias=True)
    for setting in SETTINGS:
        setattr(merged, setting.dest, _to_flag(setting, _get(data, setting.path)))
    return merged


def to_yaml(model: KubeliteConfiguration) -> str:
    """The configuration as a file that reads back as the same configuration."""
    return yaml.safe_dump(model.model_dump(mode="json", by_alias=True), sort_keys=False, default_flow_style=False)


# ------------------------------------------------------------------------------ SIGHUP


def flatten(model: KubeliteConfiguration) -> dict[str, Any]:
    """Field path → value as the file writes it (`sync.interval` → "30s")."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            out[prefix] = value

    walk("", model.model_dump(mode="json", by_alias=True))
    return out


def live(path: str) -> bool:
    setting = BY_PATH.get(path)
    return setting is not None and setting.live


def reload(current: KubeliteConfiguration, sources: Sources) -> KubeliteConfiguration:
    """The configuration after the file is read again: its live changes taken, each change to a
    setting that needs a restart logged as a warning and left as it runs. UsageError (and the
    running configuration stays) when the file cannot be used — a `sync.path` or `sync.ref` the git
    sync would refuse included, checked with the node name kubelite goes on with."""
    new = effective(sources)
    before, after = flatten(current), flatten(new)
    kept, changed, restart = dict(after), [], []
    for path in [*after, *(p for p in before if p not in after)]:
        old, value = before.get(path), after.get(path)
        if old == value:
            continue
        if live(path):
            changed.append(f"{path} {_shown(old)} → {_shown(value)}")
            continue
        restart.append((path, old, value))
        kept[path] = old
    nested: dict[str, Any] = {}
    for path, value in kept.items():
        _put(nested, path, value)
    reloaded = KubeliteConfiguration.model_validate(nested)
    problems = sync_problems(reloaded)
    if problems:
        raise UsageError("\n".join(f"{sources.file}: {where}: {why}" for where, why in problems))
    for path, old, value in restart:
        log.warning("%s: %s changed (%s → %s): it needs a restart; kubelite goes on with %s", sources.file, path,
                    _shown(old), _shown(value), _shown(old))
    if changed:
        log.info("configuration reloaded from %s: %s", sources.file, ", ".join(changed))
    else:
        log.info("configuration reloaded from %s: no setting that applies live changed", sources.file)
    return reloaded


def _shown(value: Any) -> str:
    return "null" if value is None else value if isinstance(value, str) else json.dumps(value)
