"""`kubectl get events`: the cells of one event and the table, as kubectl's printEvent.

Owns: LAST SEEN (a series wins over lastTimestamp, then firstTimestamp or eventTime), OBJECT
(`kind/name`), `event_cells` (also the API server's Table rows) and `format_event_table`.
Pure; standard library only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from kubelite.kubectl.common import _dict, _present, _str, _table, age


def _last_seen(event: Mapping[str, Any], now: datetime) -> str:
    """printEvent's LAST SEEN: lastTimestamp, else firstTimestamp/eventTime; a series wins."""
    series = event.get("series")
    if _present(series):
        return age(series.get("lastObservedTime"), now)
    if event.get("lastTimestamp"):
        return age(event.get("lastTimestamp"), now)
    return age(event.get("firstTimestamp") or event.get("eventTime"), now)


def event_cells(event: Mapping[str, Any], now: datetime) -> list[str]:
    """printEvent's LAST SEEN, TYPE, REASON, OBJECT and MESSAGE cells of one event."""
    involved = _dict(event.get("involvedObject"))
    kind, name = _str(involved.get("kind")).lower(), _str(involved.get("name"))
    return [_last_seen(event, now), _str(event.get("type")), _str(event.get("reason")),
            f"{kind}/{name}" if name else kind, _str(event.get("message"))]


def format_event_table(events: list[dict], now: datetime, *, all_namespaces: bool = False) -> str:
    """`kubectl get events` output in the order given (callers sort by lastTimestamp)."""
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for event in events:
        event = _dict(event)
        cells = event_cells(event, now)
        if all_namespaces:
            cells.insert(0, _str(_dict(event.get("metadata")).get("namespace")))
        rows.append(cells)
    return _table(headers, rows)
