"""The real prober: one thread, one asyncio event loop, every probe of every pod.

Owns: the prober thread (started with the first probe, so a node without probes has none), one
task per probe target that runs it at `first_at` and then every `period_s` (a run that overruns
its period skips the missed ticks, as Go's ticker does; runs of one probe never overlap), the
pods' network namespaces (a file descriptor held per pod while it has probes, so a probe never
reaches another namespace through a reused PID), and a small bounded pool of threads for exec
probes (the runtime's `exec_sync`, bounded by timeoutSeconds and killed past it).

Each run is put on `outcomes` and the agent is hinted; nothing else is written from here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Sequence

from kubelite.clock import utcnow
from kubelite.core.types import ProbeOutcome, ProbeResult, ProbeTarget
from kubelite.errors import RuntimeError_
from kubelite.prober import checks
from kubelite.runtime.netns import Namespaces
from kubelite.runtime.protocol import Runtime

log = logging.getLogger("kubelite.prober")

#: Threads that run exec probes (each waits for one `runc exec`): more exec probes queue.
EXEC_WORKERS = 4
MAX_OUTPUT = 10 * 1024
#: Successful runs reach the agent in batches at most this far apart (failures at once).
BATCH_S = 0.1


@dataclass
class _Pod:
    netns: str | None
    netns_fd: int | None = None
    error: str | None = None
    tasks: dict[tuple[str, str], tuple[ProbeTarget, asyncio.Task[None]]] = field(default_factory=dict)


class NetworkProber:
    """Runs http/tcp probes from its event loop and exec probes on a bounded pool."""

    def __init__(self, runtime: Runtime, *, hint: Callable[[], None], user_agent: str,
                 exec_workers: int = EXEC_WORKERS) -> None:
        self.runtime, self.hint, self.user_agent = runtime, hint, user_agent
        self.outcomes: queue.SimpleQueue[ProbeOutcome] = queue.SimpleQueue()
        self.exec_workers = exec_workers
        self._hinted = False
        self._hint_due = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pods: dict[str, _Pod] = {}          # touched only on the loop's thread
        self._ns: Namespaces | None = None

    # ------------------------------------------------------------------ the agent's side

    def set_targets(self, uid: str, netns: str | None, targets: Sequence[ProbeTarget]) -> None:
        loop = self._start()
        loop.call_soon_threadsafe(self._set, uid, netns, tuple(targets))

    def forget(self, uid: str) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._set, uid, None, ())

    def _report(self, outcome: ProbeOutcome) -> None:
        """Queue a run and hint the agent: at once for a failure or a warning (it writes an event and
        may act), within BATCH_S for a plain success, so that healthy probes wake it in batches.
        Only the first run since the agent last drained hints; the rest ride along."""
        self.outcomes.put(outcome)
        if self._hinted:
            return
        if outcome.result is not ProbeResult.SUCCESS or outcome.warning:
            self._hinted = True
            self.hint()
        elif not self._hint_due:
            self._hint_due = True
            asyncio.get_running_loop().call_later(BATCH_S, self._late_hint)

    def _late_hint(self) -> None:
        self._hint_due = False
        if not self._hinted:
            self._hinted = True
            self.hint()

    def drain(self, now: datetime) -> list[ProbeOutcome]:
        self._hinted = False  # before draining: a run queued after this line hints again
        found = []
        while True:
            try:
                found.append(self.outcomes.get_nowait())
            except queue.Empty:
                return found

    def next_due(self) -> datetime | None:
        return None

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ the loop's thread

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._pool = ThreadPoolExecutor(max_workers=self.exec_workers, thread_name_prefix="kubelite-exec-probe")
                self._thread = threading.Thread(target=self._run, args=(loop, ready), name="kubelite-prober",
                                                daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._ns = Namespaces()
        ready.set()
        try:
            loop.run_forever()
        finally:
            for uid in list(self._pods):
                self._set(uid, None, ())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            self._ns.close()

    def _set(self, uid: str, netns: str | None, targets: tuple[ProbeTarget, ...]) -> None:
        pod = self._pods.get(uid)
        if pod is not None and pod.netns != netns:
            self._drop(uid)
            pod = None
        if not targets:
            if pod is not None:
                self._drop(uid)
            return
        if pod is None:
            pod = _Pod(netns)
            if netns is not None:
                try:
                    pod.netns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    pod.error = f"the pod's network namespace is gone: {exc.strerror}"
            self._pods[uid] = pod
        wanted = {(t.container_id, t.kind): t for t in targets}
        for key, (old, task) in list(pod.tasks.items()):
            if wanted.get(key) != old:
                task.cancel()
                del pod.tasks[key]
        for key, t in wanted.items():
            if key not in pod.tasks:
                pod.tasks[key] = (t, asyncio.get_running_loop().create_task(self._worker(pod, t)))

    def _drop(self, uid: str) -> None:
        pod = self._pods.pop(uid)
        for _, task in pod.tasks.values():
            task.cancel()
        if pod.netns_fd is not None:
            os.close(pod.netns_fd)

    async def _worker(self, pod: _Pod, target: ProbeTarget) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, (target.first_at - utcnow()).total_seconds())
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._report(await self._probe(pod, target))
            due += target.period_s
            if due < loop.time():  # overran: skip the missed ticks
                due += ((loop.time() - due) // target.period_s + 1) * target.period_s

    async def _probe(self, pod: _Pod, target: ProbeTarget) -> ProbeOutcome:
        try:
            if pod.error is not None:
                return ProbeOutcome(target.container_id, target.kind, ProbeResult.UNKNOWN, pod.error)
            assert self._ns is not None
            if target.action == "exec":
                result, output, warning = await self._exec(target)
            elif target.action == "http":
                result, output, warning = await checks.http_check(self._ns, pod.netns_fd, target,
                                                                  user_agent=self.user_agent)
            else:
                result, output, warning = await checks.tcp_check(self._ns, pod.netns_fd, target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — a prober bug must not stop the other probes
            log.exception("probe %s of container %s failed to run", target.kind, target.container_id[:12])
            return ProbeOutcome(target.container_id, target.kind, ProbeResult.UNKNOWN, str(exc))
        return ProbeOutcome(target.container_id, target.kind, result, output, warning)

    async def _exec(self, target: ProbeTarget) -> checks.Verdict:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool, self.runtime.exec_sync, target.container_id,
                                                list(target.command), float(target.timeout_s))
        except RuntimeError_ as exc:
            return ProbeResult.UNKNOWN, str(exc), False
        if result.timed_out:
            return ProbeResult.FAILURE, f'command "{" ".join(target.command)}" timed out', False
        output = (result.stdout + result.stderr)[:MAX_OUTPUT].decode("utf-8", errors="replace")
        return (ProbeResult.SUCCESS if result.exit_code == 0 else ProbeResult.FAILURE), output, False
