"""The read-only Kubernetes API of one kubelite node (`kubelite serve` runs it beside the agent).

kubectl, k9s, the Python `kubernetes` client and Prometheus read the node through it: pods (list,
get, watch, log), events, ConfigMaps, Secrets, the node itself, health and metrics. It reads the
state database through its own read-only connections and never writes it; the agent's one writer
thread stays the only writer. Tables are printed by kubectl's rules from `kubelite.kubectl`, as the
CLI prints them; the daemon (`kubelite.daemon`) starts it, and nothing below it imports it.
"""
