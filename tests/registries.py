"""A real registry for the pull tests: Debian's `docker-registry` (the CNCF distribution registry) on a
free loopback port, its storage in a temporary directory, stopped and removed by the test.

Variants: anonymous; htpasswd basic auth (bcrypt, written here); bearer tokens from a small token
service run here (JWTs signed with a key the test makes with openssl, the registry trusting its
certificate); TLS with a self-signed certificate made by openssl. Images are pushed with `skopeo
copy` from archives or OCI layouts the tests write (`oci_layout`, several layers of chosen size).

Beside it, `BombRegistry`: a registry in a thread that answers from a table (`routes`: path → status,
headers, body), for the answers no real registry sends — bombs (`gzip_of`), redirects, lies.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port

REGISTRY = "/usr/bin/docker-registry"
MIB = 1 << 20


def require_registry() -> None:
    missing = [p for p in (REGISTRY, shutil.which("skopeo") or "skopeo", shutil.which("openssl") or "openssl")
               if not os.path.exists(p)]
    if missing:
        message = f"the pull tests need {', '.join(missing)} (scripts/bootstrap test installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def self_signed(directory: Path, name: str, *, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for `ip`, and its key."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=IP:{ip}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@dataclass
class Registry:
    """One running docker-registry."""

    directory: Path
    auth: str = "none"                   # none | htpasswd | token
    tls: bool = False
    users: dict[str, str] = field(default_factory=lambda: {"alice": "wonderland"})
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    token_server: http.server.ThreadingHTTPServer | None = None
    cert: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "registry.log"

    def start(self) -> Registry:
        require_registry()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        http_conf: dict[str, Any] = {"addr": self.host, "secret": "kubelite-test"}
        if self.tls:
            self.cert, key = self_signed(self.directory, "registry")
            http_conf["tls"] = {"certificate": str(self.cert), "key": str(key)}
        conf: dict[str, Any] = {
            "version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.directory / "data")}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http_conf,
        }
        if self.auth == "htpasswd":
            import bcrypt

            lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}"
                     for u, p in self.users.items()]
            (self.directory / "htpasswd").write_text("\n".join(lines) + "\n")
            conf["auth"] = {"htpasswd": {"realm": "kubelite-test", "path": str(self.directory / "htpasswd")}}
        elif self.auth == "token":
            conf["auth"] = {"token": self._start_token_service()}
        (self.directory / "config.yml").write_text(json.dumps(conf))   # YAML is a superset of JSON
        self.process = subprocess.Popen([REGISTRY, "serve", str(self.directory / "config.yml")],
                                        stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("docker-registry did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.token_server is not None:
            self.token_server.shutdown()
            self.token_server.server_close()
            self.token_server = None

    # ------------------------------------------------------------------ pushing

    def push(self, source: str, name: str) -> str:
        """`skopeo copy` of `source` (e.g. docker-archive:/x.tar, oci:/dir:tag) to this registry as `name`
        (repo:tag); returns the manifest digest."""
        digest_file = self.directory / "pushed-digest"
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--digestfile", str(digest_file)]
        if self.auth != "none":
            user, password = next(iter(self.users.items()))
            cmd += ["--dest-creds", f"{user}:{password}"]
        subprocess.run(cmd + [source, f"docker://{self.host}/{name}"], check=True, capture_output=True, timeout=120)
        return digest_file.read_text().strip()

    def blob_path(self, digest: str) -> Path:
        hex_ = digest.split(":", 1)[1]
        return self.directory / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_[:2] / hex_ / "data"

    def requests(self, fragment: str) -> int:
        """How many requests the registry logged whose line contains `fragment`."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if fragment in line and '"GET ' in line)

    # ------------------------------------------------------------------ bearer tokens

    def _start_token_service(self) -> dict[str, Any]:
        """A token service as Docker Hub runs one: Basic credentials in, a signed JWT out (RS256)."""
        cert, key = self_signed(self.directory, "token-signer")
        x5c = base64.b64encode(subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                                              check=True, capture_output=True).stdout).decode()
        users = self.users
        issued: list[dict[str, Any]] = []

        def b64url(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                from urllib.parse import parse_qs, urlparse

                query = parse_qs(urlparse(self.path).query)
                header = self.headers.get("Authorization", "")
                user = None
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if users.get(name) != password:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    repo, _, actions = rest.rpartition(":")
                    if user is not None:   # anonymous users get a token that allows nothing
                        access.append({"type": kind, "name": repo, "actions": actions.split(",")})
                now = int(time.time())
                claims = {"iss": "kubelite-test", "sub": user or "", "aud": query.get("service", [""])[0],
                          "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                          "access": access}
                issued.append(claims)
                signing_input = (b64url(json.dumps({"alg": "RS256", "typ": "JWT", "x5c": [x5c]}).encode()) + "."
                                 + b64url(json.dumps(claims).encode()))
                signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)],
                                           input=signing_input.encode(), check=True, capture_output=True).stdout
                body = json.dumps({"token": signing_input + "." + b64url(signature)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.token_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.token_server.issued = issued  # type: ignore[attr-defined]
        threading.Thread(target=self.token_server.serve_forever, daemon=True).start()
        port = self.token_server.server_address[1]
        return {"realm": f"http://127.0.0.1:{port}/token", "service": "kubelite-test-registry",
                "issuer": "kubelite-test", "rootcertbundle": str(cert)}


# -------------------------------------------------------------------------------- images to push


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1672531200
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_layout(directory: Path, layers: list[bytes], *, tag: str = "latest", compress: str = "gzip",
               architecture: str | None = None, cmd: list[str] | None = None) -> str:
    """Write an OCI image layout with these layer tars (gzip, zstd or uncompressed); returns
    `oci:<dir>:<tag>` for skopeo."""
    from kubelite.runtime.images import host_architecture

    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        hex_ = hashlib.sha256(data).hexdigest()
        (blobs / hex_).write_bytes(data)
        return f"sha256:{hex_}"

    media = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             "none": "application/vnd.oci.image.layer.v1.tar"}[compress]
    descs = []
    for tar in layers:
        if compress == "gzip":
            blob = gzip.compress(tar, compresslevel=1, mtime=0)
        elif compress == "zstd":
            import zstandard

            blob = zstandard.ZstdCompressor().compress(tar)
        else:
            blob = tar
        descs.append({"mediaType": media, "digest": put(blob), "size": len(blob)})
    config = {"architecture": architecture or host_architecture(), "os": "linux",
              "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]}}
    config_bytes = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config_bytes),
                           "size": len(config_bytes)}, "layers": descs}
    manifest_bytes = json.dumps(manifest).encode()
    index_path = directory / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": put(manifest_bytes), "size": len(manifest_bytes),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return f"oci:{directory}:{tag}"


