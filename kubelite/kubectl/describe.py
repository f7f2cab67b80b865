"""`kubectl describe pod`, and the describer mechanics the other describers share.

Owns: the describe page of a pod (`describe_pod`, translated from describePod and friends in
k8s.io/kubectl pkg/describe/describe.go) and what every describer here writes with: the prefix
writer (`_PrefixWriter`), RFC 1123Z times, sorted label maps, annotations, and the Events section
(DescribeEvents). Pure: inputs are v1 dicts, the current time is passed in as `now`; standard
library only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from kubelite.kubectl.common import _dict, _escape, _int, _list, _present, _str, _tabwrite, age, parse_time
from kubelite.kubectl.pods import _TERMINAL_PHASES
from kubelite.kubectl.qos import _ceil_div, _pod_qos, _quantity

# --------------------------------------------------------------------------- describe pod

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_GO_ZERO_TIME = "Mon, 01 Jan 0001 00:00:00 +0000"
_SKIPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
_MAX_ANNOTATION_LEN = 140


def _rfc1123z(value: Any) -> str:
    """Go's time.RFC1123Z layout in UTC; a missing time prints as Go's zero time."""
    moment = parse_time(value)
    if moment is None:
        return _GO_ZERO_TIME
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} "
        f"{moment.year:04d} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} +0000"
    )


def _go_bool(value: Any) -> str:
    return "true" if value is True else "false"


class _PrefixWriter:
    """kubectl's PrefixWriter: two spaces per level, output escaped, aligned at the end."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, level: int, text: str) -> None:
        self._parts.append(_escape("  " * level + text))

    def line(self, text: str) -> None:
        self._parts.append(_escape(text + "\n"))

    def render(self) -> str:
        return _tabwrite("".join(self._parts), minwidth=0, padding=2)


def _sorted_map_lines(w: _PrefixWriter, title: str, items: Any) -> None:
    """printLabelsMultiline: `Title:\\tk=v` then `\\tk=v` per further key, sorted."""
    w.write(0, f"{title}:\t")
    mapping = _dict(items)
    keys = sorted(mapping)
    if not keys:
        w.line("<none>")
        return
    for i, key in enumerate(keys):
        if i:
            w.write(0, "\t")
        w.write(0, f"{key}={_str(mapping[key])}\n")


def _annotation_lines(w: _PrefixWriter, annotations: Any) -> None:
    """printAnnotationsMultiline: long or multi-line values go on their own lines."""
    w.write(0, "Annotations:\t")
    mapping = _dict(annotations)
    keys = sorted(key for key in mapping if key not in _SKIPPED_ANNOTATIONS)
    if not keys:
        w.line("<none>")
        return
    for i, key in enumerate(keys):
        if i:
            w.write(0, "\t")
        value = _str(mapping[key]).removesuffix("\n")
        if len(value) + len(key) + 2 > _MAX_ANNOTATION_LEN or "\n" in value:
            w.write(0, f"{key}:\n")
            for part in value.split("\n"):
                if len(part) > _MAX_ANNOTATION_LEN - 2:
                    part = part[: _MAX_ANNOTATION_LEN - 2] + "..."
                w.write(0, f"\t  {part}\n")
        else:
            w.write(0, f"{key}: {value}\n")


def _toleration_lines(w: _PrefixWriter, tolerations: Any) -> None:
    """printPodTolerationsMultiline: `key=value:Effect op=Exists for Ns`, sorted by key."""
    w.write(0, "Tolerations:\t")
    items = sorted((_dict(t) for t in _list(tolerations)), key=lambda t: _str(t.get("key")))
    if not items:
        w.line("<none>")
        return
    for i, toleration in enumerate(items):
        if i:
            w.write(0, "\t")
        key, value, effect = (_str(toleration.get(k)) for k in ("key", "value", "effect"))
        text = key + (f"={value}" if value else "") + (f":{effect}" if effect else "")
        if toleration.get("operator") == "Exists" and not value:
            text += " op=Exists" if key or effect else "op=Exists"
        if toleration.get("tolerationSeconds") is not None:
            text += f" for {_int(toleration.get('tolerationSeconds'))}s"
        w.write(0, text + "\n")


