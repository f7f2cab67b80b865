"""The one `$(VAR)` expander (`api.expansion`): Kubernetes' forked golang expansion package."""

from __future__ import annotations

import pytest

from kubelite.api import expansion


@pytest.mark.parametrize("text, expected", [
    ("$(VAR)", "x"),
    ("pre-$(VAR)-post", "pre-x-post"),
    ("$(VAR)$(VAR)", "xx"),
    ("$$(VAR)", "$(VAR)"),          # escaped reference
    ("$$$(VAR)", "$x"),             # escaped $ then a reference
    ("$$", "$"),
    ("$(UNKNOWN)", "$(UNKNOWN)"),   # unknown stays as written
    ("$(VAR", "$(VAR"),             # unterminated
    ("$VAR", "$VAR"),               # shell syntax is not expanded
    ("a$", "a$"),                   # trailing operator
    ("$()", "$()"),
    ("$(EMPTY)", ""),
    ("no refs", "no refs"),
])
def test_dollar_paren_expansion_follows_the_kubernetes_expansion_package(text, expected):
    assert expansion.expand(text, {"VAR": "x", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text, expected, missing", [
    ("$(VAR)/logs", "x/logs", set()),
    ("$(UNKNOWN)/logs", "/logs", {"UNKNOWN"}),       # unknown: empty, and reported
    ("$(EMPTY)-$(UNKNOWN)", "-", {"EMPTY", "UNKNOWN"}),
    ("$$(UNKNOWN)", "$(UNKNOWN)", set()),             # escaped: not a reference
    ("$(VAR", "$(VAR", set()),
])
def test_with_missing_unknown_and_empty_references_are_collected(text, expected, missing):
    found: set[str] = set()
    assert expansion.expand(text, {"VAR": "x", "EMPTY": ""}, found) == expected
    assert found == missing