def oci_index_layout(directory: Path, images: dict[str, list[bytes]], *, tag: str = "latest") -> str:
    """An OCI layout whose `tag` is an image index: one image per architecture (its own layers)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict[str, Any]:
        hex_ = hashlib.sha256(data).hexdigest()
        (blobs / hex_).write_bytes(data)
        return {"digest": f"sha256:{hex_}", "size": len(data)}

    entries = []
    for arch, layers in images.items():
        config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers",
                                        "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]}})
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config.encode())},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                **put(gzip.compress(t, mtime=0))} for t in layers]}
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **put(json.dumps(manifest).encode()), "platform": {"os": "linux", "architecture": arch}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    top = {"mediaType": "application/vnd.oci.image.index.v1+json", **put(json.dumps(index).encode()),
           "annotations": {"org.opencontainers.image.ref.name": tag}}
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return f"oci:{directory}:{tag}"


class CuttingProxy:
    """A TCP proxy on loopback in front of a registry: it can break a connection once it has relayed
    `cut_after` bytes to the client (the registry "dies" mid-download), and be stopped and started."""

    def __init__(self, target_port: int, *, cut_after: int | None = None, port: int = 0) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.port = port or free_port()
        self.cuts = 0
        self._server: socket.socket | None = None
        self._stop = threading.Event()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> CuttingProxy:
        self._stop.clear()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(16)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
            self._server = None

    def _accept(self) -> None:
        server = self._server
        while not self._stop.is_set() and server is not None:
            try:
                client, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, dest: socket.socket, to_client: bool) -> None:
        relayed = 0
        try:
            while not self._stop.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if to_client and self.cut_after is not None and relayed + len(data) > self.cut_after:
                    dest.sendall(data[:self.cut_after - relayed])
                    self.cuts += 1
                    self.cut_after = None   # once
                    self.stop()             # and the registry is gone
                    break
                dest.sendall(data)
                relayed += len(data)
        except OSError:
            pass
        finally:
            for s in (source, dest):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


# --------------------------------------------------------------- a registry that answers from a table


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: bool = True            # send Content-Length (False: the body ends when the connection closes)


class BombRegistry:
    """A registry on 127.0.0.1 in a thread: `routes` maps a path to its answer; it records the paths asked for."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {"/v2/": Answer(body=b"{}", headers={"Content-Type": "application/json"})}
        self.asked: list[str] = []
        self.authorizations: dict[str, list[str | None]] = {}   # path → the Authorization header of each request
        routes, asked, authorizations = self.routes, self.asked, self.authorizations

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                path = self.path.split("?", 1)[0]
                asked.append(path)
                authorizations.setdefault(path, []).append(self.headers.get("Authorization"))
                answer = routes.get(path) or Answer(404, b'{"errors": [{"code": "NOT_FOUND"}]}')
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                if answer.length:
                    self.send_header("Content-Length", str(len(answer.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(answer.body)
                except OSError:
                    pass   # the client stopped reading: what a bounded client does

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass   # a client that hangs up on a bomb is what the tests want

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def blob(self, repo: str, data: bytes, *, declared: int | None = None, answer: Answer | None = None) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.routes[f"/v2/{repo}/blobs/{digest}"] = answer or Answer(body=data)
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                "size": len(data) if declared is None else declared}

    def image(self, repo: str, tag: str, layers: list[dict], diff_ids: list[str]) -> bytes:
        """Serve an image of these layer descriptors; returns its manifest."""
        from kubelite.runtime import registry
        from kubelite.runtime.images import host_architecture

        config = json.dumps({"architecture": host_architecture(), "os": "linux", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        config_desc = self.blob(repo, config)
        config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
        manifest = json.dumps({"schemaVersion": 2, "mediaType": registry.MEDIA_OCI_MANIFEST,
                               "config": config_desc, "layers": layers}).encode()
        self.routes[f"/v2/{repo}/manifests/{tag}"] = Answer(body=manifest,
                                                            headers={"Content-Type": registry.MEDIA_OCI_MANIFEST})
        return manifest


# ------------------------------------------------------------------------------------- bombs


def _deflate_zeros(size: int) -> tuple[bytes, bytes]:
    """Raw deflate of `size` zero bytes (a multiple of 1 MiB), made from one block repeated: the
    compressor emits the same bytes for each MiB of zeros after a full flush."""
    assert size % MIB == 0
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = block.compress(bytes(MIB)) + block.flush(zlib.Z_FULL_FLUSH)
    return one * (size // MIB), one


def gzip_of(prefix: bytes, zeros: int, suffix: bytes = b"") -> bytes:
    """gzip of `prefix` + `zeros` zero bytes + `suffix`, at about 1000:1 for the zeros, in a second."""
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)
    middle, one_mib = _deflate_zeros(zeros)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    end = tail.compress(suffix) + tail.flush()   # the final block
    crc, zero = zlib.crc32(prefix), bytes(MIB)
    for _ in range(zeros // MIB):
        crc = zlib.crc32(zero, crc)
    crc = zlib.crc32(suffix, crc)
    length = (len(prefix) + zeros + len(suffix)) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + body + middle + end + crc.to_bytes(4, "little") + length.to_bytes(4, "little")
