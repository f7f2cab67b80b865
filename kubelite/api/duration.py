"""Durations as Kubernetes tools write them (`30s`, `1m30s`, `1h2m3.5s`, `500ms`) in seconds.

Owns: parsing only; pure. The one duration parser of kubelite: every flag or setting that takes a
duration reads it here. Follows Go's `time.ParseDuration`, which kubectl and the kubelet use: an
optional sign, then one or more terms of a decimal number (`1`, `1.5`, `1.`, `.5`) and a unit
(`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`): `1h2m3.5s`, `1m30s`, `-1.5h`. Go also takes `0` alone;
kubelite takes any plain number as seconds (`1.5`), as its flags always have. The whole text must
match: no whitespace, no Unicode digits, no number without a unit after a term (`1m30`).

Stricter than Go: texts over 64 characters are refused (a bound that keeps parsing cheap).
"""

from __future__ import annotations

import re
from fractions import Fraction

#: Seconds per unit, as Go's time package names them (`µs` with the micro sign or the Greek mu).
UNITS = {"ns": Fraction(1, 10**9), "us": Fraction(1, 10**6), "\u00b5s": Fraction(1, 10**6),
         "\u03bcs": Fraction(1, 10**6), "ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60),
         "h": Fraction(3600)}
MAX_LENGTH = 64
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_UNIT = r"(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h)"   # `ms` before `m`: `500ms` is half a second
_DURATION = re.compile(rf"([+-]?)((?:{_NUMBER}{_UNIT})+|{_NUMBER})")
_TERM = re.compile(rf"({_NUMBER})({_UNIT})")


def parse(text: str) -> float:
    """The duration's seconds (negative with a `-`); raises ValueError for anything else."""
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        raise ValueError("not a duration")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError("not a duration")
    sign, body = match.groups()
    if _TERM.match(body) is None:            # a plain number: seconds
        total = Fraction(body)
    else:
        total = sum((Fraction(number) * UNITS[unit] for number, unit in _TERM.findall(body)), Fraction(0))
    return float(-total if sign == "-" else total)
