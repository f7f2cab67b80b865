"""Manifests and image indexes: a reference resolved to the image manifest for linux and this
machine's architecture, each manifest verified against its digest and bounded (`MANIFEST_MAX`).

Owns: the media types kubelite asks for and the descriptors it accepts.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from kubelite.runtime.images import host_architecture
from kubelite.runtime.images.records import json_object
from kubelite.runtime.registry.bodies import read_body
from kubelite.runtime.registry.client import Client
from kubelite.runtime.registry.config import PullError

#: Manifests and indexes larger than this (decoded) are refused: containerd's bound, and the
#: distribution registry's own limit on what it accepts.
MANIFEST_MAX = 4 << 20

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPT = ", ".join([MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST])
_INDEXES = {MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST}
_MANIFESTS = {MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST}


def resolve(client: Client) -> tuple[dict[str, Any], str]:
    """The image manifest for this machine, and the digest of what the reference names (an index's
    digest when it names an index, as Docker's RepoDigests)."""
    doc, media, digest = _manifest(client, client.ref.by_digest, client.ref.name)
    top_digest = digest
    for _ in range(4):
        if media in _MANIFESTS:
            return doc, top_digest
        if media in MEDIA_DOCKER_SCHEMA1:
            raise PullError(f"{client.ref.name} has a Docker schema 1 manifest, which is deprecated and not "
                            "supported: push it again with a current client")
        if media not in _INDEXES:
            raise PullError(f"{client.ref.name}: unsupported manifest media type {media!r}")
        child = select_platform(doc, client.ref.name)
        doc, media, _ = _manifest(client, child["digest"], client.ref.name, media=child.get("mediaType"))
    raise PullError(f"{client.ref.name}: image indexes nested too deep")


def _manifest(client: Client, reference: str, name: str, *,
              media: str | None = None) -> tuple[dict[str, Any], str, str]:
    response = client.get(f"/v2/{client.ref.repository}/manifests/{reference}", headers={"Accept": ACCEPT})
    if response.status_code != 200:
        raise client.fail(response, name)
    body = read_body(response, MANIFEST_MAX, f"{name}: the manifest")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if reference.startswith("sha256:") and digest != reference:
        raise PullError(f"{name}: the registry sent a manifest with digest {digest} for {reference}: refusing it")
    header = response.headers.get("docker-content-digest", "")
    if header.startswith("sha256:") and header != digest:
        raise PullError(f"{name}: the manifest has digest {digest}, not {header} as the registry says: refusing it")
    doc = json_object(body, what=f"{name}: the manifest", error=PullError)
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    found = doc.get("mediaType") or (content_type if content_type != "application/json" else "") or media
    if not found:
        found = MEDIA_OCI_INDEX if "manifests" in doc else MEDIA_OCI_MANIFEST if "layers" in doc else ""
    if doc.get("schemaVersion") == 1:
        found = MEDIA_DOCKER_SCHEMA1[0]
    return doc, found, digest


def select_platform(index: dict[str, Any], name: str) -> dict[str, Any]:
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
    return descriptor(matching[0], "platform manifest")


def descriptor(desc: Any, what: str) -> dict[str, Any]:
    """A descriptor with a sha256 digest and a size; PullError naming `what` otherwise."""
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str) \
            or not re.fullmatch(r"sha256:[a-f0-9]{64}", desc["digest"]) \
            or not isinstance(desc.get("size"), int) or desc["size"] < 0:
        raise PullError(f"the manifest has an invalid {what} descriptor (it needs a sha256 digest and a size)")
    return desc
