"""The ``brski`` command: one entry point, a subcommand per role.

It sits above the roles and imports them lazily, so ``brski pki init`` does
not load aiohttp and the roles never import each other.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    from brski import __version__
    from brski_cli import demo, pki_cmd, voucher_cmd
    from brski_cli.netlab import cli as netlab_cli
    from join_proxy import cli as proxy_cli
    from masa import cli as masa_cli
    from pledge_sim import cli as pledge_cli
    from registrar import cli as registrar_cli

    parser = argparse.ArgumentParser(
        prog="brski",
        description="Zero-touch onboarding (BRSKI, RFC 8995): MASA, registrar, join proxy, pledge simulator, network lab, tools.",
    )
    parser.add_argument("--version", action="version", version=f"brski {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pki_cmd.add_parser(sub)
    masa_cli.add_parser(sub)
    registrar_cli.add_parser(sub)
    pledge_cli.add_parser(sub)
    proxy_cli.add_parser(sub)
    voucher_cmd.add_parser(sub)
    demo.add_parser(sub)
    netlab_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
