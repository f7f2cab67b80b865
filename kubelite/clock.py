"""The node's wall clock: the one place that reads the time of day.

Owns: `utcnow()`, an aware UTC datetime. Everything that keeps time takes a clock (a callable
like this one) or `now` as an argument, so tests can pass their own; `kubelite/core` never reads
it (its decisions take `now`).
"""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)
