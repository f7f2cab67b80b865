"""The lines kubelite logs on stderr (which the journal keeps: `journalctl -u kubelite`).

Owns: the two formats of `serve --log-format`: `text` (a UTC timestamp, the level, the message) and
`json` (one object per line: `ts`, `level`, `logger`, `msg`, and the fields a log call carries in
`extra=`: `pod` as namespace/name, `container`, `reason`; `exc` with a traceback). A text line
shows only the message, which names the pod and container itself, so both formats say the same.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

FORMATS = ("text", "json")
#: The structured fields a log call may carry, in the order a JSON line lists them.
FIELDS = ("pod", "container", "reason")


def timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-01-02T03:04:05.678Z."""
    return datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TextFormatter(logging.Formatter):
    """`2026-01-02T03:04:05.678Z INFO message`, as kubelite has always logged."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `{"ts", "level", "logger", "msg", "pod"?, "container"?, "reason"?,
    "exc"?}`; the level in lower case (`info`, `warning`, `error`, `debug`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": timestamp(record.created), "level": record.levelname.lower(),
                                "logger": record.name, "msg": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def formatter(name: str) -> logging.Formatter:
    """The formatter of `--log-format NAME`; ValueError for another name."""
    if name == "text":
        return TextFormatter()
    if name == "json":
        return JsonFormatter()
    raise ValueError(f"unknown log format {name!r} (text or json)")


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to `sys.stderr` as it is at each record, not as it was when made (as
    logging's own last resort does): a process that replaces stderr later (a test's capture, a
    daemonizing wrapper) never has its lines written to a closed stream."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:   # StreamHandler.setStream; stderr stays the one followed
        pass
