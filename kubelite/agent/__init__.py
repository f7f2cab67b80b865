"""The node agent: `agent` (one reconcile pass: relist, sync_pod, GC) and the helpers it owns; the
daemon that runs it (`kubelite serve`) is `kubelite.daemon`, the composition root above this package."""
