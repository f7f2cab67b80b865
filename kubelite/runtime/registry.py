"""Pulling images from registries: a client of the OCI distribution protocol, over httpx.

Owns: `pull(store, ref)` — resolve a reference to a manifest (through an image index: the one for
linux and this machine's architecture), fetch the config and the layer blobs the store does not
have yet, verify each against its digest, and hand them to `ImageStore.add_pulled`, which unpacks
and commits them all or nothing. Also: where each registry is reached (HTTPS; plain HTTP only for
insecure registries: loopback addresses by default, as Docker), TLS trust (`certs.d/<host[:port]>/`
as containerd and Docker read it), credentials (a Docker `config.json`), and the authentication
the registry asks for in its `WWW-Authenticate` challenge (Basic, or a Bearer token from the
token service it names).

Every answer read from a registry is bounded, counted after decompression (kubelite decodes
`Content-Encoding: gzip` and `deflate` itself, at most a limit's worth, never a whole body): the
`/v2/` ping and token answers at `ANSWER_MAX`, error messages at `ERROR_MAX` (beyond it the detail
is left out), manifests and indexes at `MANIFEST_MAX`, image configs at their descriptor's size.
Redirects are followed here, not by httpx (which reads a redirect's body whole): a redirect's body
is never read, at most `MAX_REDIRECTS`, http and https only and never down from https, and the
registry's credentials only to its own origin.
Blobs are streamed to `<root>/images/downloads/<hex>.partial` while they are hashed, never held in
memory, and never past the size their descriptor declares; a verified blob is renamed to `<hex>`.
Each blob's download holds an flock on its partial file, so two pulls (threads or processes) of
the same blob share one download: the second waits and finds the blob there (the lock is taken
again when the file it locked was renamed or removed meanwhile). A pull that is cut off keeps its
partial file, and the next pull asks only for the rest (an HTTP Range request) after re-hashing
what it has; a blob refused (too long, wrong digest) keeps nothing. Nothing reaches the image
store until every blob is verified. The unpacked layers are the store's; the downloaded blobs are
deleted once the image is committed.

It does not decide when to pull (that is the agent's `imagePullPolicy`), and never writes outside
the image store.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
import re
import ssl
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

import kubelite.statefiles as statefiles
from kubelite.runtime import reference as references
from kubelite.runtime.images import (DEFAULT_MAX_LAYER_BYTES, Image, ImageError, ImageStore, PulledLayer,
                                     UnpackLimits, format_size, host_architecture)

#: Manifests and indexes larger than this (decoded) are refused: containerd's bound, and the
#: distribution registry's own limit on what it accepts.
MANIFEST_MAX = 4 << 20
#: Image configs larger than this are refused (and none is read past its descriptor's size).
CONFIG_MAX = 16 << 20
#: The answers to `GET /v2/` and from a token service: a `{}` and a token of a few KiB in practice.
ANSWER_MAX = 1 << 20
#: An error answer's body is read this far for its message (beyond it, the message is left out).
ERROR_MAX = 64 << 10
CHUNK = 1 << 20
#: Redirects followed for one request, at most (as Go's HTTP client, which Docker and containerd use).
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Raw bytes decoded at a time: a deflate stream expands at most ~1032:1, and decoding stops at the limit.
_RAW_CHUNK = 64 << 10
_ACCEPT_ENCODING = "gzip, deflate"

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPT = ", ".join([MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST])
_INDEXES = {MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST}
_MANIFESTS = {MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST}
_USER_AGENT = "kubelite"
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


class PullError(ImageError):
    """A pull that failed: the registry is unreachable, refused us, lacks the image, or sent bad content."""


# ---------------------------------------------------------------------------------- configuration


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


# -------------------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class Progress:
    """What a pull is doing, for a display.

    kinds: "resolved" (layers = how many, total = bytes to fetch), "exists" (a layer already
    here), "bytes" (done/total of one blob), "downloaded" (one blob verified), "unpacking", "done".
    """

    kind: str
    digest: str = ""
    done: int = 0
    total: int = 0
    layers: int = 0


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class PullResult:
    image: Image
    digest: str          # the manifest's digest, as the registry names it (Docker's RepoDigest)
    downloaded: int      # bytes fetched from the registry for blobs
    seconds: float


# ------------------------------------------------------------------------------------------- pull


def pull(store: ImageStore, ref: str, *, config: RegistryConfig = RegistryConfig(),
         progress: ProgressFn | None = None) -> PullResult:
    """Pull `ref` into `store`; returns the image as stored. PullError (one line) on any failure,
    with the store as it was."""
    started = time.monotonic()
    parsed = references.parse(ref)
    report = progress or (lambda _p: None)
    with _Registry(parsed, config) as registry:
        manifest, digest = registry.resolve()
        config_desc = _descriptor(manifest.get("config"), "config")
        layer_descs = manifest.get("layers")
        if not isinstance(layer_descs, list):
            raise PullError(f"{parsed.name}: the manifest has no layers")
        layers = [_descriptor(d, "layer") for d in layer_descs]
        names = [parsed.name, parsed.with_digest(digest)] if not parsed.digest else [parsed.name]
        config_bytes = registry.small_blob(config_desc, CONFIG_MAX)
        image_id = config_desc["digest"]
        diff_ids = _diff_ids(config_bytes, parsed.name)
        if len(diff_ids) != len(layers):
            raise PullError(f"{parsed.name}: the manifest lists {len(layers)} layers but its config has "
                            f"{len(diff_ids)} diff_ids")
        needed = [(d, diff) for d, diff in zip(layers, diff_ids) if not store.has_layer(diff)]
        report(Progress("resolved", layers=len(layers),
                        total=sum(d["size"] for d in {d["digest"]: d for d, _ in needed}.values())))
        for d, diff in zip(layers, diff_ids):
            if store.has_layer(diff):
                report(Progress("exists", digest=d["digest"], total=d["size"]))
        if not needed and store.has_config(image_id) and any(i.id == image_id for i in store.list()):
            image = store.tag(image_id, names)
            report(Progress("done"))
            return PullResult(image, digest, 0, time.monotonic() - started)
        downloads = store.downloads_dir
        fetched = 0
        files: dict[str, str] = {}
        try:
            statefiles.make_dirs(downloads, base=store.root)   # owner-only, never through a planted symlink
            for d, diff in needed:
                if d["digest"] in files:
                    continue
                files[d["digest"]], got = registry.blob_to_file(d, downloads, report,
                                                                done=lambda diff=diff: store.has_layer(diff))
                fetched += got
        except OSError as e:
            raise PullError(f"{parsed.name}: cannot write the download to {downloads}: {e.strerror or e}") from None
        pulled = [PulledLayer(digest=d["digest"], size=d["size"], blob=files.get(d["digest"], ""))
                  for d in layers]
        report(Progress("unpacking"))
        try:
            image = store.add_pulled(config_bytes=config_bytes, layers=pulled, names=names, downloads=downloads,
                                     limits=UnpackLimits(max_layer_bytes=config.max_layer_bytes,
                                                         gc_high_percent=config.gc_high_percent))
        except ImageError as e:
            raise PullError(str(e)) from None
        except OSError as e:
            raise PullError(f"{parsed.name}: cannot store the image in {store.root / 'images'}: "
                            f"{e.strerror or e}") from None
        finally:
            for name in files.values():
                (downloads / name).unlink(missing_ok=True)
        report(Progress("done"))
        return PullResult(image, digest, fetched, time.monotonic() - started)


def _descriptor(desc: Any, what: str) -> dict[str, Any]:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str) \
            or not re.fullmatch(r"sha256:[a-f0-9]{64}", desc["digest"]) \
            or not isinstance(desc.get("size"), int) or desc["size"] < 0:
        raise PullError(f"the manifest has an invalid {what} descriptor (it needs a sha256 digest and a size)")
    return desc


def _diff_ids(config_bytes: bytes, name: str) -> list[str]:
    try:
        doc = json.loads(config_bytes)
        diff_ids = doc["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise PullError(f"{name}: the image config has no rootfs.diff_ids") from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and re.fullmatch(r"sha256:[a-f0-9]{64}", d)
                                                 for d in diff_ids):
        raise PullError(f"{name}: the image config's rootfs.diff_ids are not sha256 digests")
    return diff_ids


# ------------------------------------------------------------------------------------ the client


@dataclass
class _Challenge:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> _Challenge:
    """`Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"` → its parts."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'([A-Za-z_]+)="([^"]*)"', rest)}
    return _Challenge(scheme.lower(), params)


class _Registry:
    """One registry and one repository, for the length of one pull: its scheme, trust and authorization."""

    def __init__(self, ref: references.Reference, config: RegistryConfig) -> None:
        self.ref, self.config = ref, config
        self.host = ref.api_host
        self.creds = load_credentials(config.auth_file, ref.registry)
        certs = config.certs_dir / ref.registry if config.certs_dir is not None else None
        self.certs = certs if certs is not None and certs.is_dir() else None
        self.insecure = self.certs is None and (references.is_loopback(ref.registry)
                                                or ref.registry in config.insecure)
        timeout = httpx.Timeout(config.timeout_s)
        # only the encodings `_read_body` decodes with a bound (httpx would also offer zstd, unbounded);
        # redirects are followed by `_send`, which never reads their bodies (httpx would, whole)
        self.client = httpx.Client(verify=self._verify(), timeout=timeout, follow_redirects=False,
                                   headers={"User-Agent": _USER_AGENT, "Accept-Encoding": _ACCEPT_ENCODING})
        self.base = f"https://{self.host}"
        self.authorization: str | None = None

    def __enter__(self) -> _Registry:
        try:
            self._ping()
        except BaseException:
            self.client.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _verify(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False   # as Docker: an insecure registry's certificate is not checked (HTTP is tried next)
        ctx = ssl.create_default_context()
        if self.certs is not None:
            for ca in sorted(self.certs.glob("*.crt")):
                try:
                    ctx.load_verify_locations(cafile=str(ca))
                except (OSError, ssl.SSLError) as e:
                    raise PullError(f"cannot use the CA certificate {ca}: {e}") from None
            cert, key = self.certs / "client.cert", self.certs / "client.key"
            if cert.is_file() and key.is_file():
                try:
                    ctx.load_cert_chain(str(cert), str(key))
                except (OSError, ssl.SSLError) as e:
                    raise PullError(f"cannot use the client certificate {cert}: {e}") from None
        return ctx

    # ------------------------------------------------------------------ requests

    def _open(self, url: str, *, headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
              auth: tuple[str, str] | None = None) -> httpx.Response:
        """A streamed GET, its redirects followed (the caller reads it with `_read_body` and closes it).

        A redirect's body is never read (the answer is closed unread), at most `MAX_REDIRECTS` are
        followed, only to http or https — and never from https down to plain http but for a registry
        reached over http already — and the credentials (`Authorization`, `auth`) go only to the
        origin (scheme, host, port) they were meant for, as Docker and containerd do when a registry
        sends a blob to a CDN. PullError when a redirect is refused; httpx errors as they come.
        """
        request = self.client.build_request("GET", url, headers=headers, params=params)
        origin = _origin(request.url)
        for hop in range(MAX_REDIRECTS + 1):
            response = self.client.send(request, stream=True, auth=auth)
            location = response.headers.get("location") if response.status_code in _REDIRECTS else None
            if location is None:
                return response
            response.close()   # unread: a redirect's body is nobody's business
            target = request.url.join(location)   # httpx refused an invalid one already (an HTTPError)
            if hop == MAX_REDIRECTS:
                raise PullError(f"the registry {self.host} redirected {_shown(request.url)} more than "
                                f"{MAX_REDIRECTS} times (a redirect loop?): giving up")
            if target.scheme not in ("http", "https"):
                raise PullError(f"the registry {self.host} redirected {_shown(request.url)} to a {target.scheme}: "
                                "URL: only http and https are followed")
            if not target.host:
                raise PullError(f"the registry {self.host} redirected {_shown(request.url)} to a URL without a host")
            if target.scheme == "http" and request.url.scheme == "https":
                raise PullError(f"the registry {self.host} redirected {_shown(request.url)} to {_shown(target)}, "
                                "plain HTTP: refusing to leave HTTPS")
            if _origin(target) != origin:   # another host (a CDN): the registry's credentials stay home
                headers = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
                auth = None
            request = self.client.build_request("GET", target, headers=headers)
        raise AssertionError("unreachable")

    def _ping(self) -> None:
        """GET /v2/: picks the scheme (HTTPS, then HTTP for an insecure registry) and learns the challenge."""
        try:
            response = self._open(f"{self.base}/v2/")
        except httpx.HTTPError as e:
            if not self.insecure:
                raise PullError(f"cannot reach the registry {self.host}: {_network(e)}") from None
            self.base = f"http://{self.host}"
            try:
                response = self._open(f"{self.base}/v2/")
            except httpx.HTTPError as e2:
                raise PullError(f"cannot reach the registry {self.host}: {_network(e2)}") from None
        _read_body(response, ANSWER_MAX, f"{self.ref.name}: the answer of the registry {self.host} to GET /v2/")
        if response.status_code == 401:
            self._authorize(response.headers.get("www-authenticate", ""))

    def _authorize(self, header: str) -> None:
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            if self.creds is None:
                raise PullError(self._needs_credentials())
            token = base64.b64encode(f"{self.creds.username}:{self.creds.password}".encode()).decode()
            self.authorization = f"Basic {token}"
        elif challenge.scheme == "bearer":
            self.authorization = f"Bearer {self._token(challenge)}"
        else:
            raise PullError(f"the registry {self.host} asks for {challenge.scheme or 'an unknown'} authentication, "
                            "which kubelite does not speak (Basic and Bearer only)")

    def _token(self, challenge: _Challenge) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise PullError(f"the registry {self.host} asks for a bearer token but names no realm")
        params = {"scope": f"repository:{self.ref.repository}:pull"}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        auth = (self.creds.username, self.creds.password) if self.creds is not None else None
        if auth is not None and realm.startswith("http://") and not self.insecure:
            raise PullError(f"the registry {self.host} names the token service {realm}, which is plain HTTP: "
                            "refusing to send it the credentials")
        try:
            response = self._open(realm, params=params, auth=auth)
        except httpx.HTTPError as e:
            raise PullError(f"cannot reach the token service {realm} of {self.host}: {_network(e)}") from None
        body = _read_body(response, ANSWER_MAX, f"{self.ref.name}: the answer of the token service {realm}")
        if response.status_code in (401, 403):
            raise PullError(f"the token service of {self.host} refused "
                            + ("the credentials" + self._from_file() if self.creds else "an anonymous pull")
                            + f" (HTTP {response.status_code})")
        if response.status_code != 200:
            raise PullError(f"the token service of {self.host} answered HTTP {response.status_code}")
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise PullError(f"the token service of {self.host} sent no token")
        return token

    def _from_file(self) -> str:
        return f" from {self.config.auth_file}" if self.config.auth_file else ""

    def _needs_credentials(self) -> str:
        where = f"none for {self.ref.registry} in {self.config.auth_file}" if self.config.auth_file \
            else "no credentials file is configured"
        return f"the registry {self.host} requires credentials: {where}"

    def _get(self, path: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        """A streamed GET, authorized (once more after a fresh challenge). The caller closes it."""
        for attempt in (1, 2):
            h = dict(headers or {})
            if self.authorization:
                h["Authorization"] = self.authorization
            try:
                response = self._open(f"{self.base}{path}", headers=h)
            except httpx.HTTPError as e:
                raise PullError(f"cannot reach the registry {self.host}: {_network(e)}") from None
            if response.status_code != 401 or attempt == 2:
                return response
            challenge = response.headers.get("www-authenticate", "")
            response.close()
            self._authorize(challenge)
        raise AssertionError("unreachable")

    def _fail(self, response: httpx.Response, what: str) -> PullError:
        """A one-line error for an unexpected answer, with the registry's own error code and message."""
        try:
            body = _read_body(response, ERROR_MAX, "the registry's error message")
            errors = json.loads(body).get("errors") or []
            detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors
                               if isinstance(e, dict))
        except PullError as e:
            detail = str(e).replace(": refusing it", ": not read") if "is larger than" in str(e) else ""
        except (ValueError, AttributeError):
            detail = ""
        code = response.status_code
        if code == 404:
            return PullError(f"{what}: not found" + (f" ({detail})" if detail else ""))
        if code == 401:
            if self.creds is None:
                return PullError(self._needs_credentials())
            return PullError(f"the registry {self.host} refused the credentials{self._from_file()}")
        if code == 403:
            return PullError(f"{what}: access denied by the registry" + (f" ({detail})" if detail else ""))
        if code == 429:
            return PullError(f"{what}: the registry {self.host} limits requests (HTTP 429): try again later")
        return PullError(f"{what}: the registry {self.host} answered HTTP {code}" + (f" ({detail})" if detail else ""))

    # ------------------------------------------------------------------ manifests

    def resolve(self) -> tuple[dict[str, Any], str]:
        """The image manifest for this machine, and the digest of what the reference names (an index's
        digest when it names an index, as Docker's RepoDigests)."""
        doc, media, digest = self._manifest(self.ref.by_digest, self.ref.name)
        top_digest = digest
        for _ in range(4):
            if media in _MANIFESTS:
                return doc, top_digest
            if media in MEDIA_DOCKER_SCHEMA1:
                raise PullError(f"{self.ref.name} has a Docker schema 1 manifest, which is deprecated and not "
                                "supported: push it again with a current client")
            if media not in _INDEXES:
                raise PullError(f"{self.ref.name}: unsupported manifest media type {media!r}")
            child = _select_platform(doc, self.ref.name)
            doc, media, _ = self._manifest(child["digest"], self.ref.name, media=child.get("mediaType"))
        raise PullError(f"{self.ref.name}: image indexes nested too deep")

    def _manifest(self, reference: str, name: str, *, media: str | None = None) -> tuple[dict[str, Any], str, str]:
        response = self._get(f"/v2/{self.ref.repository}/manifests/{reference}", headers={"Accept": ACCEPT})
        if response.status_code != 200:
            raise self._fail(response, name)
        body = _read_body(response, MANIFEST_MAX, f"{name}: the manifest")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise PullError(f"{name}: the registry sent a manifest with digest {digest} for {reference}: refusing it")
        header = response.headers.get("docker-content-digest", "")
        if header.startswith("sha256:") and header != digest:
            raise PullError(f"{name}: the manifest has digest {digest}, not {header} as the registry says: refusing it")
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise PullError(f"{name}: the manifest is not valid JSON ({e})") from None
        if not isinstance(doc, dict):
            raise PullError(f"{name}: the manifest is not a JSON object")
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        found = doc.get("mediaType") or (content_type if content_type != "application/json" else "") or media
        if not found:
            found = MEDIA_OCI_INDEX if "manifests" in doc else MEDIA_OCI_MANIFEST if "layers" in doc else ""
        if doc.get("schemaVersion") == 1:
            found = MEDIA_DOCKER_SCHEMA1[0]
        return doc, found, digest

    # ------------------------------------------------------------------ blobs

    def small_blob(self, desc: dict[str, Any], limit: int) -> bytes:
        """A config blob, in memory (bounded), verified against its descriptor."""
        if desc["size"] > limit:
            raise PullError(f"{self.ref.name}: the config blob is {desc['size']} bytes, more than {limit}")
        response = self._get(f"/v2/{self.ref.repository}/blobs/{desc['digest']}")
        if response.status_code != 200:
            raise self._fail(response, f"{self.ref.name}: blob {desc['digest']}")
        data = _read_body(response, desc["size"], f"{self.ref.name}: the image config {desc['digest']}",
                          limit_text=f"its descriptor's {desc['size']} bytes")
        _verify("sha256:" + hashlib.sha256(data).hexdigest(), len(data), desc, self.ref.name)
        return data

    def blob_to_file(self, desc: dict[str, Any], downloads: Path, report: ProgressFn, *,
                     done: Callable[[], bool]) -> tuple[str, int]:
        """Download one blob to `downloads/<hex>` (resuming a partial download), verified.

        Returns the file's name and the bytes fetched now. `done()` says the layer arrived in the
        store meanwhile (another pull unpacked it): then nothing is fetched.
        """
        digest, size = desc["digest"], desc["size"]
        hex_ = digest.split(":", 1)[1]
        final, partial = downloads / hex_, downloads / f"{hex_}.partial"
        with _blob_lock(partial) as fd:
            if final.exists() or done():
                report(Progress("downloaded", digest=digest, done=size, total=size))
                _unlink_if_empty(partial)
                return hex_, 0
            sha, have = hashlib.sha256(), 0
            with open(fd, "rb", closefd=False) as existing:
                while chunk := existing.read(CHUNK):
                    sha.update(chunk)
                    have += len(chunk)
            if have > size:
                os.ftruncate(fd, 0)
                sha, have = hashlib.sha256(), 0
            fetched = 0
            if have < size:
                # the blob's bytes as stored (a layer is compressed already): counted against its size as they come
                headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
                response = self._get(f"/v2/{self.ref.repository}/blobs/{digest}", headers=headers)
                try:
                    if response.status_code == 200 and have:   # the registry ignored the range: start over
                        os.ftruncate(fd, 0)
                        sha, have = hashlib.sha256(), 0
                    elif response.status_code not in (200, 206):
                        raise self._fail(response, f"{self.ref.name}: blob {digest}")
                    os.lseek(fd, have, os.SEEK_SET)
                    report(Progress("bytes", digest=digest, done=have, total=size))
                    length = response.headers.get("content-length", "")
                    if length.isdigit() and have + int(length) > size:
                        raise self._too_long(fd, partial, digest, size)
                    for chunk in response.iter_raw():
                        if have + len(chunk) > size:
                            raise self._too_long(fd, partial, digest, size)
                        _write_all(fd, chunk)
                        sha.update(chunk)
                        have += len(chunk)
                        fetched += len(chunk)
                        report(Progress("bytes", digest=digest, done=have, total=size))
                except httpx.HTTPError as e:
                    os.fsync(fd)
                    raise PullError(f"{self.ref.name}: the download of blob {digest} broke off after "
                                    f"{have} of {size} bytes ({_network(e)}); the next pull resumes it") from None
                finally:
                    response.close()
            os.fsync(fd)
            if have < size:
                raise PullError(f"{self.ref.name}: the registry sent {have} of the {size} bytes of blob {digest}; "
                                "the next pull resumes it")
            got = "sha256:" + sha.hexdigest()
            if got != digest:
                os.ftruncate(fd, 0)
                _unlink_if_empty(partial)
                raise PullError(f"{self.ref.name}: blob {digest} has digest {got}: refusing it")
            os.rename(partial, final)
            report(Progress("downloaded", digest=digest, done=size, total=size))
            return hex_, fetched

    def _too_long(self, fd: int, partial: Path, digest: str, size: int) -> PullError:
        """A blob the registry sends more of than its descriptor declares: nothing of it is kept."""
        os.ftruncate(fd, 0)
        _unlink_if_empty(partial)   # under the blob's lock: a waiting pull opens the name again
        return PullError(f"{self.ref.name}: blob {digest} is longer than the {size} bytes its descriptor says: "
                         "refusing it")


def _select_platform(index: dict[str, Any], name: str) -> dict[str, Any]:
    """The image index entry for linux and this machine's architecture (the variant preferred if given)."""
    arch = host_architecture()
    entries = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    matching = [d for d in entries if isinstance(d.get("platform"), dict)
                and d["platform"].get("os") == "linux" and d["platform"].get("architecture") == arch]
    if not matching:
        offered = sorted({f"{(d.get('platform') or {}).get('os')}/{(d.get('platform') or {}).get('architecture')}"
                          for d in entries if isinstance(d.get("platform"), dict)})
        raise PullError(f"{name}: no image for linux/{arch} in the index (it has {', '.join(offered) or 'none'})")
    wanted_variant = {"arm64": "v8"}.get(arch)
    matching.sort(key=lambda d: d["platform"].get("variant") not in (None, wanted_variant))
    return _descriptor(matching[0], "platform manifest")


def _verify(digest: str, size: int, desc: dict[str, Any], name: str) -> None:
    if digest != desc["digest"]:
        raise PullError(f"{name}: blob {desc['digest']} has digest {digest}: refusing it")
    if size != desc["size"]:
        raise PullError(f"{name}: blob {desc['digest']} is {size} bytes, not {desc['size']}: refusing it")


def _read_body(response: httpx.Response, limit: int, what: str, *, limit_text: str | None = None) -> bytes:
    """The body of a streamed `response`, decoded, if it is at most `limit` bytes once decoded; closes it.

    PullError ("<what> is larger than <limit> once decompressed: refusing it") as soon as one byte
    more arrives: never more than `limit` + one raw chunk's expansion is held, whatever the
    registry sends.
    """
    try:
        decoder = _Decoder(response.headers.get("content-encoding", ""), what)
        body = bytearray()
        for raw in response.iter_raw(_RAW_CHUNK):
            body += decoder.decode(raw, limit + 1 - len(body))
            if len(body) > limit:
                break
        else:
            body += decoder.decode(b"", limit + 1 - len(body))
    except httpx.HTTPError as e:
        raise PullError(f"{what}: the download broke off ({_network(e)})") from None
    finally:
        response.close()
    if len(body) > limit:
        raise PullError(f"{what} is larger than {limit_text or format_size(limit)} once decompressed: refusing it")
    return bytes(body)


class _Decoder:
    """A `Content-Encoding` undone a bounded piece at a time (zlib's `max_length`): identity, gzip
    (members one after another, as gzip reads them) or deflate (zlib-wrapped, or raw as some servers
    send it). Any other encoding — one kubelite did not ask for — is refused."""

    def __init__(self, encoding: str, what: str) -> None:
        self.encoding = encoding.strip().lower()
        if self.encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise PullError(f"{what} is sent with Content-Encoding {encoding!r}, which kubelite did not ask for "
                            "(gzip and deflate only)")
        self.what = what
        self.wbits = 16 + zlib.MAX_WBITS if "gzip" in self.encoding else zlib.MAX_WBITS
        self.zlib = zlib.decompressobj(self.wbits) if self.encoding not in ("", "identity") else None
        self.pending = b""   # input not decoded yet: the decoder stopped at the room it was given
        self.started = False

    def decode(self, raw: bytes, room: int) -> bytes:
        """Up to `room` more decoded bytes from what arrived so far plus `raw`."""
        if self.zlib is None:
            return raw
        data, self.pending = self.pending + raw, b""
        out = bytearray()
        try:
            while len(out) < room:
                if self.zlib.eof:
                    rest, data = self.zlib.unused_data + data, b""
                    if self.wbits <= zlib.MAX_WBITS or not rest.startswith(b"\x1f\x8b"):
                        break   # what follows the stream is ignored, as httpx and browsers do
                    self.zlib, data = zlib.decompressobj(self.wbits), rest   # the next gzip member
                if not data:
                    break
                try:
                    out += self.zlib.decompress(data, room - len(out))
                except zlib.error:
                    if self.started or self.wbits != zlib.MAX_WBITS:
                        raise
                    self.wbits = -zlib.MAX_WBITS   # "deflate" sent raw, without the zlib wrapper
                    self.zlib = zlib.decompressobj(self.wbits)
                    continue
                self.started = True
                data = self.zlib.unconsumed_tail
        except zlib.error as e:
            raise PullError(f"{self.what} is not valid {self.encoding} ({e})") from None
        self.pending = data
        return bytes(out)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one for the scheme when none is written)."""
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


def _shown(url: httpx.URL) -> str:
    """A URL for a message: without its query (a CDN's signed URL holds its signature there) or user info."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def _network(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"the TLS certificate cannot be verified ({text}); trust its CA in certs.d/<host:port>/ca.crt"
    return text


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _blob_lock:
    """Open (creating) a blob's partial file and hold an exclusive flock on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                named = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                named = None
            held = os.fstat(fd)
            if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
                self.fd = fd
                return fd
            os.close(fd)   # the pull that held it renamed or removed that file: open the name again

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _unlink_if_empty(path: Path) -> None:
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except FileNotFoundError:
        pass

