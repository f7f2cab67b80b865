"""The JSON text the store keeps in its columns: compact and with sorted keys, so that equal values
are equal text (what the node state compares before it writes). Standard library only, so that the
agent's config objects and claims can build their rows without importing the store itself."""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
