"""The node agent: `agent` (one reconcile pass: relist, sync_pod, GC) and `daemon` (`kubelite serve`)."""
