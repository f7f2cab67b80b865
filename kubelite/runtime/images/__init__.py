"""The local image store: images loaded from archives or pulled from registries, each layer unpacked once.

One module per responsibility, from the top down:

* `store` — `ImageStore`: `<root>/images/`, its index, loads and pulls committed all or nothing,
  tagging and removal, `layer_dirs()` for overlayfs;
* `archives` — `docker save` and OCI image-layout archives (`image load`), read into load plans;
* `saving` — images written as a `docker save` archive (`image save`);
* `tarsplit` — each layer's tar stream without its files' contents, kept when it is unpacked, so
  that `image save` gives back the exact tar (the same diff_ids, the same image id);
* `unpacking` — one layer blob streamed, decompressed and verified against its digests;
* `layerwriter` — its entries written below a directory without ever leaving it (the security
  boundary: no escaping names, no followed symlinks, whiteouts in overlayfs form);
* `limits` — the bounds a pulled layer is held to (`--image-max-layer-size`, the GC high threshold,
  tar header records);
* `garbage` — the image GC's rules (which images go, least recently used first) and stale downloads;
* `records` — the records they share and the image config parser.

Pulls themselves (the OCI distribution protocol) are `runtime.registry`'s: it downloads and
verifies blobs and hands them to `ImageStore.add_pulled`. Image references and their normalization
are `runtime.reference`'s. What callers use is importable from here.
"""

from __future__ import annotations

from kubelite.runtime.images.limits import DEFAULT_MAX_LAYER_BYTES, UnpackLimits, format_size
from kubelite.runtime.images.records import Image, ImageConfig, PulledLayer, host_architecture
from kubelite.runtime.images.store import ImageStore
from kubelite.runtime.reference import DEFAULT_DOMAIN, ImageError, normalize_reference

__all__ = ["DEFAULT_DOMAIN", "DEFAULT_MAX_LAYER_BYTES", "Image", "ImageConfig", "ImageError", "ImageStore",
           "PulledLayer", "UnpackLimits", "format_size", "host_architecture", "normalize_reference"]
