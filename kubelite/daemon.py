"""The daemon: wires the watcher, the store, the agent loop and the runtime — `kubelite serve`.

The composition root: the one module that knows every concrete piece (which runtime, which network,
the git sync, the API server) and puts them together; nothing below imports it, and it is the only
place that chooses between the runc runtime and the simulated one. Only the CLI's `serve` calls it.

Owns: the process lifecycle — one instance per state root (a lock file), logging (text or JSON
lines, `service.logformat`), signal handling, what systemd hears (`service.notify`: READY=1 once
the first pass has run, STOPPING=1 at the end), and the loop that runs `Agent.run_once()` whenever a hint arrives or the next pass is
due. Signals reach the loop through `service.signals` (a relay thread; the handlers take no lock),
held back from the moment the lock is taken until the relay is in place; on any failure, what was
started is closed, each step on its own. SIGTERM and SIGINT stop kubelite cleanly and leave the pods running, as the kubelet does.
SIGHUP asks the CLI's `reload` for new options and applies the settings that change live
(`apply_live`: log level, relist period, CrashLoopBackOff, image GC, DNS and seccomp defaults for
new pods, registry access, the git sync's ref, path and interval).
SIGUSR1 and SIGUSR2 are `kubelite reset`'s request: every pod terminates (with its grace period, or
at once with SIGUSR2), then the daemon stops; `reset_node` is the same drain without a daemon,
followed by the sweep of what is left on the host (`runtime.oci.cleanup`).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from kubelite.runtime.cni import DEFAULT_BRIDGE, DEFAULT_POD_CIDR, PLUGIN_DIRS
from kubelite.runtime.oci import ownership
from kubelite.runtime.protocol import Runtime
from kubelite.service import logformat, signals
from kubelite.service.notify import Notifier
from kubelite.service.signals import SignalRelay
from kubelite.sources.watch import ManifestWatcher
from kubelite.store.store import Store

log = logging.getLogger("kubelite")
#: Pause after an unexpected error in a pass, so a persistent bug cannot spin the CPU.
ERROR_PAUSE_S = 1.0
#: A failure that repeats is logged again at most this often.
ERROR_LOG_EVERY_S = 60.0
#: At the end, how long the git sync's pass under way (a fetch) is waited for.
SYNC_JOIN_TIMEOUT_S = 10.0


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
    cni_bin_dirs: tuple[str, ...] = PLUGIN_DIRS       # --cni-bin-dir: searched in order for the CNI plugins
    registry: Any = None   # runtime.registry.RegistryConfig: credentials, TLS trust, insecure registries
    api: ApiOptions | None = None
    warm_sandboxes: int = 2            # ready pod sandboxes kept by the runc runtime (0: none)
    debug: bool = False                # debug logs
    #: SIGHUP: new options read from the configuration file (a KubeliteError keeps the running ones);
    #: None: nothing to reload (no --config)
    reload: Callable[[], "ServeOptions"] | None = dataclasses.field(default=None, compare=False)


def configure_logging(debug: bool, log_format: str = "text") -> None:
    """kubelite's log lines go to stderr (the journal under systemd), as text or JSON lines. The
    warnings of libraries that log without a handler of their own (asyncio, aiohttp) take the same
    format: logging's last resort, not the root logger, so a host that configured logging keeps it."""
    try:
        formatter = logformat.formatter(log_format)
    except ValueError as exc:
        raise UsageError(f"--log-format: {exc}") from None
    handler = logformat.StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger("kubelite")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    others = logformat.StderrHandler(logging.WARNING)
    others.setFormatter(formatter)
    logging.lastResort = others


def check_dirs(root: Path, run_dir: Path) -> None:
    """Refuse (UsageError) a state root or run directory other programs share, or one for both."""
    ownership.check_not_shared(root, "state root")
    ownership.check_not_shared(run_dir, "run directory")
    if os.path.abspath(root) == os.path.abspath(run_dir):
        raise UsageError(f"the state root and the run directory are both {root}: refused (give each its own)")


def check_reset_dirs(root: Path, run_dir: Path) -> None:
    """`kubelite reset`, before anything is asked or stopped: `check_dirs`, and a run directory that
    belongs to another instance refused."""
    check_dirs(root, run_dir)
    found = ownership.owner(root, run_dir) if run_dir.is_dir() else None
    if found is not None and not found.ours:
        raise ownership.refusal(run_dir, found)


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
                          pod_cidr=options.pod_cidr, plugin_dirs=options.cni_bin_dirs)
    network.check_subnet()
    network.claim()
    log.info("pod network: bridge %s, subnet %s (%s)", network.bridge, network.subnet, network.conflist_path)
    return network


