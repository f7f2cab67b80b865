"""`kubelite completion bash|zsh`: a shell completion script for the whole command tree.

Owns: generating the script from the parser at call time with shtab, so it always matches the
commands and flags of this version, and nothing is generated or imported on any other command's
start (shtab is imported here alone).
"""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import shtab

    script = shtab.complete(parser, shell=args.shell)
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
    return 0
