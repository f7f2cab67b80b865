"""Who may read the API: the bearer token, and the kubeconfig that carries it.

Owns: `<root>/api/token` (generated once, 0600 in a 0700 directory: only root — or the user that
runs kubelite — can read it), `<root>/api/server` (the URL the daemon serves, for `kubelite
kubeconfig`), the names of the CA's and the server's key and certificate files beside them (which
`tls` makes) and the reading of the CA certificate, the constant-time token check, and the kubeconfig
text. Standard library only, so `kubelite kubeconfig` loads no cryptography.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

import kubelite.statefiles as statefiles
from kubelite import layout

API_DIR = layout.API_DIR
TOKEN_FILE = "token"
SERVER_FILE = "server"

#: The API directory's certificate files (made by `tls`; the CA certificate also read here).
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"


def ca_pem(directory: Path) -> bytes | None:
    """The CA certificate of the API directory `directory`, or None before the daemon made it."""
    try:
        return (directory / CA_CERT).read_bytes()
    except FileNotFoundError:
        return None


def api_dir(root: Path) -> Path:
    return layout.api_dir(root)


def ensure_token(root: Path) -> str:
    """The node's token; created on first start with a fresh 256-bit secret."""
    directory = api_dir(root)
    statefiles.make_dirs(directory, base=root)
    path = directory / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        statefiles.tighten(path, 0o600)
        return token
    token = secrets.token_urlsafe(32)
    statefiles.write_atomic(path, token + "\n")   # all or nothing: a reader never sees half a token
    return token


def read_token(root: Path) -> str | None:
    try:
        return (api_dir(root) / TOKEN_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def record_server(root: Path, url: str) -> None:
    path = api_dir(root) / SERVER_FILE
    statefiles.write_atomic(path, url + "\n")


def read_server(root: Path) -> str | None:
    try:
        return (api_dir(root) / SERVER_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries this node's bearer token. Header bytes that are not
    UTF-8 (kept as surrogate escapes by the HTTP parser) are simply not the token."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    given = value.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, token.encode())


def kubeconfig(*, server: str, token: str, node: str, ca_pem: bytes) -> str:
    """A kubeconfig (YAML) with one cluster, user and context, all named after the node."""
    import base64

    def q(text: str) -> str:   # a YAML double-quoted scalar (JSON string syntax is valid YAML)
        import json
        return json.dumps(text)

    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {q(node)}\n"
        "  cluster:\n"
        f"    server: {q(server)}\n"
        f"    certificate-authority-data: {base64.b64encode(ca_pem).decode()}\n"
        "users:\n"
        f"- name: {q(node)}\n"
        "  user:\n"
        f"    token: {q(token)}\n"
        "contexts:\n"
        f"- name: {q(node)}\n"
        "  context:\n"
        f"    cluster: {q(node)}\n"
        f"    user: {q(node)}\n"
        "    namespace: default\n"
        f"current-context: {q(node)}\n"
        "preferences: {}\n"
    )
