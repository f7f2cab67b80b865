"""kubelite: a small Kubernetes-style node agent.

Kubernetes Pod manifests in a directory become pods on this machine, restarted by the
Kubernetes rules and shown with a kubectl-shaped CLI. This package root imports nothing:
the CLI's read path must stay fast, so every heavy import happens where it is needed.
"""

__version__ = "0.1.0"
