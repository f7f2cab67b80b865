"""The CRI log format: parsing, formatting, joining partial lines, tail, since, kubectl-style output."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kubelite.runtime import crilog
from kubelite.runtime.crilog import LogLine

T = "2026-11-28T05:42:57.380651270+00:00"


@pytest.mark.parametrize("raw, expected", [
    (f"{T} stdout F out-line", LogLine(T, "stdout", False, "out-line")),
    (f"{T} stdout F out-line\n", LogLine(T, "stdout", False, "out-line")),
    (f"{T} stderr P half a li", LogLine(T, "stderr", True, "half a li")),
    (f"{T} stdout F   spaces kept  ", LogLine(T, "stdout", False, "  spaces kept  ")),
    (f"{T} stdout F ", LogLine(T, "stdout", False, "")),                  # an empty line
    (f"{T} stdout F", LogLine(T, "stdout", False, "")),                   # …with its space lost
    (f"{T} stdout F:x text", LogLine(T, "stdout", False, "text")),       # later tags are ignored
    ("2026-11-28T06:42:57.5+01:00 stdout F t", LogLine("2026-11-28T06:42:57.5+01:00", "stdout", False, "t")),
    ("2026-11-28T05:42:57Z stdout F t", LogLine("2026-11-28T05:42:57Z", "stdout", False, "t")),
])
def test_parse_line(raw, expected):
    assert crilog.parse_line(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "garbage", f"{T} stdin F x", f"{T} stdout X x", f"{T} stdout", "yesterday stdout F x",
    "2026-13-28T05:42:57Z stdout F x", f"{T}  stdout F x",
])
def test_malformed_lines_parse_to_none(raw):
    assert crilog.parse_line(raw) is None


def test_format_line_writes_what_conmon_writes_and_parses_back():
    assert crilog.format_line(T, "stdout", "hello") == f"{T} stdout F hello\n"
    assert crilog.format_line(T, "stderr", "hel", partial=True) == f"{T} stderr P hel\n"
    assert crilog.parse_line(crilog.format_line(T, "stderr", " x ")) == LogLine(T, "stderr", False, " x ")


def test_format_line_takes_an_aware_datetime_with_nanosecond_digits():
    moment = datetime(2026, 11, 28, 6, 42, 57, 380651, tzinfo=timezone(timedelta(hours=1)))
    assert crilog.format_line(moment, "stdout", "x") == "2026-11-28T06:42:57.380651000+01:00 stdout F x\n"
    with pytest.raises(ValueError):
        crilog.format_line(datetime(2026, 1, 1), "stdout", "x")


@pytest.mark.parametrize("stream, text", [("stdin", "x"), ("stdout", "two\nlines")])
def test_format_line_refuses_what_cannot_be_read_back(stream, text):
    with pytest.raises(ValueError):
        crilog.format_line(T, stream, text)


def t(second: int, nanos: str = "000000000") -> str:
    return f"2026-11-28T05:42:{second:02d}.{nanos}+00:00"


def test_partial_lines_join_per_stream_keeping_the_first_fragment_time():
    text = "".join([
        crilog.format_line(t(1), "stdout", "aaa", partial=True),
        crilog.format_line(t(2), "stderr", "err line"),
        crilog.format_line(t(3), "stdout", "bbb", partial=True),
        crilog.format_line(t(4), "stdout", "ccc"),
        "not a record\n",
        crilog.format_line(t(5), "stdout", "next"),
    ])
    assert crilog.read_lines(text) == [
        LogLine(t(2), "stderr", False, "err line"),
        LogLine(t(1), "stdout", False, "aaabbbccc"),
        LogLine(t(5), "stdout", False, "next"),
    ]


def test_an_unterminated_last_line_is_kept_as_partial_and_printed_without_newline():
    text = crilog.format_line(t(1), "stdout", "done") + crilog.format_line(t(2), "stdout", "no newline", partial=True)
    lines = crilog.read_lines(text)
    assert lines[-1] == LogLine(t(2), "stdout", True, "no newline")
    assert crilog.render(lines, timestamps=False) == "done\nno newline"


def test_empty_text_has_no_lines():
    assert crilog.read_lines("") == []


LINES = [LogLine(t(s), "stdout", False, f"line {s}") for s in range(5)]


@pytest.mark.parametrize("n, expected", [
    (None, LINES), (-1, LINES), (0, []), (2, LINES[3:]), (5, LINES), (99, LINES)])
def test_tail(n, expected):
    assert crilog.tail(LINES, n) == expected


def test_render_prints_each_line_newline_terminated():
    assert crilog.render(LINES[:2], timestamps=False) == "line 0\nline 1\n"


@pytest.mark.parametrize("time, shown", [
    ("2026-11-28T05:42:57.380651270+00:00", "2026-11-28T05:42:57.380651270Z"),
    ("2026-11-28T06:42:57.380651270+01:00", "2026-11-28T05:42:57.380651270Z"),   # converted to UTC
    ("2026-11-28T00:12:57.5-05:30", "2026-11-28T05:42:57.500000000Z"),          # fraction padded to 9
    ("2026-11-28T05:42:57Z", "2026-11-28T05:42:57.000000000Z"),
    ("2026-01-01T00:30:00.000000001+01:00", "2025-12-31T23:30:00.000000001Z"),  # across a year
])
def test_timestamps_are_shown_in_utc_with_nanoseconds_as_kubectl_does(time, shown):
    assert crilog.render([LogLine(time, "stdout", False, "x")], timestamps=True) == f"{shown} x\n"


def test_since_keeps_lines_at_or_after_now_minus_seconds_to_the_nanosecond():
    lines = [LogLine("2026-11-28T05:42:56.999999999+00:00", "stdout", False, "before"),
             LogLine("2026-11-28T06:42:57.000000000+01:00", "stdout", False, "at"),
             LogLine("2026-11-28T05:42:57.000000001Z", "stderr", False, "after")]
    now = datetime(2026, 11, 28, 5, 43, 7, tzinfo=timezone.utc)
    assert [line.text for line in crilog.since(lines, 10, now)] == ["at", "after"]
    assert [line.text for line in crilog.since(lines, 10.5, now)] == ["before", "at", "after"]
    with pytest.raises(ValueError):
        crilog.since(lines, 10, datetime(2026, 11, 28))


def test_time_ns_orders_times_across_offsets():
    assert crilog.time_ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert crilog.time_ns("1970-01-01T01:00:01.5+01:00") == 1_500_000_000
    assert crilog.time_ns("nonsense") is None
