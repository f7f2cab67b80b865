"""kubelite's RuntimeDefault AppArmor profile, for hosts whose kernel has AppArmor enabled.

Owns the profile's name and text. The rules follow what container runtimes' default profiles
enforce: the container may use the network, capabilities it holds and its own files, but may not
mount, may not write kernel settings below /proc/sys (except the IPC ones its namespace owns),
may not reach the kernel's memory, firmware or security filesystems, and may trace or signal
only processes under the same profile. Loaded once per boot with `apparmor_parser -Kr` by the
OCI runtime. Pure: no files, no processes.
"""

from __future__ import annotations

DEFAULT_PROFILE = "kubelite-default"


def default_profile(name: str = DEFAULT_PROFILE) -> str:
    """The profile's source text, as `apparmor_parser` reads it."""
    return f"""#include <tunables/global>

profile {name} flags=(attach_disconnected,mediate_deleted) {{
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  signal (receive) peer=unconfined,
  signal (send,receive) peer={name},
  ptrace (trace,read,tracedby,readby) peer={name},

  deny mount,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/kcore rwklx,
  deny @{{PROC}}/sys/[^k]** w,
  deny @{{PROC}}/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}}
"""
