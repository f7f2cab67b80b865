"""The network checks: tcpSocket and httpGet, as coroutines on the prober's event loop.

Owns: dialling (a socket made by `netns.Namespaces` inside the pod's network namespace), the
HTTP/1.1 GET that kubelite writes itself (no curl in the image), reading the answer, and the
kubelet's verdicts and wording (pkg/probe/http, pkg/probe/tcp):

* tcp: success iff the connection opens within the timeout; else `dial tcp H:P: connect:
  connection refused` or `dial tcp H:P: i/o timeout`.
* http: success iff 200 <= status < 400; `HTTP probe failed with statuscode: 500` otherwise.
  Redirects to the same host are followed (at most 10); a redirect elsewhere is not followed and
  counts as a success with the warning `Probe terminated redirects, Response body: ...`. Errors
  read as Go prints them: `Get "http://H:P/path": dial tcp H:P: connect: connection refused`.
  HTTPS is not verified. At most 10 KiB of a body are read. Headers: `User-Agent:
  kube-probe/<version>` and `Accept: */*` unless the probe sets them, `Host` from the probe's
  headers if given, `Connection: close`.

The timeout bounds the whole run (connect, redirects, body), as Go's `http.Client.Timeout` does.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

from kubelite.core.types import ProbeResult, ProbeTarget
from kubelite.runtime.netns import Namespaces

MAX_BODY = 10 * 1024
MAX_REDIRECTS = 10
MAX_HEAD = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)

Verdict = tuple[ProbeResult, str, bool]   # result, output, warning


class DialError(Exception):
    """A connection that could not be made, worded as Go's net package words it."""


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the kubelet's InsecureSkipVerify
    return ctx


_TLS = _insecure_context()


async def _address(host: str, port: int) -> tuple[int, tuple[str, int]]:
    try:
        ip = ipaddress.ip_address(host)
        return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, port)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise DialError(f"dial tcp: lookup {host}: no such host") from None
    family, _, _, _, addr = infos[0]
    return family, (addr[0], addr[1])


async def dial(ns: Namespaces, netns_fd: int | None, host: str, port: int) -> socket.socket:
    """A connected socket to host:port from inside the namespace `netns_fd`."""
    family, addr = await _address(host, port)
    sock = ns.socket(family, netns_fd)
    try:
        await asyncio.get_running_loop().sock_connect(sock, addr)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        if exc.errno == errno.ETIMEDOUT:
            raise DialError(f"dial tcp {join_host_port(host, port)}: i/o timeout") from None
        raise DialError(f"dial tcp {join_host_port(host, port)}: connect: {reason}") from None
    except BaseException:
        sock.close()
        raise
    return sock


async def tcp_check(ns: Namespaces, netns_fd: int | None, target: ProbeTarget) -> Verdict:
    try:
        async with asyncio.timeout(target.timeout_s):
            sock = await dial(ns, netns_fd, target.host, target.port)
    except DialError as exc:
        return ProbeResult.FAILURE, str(exc), False
    except TimeoutError:
        return ProbeResult.FAILURE, f"dial tcp {join_host_port(target.host, target.port)}: i/o timeout", False
    sock.close()
    return ProbeResult.SUCCESS, "", False


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes


