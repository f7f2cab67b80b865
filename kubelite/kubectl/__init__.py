"""kubectl's printing rules, shared by the CLI and the API server — pure, standard library only.

Owns: how kubectl prints each object, one module per object: `pods` (`get pods`), `events`
(`get events`), `configs` (ConfigMaps and Secrets), `storage` (claims, volumes, classes), `nodes`
(the Node row), `describe` (`describe pod` and the describer mechanics), `qos` (a pod's QoS class
when the status has none), and `common` (ages, times, accessors, tab alignment). Inputs are
plain v1 dicts; the current time is always passed in as `now`, so every function is deterministic.

Import cost matters (`kubelite get pods` must start fast): this package imports only `datetime`,
`typing` and, for Secrets, `base64` — never pydantic, SQLAlchemy or another kubelite package. It
sits below the CLI and the API server and imports neither.
"""
