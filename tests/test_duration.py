"""Durations as kubectl and the kubelet write them (Go's time.ParseDuration), read by one parser."""

from __future__ import annotations

import argparse

import pytest

from kubelite.api import duration
from kubelite.cli.sync import parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("1m", 60), ("2h", 7200), ("500ms", 0.5), ("1m30s", 90), ("1h2m3.5s", 3723.5),
    ("1h30m", 5400), ("1.5h", 5400), (".5s", 0.5), ("1.s", 1), ("1h1h", 7200), ("2m500ms", 120.5),
    ("100us", 1e-4), ("100\u00b5s", 1e-4), ("100\u03bcs", 1e-4), ("10ns", 1e-8), ("1s500ms", 1.5),
    ("+5m", 300), ("-1m30s", -90), ("0", 0), ("0s", 0),
    ("1.5", 1.5), ("45", 45),                           # a plain number is seconds, as kubelite's flags always took
])
def test_a_valid_duration_has_its_seconds(text, seconds):
    assert duration.parse(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("text", [
    "", "s", "m30s", "1m30", "1 m", " 30s", "30s ", "30s\n", "1d", "1M", "1S", "1H", "1sec", "1e3s",
    "١s", "１s", "1,5s", "1.2.3s", "--1s", "+", ".s", "1_000s", "inf", "nan",
])
def test_an_invalid_duration_is_refused(text):
    with pytest.raises(ValueError):
        duration.parse(text)


def test_a_long_text_is_refused():
    with pytest.raises(ValueError):
        duration.parse("1s" * 40)


def test_the_sync_interval_flag_reads_the_same_grammar_and_wants_a_positive_one():
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    for bad in ("0s", "-1m", "1m30", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)
