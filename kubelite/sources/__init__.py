"""Where desired pods come from: the manifest directory, and the git repository that may feed it.

Modules:

* `manifests` — which files are manifests, reading and decoding them (every YAML document of a
  file), problems with file/document/line/field, and `resolve()`: first file wins, an invalid
  edit keeps the last valid version.
* `watch` — change hints from inotify (watchdog), debounced, following a manifest directory that
  is re-created or swapped as a symlink. Hints only: the agent rescans on each one.
* `gitsync` — following a git repository: a worktree per commit, validated whole, swapped in
  as the manifests symlink; status, backoff, drift, redacted credentials.
"""
