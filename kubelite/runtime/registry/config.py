"""How registries are reached: `RegistryConfig` (credentials file, TLS trust, insecure registries,
the pulled layers' bounds) and the credentials a Docker `config.json` holds.

Owns: reading the credentials file; `PullError`, the error of every pull.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kubelite.runtime.images import DEFAULT_MAX_LAYER_BYTES, ImageError

_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


class PullError(ImageError):
    """A pull that failed: the registry is unreachable, refused us, lacks the image, or sent bad content."""


@dataclass(frozen=True)
class RegistryConfig:
    """How registries are reached: credentials, TLS trust, which ones speak plain HTTP."""

    auth_file: Path | None = None            # a Docker config.json ("auths"); None: anonymous only
    certs_dir: Path | None = None            # <certs_dir>/<host[:port]>/*.crt: CAs trusted for that registry
    insecure: frozenset[str] = frozenset()   # host[:port] reached over plain HTTP (beside loopback ones)
    timeout_s: float = 30.0                  # connect and read timeout (not the whole download)
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES   # --image-max-layer-size: a layer unpacking to more fails
    gc_high_percent: int | None = 85         # --image-gc-high-threshold: no layer may fill the filesystem past it


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def load_credentials(path: Path | None, registry: str) -> Credentials | None:
    """The credentials a Docker `config.json` holds for `registry` (None: none, or no such file).

    Keys may be a host[:port] or a URL (`https://index.docker.io/v1/` for Docker Hub); an entry
    gives `auth` (base64 of "user:password") or `username` and `password`.
    """
    if path is None:
        return None
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise PullError(f"cannot read the credentials file {path}: {e}") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if auths is None:
        return None
    if not isinstance(auths, dict):
        raise PullError(f"the credentials file {path}: 'auths' is not an object")
    wanted = {registry} | (set(_DOCKER_HUB_KEYS) if registry == "docker.io" else set())
    for key, entry in auths.items():
        if _auth_key_host(key) not in wanted or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise PullError(f"the credentials file {path}: the auth of {key!r} is not base64 of user:password") \
                    from None
            if not sep:
                raise PullError(f"the credentials file {path}: the auth of {key!r} is not base64 of user:password")
            return Credentials(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
        if entry.get("identitytoken"):
            raise PullError(f"the credentials file {path}: {key!r} has an identity token, which kubelite does not "
                            "use; give auth (base64 of user:password) instead")
    return None


def _auth_key_host(key: str) -> str:
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host
