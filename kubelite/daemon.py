"""The daemon: wires the watcher, the store, the agent loop and the runtime — `kubelite serve`.

The composition root: the one module that knows every concrete piece (which runtime, which network,
the git sync, the API server) and puts them together; nothing below imports it, and it is the only
place that chooses between the runc runtime and the simulated one. Only the CLI's `serve` calls it.

Owns: the process lifecycle — one instance per state root (a lock file), logging (text or JSON
lines, `service.logformat`), signal handling, what systemd hears (`service.notify`: READY=1 once
the first pass has run, STOPPING=1 at the end), and the loop that runs `Agent.run_once()` whenever a hint arrives or the next pass is
due. SIGTERM and SIGINT stop kubelite cleanly and leave the pods running, as the kubelet does.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Callable

from kubelite import __version__, layout, statefiles
from kubelite.agent.agent import Agent, AgentConfig
from kubelite.clock import utcnow
from kubelite.errors import KubeliteError, UsageError
from kubelite.runtime import linux
from kubelite.runtime.cni import DEFAULT_BRIDGE, DEFAULT_POD_CIDR
from kubelite.runtime.protocol import Runtime
from kubelite.service import logformat
from kubelite.service.notify import Notifier
from kubelite.sources.watch import ManifestWatcher
from kubelite.store.store import Store

log = logging.getLogger("kubelite")
#: Pause after an unexpected error in a pass, so a persistent bug cannot spin the CPU.
ERROR_PAUSE_S = 1.0
#: A failure that repeats is logged again at most this often.
ERROR_LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class SyncOptions:
    """`serve --sync-repo`: follow a git repository into the manifests path (a symlink)."""

    repo: str
    ref: str = "HEAD"
    path: str = ""
    interval_s: float = 30.0
    allow_empty: bool = False


@dataclass(frozen=True)
class ApiOptions:
    """`serve --api-address`: the read-only Kubernetes API on a loopback address (port 0: any free port)."""

    host: str = "127.0.0.1"
    port: int = 10280
    limits: Any = None   # apiserver.limits.Limits; None: the server's defaults


@dataclass(frozen=True)
class ServeOptions:
    agent: AgentConfig
    run_dir: Path
    runtime: str = "runc"
    sync: SyncOptions | None = None
    network: str = "cni"                # "cni": pods on kubelite's bridge; "none": loopback only
    bridge: str = DEFAULT_BRIDGE
    pod_cidr: str = DEFAULT_POD_CIDR
    registry: Any = None   # runtime.registry.RegistryConfig: credentials, TLS trust, insecure registries
    api: ApiOptions | None = None
    warm_sandboxes: int = 2            # ready pod sandboxes kept by the runc runtime (0: none)


def configure_logging(debug: bool, log_format: str = "text") -> None:
    """kubelite's log lines go to stderr (the journal under systemd), as text or JSON lines. The
    warnings of libraries that log without a handler of their own (asyncio, aiohttp) take the same
    format: logging's last resort, not the root logger, so a host that configured logging keeps it."""
    try:
        formatter = logformat.formatter(log_format)
    except ValueError as exc:
        raise UsageError(f"--log-format: {exc}") from None
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger("kubelite")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    others = logging.StreamHandler()
    others.setLevel(logging.WARNING)
    others.setFormatter(formatter)
    logging.lastResort = others


def lock_root(root: Path) -> IO[str]:
    """Hold `<root>/kubelite.lock` for the life of the process: one daemon per state root."""
    handle, holder = linux.try_lock(layout.lock_path(root), str(os.getpid()))
    if handle is None:
        raise UsageError(f"another kubelite (pid {holder}) is already serving {root}")
    return handle


def make_runtime(options: ServeOptions, clock: Callable[[], datetime]) -> Runtime:
    if options.network not in ("cni", "none"):
        raise UsageError(f"unknown --network {options.network!r} (cni or none)")
    if options.runtime == "fake":
        from kubelite.runtime import cni
        from kubelite.runtime.fake import FakeRuntime

        if options.network == "cni":
            cni.validate_options(bridge=options.bridge, pod_cidr=options.pod_cidr)
        return FakeRuntime(clock, pod_cidr=options.pod_cidr if options.network == "cni" else None)
    if options.runtime == "runc":
        if os.geteuid() != 0:
            raise UsageError("the runc runtime needs root (run kubelite as root, or use --runtime fake for a dry run)")
        from kubelite.runtime.images import ImageStore
        from kubelite.runtime.oci import OCIRuntime

        network = make_network(options) if options.network == "cni" else None
        return OCIRuntime(root=options.agent.root, run_dir=options.run_dir, images=ImageStore(options.agent.root),
                          clock=clock, network=network, registry=options.registry,
                          warm_sandboxes=options.warm_sandboxes)
    raise UsageError(f"unknown runtime {options.runtime!r}")


