"""The root of kubelite's exception tree.

    KubeliteError
    ├── ManifestError        (kubelite.api / kubelite.sources: a manifest that cannot be used)
    ├── StoreError           (kubelite.store: the state database)
    ├── RuntimeError_        (kubelite.runtime: a container runtime operation failed)
    │   └── NotFoundError    (the sandbox or container does not exist: delete and stop are idempotent)
    └── UsageError           (kubelite.cli: a command was given something it cannot act on)

The CLI turns any KubeliteError into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations


class KubeliteError(Exception):
    """Base of every error kubelite raises on purpose."""


class ManifestError(KubeliteError):
    """A manifest file or document that cannot be used."""


class StoreError(KubeliteError):
    """The state database is missing, locked beyond patience, or of an unknown schema."""


class RuntimeError_(KubeliteError):
    """A runtime (sandbox or container) operation failed."""


class NotFoundError(RuntimeError_):
    """The sandbox or container does not exist (any more)."""


class UsageError(KubeliteError):
    """The command line asked for something that cannot be done."""
