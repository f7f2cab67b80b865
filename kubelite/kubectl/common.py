"""The mechanics every kubectl printer shares: ages, times, defensive accessors, tab alignment.

Owns: apimachinery's HumanDuration (`human_duration`, `age`), RFC 3339 parsing (`parse_time`),
accessors that read any JSON value without raising (`_dict`, `_list`, `_str`, `_int`,
`_present`), an object's labels as one cell (`label_text`), and Go text/tabwriter column
alignment with kubectl's table settings (`_table`).
Pure: the current time is always passed in as `now`. Standard library only (`datetime`, `typing`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

# ----------------------------------------------------------------------------- durations


def human_duration(seconds: float) -> str:
    """apimachinery `duration.HumanDuration`: a 2-3 significant figure age such as `5m3s`."""
    try:
        secs = int(seconds)  # Go's int(d.Seconds()) truncates toward zero
    except (OverflowError, ValueError):
        return "<invalid>"
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years, days = hours // 24 // 365, hours // 24 % 365
    if hours < 24 * 365 * 8:
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{years}y"


def parse_time(s: str | None) -> datetime | None:
    """An RFC 3339 timestamp (`Z` or offset, optional fraction) as an aware UTC datetime.

    Returns None for a missing or unparseable value (kubectl treats both as the zero time).
    """
    if isinstance(s, datetime):
        return _as_utc(s)
    if not isinstance(s, str) or not s.strip():
        return None
    try:
        parsed = datetime.fromisoformat(s.strip().upper())
    except ValueError:
        return None
    return _as_utc(parsed)


def age(ts: str | None, now: datetime) -> str:
    """kubectl's translateTimestampSince: `<unknown>` when missing, else the human age."""
    moment = parse_time(ts)
    if moment is None:
        return "<unknown>"
    return _since(moment, now)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _since(moment: datetime, now: datetime) -> str:
    return human_duration((_as_utc(now) - moment).total_seconds())


# ------------------------------------------------------------------- defensive accessors


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def label_text(obj: Any) -> str:
    """The LABELS cell of `--show-labels`: `key=value` pairs sorted by key, comma-separated, or `<none>`."""
    labels = _dict(_dict(_dict(obj).get("metadata")).get("labels"))
    return ",".join(f"{k}={_str(labels[k])}" for k in sorted(labels)) or "<none>"


def _present(value: Any) -> bool:
    """Whether an optional JSON object is set (a Go non-nil pointer); `{}` counts as set."""
    return isinstance(value, dict)


# ----------------------------------------------------------------------- tab alignment


def _tabwrite(text: str, *, minwidth: int, padding: int) -> str:
    """Go text/tabwriter (padchar ' ', no flags) applied to fully buffered text.

    Cells are tab-terminated; the text after a line's last tab is not part of any column.
    A column block is a run of consecutive lines that have a cell in that column; each
    block is as wide as its widest cell plus `padding` (at least `minwidth`).
    """
    lines = [line.split("\t") for line in text.split("\n")]
    trailing = lines.pop() if lines else [""]
    out: list[str] = []

    def write_lines(widths: list[int], start: int, stop: int) -> None:
        for cells in lines[start:stop]:
            parts = []
            for j, cell in enumerate(cells):
                if j < len(widths):
                    parts.append(cell + " " * (widths[j] - len(cell)))
                else:
                    parts.append(cell)
            out.append("".join(parts))

    def format_block(widths: list[int], start: int, stop: int) -> None:
        column = len(widths)
        this = start
        while this < stop:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(widths, start, this)
            start = this
            width = minwidth
            while this < stop and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(widths, start, this)
            widths.pop()
            start = this
        write_lines(widths, start, stop)

    format_block([], 0, len(lines))
    result = "\n".join(out) + ("\n" if out else "")
    return result + "\t".join(trailing)


_CELL_BREAKS = ("\f", "\n", "\r")


def _escape(text: str) -> str:
    """cli-runtime WriteEscaped: neutralise terminal escape sequences."""
    if "\x1b" in text or "\r" in text:
        text = text.replace("\x1b", "^[").replace("\r", "\\r")
    return text


def _cell(value: Any) -> str:
    """A table cell as the cli-runtime table printer writes it (cut at a line break)."""
    text = _str(value)
    cut = min((i for i in (text.find(ch) for ch in _CELL_BREAKS) if i >= 0), default=-1)
    if cut >= 0:
        return _escape(text[:cut]) + "..."
    return _escape(text)


def _table(headers: list[str], rows: list[list[str]], *, no_headers: bool = False) -> str:
    """kubectl's human-readable table: tabwriter(minwidth 6, padding 3); '' for no rows."""
    if not rows:
        return ""
    lines = [] if no_headers else ["\t".join(headers)]
    lines.extend("\t".join(_cell(cell) for cell in row) for row in rows)
    return _tabwrite("\n".join(lines) + "\n", minwidth=6, padding=3)
