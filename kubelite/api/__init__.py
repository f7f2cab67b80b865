"""The Kubernetes objects kubelite accepts: models, defaulting, validation and spec hashes.

Import the submodules: `models`, `decode` (document → DesiredPod), `validation` (with `fieldissues`,
`volume_validation`, `security_validation`), `quantity`, `expansion` (`$(VAR)`).
"""
