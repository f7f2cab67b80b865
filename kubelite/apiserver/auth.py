"""Who may use the API: the two bearer tokens, what each may do, and the kubeconfig that carries one.

Owns: `<root>/api/token`, the read-only credential (get, list, watch), and `<root>/api/admin-token`,
the admin credential that may also exec, attach, cp and port-forward — each generated once at first
start, 0600 in a 0700 directory: only root (or the user that runs kubelite) can read them;
`<root>/api/server` (the URL the daemon serves, for `kubelite
kubeconfig`), the names of the CA's and the server's key and certificate files beside them (which
`tls` makes) and the reading of the CA certificate, the constant-time token check, and the kubeconfig
text. Standard library only, so `kubelite kubeconfig` loads no cryptography.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from pathlib import Path

import kubelite.statefiles as statefiles
from kubelite import layout

API_DIR = layout.API_DIR
TOKEN_FILE = "token"
ADMIN_TOKEN_FILE = "admin-token"
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


class Access(enum.IntEnum):
    """What a request's credential may do; each level may do all the one below it may."""
    NONE = 0
    #: The read-only token: get, list and watch what is served.
    READ = 1
    #: The admin token: also exec, attach (and so cp) and port-forward.
    ADMIN = 2

    @property
    def user(self) -> str:
        """The user name a SelfSubjectReview, a refusal and the audit log give the credential."""
        return {Access.NONE: "system:anonymous", Access.READ: "kubelite:viewer",
                Access.ADMIN: "kubelite:admin"}[self]


def token_file(admin: bool = False) -> str:
    return ADMIN_TOKEN_FILE if admin else TOKEN_FILE


def ensure_token(root: Path, *, admin: bool = False) -> str:
    """The node's read-only token, or with `admin` its admin token; created on first start with a
    fresh 256-bit secret."""
    directory = api_dir(root)
    statefiles.make_dirs(directory, base=root)
    path = directory / token_file(admin)
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


def read_token(root: Path, *, admin: bool = False) -> str | None:
    try:
        return (api_dir(root) / token_file(admin)).read_text().strip() or None
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


def access(header: str | None, token: str, admin_token: str) -> Access:
    """What the credential of an `Authorization` header may do: both tokens are compared, in
    constant time, whichever matches."""
    read, admin = authorized(header, token), authorized(header, admin_token)
    return Access.ADMIN if admin else Access.READ if read else Access.NONE


def kubeconfig(*, server: str, token: str, node: str, ca_pem: bytes, admin: bool = False) -> str:
    """A kubeconfig (YAML) with one cluster, user and context, named after the node; the admin
    credential's user and context are `<node>-admin`, so both merge into one kubeconfig."""
    user = f"{node}-admin" if admin else node
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
        f"- name: {q(user)}\n"
        "  user:\n"
        f"    token: {q(token)}\n"
        "contexts:\n"
        f"- name: {q(user)}\n"
        "  context:\n"
        f"    cluster: {q(node)}\n"
        f"    user: {q(user)}\n"
        "    namespace: default\n"
        f"current-context: {q(user)}\n"
        "preferences: {}\n"
    )
