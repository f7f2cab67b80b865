"""What `apply -f` names: a file, a directory of manifests, `-` (standard input) or a URL.

Owns: turning each `-f` value into manifest files to apply, in order — a directory's `*.yaml`,
`*.yml` and `*.json` (not its dotfiles; its sub-directories with `-R` only), listed by the daemon's
own `scan` as `diff -f DIR` lists them (a directory anyone may write or another user owns is
refused; each file is read with its directory as the root, so a symlink leading out of it is
not read), standard input and a
URL's body held in a private temporary directory — and fetching a URL safely: https with the
system's trusted CAs and certificate checks (plain http only from a loopback address, as given),
at most `sources.manifests.MAX_MANIFEST_BYTES`, one deadline of `FETCH_TIMEOUT_S` for the whole
fetch (each request may take only the time left), at most `MAX_REDIRECTS` redirects, none of them
to plain http — not even to the loopback. httpx is imported only for a URL.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple
from urllib.parse import urlsplit

from kubelite.errors import UsageError
from kubelite.sources import manifests as sources

FETCH_TIMEOUT_S = 30.0
MAX_REDIRECTS = 5


class Source(NamedTuple):
    """One manifest file to apply: where its bytes are now, and the name it gets in the directory
    (None: named after the first object it defines, for standard input and URLs without one)."""

    path: Path
    name: str | None
    shown: str
    root: Path | None = None   # the directory it was listed from: a symlink must not lead out of it


@contextmanager
def expand(filenames: list[str], *, recursive: bool = False) -> Iterator[list[Source]]:
    """Every manifest file the `-f` values name, in order; what stdin and URLs sent lives in a
    temporary directory until the block ends."""
    with tempfile.TemporaryDirectory(prefix="kubelite-apply-") as scratch:
        found: list[Source] = []
        for index, value in enumerate(filenames):
            if value == "-":
                found.append(_hold(Path(scratch), index, sys.stdin.buffer.read(sources.MAX_MANIFEST_BYTES + 1),
                                   None, "standard input"))
            elif "://" in value:
                name = Path(urlsplit(value).path).name
                found.append(_hold(Path(scratch), index, fetch(value),
                                   name if sources.is_manifest_name(name) else None, value))
            else:
                path = Path(value)
                if path.is_dir():
                    files = _directory(path, recursive)
                    if not files:
                        raise UsageError(f"{value}: no manifest files (*.yaml, *.yml, *.json)"
                                         + ("" if recursive else "; -R reads its sub-directories too"))
                    found.extend(Source(f, f.name, str(f), f.parent) for f in files)
                elif path.exists() or not value.startswith(("http:", "https:")):
                    found.append(Source(path, path.name, value))
                else:
                    raise UsageError(f"{value}: not a URL (give http(s)://HOST/PATH)")
        names = [s.name for s in found if s.name is not None]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"two files are named {twice[0]}: the manifests directory holds one file per name")
        yield found


def _hold(scratch: Path, index: int, data: bytes, name: str | None, shown: str) -> Source:
    if len(data) > sources.MAX_MANIFEST_BYTES:
        raise UsageError(f"{shown}: larger than {sources.MAX_MANIFEST_BYTES // (1024 * 1024)} MiB")
    path = scratch / f"{index}-{name or 'manifest.yaml'}"
    path.write_bytes(data)
    return Source(path, name, shown)


def _directory(path: Path, recursive: bool) -> list[Path]:
    """The manifest files of `path` (and, recursive, of its sub-directories but dotted ones), each
    directory listed by `sources.scan` — the rules of the daemon and of `diff -f DIR`."""
    directories = [path]
    if recursive:
        directories = []
        for top, dirs, _ in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            directories.append(Path(top))
    found = []
    for directory in directories:
        snapshot = sources.scan(directory)
        if snapshot.problems:
            raise UsageError(str(snapshot.problems[0]))
        found.extend(directory / os.path.basename(file) for file in sorted(snapshot.files))
    return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(url: str, *, redirect: bool = False) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and not redirect and _loopback(parts.hostname or "")):
        return
    if parts.scheme == "http" and redirect:
        raise UsageError(f"{url}: a redirect to plain http is refused (anyone on the way could change what runs "
                         "as root); give an https URL")
    if parts.scheme == "http":
        raise UsageError(f"{url}: plain http is refused (anyone on the way could change what runs as root); "
                         "use https")
    raise UsageError(f"{url}: only https URLs are read")


def fetch(url: str) -> bytes:
    """The body of `url`, checked as the module docstring says; UsageError with the reason."""
    import ssl

    import httpx

    _check_url(url)
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    late = UsageError(f"{url}: not read within {FETCH_TIMEOUT_S:g}s")
    context = ssl.create_default_context()   # the system's CAs (and SSL_CERT_FILE), hostnames checked
    try:
        with httpx.Client(verify=context, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise late
                with client.stream("GET", url, headers={"Accept": "application/yaml, application/json, */*"},
                                   timeout=left) as reply:
                    if reply.is_redirect:
                        url = str(reply.url.join(reply.headers.get("location", "")))
                        _check_url(url, redirect=True)
                        continue
                    if reply.status_code != 200:
                        raise UsageError(f"{url}: the server answered {reply.status_code} {reply.reason_phrase}")
                    body = bytearray()
                    for chunk in reply.iter_bytes():
                        body += chunk
                        if len(body) > sources.MAX_MANIFEST_BYTES:
                            raise UsageError(f"{url}: larger than {sources.MAX_MANIFEST_BYTES // (1024 * 1024)} MiB")
                        if time.monotonic() > deadline:
                            raise late
                    return bytes(body)
            raise UsageError(f"{url}: more than {MAX_REDIRECTS} redirects")
    except httpx.TimeoutException:
        raise late from None
    except httpx.HTTPError as exc:
        raise UsageError(f"{url}: {exc or type(exc).__name__}") from None
