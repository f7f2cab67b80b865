"""Container runtimes behind one protocol: `protocol` (the seam), `fake` (simulated, deterministic)."""
