"""Probe decisions, as the kubelet's prober workers make them — pure, `now` is never read.

Owns: which probes of a container run now (a startup probe gates liveness and readiness until it
succeeds, and a run that finished after the gate closed on it does not count; a failed liveness
or startup probe holds the container's probing until a new container replaces it), the initial
results (readiness Failure, liveness Success, startup Unknown), the thresholds (a result changes
only after `failureThreshold` consecutive failures or `successThreshold` consecutive successes; a
run the prober could not make is thrown away), the resolved target of a probe (named port, host:
`httpGet.host`, else the pod IP, else loopback in the pod's network namespace; first run at start
+ initialDelaySeconds, then every period), and the `Unhealthy` / `ProbeWarning` event of a run.
It runs nothing: `kubelite.prober` does.

The kubelet's rules are in pkg/kubelet/prober/worker.go (`doProbe`) and prober.go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

from kubelite.api.models import Container, Probe
from kubelite.core.types import ObservedContainer, ProbeOutcome, ProbeResult, ProbeTarget

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
KINDS = (STARTUP, LIVENESS, READINESS)
#: What a probe says before it has run (`worker.go`: `initialValue`).
INITIAL = {LIVENESS: ProbeResult.SUCCESS, READINESS: ProbeResult.FAILURE, STARTUP: ProbeResult.UNKNOWN}
#: Where a probe connects when neither `host` nor a pod IP is known: loopback, in the pod's namespace.
LOOPBACK = "127.0.0.1"
#: The kubelet reads at most this much of an exec probe's output or an HTTP probe's body.
MAX_OUTPUT = 10 * 1024


@dataclass(frozen=True)
class ProbeState:
    """One worker's memory: the result in force, the last run's result and how many in a row."""

    result: ProbeResult
    last: ProbeResult | None = None
    run: int = 0
    on_hold: bool = False        # liveness/startup failed: no more runs for this container


def probe_spec(container: Container, kind: str) -> Probe | None:
    """The container's probe of `kind`, if kubelite runs it (gRPC probes are not implemented)."""
    probe = {LIVENESS: container.liveness_probe, READINESS: container.readiness_probe,
             STARTUP: container.startup_probe}[kind]
    if probe is None or (probe.exec_ is None and probe.http_get is None and probe.tcp_socket is None):
        return None
    return probe


def initial_state(kind: str) -> ProbeState:
    return ProbeState(INITIAL[kind])


def observe(state: ProbeState, kind: str, probe: Probe, result: ProbeResult) -> ProbeState:
    """Apply one run's result: the thresholds, and the hold after a liveness or startup failure."""
    if state.on_hold or result is ProbeResult.UNKNOWN:
        return state  # a probe error is thrown away (`runProbeWithRetries` gave up)
    run = state.run + 1 if result is state.last else 1
    below = (result is ProbeResult.FAILURE and run < probe.failure_threshold) or \
            (result is ProbeResult.SUCCESS and run < probe.success_threshold)
    if below:
        return ProbeState(state.result, result, run)
    if kind in (LIVENESS, STARTUP) and result is ProbeResult.FAILURE:
        return ProbeState(result, result, 0, on_hold=True)
    return ProbeState(result, result, run)


def started(container: Container, states: Mapping[str, ProbeState]) -> bool:
    """A running container has started once its startup probe (if it has one) has succeeded."""
    if probe_spec(container, STARTUP) is None:
        return True
    state = states.get(STARTUP)
    return state is not None and state.result is ProbeResult.SUCCESS


def gated_kinds(container: Container, states: Mapping[str, ProbeState]) -> list[str]:
    """The probes the startup gate lets run: only the startup probe until it succeeds (and never
    again after), then liveness and readiness; those the container has, and not held."""
    kinds = [STARTUP] if not started(container, states) else [LIVENESS, READINESS]
    return [k for k in kinds if probe_spec(container, k) is not None
            and not (states.get(k) is not None and states[k].on_hold)]


def active_kinds(container: Container, c: ObservedContainer, states: Mapping[str, ProbeState]) -> list[str]:
    """The probes that run now for the running container `c`: none once it is being stopped; else
    `gated_kinds`."""
    if not c.running or c.started_at is None or c.kill_deadline is not None:
        return []
    return gated_kinds(container, states)


def counts(container: Container, kind: str, states: Mapping[str, ProbeState]) -> bool:
    """Whether a finished run of probe `kind` still counts: a run that was queued while the gate
    changed (a startup run behind the startup probe's success) is thrown away, as the kubelet's
    worker stops running the startup probe once it has succeeded."""
    return kind in gated_kinds(container, states)


def resolve_port(port: int | str, container: Container) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports (`ResolveContainerPort`)."""
    if isinstance(port, int):
        return port
    for p in container.ports:
        if p.name == port:
            return p.container_port
    return None


def target(container: Container, c: ObservedContainer, kind: str, *, pod_ip: str | None = None) -> ProbeTarget | None:
    """What the prober runs for probe `kind` of the running container `c`; None if it cannot run."""
    probe = probe_spec(container, kind)
    if probe is None or c.started_at is None:
        return None
    base = dict(container_id=c.id, kind=kind, first_at=c.started_at + timedelta(seconds=probe.initial_delay_seconds),
                period_s=probe.period_seconds, timeout_s=probe.timeout_seconds)
    if probe.exec_ is not None:
        return ProbeTarget(action="exec", command=tuple(probe.exec_.command), **base)  # type: ignore[arg-type]
    action = probe.http_get or probe.tcp_socket
    assert action is not None
    port = resolve_port(action.port, container)
    if port is None:
        return None
    host = action.host or pod_ip or LOOPBACK
    if probe.http_get is not None:
        get = probe.http_get
        path = get.path if get.path.startswith("/") else "/" + get.path
        return ProbeTarget(action="http", scheme=get.scheme.lower(), host=host, port=port, path=path,  # type: ignore[arg-type]
                           headers=tuple((h.name, h.value) for h in get.http_headers), **base)
    return ProbeTarget(action="tcp", host=host, port=port, **base)  # type: ignore[arg-type]


def targets(container: Container, c: ObservedContainer, states: Mapping[str, ProbeState], *,
            pod_ip: str | None = None) -> list[ProbeTarget]:
    """Every probe that runs now for the container `c`, resolved."""
    found = [target(container, c, kind, pod_ip=pod_ip) for kind in active_kinds(container, c, states)]
    return [t for t in found if t is not None]


def event(outcome: ProbeOutcome) -> tuple[str, str, str] | None:
    """(type, reason, message) of the event a run raises, as the kubelet words it; None for a plain success."""
    kind = outcome.kind.capitalize()
    if outcome.result is ProbeResult.FAILURE:
        return "Warning", "Unhealthy", f"{kind} probe failed: {outcome.output}"
    if outcome.result is ProbeResult.UNKNOWN:
        return "Warning", "Unhealthy", f"{kind} probe errored: {outcome.output}"
    if outcome.warning:
        return "Warning", "ProbeWarning", f"{kind} probe warning: {outcome.output}"
    return None
