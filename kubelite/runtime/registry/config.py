"""How registries are reached: `RegistryConfig` (credentials file, TLS trust, insecure registries,
the pulled layers' bounds) and the credentials a Docker `config.json` holds or names.

Owns: reading the credentials file and asking the credential helpers it names (`credHelpers` per
registry, `credsStore` for the others: `docker-credential-<name> get` with the registry on stdin,
bounded in time and output, as Docker runs them); `PullError`, the error of every pull.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelite import children
from kubelite.runtime.images import DEFAULT_MAX_LAYER_BYTES, ImageError

_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
#: What Docker gives a credential helper on stdin for Docker Hub (its old index address).
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
#: A helper may take this long (the cloud ones fetch a token over the network) and print this much.
HELPER_TIMEOUT_S = 30.0
HELPER_MAX_OUTPUT = 64 * 1024
#: docker-credential-helpers' answer when it holds nothing for the server: not an error, no credentials.
HELPER_NOT_FOUND = "credentials not found in native keychain"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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
    password: str = field(repr=False)   # never in a traceback or a debug line
    source: str = field(default="", compare=False)   # where they came from, for messages: the file or a helper


def load_credentials(path: Path | None, registry: str) -> Credentials | None:
    """The credentials a Docker `config.json` holds or names for `registry` (None: none, or no such file).

    In Docker's order: the helper `credHelpers` names for the registry, else the `credsStore`
    helper, else the `auths` entry; a helper that holds nothing for the registry passes on to the
    next. `auths` keys (and `credHelpers` keys) may be a host[:port] or a URL
    (`https://index.docker.io/v1/` for Docker Hub); an entry gives `auth` (base64 of
    "user:password") or `username` and `password`.
    """
    if path is None:
        return None
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise PullError(f"cannot read the credentials file {path}: {e}") from None
    for helper in _helpers(doc, path, registry):
        found = helper_credentials(helper, registry, path)
        if found is not None:
            return found
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
            return Credentials(user, password, source=str(path))
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"], source=str(path))
        if entry.get("identitytoken"):
            raise PullError(f"the credentials file {path}: {key!r} has an identity token, which kubelite does not "
                            "use; give auth (base64 of user:password) instead")
    return None


def _auth_key_host(key: str) -> str:
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def _helpers(doc: Any, path: Path, registry: str) -> list[str]:
    """The credential helpers to ask for `registry`, in order: its `credHelpers` entry, `credsStore`."""
    if not isinstance(doc, dict):
        return []
    helpers: list[str] = []
    per_registry = doc.get("credHelpers")
    if per_registry is not None:
        if not isinstance(per_registry, dict):
            raise PullError(f"the credentials file {path}: 'credHelpers' is not an object")
        for key, name in per_registry.items():
            if _auth_key_host(key) == registry:
                helpers.append(_helper_name(name, path, f"credHelpers[{key!r}]"))
                break
    default = doc.get("credsStore")
    if default not in (None, ""):
        helpers.append(_helper_name(default, path, "credsStore"))
    return helpers


def _helper_name(name: Any, path: Path, where: str) -> str:
    if not isinstance(name, str) or not _HELPER_NAME.fullmatch(name):
        raise PullError(f"the credentials file {path}: {where} is not the name of a credential helper "
                        "(docker-credential-<name>)")
    return name


def helper_credentials(name: str, registry: str, path: Path | None = None) -> Credentials | None:
    """Ask `docker-credential-<name> get` for `registry`'s credentials, as Docker does: the server on
    stdin, `{"Username", "Secret"}` on stdout. None when it holds none for the registry; PullError
    when it is missing, fails (its own message shown), takes too long or prints too much."""
    program = f"docker-credential-{name}"
    named = f" (named in {path})" if path is not None else ""
    executable = shutil.which(program)
    if executable is None:
        raise PullError(f"the credential helper {program}{named} is not installed (not found on PATH)")
    server = DOCKER_HUB_SERVER if registry == "docker.io" else registry
    code, out, err = _run_bounded([executable, "get"], server.encode(), program)
    text = (out.decode(errors="replace").strip() or err.decode(errors="replace").strip())
    if code != 0:
        if HELPER_NOT_FOUND in text:
            return None
        message = " ".join(text.split())[:500] or f"exit status {code}"
        raise PullError(f"the credential helper {program} failed for {registry}: {message}")
    try:
        answer = json.loads(out)
        username, secret = answer.get("Username", ""), answer.get("Secret", "")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise ValueError
    except (ValueError, AttributeError):
        raise PullError(f"the credential helper {program} answered for {registry} with something other than "
                        '{"Username": …, "Secret": …}') from None
    if not username and not secret:
        return None
    if username == "<token>":
        raise PullError(f"the credential helper {program} gives an identity token for {registry}, which kubelite "
                        "does not use; configure it to give a user name and password (or a registry token)")
    return Credentials(username, secret, source=f"the credential helper {program}")


def _run_bounded(argv: list[str], stdin: bytes, program: str) -> tuple[int, bytes, bytes]:
    """Run `argv` with `stdin`; its exit status, stdout and stderr. PullError after HELPER_TIMEOUT_S
    or beyond HELPER_MAX_OUTPUT bytes of output (the process is killed, with what it started)."""
    finished = children.run_bounded(argv, stdin=stdin, timeout_s=HELPER_TIMEOUT_S, max_output=HELPER_MAX_OUTPUT)
    if finished.exceeded == "time":
        raise PullError(f"the credential helper {program} did not answer within {HELPER_TIMEOUT_S:g}s: stopped it")
    if finished.exceeded == "output":
        raise PullError(f"the credential helper {program} printed more than {HELPER_MAX_OUTPUT // 1024} KiB: "
                        "stopped it")
    return finished.code, finished.out, finished.err
