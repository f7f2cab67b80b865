"""Security profiles for runc: seccomp (containers-common's RuntimeDefault, Localhost files below
`<root>/seccomp`) and AppArmor (kubelite's default, loaded on first use, or a loaded Localhost one).

Owns: reading and loading those profiles; `ocispec` writes them into a container's config.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kubelite.core.types import SecurityProfile
from kubelite.errors import RuntimeError_
from kubelite.runtime import apparmor, linux


class SecurityProfiles:
    """`OCIRuntime`'s profile loading: the default seccomp profile is read once per runtime."""

    seccomp_root: Path
    default_seccomp_profile: Path
    _default_seccomp: dict[str, Any] | None

    def _seccomp_profile(self, profile: SecurityProfile | None) -> dict[str, Any] | None:
        """The profile file's JSON for the container's seccomp choice; None for Unconfined.

        RuntimeDefault is containers-common's `seccomp.json` (read once); Localhost a file below
        `<root>/seccomp`. A profile that cannot be read is a RuntimeError_ (CreateContainerError).
        """
        if profile is None or profile.type == "Unconfined":
            return None
        if profile.type == "RuntimeDefault":
            if self._default_seccomp is None:
                self._default_seccomp = self._read_profile(
                    self.default_seccomp_profile,
                    hint=" (RuntimeDefault is the profile of Debian's golang-github-containers-common: "
                         "apt-get install golang-github-containers-common)")
            return self._default_seccomp
        ref = profile.localhost_ref or ""
        path = self.seccomp_root / ref
        if not ref or os.path.isabs(ref) or ".." in Path(ref).parts:
            raise RuntimeError_(f'failed to generate seccomp spec opts: localhost profile "{ref}" is not a '
                                f"path below {self.seccomp_root}")
        return self._read_profile(path)

    @staticmethod
    def _read_profile(path: Path, hint: str = "") -> dict[str, Any]:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise RuntimeError_(f'failed to generate seccomp spec opts: cannot load seccomp profile "{path}": '
                                f"open {path}: {(exc.strerror or str(exc)).lower()}{hint}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RuntimeError_(f'failed to generate seccomp spec opts: decoding seccomp profile "{path}" '
                                f"failed: {exc}") from None
        if not isinstance(data, dict):
            raise RuntimeError_(f'failed to generate seccomp spec opts: seccomp profile "{path}" is not a JSON object')
        return data

    def _apparmor_profile(self, profile: SecurityProfile | None) -> str | None:
        """The AppArmor profile name for runc: kubelite's default (loaded on first use) or a Localhost
        profile, which must be loaded already (as the kubelet checks)."""
        if profile is None or profile.type == "Unconfined":
            return None
        if profile.type == "RuntimeDefault":
            if not linux.apparmor_loaded(apparmor.DEFAULT_PROFILE):
                parser = shutil.which("apparmor_parser", path="/usr/sbin:/usr/bin:/sbin:/bin") or "apparmor_parser"
                try:
                    result = subprocess.run([parser, "-Kr"], input=apparmor.default_profile().encode(), timeout=30,
                                            capture_output=True, check=False)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise RuntimeError_(f"loading the AppArmor profile {apparmor.DEFAULT_PROFILE}: {exc}") from None
                if result.returncode != 0:
                    detail = result.stderr.decode(errors="replace").strip()
                    raise RuntimeError_(f"loading the AppArmor profile {apparmor.DEFAULT_PROFILE}: {detail}")
            return apparmor.DEFAULT_PROFILE
        name = profile.localhost_ref or ""
        if not linux.apparmor_loaded(name):
            raise RuntimeError_(f"apparmor profile not found {name}")
        return name
