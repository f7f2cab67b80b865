"""kubelite's RuntimeDefault AppArmor profile, for hosts whose kernel has AppArmor enabled.

Owns the profile's name and text. It enforces the rules of the default profiles that containerd
and Docker generate (kubelite writes its own text from the same rules):

* the container may use the network, the capabilities it holds and its own files, may unmount,
  and may trace or signal only processes under the same profile (and take signals from the
  unconfined host);
* no mount;
* no writes in /proc but below a process's own directory (`/proc/<pid>/…`) and the IPC settings
  its namespace owns (`/proc/sys/kernel/shm*`): every other file directly in /proc, every other
  directory below it, and /proc/sys outside kernel/shm* are read-only; sysrq-trigger, kcore,
  mem and kmem are not reachable at all;
* /sys is read-only except the cgroup file system (`/sys/fs/cgroup`); the firmware, the power
  capping counters (`/sys/devices/virtual/powercap`, RAPL: a side channel) and the security
  file systems are not reachable at all.

Loaded once per boot with `apparmor_parser -Kr` by the OCI runtime. Pure: no files, no processes.
"""

from __future__ import annotations

DEFAULT_PROFILE = "kubelite-default"

#: /proc entries that are not a process's own directory nor `sys`: any name of one character but
#: a digit 1-9, of two not starting with 1-9 and a digit, of three other than a number and "sys",
#: or of four or more not starting with a number of at least four digits.
_PROC_OTHER_DIRS = "{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}"


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

  # /proc: read-only but for the processes' own directories and kernel.shm*
  deny @{{PROC}}/* w,
  deny @{{PROC}}/{_PROC_OTHER_DIRS}/** w,
  deny @{{PROC}}/sys/[^k]** w,
  deny @{{PROC}}/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/kcore rwklx,
  deny @{{PROC}}/mem rwklx,
  deny @{{PROC}}/kmem rwklx,

  # /sys: read-only but for /sys/fs/cgroup
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,
}}
"""
