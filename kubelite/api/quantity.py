"""Kubernetes resource quantities (`500m`, `2`, `64Mi`, `1e3`, `1.5Gi`) as exact fractions.

Owns: parsing only; pure. Follows the grammar of k8s.io/apimachinery `resource.Quantity`:
a sign (`+`, `-` or none), ASCII digits with an optional fraction (`1`, `1.5`, `1.`, `.5`), then
an optional binary suffix (Ki Mi Gi Ti Pi Ei), decimal suffix (n u m k M G T P E) or exponent
(`e`/`E` and a signed integer: `1e3`, `1E-3`). The whole text must match: no whitespace, no
Unicode digits (`١٢Mi` is not a quantity), no trailing newline.

Where kubelite is stricter than apimachinery's parser: a number needs at least one digit (the
parser reads `+`, `.`, `Mi` and `e3` as zero; the documented grammar does not allow them),
exponents beyond ±100 and texts over 64 characters are refused (bounds that keep parsing cheap;
the parser takes any 32-bit exponent).
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
#: Bounds that keep parsing cheap; far beyond any real resource amount.
MAX_LENGTH = 64
MAX_EXPONENT = 100
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")


def parse(value: int | float | str) -> Fraction:
    """The quantity's exact value; raises ValueError for anything Kubernetes would reject."""
    if isinstance(value, bool):
        raise ValueError("not a quantity")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (value != value or abs(value) == float("inf")):
            raise ValueError("not a finite quantity")
        return Fraction(value)
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        raise ValueError("not a quantity")
    return _parse_text(value)


@functools.lru_cache(maxsize=1024)
def _parse_text(value: str) -> Fraction:
    """A quantity's text parsed (cached: a node sees the same few amounts on every pass)."""
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError("not a quantity")
    number, suffix = Fraction(match.group(1)), match.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:   # before the exponent: `1E` is one exa, `1E3` a thousand
        return number * _DECIMAL[suffix]
    exponent = int(suffix[1:])
    if abs(exponent) > MAX_EXPONENT:  # 10**10000000 would take seconds to compute: refuse
        raise ValueError("quantity out of range")
    return number * Fraction(10) ** exponent


def cpu_millis(value: int | float | str) -> int:
    """A CPU quantity in millicores, rounded up as Kubernetes does (`MilliValue`)."""
    millis = parse(value) * 1000
    return int(-(-millis.numerator // millis.denominator))


def bytes_(value: int | float | str) -> int:
    """A memory quantity in bytes, rounded up."""
    amount = parse(value)
    return int(-(-amount.numerator // amount.denominator))
