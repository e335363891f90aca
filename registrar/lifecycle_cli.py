"""``brski registrar devices revoke|decommission``: lifecycle from the command line.

They act on the store directly, like ``devices list``, so they work with
the server stopped or running (SQLite serialises the writers). A running
registrar notices on the next CRL request: the newest CRL lists fewer
revocations than the store, so it signs a new one; its OCSP answers read
the store on every query (registrar/revocation.py).
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from brski.crl import REASONS
from brski_storage import open_registrar_store
from registrar.admin import certificate_json, device_json
from registrar.revocation import decommission_device, revoke_device

__all__ = ["add_device_commands", "network_json"]


async def network_json(store: Any, serial: str) -> dict[str, Any]:
    """``devices show``: the device's class and its current 802.1X sessions."""
    from registrar.netaccess_api import session_json

    profile = await store.get_device_profile(serial)
    return {
        "device_class": profile.device_class if profile else None,
        "mud_url": profile.mud_url if profile else None,
        "network_sessions": [session_json(s) for s in await store.network_sessions(device_serial=serial)],
    }


def add_device_commands(
    dcmds: Any,
    *,
    common: Callable[[argparse.ArgumentParser], None],
    database: Callable[[argparse.Namespace], str],
    run: Callable[[Callable[[], Any]], int],
) -> None:
    def cmd(args: argparse.Namespace) -> int:
        actor = f"cli:{getpass.getuser()}"

        async def main() -> int:
            async with await open_registrar_store(database(args)) as store:
                op = revoke_device if args.devices_cmd == "revoke" else decommission_device
                revoked = await op(store, args.serial, reason=args.reason, now=datetime.now(UTC), actor=actor)
                device = await store.get_device(args.serial)
                assert device is not None
                print(json.dumps(
                    {"device": device_json(device), "revoked": [certificate_json(c) for c in revoked]}, indent=2
                ))
                return 0

        return run(main)

    def set_class(args: argparse.Namespace) -> int:
        from brski.netaccess import AccessPolicy

        async def main() -> int:
            AccessPolicy(default_class=args.device_class)  # validates the name
            async with await open_registrar_store(database(args)) as store:
                now, by = datetime.now(UTC), f"cli:{getpass.getuser()}"
                await store.set_device_profile(
                    args.serial, device_class=args.device_class, mud_url=None, source=f"operator:{by}", at=now
                )
                # A running registrar re-decides open sessions within
                # network_access.assurance_interval_s and cuts refused ones off.
                await store.append_event(
                    at=now, kind="netaccess.class-set", device_serial=args.serial, outcome="info",
                    check="netaccess.class", detail={"class": args.device_class, "by": by},
                )
                print(json.dumps({"serial": args.serial, **await network_json(store, args.serial)}, indent=2))
                return 0

        return run(main)

    p = dcmds.add_parser("set-class", help="set the device class the network-access policy is chosen by")
    common(p)
    p.add_argument("serial")
    p.add_argument("device_class", metavar="CLASS")
    p.set_defaults(func=set_class)

    for name, text in (
        ("revoke", "revoke the device's LDevIDs (published in the CRL and by OCSP)"),
        ("decommission", "revoke its LDevIDs and retire the device"),
    ):
        p = dcmds.add_parser(name, help=text)
        common(p)
        p.add_argument("serial")
        p.add_argument("--reason", choices=sorted(REASONS), help="RFC 5280 5.3.1 reason code")
        p.set_defaults(func=cmd)
