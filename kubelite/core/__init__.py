"""Pure decisions: restart rules, CrashLoopBackOff, `plan()` → `PodActions`, pod status.

Nothing in this package reads a clock, a file or a process: `now` is always an argument.
Modules: `types` (the data), `backoff`, `plan`, `status`, `probes`, `hooks`, `podconfig`, `dns`,
`security`.
"""