def request_bytes(target: ProbeTarget, *, path: str, host_port: str, user_agent: str) -> bytes:
    """The GET request: the probe's headers, with the kubelet's defaults where it sets none."""
    headers: list[tuple[str, str]] = []
    names = {name.lower() for name, _ in target.headers}
    host_header = next((v for n, v in target.headers if n.lower() == "host"), host_port)
    headers.append(("Host", host_header))
    if "user-agent" not in names:
        headers.append(("User-Agent", user_agent))
    if "accept" not in names:
        headers.append(("Accept", "*/*"))
    for name, value in target.headers:
        if name.lower() == "host" or (name.lower() == "accept" and value == ""):
            continue  # Host is above; an empty Accept removes the default
        headers.append((name, value))
    headers.append(("Connection", "close"))
    lines = [f"GET {path} HTTP/1.1"] + [f"{n}: {v}" for n, v in headers if "\r" not in v and "\n" not in v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")


class _Reader:
    """Buffered reads over `recv` (a raw socket's `sock_recv`, or a TLS stream's `read`)."""

    def __init__(self, recv: Callable[[], Awaitable[bytes]]) -> None:
        self.recv, self.buffer = recv, b""

    async def _more(self) -> bool:
        chunk = await self.recv()
        self.buffer += chunk
        return bool(chunk)

    async def until(self, separator: bytes, limit: int) -> bytes | None:
        """Up to and including `separator`; None at EOF first."""
        while (end := self.buffer.find(separator)) < 0:
            if len(self.buffer) > limit:
                raise DialError("net/http: HTTP/1.x transport connection broken: header too long")
            if not await self._more():
                return None
        data, self.buffer = self.buffer[:end + len(separator)], self.buffer[end + len(separator):]
        return data

    async def take(self, n: int) -> bytes:
        """`n` bytes, or what there is at EOF."""
        while len(self.buffer) < n and await self._more():
            pass
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data


async def _read_response(reader: _Reader) -> _Response:
    head = await reader.until(b"\r\n\r\n", MAX_HEAD)
    if head is None:
        partial = reader.buffer
        raise DialError("EOF" if not partial else
                        f'net/http: HTTP/1.x transport connection broken: malformed HTTP response '
                        f'{partial[:40].decode("latin-1")!r}')
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isdigit() and parts[1].isascii()):
        raise DialError(f"net/http: HTTP/1.x transport connection broken: malformed HTTP response {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return _Response(int(parts[1]), headers, await _read_body(reader, headers))


async def _read_body(reader: _Reader, headers: dict[str, str]) -> bytes:
    """At most MAX_BODY bytes of the body (the rest is left unread: the connection is closed)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while len(body) < MAX_BODY:
            size_line = await reader.until(b"\r\n", MAX_HEAD)
            size = int((size_line or b"0").split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.take(size)
            await reader.until(b"\r\n", MAX_HEAD)
        return body[:MAX_BODY]
    length = headers.get("content-length")
    if length is not None and length.isdigit() and length.isascii():
        return await reader.take(min(int(length), MAX_BODY))
    return await reader.take(MAX_BODY)


async def _get_once(ns: Namespaces, netns_fd: int | None, target: ProbeTarget, url: str,
                    user_agent: str) -> _Response:
    parts = urlsplit(url)
    host = parts.hostname or target.host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = request_bytes(target, path=path, host_port=join_host_port(host, port), user_agent=user_agent)
    sock = await dial(ns, netns_fd, host, port)
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    try:
        if parts.scheme == "https":
            stream, writer = await asyncio.open_connection(sock=sock, ssl=_TLS, server_hostname=host, limit=MAX_HEAD)
            writer.write(request)
            await writer.drain()
            reader = _Reader(lambda: stream.read(65536))
        else:  # plain HTTP straight on the socket: no transport or protocol objects per run
            await loop.sock_sendall(sock, request)
            reader = _Reader(lambda: loop.sock_recv(sock, 65536))
        return await _read_response(reader)
    except ssl.SSLError as exc:
        raise DialError(f"remote error: tls: {exc.reason or exc}") from None
    except ConnectionResetError:
        raise DialError(f"read tcp {join_host_port(host, port)}: read: connection reset by peer") from None
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()


async def fetch(ns: Namespaces, netns_fd: int | None, target: ProbeTarget, *,
                user_agent: str) -> tuple[_Response | None, str]:
    """The GET of `target`, redirects followed as the kubelet's client follows them, bounded by
    `target.timeout_s`: (the last response, "") or (None, the error as Go words it)."""
    url = f"{target.scheme}://{join_host_port(target.host, target.port)}{target.path}"
    first_host = target.host
    current = url
    try:
        async with asyncio.timeout(target.timeout_s):
            for _ in range(MAX_REDIRECTS + 1):
                response = await _get_once(ns, netns_fd, target, current, user_agent)
                location = response.headers.get("location")
                if response.status not in REDIRECTS or not location:
                    break
                following = urljoin(current, location)
                if urlsplit(following).hostname != first_host:
                    break  # another host: not followed (the kubelet's RedirectChecker)
                current = following
            else:
                return None, f'Get "{url}": stopped after {MAX_REDIRECTS} redirects'
    except DialError as exc:
        return None, f'Get "{current}": {exc}'
    except TimeoutError:
        return None, f'Get "{current}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        return None, f'Get "{current}": {exc}'
    return response, ""


async def http_check(ns: Namespaces, netns_fd: int | None, target: ProbeTarget, *, user_agent: str) -> Verdict:
    response, error = await fetch(ns, netns_fd, target, user_agent=user_agent)
    if response is None:
        return ProbeResult.FAILURE, error, False
    body = response.body.decode("utf-8", errors="replace")
    if 200 <= response.status < 400:
        if response.status >= 300:
            return ProbeResult.SUCCESS, f"Probe terminated redirects, Response body: {body}", True
        return ProbeResult.SUCCESS, body, False
    return ProbeResult.FAILURE, f"HTTP probe failed with statuscode: {response.status}", False
