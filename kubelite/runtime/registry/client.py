"""The HTTP client of one pull: one registry and one repository, its scheme (HTTPS, or HTTP for an
insecure registry), TLS trust, redirects (followed here, their bodies never read, credentials only
to their own origin) and the authentication it asks for (Basic, or a Bearer token).

Owns: requests to the registry and the errors its answers become; what is asked for is
`manifests`' and `blobs`'.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from dataclasses import dataclass, field

import httpx

from kubelite.runtime import reference as references
from kubelite.runtime.registry.bodies import ANSWER_MAX, ERROR_MAX, network_error, read_body, shown_url, url_origin
from kubelite.runtime.registry.config import PullError, RegistryConfig, load_credentials

#: Redirects followed for one request, at most (as Go's HTTP client, which Docker and containerd use).
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT_ENCODING = "gzip, deflate"
_USER_AGENT = "kubelite"


@dataclass
class _Challenge:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> _Challenge:
    """`Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"` → its parts."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'([A-Za-z_]+)="([^"]*)"', rest)}
    return _Challenge(scheme.lower(), params)


class Client:
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
        # only the encodings `read_body` decodes with a bound (httpx would also offer zstd, unbounded);
        # redirects are followed by `_send`, which never reads their bodies (httpx would, whole)
        self.client = httpx.Client(verify=self._verify(), timeout=timeout, follow_redirects=False,
                                   headers={"User-Agent": _USER_AGENT, "Accept-Encoding": _ACCEPT_ENCODING})
        self.base = f"https://{self.host}"
        self.authorization: str | None = None

    def __enter__(self) -> Client:
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
        """A streamed GET, its redirects followed (the caller reads it with `read_body` and closes it).

        A redirect's body is never read (the answer is closed unread), at most `MAX_REDIRECTS` are
        followed, only to http or https — and never from https down to plain http but for a registry
        reached over http already — and the credentials (`Authorization`, `auth`) go only to the
        origin (scheme, host, port) they were meant for, as Docker and containerd do when a registry
        sends a blob to a CDN. PullError when a redirect is refused; httpx errors as they come.
        """
        request = self.client.build_request("GET", url, headers=headers, params=params)
        origin = url_origin(request.url)
        for hop in range(MAX_REDIRECTS + 1):
            response = self.client.send(request, stream=True, auth=auth)
            location = response.headers.get("location") if response.status_code in _REDIRECTS else None
            if location is None:
                return response
            response.close()   # unread: a redirect's body is nobody's business
            target = request.url.join(location)   # httpx refused an invalid one already (an HTTPError)
            if hop == MAX_REDIRECTS:
                raise PullError(f"the registry {self.host} redirected {shown_url(request.url)} more than "
                                f"{MAX_REDIRECTS} times (a redirect loop?): giving up")
            if target.scheme not in ("http", "https"):
                raise PullError(f"the registry {self.host} redirected {shown_url(request.url)} to a {target.scheme}: "
                                "URL: only http and https are followed")
            if not target.host:
                raise PullError(f"the registry {self.host} redirected {shown_url(request.url)} to a URL without a host")
            if target.scheme == "http" and request.url.scheme == "https":
                raise PullError(f"the registry {self.host} redirected {shown_url(request.url)} to {shown_url(target)}, "
                                "plain HTTP: refusing to leave HTTPS")
            if url_origin(target) != origin:   # another host (a CDN): the registry's credentials stay home
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
                raise PullError(f"cannot reach the registry {self.host}: {network_error(e)}") from None
            self.base = f"http://{self.host}"
            try:
                response = self._open(f"{self.base}/v2/")
            except httpx.HTTPError as e2:
                raise PullError(f"cannot reach the registry {self.host}: {network_error(e2)}") from None
        read_body(response, ANSWER_MAX, f"{self.ref.name}: the answer of the registry {self.host} to GET /v2/")
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
            raise PullError(f"cannot reach the token service {realm} of {self.host}: {network_error(e)}") from None
        body = read_body(response, ANSWER_MAX, f"{self.ref.name}: the answer of the token service {realm}")
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
        source = self.creds.source if self.creds is not None and self.creds.source else self.config.auth_file
        return f" from {source}" if source else ""

    def _needs_credentials(self) -> str:
        where = f"none for {self.ref.registry} in {self.config.auth_file}" if self.config.auth_file \
            else "no credentials file is configured"
        return f"the registry {self.host} requires credentials: {where}"

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        """A streamed GET, authorized (once more after a fresh challenge). The caller closes it."""
        for attempt in (1, 2):
            h = dict(headers or {})
            if self.authorization:
                h["Authorization"] = self.authorization
            try:
                response = self._open(f"{self.base}{path}", headers=h)
            except httpx.HTTPError as e:
                raise PullError(f"cannot reach the registry {self.host}: {network_error(e)}") from None
            if response.status_code != 401 or attempt == 2:
                return response
            challenge = response.headers.get("www-authenticate", "")
            response.close()
            self._authorize(challenge)
        raise AssertionError("unreachable")

    def fail(self, response: httpx.Response, what: str) -> PullError:
        """A one-line error for an unexpected answer, with the registry's own error code and message."""
        try:
            body = read_body(response, ERROR_MAX, "the registry's error message")
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
