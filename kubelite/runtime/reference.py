"""Image references and digests, split the way Docker and containerd split them — pure, no I/O.

Owns: Docker's normalization rules (`normalize_reference`: "busybox" is
`docker.io/library/busybox:latest`); `Reference` (registry, repository, tag, digest) parsed from
what a manifest's `image:` says; where the registry's API lives (`docker.io` is served by
`registry-1.docker.io`); whether a registry is insecure by default (loopback addresses, as Docker
treats 127.0.0.0/8 and ::1); `sha256:<hex>` digests (`hex_of`); a reference Docker would refuse is an `ImageError`
(`kubelite.errors`), the error of every image operation. It knows nothing about
HTTP or the image store.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from kubelite.errors import ImageError

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:([a-f0-9]{64})")
HEX_RE = re.compile(r"[a-f0-9]{64}")
_NAME_MAX = 255


def normalize_reference(ref: str) -> str:
    """The full form of an image reference, by Docker's rules.

    "busybox" → "docker.io/library/busybox:latest"; "team/app:v1" → "docker.io/team/app:v1";
    "registry.local:5000/app" → "registry.local:5000/app:latest"; "localhost/app:v1" stays;
    "name@sha256:<64 hex>" keeps its digest (and no ":latest" is added). The first component is a
    registry when it has a "." or ":", is "localhost", or has upper-case letters.
    Raises ImageError for anything else (upper case in the path, bad tag, 64-hex name, …).
    """
    if not isinstance(ref, str) or not ref:
        raise ImageError("invalid image reference: empty")
    name, at, digest = ref.partition("@")
    if at and not DIGEST_RE.fullmatch(digest):
        raise ImageError(f"invalid image reference {quoted(ref)}: the digest must be sha256:<64 hex digits>")
    tag = ""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise ImageError(f"invalid image reference {quoted(ref)}: invalid tag {quoted(tag)}")
    if HEX_RE.fullmatch(name):
        raise ImageError(f"invalid image reference {quoted(ref)}: a repository name cannot be 64 hex digits")
    domain, path = _split_domain(name)
    if not _DOMAIN_RE.fullmatch(domain):
        raise ImageError(f"invalid image reference {quoted(ref)}: invalid registry {quoted(domain)}")
    if not _PATH_RE.fullmatch(path):
        raise ImageError(f"invalid image reference {quoted(ref)}: the repository name must be lower-case "
                         "components of letters, digits and separators")
    full = f"{domain}/{path}"
    if len(full) > _NAME_MAX:
        raise ImageError(f"invalid image reference {quoted(ref)}: longer than {_NAME_MAX} characters")
    if tag:
        full += f":{tag}"
    if digest:
        full += f"@{digest}"
    return full if tag or digest else f"{full}:latest"


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash or (not any(c in first for c in ".:") and first != "localhost" and first == first.lower()):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


def quoted(text: str, limit: int = 160) -> str:
    """A name from a reference or an archive, quoted and cut short, safe to put in an error message."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def hex_of(digest: object, *, what: str) -> str:
    """The hex of a "sha256:<64 hex>" digest; anything else (another algorithm, a path) is refused."""
    m = DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        raise ImageError(f"unsupported or invalid {what} {quoted(str(digest))}: expected sha256:<64 hex digits>")
    return m.group(1)


#: Docker Hub's name in references, and the host that serves its registry API.
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Reference:
    """One image reference in its full form: `registry/repository[:tag][@digest]`."""

    registry: str          # "docker.io", "127.0.0.1:5000", "[::1]:5000"
    repository: str        # "library/busybox"
    tag: str | None        # "latest"; None when only a digest names the image
    digest: str | None     # "sha256:<hex>"

    @property
    def name(self) -> str:
        """The full reference, as the image store indexes it."""
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def by_digest(self) -> str:
        """What the manifest is fetched by: the digest when there is one (it wins over the tag), else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> str:
        """`registry/repository@digest`: the name that pins one manifest (Docker's RepoDigests)."""
        return f"{self.registry}/{self.repository}@{digest}"

    @property
    def api_host(self) -> str:
        """The host[:port] that serves this registry's API."""
        return DOCKER_HUB_API if self.registry == DEFAULT_DOMAIN else self.registry

    @property
    def hostname(self) -> str:
        """The registry's host without port or IPv6 brackets."""
        host = self.registry
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rpartition(":")[0] if ":" in host else host


def parse(ref: str) -> Reference:
    """The parts of an image reference; ImageError for one that Docker would refuse."""
    full = normalize_reference(ref)
    name, _, digest = full.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
    registry, _, repository = name.partition("/")
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest or None)


def is_loopback(registry: str) -> bool:
    """True for "localhost[:port]", 127.0.0.0/8 and ::1 — registries Docker treats as insecure by default."""
    host = Reference(registry, "", None, None).hostname
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