def make_network(options: ServeOptions) -> Any:
    """kubelite's CNI network, checked before any pod starts: plugins present, the subnet free of the
    host's routes, the bridge not used by another kubelite."""
    from kubelite.runtime import cni

    network = cni.Network(root=options.agent.root, run_dir=options.run_dir, bridge=options.bridge,
                          pod_cidr=options.pod_cidr)
    network.check_subnet()
    network.claim()
    log.info("pod network: bridge %s, subnet %s (%s)", network.bridge, network.subnet, network.conflist_path)
    return network


def start_sync(options: SyncOptions, config: AgentConfig, agent: Agent, stop: threading.Event) -> None:
    """Run the git sync beside the agent: it swaps the manifests symlink; the watcher and the agent
    do the rest. Its results go to the agent, which writes them (one writer)."""
    from kubelite.sources.gitsync import GitSync, hold_sync_lock

    lock = hold_sync_lock(config.root)  # before the thread: a second sync is refused at once
    syncer = GitSync(options.repo, ref=options.ref, path=options.path, root=config.root, link=config.manifests,
                     allow_empty=options.allow_empty, interval_s=options.interval_s)

    def loop() -> None:
        with lock:  # held while the sync runs
            while not stop.is_set():
                result = syncer.sync_once()
                if result.outcome != "unchanged":
                    log.log(logging.WARNING if result.outcome in ("failed", "rejected", "drift") else logging.INFO,
                            "sync: %s", result.message)
                agent.sync_results.put(result)
                if result.outcome in ("applied", "drift"):
                    agent.hint_manifests()      # the tree changed: rescan it now
                else:
                    agent.hint_sync_status()    # written between passes: an idle interval makes no pass
                stop.wait(result.delay_s)

    threading.Thread(target=loop, name="kubelite-git-sync", daemon=True).start()


def wait_for_work(agent: Agent, timeout: float, stop: threading.Event) -> None:
    """Sleep until the next pass is due or something asks for one. Probe runs that change no
    result are applied as they arrive, without a pass (see `agent.probing`), and so is the status
    of a git sync pass that changed no file."""
    deadline = time.monotonic() + timeout
    while timeout > 0 and agent.wake.wait(timeout) and not stop.is_set():
        try:
            if agent.absorb_probe_outcomes():
                return
            agent.absorb_sync_results()
        except Exception:  # noqa: BLE001 — the pass that follows reports a failing store
            return
        timeout = deadline - time.monotonic()


class LoopHealth:
    """What `/readyz` and the Node's Ready condition say: whether reconcile passes succeed."""

    def __init__(self, relist_period_s: float) -> None:
        self.limit_s = 3 * relist_period_s + 10
        self.last_success: float | None = None
        self.last_error = ""

    def passed(self) -> None:
        self.last_success, self.last_error = time.monotonic(), ""

    def failed(self, error: str) -> None:
        self.last_error = error

    def __call__(self) -> Any:
        from kubelite.apiserver.server import Health

        if self.last_success is None:
            return Health(False, "kubelite has not completed a reconcile pass yet")
        if time.monotonic() - self.last_success > self.limit_s:
            return Health(False, f"no reconcile pass succeeded for {time.monotonic() - self.last_success:.0f}s"
                          + (f": {self.last_error}" if self.last_error else ""))
        return Health(True, "kubelite is posting ready status")


def start_api(options: ServeOptions, health: LoopHealth, runtime: Runtime | None = None) -> Any:
    """The API beside the agent; None (after one error line) when it cannot listen: the pods
    matter more than the API, so the agent runs on."""
    from kubelite.apiserver import auth
    from kubelite.apiserver.server import ApiServer

    assert options.api is not None
    config = options.agent
    (auth.api_dir(config.root) / auth.SERVER_FILE).unlink(missing_ok=True)
    try:
        api = ApiServer(root=config.root, node_name=config.node_name, runtime=options.runtime,
                        host=options.api.host, port=options.api.port, health=health, node_ip=config.node_ip,
                        run_dir=options.run_dir, containers=runtime,
                        **({"limits": options.api.limits} if options.api.limits else {}))
        api.start()
    except OSError as exc:
        log.error("API not served: cannot listen on %s:%s: %s", options.api.host, options.api.port,
                  exc.strerror or exc)
        return None
    except Exception as exc:  # noqa: BLE001 — a certificate or a store the API cannot read: the pods run on
        log.error("API not served: %s: %s", type(exc).__name__, exc)
        return None
    return api


