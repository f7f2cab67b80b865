"""The warm sandbox pool's own rules (`kubelite.runtime.oci.warm`), with make and destroy as plain
functions: which configurations are eligible, a claim takes only a sandbox under the same seccomp
filter and never waits, stale sandboxes are replaced, failures back off and are logged once per
kind, a claim's deferred step runs at once on its own thread, and `stop()` hands back what no pod
claimed. The real sandboxes are tests/test_warm_real.py's.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest

from kubelite.core.types import SecurityProfile
from kubelite.runtime.oci import warm
from kubelite.runtime.oci.records import SandboxRecord
from kubelite.runtime.protocol import PortMapping, SandboxConfig

RUNTIME_DEFAULT = SecurityProfile("RuntimeDefault")
FILTER = {"defaultAction": "SCMP_ACT_ERRNO"}


def config(**fields) -> SandboxConfig:
    return SandboxConfig(uid="u", name="p", namespace="default", attempt=0, sandbox_hash="h", hostname="p", **fields)


def test_only_pods_whose_infra_spec_a_claim_can_complete_are_eligible():
    assert warm.eligible(config())
    assert warm.eligible(config(share_process_namespace=True, seccomp=RUNTIME_DEFAULT))
    assert not warm.eligible(config(host_network=True))
    assert not warm.eligible(config(port_mappings=(PortMapping(8080, 80),)))
    assert not warm.eligible(config(sysctls=(("net.ipv4.ip_unprivileged_port_start", "0"),)))


class Fake:
    """make/destroy for the pool: records, no processes; `fail` makes the next makes raise."""

    def __init__(self) -> None:
        self.ids = itertools.count()
        self.made: list[str] = []
        self.destroyed: list[str] = []
        self.fail = 0
        self.lock = threading.Lock()

    def make(self, seccomp: SecurityProfile | None) -> warm.WarmSandbox:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise OSError(28, f"No space left on device: sandbox {next(self.ids):032x}")
            sid = f"w{next(self.ids)}"
            self.made.append(sid)
        record = SandboxRecord(sid, "", "", "", 0, "", "", False, False, f"/i/warm{sid}", warm=True)
        return warm.WarmSandbox(record, seccomp, FILTER if seccomp == RUNTIME_DEFAULT else None)

    def destroy(self, record: SandboxRecord) -> None:
        with self.lock:
            self.destroyed.append(record.id)


@pytest.fixture
def fake(monkeypatch) -> Fake:
    monkeypatch.setattr(warm, "REFILL_QUIET_S", 0.05)
    monkeypatch.setattr(warm, "BACKOFF_INITIAL_S", 0.1)
    return Fake()


def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_pool_fills_a_claim_takes_one_and_it_refills(fake: Fake):
    pool = warm.WarmPool(2, make=fake.make, destroy=fake.destroy)
    pool.start()
    try:
        assert pool.wait_full(5)
        first = {r.id for r in pool.ready()}
        taken = pool.take(None, None)
        assert taken is not None and taken.record.id in first
        until(lambda: len(pool.ready()) == 2)
        assert taken.record.id not in {r.id for r in pool.ready()}
        assert len(fake.made) == 3 and fake.destroyed == []
    finally:
        left = pool.stop()
    assert sorted(r.id for r in left) == sorted(set(fake.made) - {taken.record.id})


def test_a_claim_never_waits_and_takes_only_the_same_seccomp_filter(fake: Fake):
    pool = warm.WarmPool(1, make=fake.make, destroy=fake.destroy)
    assert pool.take(None, None) is None   # nothing made yet (no thread): the normal path, at once
    pool.start()
    try:
        assert pool.wait_full(5)
        unconfined = pool.ready()[0].id
        # Unconfined resolves to no filter, as None does: the same infra spec
        assert pool.take(SecurityProfile("Unconfined"), None).record.id == unconfined
        until(lambda: len(pool.ready()) == 1)
        assert pool.take(RUNTIME_DEFAULT, FILTER) is None    # a filter the ready one lacks
        # the pool now makes sandboxes under the filter pods ask for, and replaces the stale one
        until(lambda: fake.destroyed != [] and pool.ready() != [])
        assert len(fake.destroyed) == 1
        taken = pool.take(RUNTIME_DEFAULT, FILTER)
        assert taken is not None and taken.seccomp == RUNTIME_DEFAULT
    finally:
        pool.stop()


def test_failures_back_off_and_are_logged_once_per_kind(fake: Fake, caplog):
    fake.fail = 3
    pool = warm.WarmPool(1, make=fake.make, destroy=fake.destroy)
    with caplog.at_level(logging.DEBUG, logger="kubelite.runtime"):
        began = time.monotonic()
        pool.start()
        try:
            assert pool.wait_full(10)
        finally:
            pool.stop()
    # backoff 0.1 s, 0.2 s, 0.4 s between the three failures and the success
    assert time.monotonic() - began >= 0.7
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], warnings
    assert any(r.getMessage() == "warm sandboxes: 1 ready" for r in caplog.records)


def test_a_deferred_step_runs_at_once_beside_the_claim_and_stop_waits_for_it(fake: Fake):
    pool = warm.WarmPool(1, make=fake.make, destroy=fake.destroy)
    pool.start()
    ran: list[str] = []

    def slow_step() -> None:
        time.sleep(0.3)
        ran.append(threading.current_thread().name)
    try:
        assert pool.wait_full(5)
        taken = pool.take(None, None)
        began = time.monotonic()
        pool.defer(slow_step)
        assert time.monotonic() - began < 0.1, "the claim does not wait for it"
        pool.discard(taken.record)   # a claim that failed: torn down by the pool's thread
        until(lambda: taken.record.id in fake.destroyed)
    finally:
        pool.stop()
    assert ran == ["warm-claim"], "stop() waited for the step"


def test_a_pool_of_zero_is_refused():
    with pytest.raises(ValueError):
        warm.WarmPool(0, make=lambda s: None, destroy=lambda r: None)
