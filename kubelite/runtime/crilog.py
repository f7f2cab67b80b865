"""The CRI container log format that conmon writes with `-l k8s-file:PATH`, read and written.

One line per record: `<RFC3339Nano time> <stream> <tag> <text>`, e.g.
`2026-11-28T05:42:57.380651270+00:00 stdout F out-line`; tag `P` marks a fragment of a longer
line (conmon splits at its buffer size), `F` the end of one. Owns parsing, formatting, joining
fragments into logical lines, and what `kubectl logs [--timestamps] [--tail] [--since]` prints.

Pure: no files, no clock (`since` takes `now`). Times keep their nanoseconds: they are handled as
text and integer nanoseconds, never through `datetime` alone (microseconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

STREAMS = ("stdout", "stderr")
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
                   r"(Z|[+-][0-9]{2}:[0-9]{2})\Z")


@dataclass(frozen=True)
class LogLine:
    """One record, or one logical line joined from fragments (then `time` is the first's)."""

    time: str       # as written
    stream: str     # stdout | stderr
    partial: bool   # a fragment (or, from `read_lines`, an unterminated last line)
    text: str


def _utc_parts(time: str) -> tuple[datetime, str] | None:
    """The time as a UTC datetime to the second, and its fraction as 9 digits; None if malformed."""
    match = _TIME.match(time)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    zone = match.group(8)
    offset = timedelta(0) if zone == "Z" else (1 if zone[0] == "+" else -1) * timedelta(
        hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc), (match.group(7) or "").ljust(9, "0")


def time_ns(time: str) -> int | None:
    """Nanoseconds since the epoch of an RFC3339(Nano) time; None if malformed."""
    parts = _utc_parts(time)
    if parts is None:
        return None
    moment, fraction = parts
    return int(moment.timestamp()) * 1_000_000_000 + int(fraction)


def utc_time(time: str) -> str:
    """The time in UTC with nine fraction digits, as `kubectl logs --timestamps` shows it."""
    parts = _utc_parts(time)
    if parts is None:
        raise ValueError(f"not an RFC3339 time: {time!r}")
    moment, fraction = parts
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction}Z"


def parse_line(raw: str) -> LogLine | None:
    """One record (with or without its trailing newline); None if malformed.

    Follows the kubelet's `parseCRILog`: time, stream and tag separated by single spaces, the rest
    is the text (possibly empty); only the first `:`-separated tag counts (forward compatible).
    """
    line = raw[:-1] if raw.endswith("\n") else raw
    fields = line.split(" ", 3)
    if len(fields) < 3 or fields[1] not in STREAMS or _utc_parts(fields[0]) is None:
        return None
    tag = fields[2].split(":")[0]
    if tag not in ("P", "F"):
        return None
    return LogLine(time=fields[0], stream=fields[1], partial=tag == "P", text=fields[3] if len(fields) > 3 else "")


def format_time(moment: datetime) -> str:
    """An aware datetime as conmon writes it: nine fraction digits and a `+hh:mm` offset."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a time zone")
    offset = moment.strftime("%z")
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}000{offset[:3]}:{offset[3:]}"


def format_line(time: str | datetime, stream: str, text: str, partial: bool = False) -> str:
    """One record, newline-terminated, as conmon writes it."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    if "\n" in text:
        raise ValueError("a record's text cannot contain a newline")
    stamp = format_time(time) if isinstance(time, datetime) else time
    return f"{stamp} {stream} {'P' if partial else 'F'} {text}\n"


def read_lines(text: str) -> list[LogLine]:
    """The logical lines of a log file's text: fragments (P … P F) of one stream joined.

    A joined line keeps its first fragment's time and appears where its final fragment is.
    Malformed records are skipped. Fragments never completed (a container stopped mid-line, or
    still writing) come last, one line per stream, with `partial=True`.
    """
    lines: list[LogLine] = []
    pending: dict[str, LogLine] = {}
    for raw in text.split("\n"):
        record = parse_line(raw)
        if record is None:
            continue
        first = pending.pop(record.stream, None)
        if first is not None:
            record = replace(record, time=first.time, text=first.text + record.text)
        if record.partial:
            pending[record.stream] = record
        else:
            lines.append(record)
    return lines + list(pending.values())


def tail(lines: list[LogLine], n: int | None) -> list[LogLine]:
    """The last `n` lines; all for None or a negative n (kubectl's `--tail=-1`), none for 0."""
    if n is None or n < 0:
        return list(lines)
    return lines[-n:] if n else []


def since(lines: list[LogLine], seconds: float, now: datetime) -> list[LogLine]:
    """The lines written at or after `now - seconds` (`kubectl logs --since`). `now` must be aware."""
    if now.tzinfo is None:
        raise ValueError("naive datetime: give a time zone")
    cutoff = now - timedelta(seconds=seconds)
    cutoff_ns = int(cutoff.replace(microsecond=0).timestamp()) * 1_000_000_000 + cutoff.microsecond * 1000
    return [line for line in lines if (time_ns(line.time) or 0) >= cutoff_ns]


def render(lines: list[LogLine], *, timestamps: bool) -> str:
    """What `kubectl logs` prints: each line's text and a newline, optionally after its UTC time.

    An unterminated last line (`partial`) gets no newline, as the kubelet streams it.
    """
    out = []
    for line in lines:
        prefix = utc_time(line.time) + " " if timestamps else ""
        end = "" if line.partial else "\n"
        out.append(prefix + line.text + end)
    return "".join(out)
