"""The Kubernetes objects kubelite accepts: models, defaulting, validation and spec hashes.

Import the submodules: `models`, `decode` (document → DesiredPod), `validation`, `quantity`.
"""
