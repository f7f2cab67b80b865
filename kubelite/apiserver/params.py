"""Query parameters as the API server parses them: integers and `continue` tokens.

Owns: the one reading of an integer option (`limit`, `timeoutSeconds`, `resourceVersion`,
`tailLines`, `sinceSeconds`, `limitBytes`): a decimal int64 of ASCII digits with an optional sign,
at least the option's minimum; anything else is `InvalidParameter`, which the server answers with a
400 `Status`, never a 500. Pure.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

#: The largest value an integer query parameter may have (int64, as the API server parses them).
INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
#: Digits beyond this many are over INT64_MAX whatever they are (19 digits, a sign and leading zeros
#: aside); such a text is never handed to int().
_LONGEST = 21


class InvalidParameter(ValueError):
    """A query parameter the API server answers with 400 BadRequest."""


def integer(text: str | None, *, name: str, minimum: int = 0) -> int | None:
    """The parameter's value, or None when it is absent; InvalidParameter when it is not an integer
    from `minimum` to INT64_MAX."""
    if text is None:
        return None
    shown = text if len(text) <= 40 else text[:40] + "..."
    if not _INTEGER.fullmatch(text):
        raise InvalidParameter(f"{name}: invalid value {shown!r}: must be an integer")
    value = int(text) if len(text) <= _LONGEST else (INT64_MAX + 1) * (-1 if text.startswith("-") else 1)
    if not minimum <= value <= INT64_MAX:
        raise InvalidParameter(f"{name}: invalid value {shown!r}: must be an integer from {minimum} to {INT64_MAX}")
    return value


def continue_token(rv: int, offset: int) -> str:
    """The `continue` of a list cut at `offset`, read at resourceVersion `rv`."""
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": offset}).encode()).decode()


def continue_offset(token: str | None) -> int:
    """Where a list resumes for a `continue` token (0 without one); InvalidParameter for a token this
    server did not make."""
    if not token:
        return 0
    try:
        start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        raise InvalidParameter("continue: invalid token") from None
    if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= INT64_MAX:
        raise InvalidParameter("continue: invalid token")
    return start
