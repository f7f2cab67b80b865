"""`kubelite install-service`: write kubelite's systemd unit (or print it) and have systemd read it.

Owns: where the unit goes (`/etc/systemd/system`, or `--unit-dir`), which program it starts (this
kubelite: the `kubelite` command that runs, else this Python with `-m kubelite.cli.main`), and
whether systemd runs here (`/run/systemd/system`, as sd_booted(3) asks): only then is
`systemctl daemon-reload` run. Without systemd the unit is written all the same and the command
says so; it never enables or starts the service (the administrator does, as the docs say).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

SYSTEMD_RUNNING = Path("/run/systemd/system")


def program() -> tuple[str, ...]:
    """The command line that runs this kubelite: its `kubelite` script when that is what runs."""
    script = Path(sys.argv[0])
    if script.name == "kubelite" and script.exists():
        return (str(script.resolve()),)
    return (sys.executable, "-m", "kubelite.cli.main")


def systemd_running() -> bool:
    return SYSTEMD_RUNNING.is_dir()


def run(args: argparse.Namespace) -> int:
    from kubelite import statefiles
    from kubelite.errors import UsageError
    from kubelite.service import unit

    config = None
    if args.config:
        path = Path(args.config).absolute()
        if not path.is_file():
            raise UsageError(f"--config {args.config}: no such file")
        config = str(path)
    text = unit.render(command=program(), config=config)
    if args.print:
        sys.stdout.write(text)
        return 0
    target = Path(args.unit_dir) / unit.NAME
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        statefiles.write_atomic(target, text, 0o644)
    except PermissionError:
        raise UsageError(f"cannot write {target}: installing the service needs root") from None
    print(f"wrote {target}")
    if not systemd_running():
        print("systemd is not running on this machine: the unit is written but not loaded "
              "(start kubelite with 'kubelite serve' here)")
        return 0
    systemctl = shutil.which("systemctl") or "systemctl"
    result = subprocess.run([systemctl, "daemon-reload"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise UsageError(f"systemctl daemon-reload failed: {result.stderr.strip() or result.returncode}")
    print("systemd reloaded its units; start kubelite now and at every boot with:\n"
          f"  systemctl enable --now {unit.NAME.removesuffix('.service')}")
    return 0