def _resource_lines(w: _PrefixWriter, resources: Any, level: int) -> None:
    """describeResources: Limits / Requests with resource names sorted."""
    resources = _dict(resources)
    for title, key in (("Limits", "limits"), ("Requests", "requests")):
        values = _dict(resources.get(key))
        if values:
            w.write(level, f"{title}:\n")
        for name in sorted(values):
            w.write(level + 1, f"{name}:\t{_str(values[name])}\n")


def _port_list(ports: list[dict[str, Any]], field: str) -> str:
    described = []
    for port in ports:
        text = f"{_int(port.get(field))}/{_str(port.get('protocol')) or 'TCP'}"
        if _str(port.get("name")):
            text += f" ({_str(port.get('name'))})"
        described.append(text)
    return ", ".join(described)


def _describe_probe(probe: Mapping[str, Any]) -> str:
    """DescribeProbe, with the API server's probe defaults for absent fields."""
    timing = (
        f"delay={_int(probe.get('initialDelaySeconds', 0))}s "
        f"timeout={_int(probe.get('timeoutSeconds', 1))}s "
        f"period={_int(probe.get('periodSeconds', 10))}s "
        f"#success={_int(probe.get('successThreshold', 1))} "
        f"#failure={_int(probe.get('failureThreshold', 3))}"
    )
    if _present(probe.get("exec")):
        command = " ".join(_str(part) for part in _list(probe["exec"].get("command")))
        return f"exec [{command}] {timing}"
    if _present(probe.get("httpGet")):
        action = probe["httpGet"]
        scheme = (_str(action.get("scheme")) or "HTTP").lower()
        host, port = _str(action.get("host")), _str(action.get("port"))
        if port:
            host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        path = _str(action.get("path"))
        if path and not path.startswith("/") and host:
            path = "/" + path
        return f"http-get {scheme}://{host}{path} {timing}"
    if _present(probe.get("tcpSocket")):
        action = probe["tcpSocket"]
        return f"tcp-socket {_str(action.get('host'))}:{_str(action.get('port'))} {timing}"
    if _present(probe.get("grpc")):
        action = probe["grpc"]
        return f"grpc <pod>:{_int(action.get('port'))} {_str(action.get('service'))} {timing}"
    return f"unknown {timing}"


def _field_ref_value(pod: Mapping[str, Any], path: str) -> str:
    """kubectl's EnvValueRetriever: only metadata field paths resolve, others print ''."""
    meta = _dict(pod.get("metadata"))
    for field in ("annotations", "labels"):
        prefix = f"metadata.{field}['"
        if path.startswith(prefix) and path.endswith("']"):
            return _str(_dict(meta.get(field)).get(path[len(prefix):-2]))
        if path == f"metadata.{field}":
            mapping = _dict(meta.get(field))
            return "\n".join(f'{k}="{_str(mapping[k])}"' for k in sorted(mapping))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return _str(meta.get(path.split(".", 1)[1]))
    return ""


