"""``python -m pledge_sim enroll ...``: the pledge CLI without ``brski_cli``."""

from __future__ import annotations

import argparse
import sys

from pledge_sim.cli import EXIT_USAGE, add_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pledge_sim", description="BRSKI pledge simulator"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_commands(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors already
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