def serve(options: ServeOptions, *, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set). Returns the process exit code."""
    config = options.agent
    notifier = Notifier.from_environment()   # before any child process: runc must not see NOTIFY_SOCKET
    tightened = statefiles.prepare_state_dirs(config.root, options.run_dir)
    if tightened:
        log.info("tightened the modes of %d paths of an older installation (owner-only now): %s%s",
                 len(tightened), ", ".join(tightened[:5]), ", …" if len(tightened) > 5 else "")
    lock = lock_root(config.root)
    stop = stop or threading.Event()
    store = Store(config.root)
    runtime = make_runtime(options, utcnow)
    agent = Agent(store=store, runtime=runtime, config=config)
    runtime.set_exit_hint(agent.hint_runtime)
    watcher = ManifestWatcher(config.manifests, agent.hint_manifests)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping (pods keep running)", signal.Signals(signum).name)
        stop.set()
        agent.wake.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    log.info("kubelite v%s serving %s (state %s, runtime %s, node %s)", __version__, config.manifests,
             config.root, options.runtime, config.node_name)
    watcher.start()
    if options.sync is not None:
        start_sync(options.sync, config, agent, stop)
    health = LoopHealth(config.relist_period_s)
    api = start_api(options, health, runtime) if options.api is not None else None
    if api is None:
        from kubelite.apiserver import auth

        (auth.api_dir(config.root) / auth.SERVER_FILE).unlink(missing_ok=True)
    announced = False   # READY=1 sent to systemd: once, after the first pass ran (failed or not)

    def announce(status: str) -> None:
        nonlocal announced
        if not announced:
            announced = True
            notifier.ready(status)
        else:
            notifier.status(status)

    try:
        last_error, last_logged = "", 0.0
        while not stop.is_set():
            try:
                wake = agent.run_once(wait=False)   # pod workers wake the loop when their syncs end
            except KubeliteError as exc:  # a known failure (a full disk): one line, repeated once a minute
                health.failed(str(exc))
                if str(exc) != last_error or time.monotonic() - last_logged > ERROR_LOG_EVERY_S:
                    log.error("reconcile pass failed: %s; retrying", exc)
                    announce(f"reconcile pass failed: {exc}; retrying")
                    last_error, last_logged = str(exc), time.monotonic()
                stop.wait(ERROR_PAUSE_S)
                continue
            except Exception as exc:  # noqa: BLE001 — the loop must outlive a failing pass; the log says why
                health.failed(f"{type(exc).__name__}: {exc}")
                log.exception("reconcile pass failed; retrying in %.0fs", ERROR_PAUSE_S)
                announce(f"reconcile pass failed: {type(exc).__name__}: {exc}; retrying")
                stop.wait(ERROR_PAUSE_S)
                continue
            health.passed()
            if not announced or last_error:
                announce(f"serving {len(agent.pods)} pods from {config.manifests}")
            if api is not None:
                api.notify()   # watches see the pass's changes now
            if last_error:
                log.info("reconcile passes succeed again")
                last_error = ""
            timeout = config.relist_period_s
            if wake is not None:
                timeout = min(timeout, max(0.0, (wake - utcnow()).total_seconds()))
            wait_for_work(agent, timeout, stop)
    finally:
        notifier.stopping("stopping; pods keep running")
        if api is not None:
            api.close()
        watcher.stop()
        try:
            agent.close()   # the syncs under way end, and what they changed is written
        except Exception as exc:  # noqa: BLE001 — a failing store: the next start relists the runtime
            log.error("writing the last changes: %s", exc)
        agent.probing.prober.close()
        close = getattr(runtime, "close", None)
        if close is not None:
            close()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if options.runtime == "fake":
            log.info("stopped; the fake runtime's simulated containers end with this process")
        else:
            log.info("stopped; pods keep running")
        lock.close()
    return 0