def _resource_field_value(selector: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """ExtractContainerResourceValue: a container resource divided by the divisor, ceil'd."""
    resource = _str(selector.get("resource"))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        return ""
    amount = _quantity(_dict(_dict(container.get("resources")).get(kind)).get(name, 0)) or (0, 1)
    divisor = _quantity(selector.get("divisor", "1")) or (0, 1)
    if divisor[0] == 0:
        divisor = (1, 1)
    if name == "cpu":  # ceil(MilliValue / divisor MilliValue)
        amount_milli = _ceil_div(amount[0] * 1000, amount[1])
        divisor_milli = _ceil_div(divisor[0] * 1000, divisor[1])
        value = _ceil_div(amount_milli, divisor_milli) if divisor_milli else 0
    else:  # ceil(Value / divisor Value)
        divisor_value = _ceil_div(*divisor)
        value = _ceil_div(_ceil_div(*amount), divisor_value) if divisor_value else 0
    return str(value)


def _env_lines(w: _PrefixWriter, pod: Mapping[str, Any], container: Mapping[str, Any]) -> None:
    """describeContainerEnvFrom + describeContainerEnvVars."""
    env_from = [_dict(e) for e in _list(container.get("envFrom"))]
    if env_from:
        w.write(2, "Environment Variables from:\n")
        for source in env_from:
            origin, name, optional = "", "", False
            for key, label in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if _present(source.get(key)):
                    origin, name = label, _str(source[key].get("name"))
                    optional = source[key].get("optional") is True
                    break
            prefix = _str(source.get("prefix"))
            origin = f"{origin} with prefix '{prefix}'" if prefix else origin
            w.write(3, f"{name}\t{origin}\tOptional: {_go_bool(optional)}\n")

    env = [_dict(e) for e in _list(container.get("env"))]
    w.write(2, "Environment:\t<none>\n" if not env else "Environment:\n")
    for var in env:
        name, source = _str(var.get("name")), var.get("valueFrom")
        if not _present(source):
            for i, part in enumerate(_str(var.get("value")).split("\n")):
                w.write(3, f"{name}:\t{part}\n" if i == 0 else f"\t{part}\n")
        elif _present(source.get("fieldRef")):
            ref = source["fieldRef"]
            path, version = _str(ref.get("fieldPath")), _str(ref.get("apiVersion")) or "v1"
            w.write(3, f"{name}:\t{_field_ref_value(pod, path)} ({version}:{path})\n")
        elif _present(source.get("resourceFieldRef")):
            ref = source["resourceFieldRef"]
            value, resource = _resource_field_value(ref, container), _str(ref.get("resource"))
            if value == "0" and resource in ("limits.cpu", "limits.memory"):
                value = "node allocatable"
            w.write(3, f"{name}:\t{value} ({resource})\n")
        elif _present(source.get("secretKeyRef")):
            ref = source["secretKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{_str(ref.get('key'))}' in secret "
                       f"'{_str(ref.get('name'))}'>\tOptional: {_go_bool(ref.get('optional'))}\n")
        elif _present(source.get("configMapKeyRef")):
            ref = source["configMapKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{_str(ref.get('key'))}' of config map "
                       f"'{_str(ref.get('name'))}'>\tOptional: {_go_bool(ref.get('optional'))}\n")


def _container_state(w: _PrefixWriter, title: str, state: Mapping[str, Any]) -> None:
    """describeStatus."""
    if _present(state.get("running")):
        w.write(2, f"{title}:\tRunning\n")
        w.write(3, f"Started:\t{_rfc1123z(state['running'].get('startedAt'))}\n")
    elif _present(state.get("waiting")):
        w.write(2, f"{title}:\tWaiting\n")
        if _str(state["waiting"].get("reason")):
            w.write(3, f"Reason:\t{_str(state['waiting'].get('reason'))}\n")
    elif _present(state.get("terminated")):
        terminated = state["terminated"]
        w.write(2, f"{title}:\tTerminated\n")
        if _str(terminated.get("reason")):
            w.write(3, f"Reason:\t{_str(terminated.get('reason'))}\n")
        if _str(terminated.get("message")):
            w.write(3, f"Message:\t{_str(terminated.get('message'))}\n")
        w.write(3, f"Exit Code:\t{_int(terminated.get('exitCode'))}\n")
        if _int(terminated.get("signal")) > 0:
            w.write(3, f"Signal:\t{_int(terminated.get('signal'))}\n")
        w.write(3, f"Started:\t{_rfc1123z(terminated.get('startedAt'))}\n")
        w.write(3, f"Finished:\t{_rfc1123z(terminated.get('finishedAt'))}\n")
    else:
        w.write(2, f"{title}:\tWaiting\n")


def _containers_section(
    w: _PrefixWriter, pod: Mapping[str, Any], title: str, containers: list[Any], statuses: list[Any]
) -> None:
    """describeContainers."""
    by_name = {_str(_dict(s).get("name")): _dict(s) for s in statuses}
    w.write(0, f"{title}:{'' if containers else ' <none>'}\n")
    for container in containers:
        container = _dict(container)
        status = by_name.get(_str(container.get("name")))
        w.write(1, f"{_str(container.get('name'))}:\n")
        if status is not None:
            w.write(2, f"Container ID:\t{_str(status.get('containerID'))}\n")
        w.write(2, f"Image:\t{_str(container.get('image'))}\n")
        if status is not None:
            w.write(2, f"Image ID:\t{_str(status.get('imageID'))}\n")
        ports = [_dict(p) for p in _list(container.get("ports"))]
        for label, field in (("Port", "containerPort"), ("Host Port", "hostPort")):
            described = _port_list(ports, field)
            if "," in described:
                w.write(2, f"{label}s:\t{described}\n")
            else:
                w.write(2, f"{label}:\t{described or '<none>'}\n")
        for label, key in (("Command", "command"), ("Args", "args")):
            values = _list(container.get(key))
            if values:
                w.write(2, f"{label}:\n")
                for value in values:
                    for part in _str(value).split("\n"):
                        w.write(3, f"{part}\n")
        if status is not None:
            _container_state(w, "State", _dict(status.get("state")))
            last_state = _dict(status.get("lastState"))
            if _present(last_state.get("terminated")):
                _container_state(w, "Last State", last_state)
            w.write(2, f"Ready:\t{'True' if status.get('ready') is True else 'False'}\n")
            w.write(2, f"Restart Count:\t{_int(status.get('restartCount'))}\n")
        _resource_lines(w, container.get("resources"), 2)
        for label, key in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe"),
                           ("Startup", "startupProbe")):
            if _present(container.get(key)):
                w.write(2, f"{label}:\t{_describe_probe(container[key])}\n")
        _env_lines(w, pod, container)
        mounts = sorted((_dict(m) for m in _list(container.get("volumeMounts"))),
                        key=lambda m: _str(m.get("mountPath")))
        w.write(2, "Mounts:\t<none>\n" if not mounts else "Mounts:\n")
        for mount in mounts:
            flags = ["ro" if mount.get("readOnly") is True else "rw"]
            if _str(mount.get("subPath")):
                flags.append(f'path="{_str(mount.get("subPath"))}"')
            w.write(3, f"{_str(mount.get('mountPath'))} from {_str(mount.get('name'))} ({','.join(flags)})\n")