class SyncRunner:
    """The git sync beside the agent: it swaps the manifests symlink; the watcher and the agent do the
    rest. Its results go to the agent, which writes them (one writer). `update()` (a SIGHUP) hands it
    a new ref, path, interval or allow-empty: the next pass, at once, uses them."""

    def __init__(self, options: SyncOptions, config: AgentConfig, agent: Agent, stop: threading.Event) -> None:
        from kubelite.sources.gitsync import hold_sync_lock

        self.options, self.config, self.agent, self.stop = options, config, agent, stop
        self.lock = hold_sync_lock(config.root)  # before the thread: a second sync is refused at once
        self.syncer = self._syncer(options)
        self.wakeup = threading.Event()
        self._pending: SyncOptions | None = None
        self._guard = threading.Lock()

    def _syncer(self, options: SyncOptions) -> Any:
        from kubelite.sources.gitsync import GitSync

        return GitSync(options.repo, ref=options.ref, path=options.path, root=self.config.root,
                       link=self.config.manifests, allow_empty=options.allow_empty, interval_s=options.interval_s,
                       node=self.config.node_name)   # `--sync-path nodes/{node}`

    def start(self) -> "SyncRunner":
        self.thread = threading.Thread(target=self._loop, name="kubelite-git-sync", daemon=True)
        self.thread.start()
        return self

    def update(self, options: SyncOptions) -> None:
        with self._guard:
            self._pending = options
        self.wakeup.set()

    def close(self) -> None:
        """The thread ends once its pass under way has ended, waited for a while (`stop`: serve stops)."""
        self.stop.set()
        self.wakeup.set()
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.join(SYNC_JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("sync: the pass under way did not end within %.0fs; it is cut short",
                            SYNC_JOIN_TIMEOUT_S)

    def _take_update(self) -> None:
        with self._guard:
            options, self._pending = self._pending, None
        if options is None or options == self.options:
            return
        if (options.ref, options.path) != (self.options.ref, self.options.path):
            self.syncer = self._syncer(options)   # a new ref or path: a fresh engine, its status too
        else:
            self.syncer.interval_s, self.syncer.allow_empty = options.interval_s, options.allow_empty
        self.options = options

    def _loop(self) -> None:
        """Passes until `stop`. Nothing ends it early: new settings that fail (a `sync.path` kustomize
        refuses) leave the running engine in place, and a pass that fails unexpectedly is logged and
        tried again after the interval."""
        with self.lock:  # held while the sync runs
            while not self.stop.is_set():
                try:
                    self._take_update()
                except Exception as exc:  # noqa: BLE001 — the running engine stays; the log says why
                    log.error("sync: the new settings were not applied, the running ones stay: %s: %s",
                              type(exc).__name__, exc)
                try:
                    delay = self._pass()
                except Exception:  # noqa: BLE001 — the thread must outlive a failing pass
                    delay = max(self.options.interval_s, ERROR_PAUSE_S)
                    log.exception("sync: the pass failed; retrying in %.0fs", delay)
                self.wakeup.wait(delay)
                self.wakeup.clear()

    def _pass(self) -> float:
        result = self.syncer.sync_once()
        if result.outcome != "unchanged":
            log.log(logging.WARNING if result.outcome in ("failed", "rejected", "drift") else logging.INFO,
                    "sync: %s", result.message)
        self.agent.sync_results.put(result)
        if result.outcome in ("applied", "drift"):
            self.agent.hint_manifests()      # the tree changed: rescan it now
        else:
            self.agent.hint_sync_status()    # written between passes: an idle interval makes no pass
        return float(result.delay_s)


def start_sync(options: SyncOptions, config: AgentConfig, agent: Agent, stop: threading.Event) -> SyncRunner:
    """Run the git sync beside the agent (`SyncRunner`)."""
    return SyncRunner(options, config, agent, stop).start()


#: The agent's settings a SIGHUP changes (the others need a restart: `cli.serveconfig.SETTINGS`).
LIVE_AGENT_FIELDS = ("relist_period_s", "backoff", "image_gc_high_percent", "image_gc_low_percent", "resolv_conf",
                     "seccomp_default")


def apply_live(running: ServeOptions, new: ServeOptions, *, agent: Agent, runtime: Runtime,
               sync: SyncRunner | None, health: "LoopHealth") -> ServeOptions:
    """Apply what changes live from `new` (between passes, on the loop's thread); the options now running."""
    logging.getLogger("kubelite").setLevel(logging.DEBUG if new.debug else logging.INFO)
    relisted = agent.config.relist_period_s
    agent.config = dataclasses.replace(agent.config, **{f: getattr(new.agent, f) for f in LIVE_AGENT_FIELDS})
    if agent.config.relist_period_s != relisted:
        agent.hint_manifests()   # a scan now, and the next one a new period after it
    health.limit_s = LoopHealth.limit_for(agent.config.relist_period_s)
    if new.registry is not None and new.registry != running.registry and running.runtime == "runc":
        runtime.registry = new.registry  # type: ignore[attr-defined]  # the OCI runtime's next pull reads it
    if sync is not None and new.sync is not None and new.sync.repo == sync.options.repo:
        sync.update(new.sync)
    return dataclasses.replace(running, agent=agent.config, registry=new.registry, debug=new.debug,
                               sync=new.sync if sync is not None and new.sync is not None else running.sync)


def wait_for_work(agent: Agent, timeout: float, stop: threading.Event,
                  reload_asked: Callable[[], bool] = lambda: False) -> None:
    """Sleep until the next pass is due or something asks for one (or a reload, SIGHUP). Probe runs
    that change no result are applied as they arrive, without a pass (see `agent.probing`), and so is
    the status of a git sync pass that changed no file."""
    deadline = time.monotonic() + timeout

    def asked() -> bool:   # read before each wait too: a signal during the pass may find its wake taken
        return stop.is_set() or reload_asked()

    while timeout > 0 and not asked() and agent.wake.wait(timeout) and not asked():
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
        self.limit_s = self.limit_for(relist_period_s)
        self.last_success: float | None = None
        self.last_error = ""

    @staticmethod
    def limit_for(relist_period_s: float) -> float:
        return 3 * relist_period_s + 10

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


def reload(running: ServeOptions, *, agent: Agent, runtime: Runtime, sync: SyncRunner | None,
           health: LoopHealth) -> ServeOptions:
    """SIGHUP: new options from `running.reload`, their live settings applied; on an error, one line
    and the running options stay."""
    if running.reload is None:
        log.warning("received SIGHUP: no configuration file to reload (serve runs without --config)")
        return running
    log.info("received SIGHUP; reloading the configuration")
    try:
        new = running.reload()
    except KubeliteError as exc:
        log.error("the configuration was not reloaded, the running one stays: %s", str(exc).replace("\n", "; "))
        return running
    except Exception:  # noqa: BLE001 — the loop must outlive a failing reload; the log says why
        log.exception("the configuration was not reloaded, the running one stays")
        return running
    return apply_live(running, new, agent=agent, runtime=runtime, sync=sync, health=health)


#: The signals serve handles: stop (TERM, INT), reload (HUP), `kubelite reset`'s drain (USR1, USR2).
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class Requests:
    """What the signals asked of the loop, written by the relay's thread (`service.signals`), read by
    the loop: a stop, reloads (SIGHUP), `kubelite reset`'s drain. The loop's agent is handed over
    once it exists; a request before that waits in `stop`, `hangups` and `drain`."""

    def __init__(self, stop: threading.Event, drain: "Drain") -> None:
        self.stop, self.drain = stop, drain
        self.hangups = 0
        self.agent: Agent | None = None

    def __call__(self, signum: int) -> None:
        # the request first, then the agent read: one handed over meanwhile finds the request
        # before it waits (`wait_for_work` asks before each wait)
        if signum == signal.SIGHUP:
            self.hangups += 1
            full = False
        elif signum in (RESET_SIGNAL, RESET_FORCE_SIGNAL):
            self.drain.request(force=signum == RESET_FORCE_SIGNAL)
            full = False
        elif signum in (signal.SIGTERM, signal.SIGINT):
            log.info("received %s; stopping (%s)", signal.Signals(signum).name,
                     "the reset's drain is cut short" if self.drain.started else "pods keep running")
            self.stop.set()
            full = True
        else:   # a signal whose handler was set elsewhere: not serve's
            return
        agent = self.agent
        if agent is not None:
            agent.wake.set() if full else agent.wake.set_between_passes()


def serve(options: ServeOptions, *, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set). Returns the process exit code."""
    config = options.agent
    notifier = Notifier.from_environment()   # before any child process: runc must not see NOTIFY_SOCKET
    check_dirs(config.root, options.run_dir)
    tightened = statefiles.prepare_state_dirs(config.root, options.run_dir)
    if tightened:
        log.info("tightened the modes of %d paths of an older installation (owner-only now): %s%s",
                 len(tightened), ", ".join(tightened[:5]), ", …" if len(tightened) > 5 else "")
    stop = stop or threading.Event()
    drain = Drain()
    requests = Requests(stop, drain)
    on_main = threading.current_thread() is threading.main_thread()
    with contextlib.ExitStack() as closing:
        # a signal from the lock on (`kubelite reset` reads the pid there) waits for the relay
        with signals.blocked(HANDLED_SIGNALS) if on_main else contextlib.nullcontext():
            relays: list[SignalRelay] = []
            closing.callback(_release, lock_root(config.root), relays)
            if on_main:
                relays.append(SignalRelay(HANDLED_SIGNALS, requests).install())
        ownership.claim(config.root, options.run_dir)   # before the runtime acts on anything in it
        serving = [False]   # said "serving": a start that fails before says only why (one line)
        closing.callback(lambda: serving[0] and log.info(_stopped_line(options, drain)))
        store = Store(config.root)
        closing.callback(_guarded, "closing the store", store.close)
        runtime = make_runtime(options, utcnow)
        closing.callback(_guarded, "closing the runtime", _close, runtime)
        agent = Agent(store=store, runtime=runtime, config=config)
        closing.callback(_guarded, "closing the prober", agent.probing.prober.close)
        closing.callback(_guarded, "writing the last changes", agent.close)  # the syncs under way end, written
        runtime.set_exit_hint(agent.hint_runtime)
        requests.agent = agent
        watcher = ManifestWatcher(config.manifests, agent.hint_manifests)
        log.info("kubelite v%s serving %s (state %s, runtime %s, node %s)", __version__, config.manifests,
                 config.root, options.runtime, config.node_name)
        serving[0] = True
        watcher.start()
        closing.callback(_guarded, "stopping the manifest watcher", watcher.stop)
        sync = start_sync(options.sync, config, agent, stop) if options.sync is not None else None
        if sync is not None:
            closing.callback(_guarded, "stopping the git sync", sync.close)
        health = LoopHealth(config.relist_period_s)
        api = start_api(options, health, runtime) if options.api is not None else None
        if api is None:
            from kubelite.apiserver import auth

            (auth.api_dir(config.root) / auth.SERVER_FILE).unlink(missing_ok=True)
        else:
            closing.callback(_guarded, "closing the API server", api.close)
        closing.callback(lambda: notifier.stopping(_stopping_status(drain)))   # first of all: systemd hears it
        _loop(options, agent=agent, runtime=runtime, sync=sync, api=api, health=health, notifier=notifier,
              stop=stop, drain=drain, requests=requests)
    return 0


def _loop(options: ServeOptions, *, agent: Agent, runtime: Runtime, sync: "SyncRunner | None", api: Any,
          health: "LoopHealth", notifier: Notifier, stop: threading.Event, drain: "Drain",
          requests: Requests) -> None:
    """`Agent.run_once()` whenever a hint arrives or the next pass is due, until a stop or a finished drain."""
    config = options.agent
    announced = False   # READY=1 sent to systemd: once, after the first pass ran (failed or not)

    def announce(status: str) -> None:
        nonlocal announced
        if not announced:
            announced = True
            notifier.ready(status)
        else:
            notifier.status(status)

    last_error, last_logged = "", 0.0
    running, reloaded = options, 0
    while not stop.is_set():
        if requests.hangups != reloaded:
            reloaded = requests.hangups
            running = reload(running, agent=agent, runtime=runtime, sync=sync, health=health)
        try:
            drain.step(agent, runtime)
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
            last_error = f"{type(exc).__name__}: {exc}"   # the next pass that succeeds says so
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
        if drain.done(agent):
            log.info("kubelite reset: every pod is stopped and removed; stopping")
            stop.set()   # the git sync too: no pass of it while the rest closes
            break
        timeout = agent.config.relist_period_s if not drain.started else 1.0
        if wake is not None:
            timeout = min(timeout, max(0.0, (wake - utcnow()).total_seconds()))
        wait_for_work(agent, timeout, stop,
                      lambda: requests.hangups != reloaded or (drain.requested and not drain.started))


def _guarded(what: str, step: Callable[..., Any], *args: Any) -> None:
    """One step of the shutdown: a failing one is logged, and the next ones still run."""
    try:
        step(*args)
    except Exception as exc:  # noqa: BLE001 — what is left to close matters more than this error
        log.error("%s: %s: %s", what, type(exc).__name__, exc)


def _release(lock: IO[str], relays: list[SignalRelay]) -> None:
    """The last step: the handlers from before serve, then the lock. Signals are held back meanwhile: one
    that arrives now (`kubelite reset` read the pid in the lock) was for a kubelite that stops already."""
    if not relays:
        lock.close()
        return
    with signals.blocked(HANDLED_SIGNALS):
        for relay in relays:
            _guarded("restoring the signal handlers", relay.restore)
        lock.close()
        for signum in signals.discard_pending(HANDLED_SIGNALS):
            log.info("received %s while stopping", signal.Signals(signum).name)


def _stopping_status(drain: "Drain") -> str:
    return "stopping; every pod was stopped (kubelite reset)" if drain.started else "stopping; pods keep running"


def _stopped_line(options: ServeOptions, drain: "Drain") -> str:
    if drain.started:
        return "stopped; every pod was stopped and removed (kubelite reset)"
    if options.runtime == "fake":
        return "stopped; the fake runtime's simulated containers end with this process"
    return "stopped; pods keep running"


# ------------------------------------------------------------------------------------- kubelite reset

#: `kubelite reset` asks a serving daemon to drain: every pod with its grace period, or at once.
RESET_SIGNAL, RESET_FORCE_SIGNAL = signal.SIGUSR1, signal.SIGUSR2


class Drain:
    """`kubelite reset`: every pod terminates as if its manifest were gone, none starts again; with force,
    every container is killed at once as well (the agent then sees them exited and removes the pods)."""

    def __init__(self) -> None:
        self.requested = False
        self.force = False
        self.started = False

    def request(self, *, force: bool) -> None:
        self.requested = True
        self.force = self.force or force   # a forced request while draining hurries the drain

    def step(self, agent: Agent, runtime: Runtime) -> None:
        """Before a pass: start draining when asked to, and kill what still runs with force."""
        if not self.requested:
            return
        if not self.started:
            log.info("kubelite reset: stopping every pod (%s), then kubelite",
                     "at once" if self.force else "each with its grace period")
            agent.drain()
            self.started = True
        if self.force:
            kill_containers(runtime)

    def done(self, agent: Agent) -> bool:
        return self.started and not agent.pods


def kill_containers(runtime: Runtime) -> None:
    """SIGKILL every container that runs (a forced reset)."""
    from kubelite.core.types import ContainerState
    from kubelite.errors import NotFoundError

    for container in runtime.list_containers():
        if container.state in (ContainerState.RUNNING, ContainerState.CREATED):
            try:
                runtime.signal_container(container.id, "KILL")
            except (NotFoundError, KubeliteError) as exc:
                log.debug("killing container %s: %s", container.id, exc)


@dataclass(frozen=True)
class ResetOptions:
    root: Path
    run_dir: Path
    force: bool = False
    purge: bool = False
    node_name: str = "localhost"


def reset_node(options: ResetOptions, progress: Callable[[str], None] = log.info) -> list[str]:
    """`kubelite reset` without a daemon (UsageError when one serves the state root): the daemon's drain
    in this process — the same agent, runtime and removal path, adopting what runs — then the sweep
    of what is left on the host, then with `purge` the state root and the run directory. Returns
    what the sweep and the purge removed, in words."""
    root, run_dir = options.root, options.run_dir
    check_reset_dirs(root, run_dir)
    if not root.exists() and not run_dir.exists():
        return []
    had_run_dir = run_dir.exists()
    ours = had_run_dir and ownership.owner(root, run_dir) is not None   # marked or proven by its records
    if not root.exists() and not ours:
        progress(f"{run_dir} holds nothing of the kubelite of state root {root} (which does not exist): "
                 "nothing to reset")
        return []
    if had_run_dir and not ours:
        log.warning("%s: not marked as the run directory of %s and no record in it proves it: only what the state "
                    "root names is swept", run_dir, root)
    lock = lock_root(root) if root.exists() else None
    try:
        if ours or not had_run_dir:
            runtime, runc = _reset_runtime(options)
        else:   # nothing of a run directory not proven ours is touched: the database is emptied, no more
            from kubelite.runtime.fake import FakeRuntime

            runtime, runc = FakeRuntime(utcnow), None
        if layout.db_path(root).exists():
            _drain_here(options, runtime, progress)
        else:
            _close(runtime)   # its start removed what a crash left (warm sandboxes, orphans)
        removed = []
        if os.geteuid() == 0:
            from kubelite.runtime.oci import cleanup

            removed += cleanup.sweep(root, run_dir, runc=runc, run_dir_ours=ours or not had_run_dir)
        if options.purge:
            removed += _purge(root, layout.ROOT_NAMES)
        if (options.purge and ours) or not had_run_dir:   # one the runtime's start made just now is not left behind
            gone = _purge(run_dir, layout.RUN_NAMES)
            removed += gone if had_run_dir else []
        return removed
    finally:
        if lock is not None:
            lock.close()


def _reset_runtime(options: ResetOptions) -> tuple[Runtime, str | None]:
    """The runtime to drain with, and runc's path for the sweep: as root the runc runtime (without a
    network: each pod's teardown uses what its record says); else, or where runc is not installed and
    never ran, the simulated one — its containers ended with the daemon that ran them."""
    from kubelite.runtime.fake import FakeRuntime
    from kubelite.runtime.oci import MissingDependency, OCIRuntime, find_binaries

    ran = layout.runc_root(options.run_dir).is_dir()
    if os.geteuid() != 0:
        if ran:
            raise UsageError(f"{options.run_dir} holds the runc runtime's containers: kubelite reset needs root")
        return FakeRuntime(utcnow), None
    try:
        binaries = find_binaries()
    except MissingDependency:
        if ran:
            raise
        return FakeRuntime(utcnow), None
    from kubelite.runtime.images import ImageStore

    return OCIRuntime(root=options.root, run_dir=options.run_dir, images=ImageStore(options.root), clock=utcnow,
                      binaries=binaries, network=None, warm_sandboxes=0), binaries["runc"]


def _close(runtime: Runtime) -> None:
    close = getattr(runtime, "close", None)
    if close is not None:
        close()


def _drain_here(options: ResetOptions, runtime: Runtime, progress: Callable[[str], None]) -> None:
    config = AgentConfig(manifests=Path(os.devnull), root=options.root,   # a draining agent reads no manifests
                         node_name=options.node_name, relist_period_s=1.0, image_pull_workers=0)
    store = Store(options.root)
    agent = Agent(store=store, runtime=runtime, config=config)
    runtime.set_exit_hint(agent.hint_runtime)
    drain = Drain()
    drain.request(force=options.force)
    shown = 0.0
    try:
        while True:
            drain.step(agent, runtime)
            wake = agent.run_once()
            if drain.done(agent):
                break
            if time.monotonic() - shown > 5:
                progress(f"stopping {len(agent.pods)} pod(s)…")
                shown = time.monotonic()
            timeout = 0.5 if wake is None else min(0.5, max(0.0, (wake - utcnow()).total_seconds()))
            agent.wake.wait(timeout)
    finally:
        agent.close()
        agent.probing.prober.close()
        _close(runtime)
        store.close()


def _purge(base: Path, names: frozenset[str]) -> list[str]:
    """The entries kubelite makes in `base` (the state root or the run directory, `names`), then `base`
    itself if that left it empty (a file of someone else's there stays, and so does the directory).
    Never through a mount: whatever is still mounted below is left, and said. What went, in words."""
    import shutil

    if not base.is_dir():
        return []
    gone = []
    for name in sorted(names):
        path = base / name
        if not (path.exists() or path.is_symlink()):
            continue
        if linux.mounts_below(path):
            log.warning("%s: something is still mounted below it; not removed", path)
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        gone.append(str(path))
    try:
        base.rmdir()
    except OSError:
        left = sorted(p.name for p in base.iterdir())
        log.warning("%s: kept, it holds what kubelite did not make: %s", base, ", ".join(left[:5]))
        return gone
    return [str(base)]
