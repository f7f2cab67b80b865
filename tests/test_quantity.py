"""The quantity grammar of Kubernetes' resource.Quantity, as a table: what parses to what, and what is refused."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kubelite.api import quantity


@pytest.mark.parametrize("text, value", [
    # decimal suffixes, `E` (exa) included: a suffix, not an exponent without digits
    ("1E", 10**18), ("2E", 2 * 10**18), ("0.5E", 5 * 10**17), ("1P", 10**15), ("1T", 10**12), ("1G", 10**9),
    ("1M", 10**6), ("1k", 1000), ("1", 1), ("1m", Fraction(1, 1000)), ("1u", Fraction(1, 10**6)),
    ("1n", Fraction(1, 10**9)),
    # binary suffixes
    ("1Ki", 1024), ("1Mi", 2**20), ("1Gi", 2**30), ("1Ti", 2**40), ("1Pi", 2**50), ("1Ei", 2**60),
    ("1.5Gi", 3 * 2**29),
    # exponents: `e` or `E` followed by a signed integer
    ("1e3", 1000), ("1E3", 1000), ("1e+3", 1000), ("1E-3", Fraction(1, 1000)), ("1.5e2", 150), ("5e0", 5),
    # signs and the forms of a decimal number
    ("+1", 1), ("-1", -1), ("-500m", Fraction(-1, 2)), ("1.", 1), (".5", Fraction(1, 2)), ("0", 0),
    ("007", 7), ("0.0001", Fraction(1, 10_000)),
])
def test_a_valid_quantity_has_its_exact_value(text, value):
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", [
    "١٢Mi", "١", "１２", "12\u0660", "²", "1\u00a0Mi",        # non-ASCII digits and spaces
    "1e", "1.5e", "1E+", "e3", "E",                          # an exponent needs digits, a number before it
    "1EE", "1Eii", "1ei", "1e3Mi", "1Mi3", "1K", "1KI", "1mi", "1Z",   # unknown or doubled suffixes
    " 1", "1 ", "1\n", "5 Mi", "1_000", "1,5", "1.2.3", "--1", "+-1", "", ".", "+", "Mi", "0x10", "inf", "nan",
])
def test_an_invalid_quantity_is_refused(text):
    with pytest.raises(ValueError):
        quantity.parse(text)


def test_an_exponent_beyond_the_bound_is_refused_and_a_long_text_too():
    assert quantity.parse("1e100") == 10**100
    with pytest.raises(ValueError):
        quantity.parse("1e101")
    with pytest.raises(ValueError):
        quantity.parse("1" * (quantity.MAX_LENGTH + 1))
