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

One module per responsibility, from the top down:

* `pulling` — `pull()`: the steps of one pull, handing the verified blobs to the image store;
* `manifests` — a reference resolved through image indexes to this machine's manifest;
* `blobs` — configs and layer blobs: bounded, streamed, resumed, shared, verified;
* `client` — the HTTP client of one pull: scheme, TLS trust, redirects, Basic and Bearer auth;
* `bodies` — answers read bounded and decoded (gzip, deflate);
* `config` — `RegistryConfig`, the credentials file and `PullError`.

What callers use is importable from here.
"""

from __future__ import annotations

from kubelite.runtime.registry.blobs import CHUNK, Progress, ProgressFn
from kubelite.runtime.registry.bodies import ANSWER_MAX, ERROR_MAX
from kubelite.runtime.registry.client import MAX_REDIRECTS, parse_challenge
from kubelite.runtime.registry.config import Credentials, PullError, RegistryConfig, load_credentials
from kubelite.runtime.registry.manifests import (
    ACCEPT, MANIFEST_MAX, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_SCHEMA1, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
)
from kubelite.runtime.registry.pulling import CONFIG_MAX, PullResult, pull

__all__ = ["ACCEPT", "ANSWER_MAX", "CHUNK", "CONFIG_MAX", "Credentials", "ERROR_MAX", "MANIFEST_MAX", "MAX_REDIRECTS",
           "MEDIA_DOCKER_LIST", "MEDIA_DOCKER_MANIFEST", "MEDIA_DOCKER_SCHEMA1", "MEDIA_OCI_INDEX",
           "MEDIA_OCI_MANIFEST", "Progress", "ProgressFn", "PullError", "PullResult", "RegistryConfig",
           "load_credentials", "parse_challenge", "pull"]
