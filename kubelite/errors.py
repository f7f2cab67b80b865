"""The root of kubelite's exception tree: every error raised on purpose and caught in another module.

    KubeliteError
    ├── ManifestError        (kubelite.api / kubelite.sources: a manifest that cannot be used)
    │   ├── Unusable         (kubelite.sources.documents: a file or document, and where)
    │   └── KustomizeError   (kubelite.sources.kustomize: a kustomization refused or that does not build)
    ├── ConfigError          (kubelite.core.podconfig: a container's env or volume files cannot be built;
    │                         the container waits with CreateContainerConfigError)
    ├── StoreError           (kubelite.store: the state database)
    ├── SyncError            (kubelite.sources.gitsync: one git sync pass failed; redacted)
    ├── ImageError           (kubelite.runtime: an archive, a reference or the image store)
    │   └── PullError        (kubelite.runtime.registry: a pull from a registry failed)
    ├── RuntimeError_        (kubelite.runtime: a container runtime operation failed)
    │   ├── NotFoundError    (the sandbox or container does not exist: delete and stop are idempotent)
    │   ├── MissingDependency (kubelite.runtime.oci: runc, conmon or catatonit is not installed)
    │   ├── NetworkError     (kubelite.runtime.cni: pod networking) ── HostPortInUse
    │   ├── VolumeError      (kubelite.runtime.volumes: a volume could not be set up)
    │   ├── SubPathError     (kubelite.runtime.volumes: a subPath could not be prepared)
    │   └── SpecError        (kubelite.runtime.ocispec: the OCI config cannot be built)
    ├── TargetError          (kubelite.runtime.targets: no such pod or container, or it does not run)
    └── UsageError           (kubelite.cli: a command was given something it cannot act on)

The classes without a module named here are defined in this module; the others are defined beside
the code that raises them, below the class named here. Errors that never leave their module stay
outside the tree on purpose: `seccomp.ProfileError` (a ValueError, turned into a SpecError by the
runtime), `prober.checks.DialError` (a probe's own failure, reported as its outcome) and the API
server's `ApiError`, `LogRequestError`, `SelectorError`, `InvalidParameter`, and the watch feed's
`Expired` and `TooLarge`, the metrics API's `NotFound`, the streaming sessions' `Refused`
(exec's and attach's answer before the upgrade) and the channel port-forward's `BadPorts` (its
query's ports) — each an HTTP status for one request; a session's
`ClientGone` (its client left) and port-forward's `SpdyError` (a malformed frame, answered by a
GOAWAY), each the end of one session; the image store's `Exceeded` (a layer past a bound, turned
into an ImageError); kubectl's `JSONPathError` (a template that cannot be parsed, a ValueError
turned into a UsageError by the CLI); and any class private to its module.

The CLI turns any KubeliteError into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations


class KubeliteError(Exception):
    """Base of every error kubelite raises on purpose."""


class ManifestError(KubeliteError):
    """A manifest file or document that cannot be used."""


class ConfigError(KubeliteError):
    """A container's or volume's configuration cannot be built (the kubelet's message).

    `missing` names the ConfigMap or Secret that does not exist, when that is the reason."""

    def __init__(self, message: str, *, missing: tuple[str, str, str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing


class StoreError(KubeliteError):
    """The state database is missing, locked beyond patience, or of an unknown schema."""


class SyncError(KubeliteError):
    """One sync pass failed; the message is already redacted."""


class ImageError(KubeliteError):
    """An archive that cannot be loaded, a reference that is invalid or unknown, a damaged store."""


class RuntimeError_(KubeliteError):
    """A runtime (sandbox or container) operation failed."""


class NotFoundError(RuntimeError_):
    """The sandbox or container does not exist (any more)."""


class UsageError(KubeliteError):
    """The command line asked for something that cannot be done."""