def _volume_lines(w: _PrefixWriter, volumes: list[Any]) -> None:
    """describeVolumes for the volume types a single node can serve."""
    if not volumes:
        w.write(0, "Volumes:\t<none>\n")
        return
    w.write(0, "Volumes:\n")
    for volume in volumes:
        volume = _dict(volume)
        w.write(1, f"{_str(volume.get('name'))}:\n")
        if _present(volume.get("hostPath")):
            source = volume["hostPath"]
            kind = _str(source.get("type")) if "type" in source else "<none>"
            w.write(2, "Type:\tHostPath (bare host directory volume)\n"
                       f"    Path:\t{_str(source.get('path'))}\n    HostPathType:\t{kind}\n")
        elif _present(volume.get("emptyDir")):
            source = volume["emptyDir"]
            limit = _quantity(source.get("sizeLimit"))
            size = _str(source.get("sizeLimit")) if limit and limit[0] > 0 else "<unset>"
            w.write(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n"
                       f"    Medium:\t{_str(source.get('medium'))}\n    SizeLimit:\t{size}\n")
        elif _present(volume.get("secret")):
            source = volume["secret"]
            w.write(2, "Type:\tSecret (a volume populated by a Secret)\n"
                       f"    SecretName:\t{_str(source.get('secretName'))}\n"
                       f"    Optional:\t{_go_bool(source.get('optional'))}\n")
        elif _present(volume.get("configMap")):
            source = volume["configMap"]
            w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n"
                       f"    Name:\t{_str(source.get('name'))}\n"
                       f"    Optional:\t{_go_bool(source.get('optional'))}\n")
        elif _present(volume.get("persistentVolumeClaim")):
            source = volume["persistentVolumeClaim"]
            w.write(2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same "
                       f"namespace)\n    ClaimName:\t{_str(source.get('claimName'))}\n"
                       f"    ReadOnly:\t{_go_bool(source.get('readOnly'))}\n")
        elif _present(volume.get("downwardAPI")):
            w.write(2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n")
            for item in _list(volume["downwardAPI"].get("items")):
                item = _dict(item)
                for ref, field in (("fieldRef", "fieldPath"), ("resourceFieldRef", "resource")):
                    if _present(item.get(ref)):
                        w.write(3, f"{_str(item[ref].get(field))} -> {_str(item.get('path'))}\n")
        elif _present(volume.get("projected")):
            w.write(2, "Type:\tProjected (a volume that contains injected data from multiple sources)\n")
            for source in _list(volume["projected"].get("sources")):
                _projection_lines(w, _dict(source))
        elif _present(volume.get("image")):
            source = _dict(volume["image"])
            w.write(2, "Type:\tImage (a container image or OCI artifact)\n"
                       f"    Reference:\t{_str(source.get('reference'))}\n"
                       f"    PullPolicy:\t{_str(source.get('pullPolicy'))}\n")
        else:
            w.write(1, "<unknown>\n")


def _projection_lines(w: _PrefixWriter, source: dict[str, Any]) -> None:
    """printProjectedVolumeSource, one source; an unset `optional` shows as kubectl shows it (`<nil>`)."""
    def optional(ref: dict[str, Any]) -> str:
        return _go_bool(ref["optional"]) if isinstance(ref.get("optional"), bool) else "<nil>"

    if _present(source.get("secret")):
        ref = _dict(source["secret"])
        w.write(2, f"SecretName:\t{_str(ref.get('name'))}\n    SecretOptionalName:\t{optional(ref)}\n")
    elif _present(source.get("downwardAPI")):
        w.write(2, "DownwardAPI:\ttrue\n")
    elif _present(source.get("configMap")):
        ref = _dict(source["configMap"])
        w.write(2, f"ConfigMapName:\t{_str(ref.get('name'))}\n    ConfigMapOptional:\t{optional(ref)}\n")
    elif _present(source.get("serviceAccountToken")):
        seconds = _dict(source["serviceAccountToken"]).get("expirationSeconds", 3600)
        w.write(2, f"TokenExpirationSeconds:\t{_int(seconds)}\n")


def _event_lines(w: _PrefixWriter, events: list[dict], now: datetime) -> None:
    """DescribeEvents: sorted by lastTimestamp, `Age` as `12s (x3 over 2m)` when repeated."""
    if not events:
        w.write(0, "Events:\t<none>\n")
        return
    never = datetime.min.replace(tzinfo=timezone.utc)
    ordered = sorted((_dict(e) for e in events), key=lambda e: parse_time(e.get("lastTimestamp")) or never)
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for event in ordered:
        first = age(event.get("eventTime") or event.get("firstTimestamp"), now)
        series, count = event.get("series"), _int(event.get("count"))
        if _present(series):
            last, times = age(series.get("lastObservedTime"), now), _int(series.get("count"))
            interval = f"{last} (x{times} over {first})"
        elif count > 1:
            interval = f"{age(event.get('lastTimestamp'), now)} (x{count} over {first})"
        else:
            interval = first
        source = _str(_dict(event.get("source")).get("component")) or _str(event.get("reportingComponent"))
        message = _str(event.get("message")).strip()
        cells = (_str(event.get("type")), _str(event.get("reason")), interval, source, message)
        w.write(1, "\t".join(cells) + "\n")


def _ip_lines(w: _PrefixWriter, status: dict[str, Any]) -> None:
    """`IP:` and `IPs:` (each of podIPs, or `<none>`)."""
    w.write(0, f"IP:\t{_str(status.get('podIP'))}\n")
    pod_ips = [_str(_dict(ip).get("ip")) for ip in _list(status.get("podIPs"))]
    if not pod_ips:
        w.write(0, "IPs:\t<none>\n")
    else:
        w.write(0, "IPs:\n")
        for ip in pod_ips:
            w.write(1, f"IP:\t{ip}\n")


def _condition_lines(w: _PrefixWriter, spec: dict[str, Any], status: dict[str, Any]) -> None:
    """`Readiness Gates:` (each gate with its condition's status) and `Conditions:`."""
    conditions = [_dict(c) for c in _list(status.get("conditions"))]
    gates = [_dict(g) for g in _list(spec.get("readinessGates"))]
    if gates:
        w.write(0, "Readiness Gates:\n  Type\tStatus\n")
        for gate in gates:
            wanted = gate.get("conditionType")
            found = next((c for c in conditions if c.get("type") == wanted), None)
            w.write(1, f"{_str(wanted)} \t{_str(found.get('status')) if found else '<none>'} \n")
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for condition in conditions:
            w.write(1, f"{_str(condition.get('type'))} \t{_str(condition.get('status'))} \n")


def describe_pod(
    pod: dict,
    events: list[dict],
    now: datetime,
    *,
    extra: dict[str, str] | None = None,
) -> str:
    """`kubectl describe pod` output; `extra` adds aligned `Key: value` lines after Status."""
    meta, spec, status = _dict(pod.get("metadata")), _dict(pod.get("spec")), _dict(pod.get("status"))
    phase = _str(status.get("phase"))
    w = _PrefixWriter()
    w.write(0, f"Name:\t{_str(meta.get('name'))}\n")
    w.write(0, f"Namespace:\t{_str(meta.get('namespace'))}\n")
    w.write(0, f"Priority:\t{_int(spec.get('priority'))}\n")
    for label, key in (("Priority Class Name", "priorityClassName"),
                       ("Runtime Class Name", "runtimeClassName"),
                       ("Service Account", "serviceAccountName")):
        if _str(spec.get(key)):
            w.write(0, f"{label}:\t{_str(spec.get(key))}\n")
    node = _str(spec.get("nodeName"))
    w.write(0, f"Node:\t{node}/{_str(status.get('hostIP'))}\n" if node else "Node:\t<none>\n")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{_rfc1123z(status.get('startTime'))}\n")
    _sorted_map_lines(w, "Labels", meta.get("labels"))
    _annotation_lines(w, meta.get("annotations"))
    if meta.get("deletionTimestamp") and phase not in _TERMINAL_PHASES:
        w.write(0, f"Status:\tTerminating (lasts {age(meta.get('deletionTimestamp'), now)})\n")
        if meta.get("deletionGracePeriodSeconds") is not None:
            w.write(0, f"Termination Grace Period:\t{_int(meta.get('deletionGracePeriodSeconds'))}s\n")
    else:
        w.write(0, f"Status:\t{phase}\n")
    for label, key in (("Reason", "reason"), ("Message", "message")):
        if _str(status.get(key)):
            w.write(0, f"{label}:\t{_str(status.get(key))}\n")
    for key, value in (extra or {}).items():
        for i, part in enumerate(_str(value).split("\n")):
            w.write(0, f"{key}:\t{part}\n" if i == 0 else f"\t{part}\n")
    seccomp = _dict(_dict(spec.get("securityContext")).get("seccompProfile"))
    if seccomp:
        w.write(0, f"SeccompProfile:\t{_str(seccomp.get('type'))}\n")
        if seccomp.get("type") == "Localhost":
            w.write(0, f"LocalhostProfile:\t{_str(seccomp.get('localhostProfile'))}\n")
    _ip_lines(w, status)
    for owner in _list(meta.get("ownerReferences")):
        owner = _dict(owner)
        if owner.get("controller") is True:
            w.write(0, f"Controlled By:\t{_str(owner.get('kind'))}/{_str(owner.get('name'))}\n")
            break
    if _str(status.get("nominatedNodeName")):
        w.write(0, f"NominatedNodeName:\t{_str(status.get('nominatedNodeName'))}\n")
    if _present(spec.get("resources")):
        w.write(0, "Resources:\n")
        _resource_lines(w, spec.get("resources"), 1)

    init_containers = _list(spec.get("initContainers"))
    if init_containers:
        _containers_section(w, pod, "Init Containers", init_containers,
                            _list(status.get("initContainerStatuses")))
    _containers_section(w, pod, "Containers", _list(spec.get("containers")),
                        _list(status.get("containerStatuses")))

    _condition_lines(w, spec, status)
    _volume_lines(w, _list(spec.get("volumes")))
    w.write(0, f"QoS Class:\t{_pod_qos(pod)}\n")
    _sorted_map_lines(w, "Node-Selectors", spec.get("nodeSelector"))
    _toleration_lines(w, spec.get("tolerations"))
    _event_lines(w, list(events or []), now)
    return w.render()
