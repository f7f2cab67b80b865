"""Container runtimes behind one protocol, and what they are built from.

`protocol` is the seam the agent calls (CRI-shaped); `oci` implements it on runc, conmon and
catatonit, `fake` simulates it (deterministic, for tests and dry runs). Around them: `ocispec`
(pure OCI config and conmon argv), `images`, `registry` and `reference` (the image store, pulls,
references), `cni` (pod networking), `volumes` (pod volumes on the host), `layout` (where files
are), `view` (logs, exec and signals for the CLI, without the daemon), `crilog`, `etcfiles`,
`termination`, `linux`, `seccomp` and `apparmor`.
"""
