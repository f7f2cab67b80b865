"""What kubelite offers the service manager that runs it: systemd's readiness protocol (`notify`),
log lines for the journal in text or JSON (`logformat`) and its unit file (`unit`). Standard library
only; nothing here knows about pods beyond the names of a log line's fields.
"""
