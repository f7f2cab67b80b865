"""Image references, split the way Docker and containerd split them — pure, no I/O.

Owns: `Reference` (registry, repository, tag, digest) parsed from what a manifest's `image:` says,
by the normalization rules of `images.normalize_reference` ("busybox" is
`docker.io/library/busybox:latest`), where the registry's API lives (`docker.io` is served by
`registry-1.docker.io`), and whether a registry is insecure by default (loopback addresses, as
Docker treats 127.0.0.0/8 and ::1). It knows nothing about HTTP or the image store.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kubelite.runtime.images import DEFAULT_DOMAIN, normalize_reference

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

