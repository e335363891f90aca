"""``brski pledge ...``: enroll a simulated pledge, or re-enroll its LDevID.

Exit codes: 0 success, 1 the protocol refused (the failing check is printed),
2 usage or configuration error.  The integrator's ``brski_cli`` calls
:func:`add_parser` and then ``args.func(args)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from brski import errors
from brski.display import escape_controls
from brski.pki import load_cert, load_private_key
from pledge_sim.config import FORMATS, KEY_TYPES, example_config, load_config
from pledge_sim.service import EnrollResult, cert_summary, enroll_one, reenroll

__all__ = ["add_parser", "cmd_enroll", "cmd_reenroll"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML file with a [pledge] table")
    p.add_argument(
        "--registrar",
        metavar="URL",
        help='registrar base URL, https://host:port; "auto" (enroll\'s default) discovers a join '
        "proxy or registrar by mDNS on the pledge's links",
    )
    p.add_argument("--server-hostname", metavar="NAME", help="TLS SNI (default: URL host)")
    p.add_argument("--out", metavar="DIR", help="directory to store the LDevID in")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="per-request timeout")
    p.add_argument(
        "--chunked",
        action="store_true",
        default=None,
        help="send request bodies with Transfer-Encoding: chunked",
    )
    p.add_argument("--key-type", choices=KEY_TYPES, help="algorithm of the new LDevID key")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log each protocol step")


def add_parser(subparsers: Any) -> None:
    """Add ``pledge`` with ``enroll``, ``reenroll``, ``fleet`` and ``conformance``."""
    pledge = subparsers.add_parser("pledge", help="simulated pledge (BRSKI + EST client)")
    sub = pledge.add_subparsers(dest="pledge_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub)


def add_commands(sub: Any) -> None:
    """``enroll``, ``reenroll`` and ``config-example``, under ``brski pledge`` or ``python -m pledge_sim``."""
    enroll = sub.add_parser("enroll", help="bootstrap: voucher, then an LDevID via EST")
    _common(enroll)
    enroll.add_argument(
        "--dir",
        metavar="PLEDGE_DIR",
        help="dev-PKI pledge directory with idevid.crt, idevid.key, chain.pem",
    )
    enroll.add_argument("--idevid", metavar="CERT", help="IDevID certificate (PEM or DER)")
    enroll.add_argument("--key", metavar="KEY", help="IDevID private key (PEM)")
    enroll.add_argument("--chain", metavar="PEM", help="IDevID intermediate certificates")
    enroll.add_argument(
        "--anchor",
        metavar="PEM",
        action="append",
        help="manufacturer trust anchor for the voucher (repeatable)",
    )
    enroll.add_argument("--format", choices=sorted(FORMATS), help="voucher format (default cms)")
    enroll.add_argument(
        "--interface",
        dest="interfaces",
        action="append",
        metavar="IFACE",
        help="discovery: browse on this link (repeatable; default every link with a link-local address)",
    )
    enroll.add_argument(
        "--discovery-timeout", type=float, metavar="SECONDS", help="discovery: browse at most this long (5)"
    )
    enroll.add_argument(
        "--candidate-timeout",
        type=float,
        metavar="SECONDS",
        help="discovery: give each proxy or registrar found at most this long before the next (60)",
    )
    enroll.set_defaults(func=cmd_enroll)

    re = sub.add_parser("reenroll", help="renew or rekey the LDevID (EST /simplereenroll)")
    _common(re)
    re.add_argument("--ldevid", metavar="CERT", required=True, help="current LDevID certificate")
    re.add_argument("--ldevid-key", metavar="KEY", required=True, help="current LDevID key")
    re.add_argument("--new-key", action="store_true", help="rekey instead of renew")
    re.add_argument(
        "--if-older-than",
        type=float,
        metavar="FRACTION",
        help="renew only once this fraction of the LDevID's validity has passed (e.g. 0.5)",
    )
    re.add_argument(
        "--domain-ca",
        metavar="PEM",
        help="domain CA bundle (default: <out>/domain-ca.pem from enrollment)",
    )
    re.set_defaults(func=cmd_reenroll)

    example = sub.add_parser("config-example", help="print the documented example config (pledge.toml)")
    example.set_defaults(func=lambda _args: print(example_config(), end="") or EXIT_OK)

    # Lab tools: imported lazily so `enroll` does not pay for them.
    from pledge_sim import conformance_cli, fleet

    fleet.add_parser(sub)
    conformance_cli.add_parser(sub)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def _overrides(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in names}


def _say(text: str) -> None:
    """Print what peers wrote (serials, names, details) with controls escaped."""
    print(escape_controls(text))


def _print_enroll(result: EnrollResult) -> None:
    if result.voucher is not None:
        v = result.voucher
        _say("voucher accepted")
        _say(f"  assertion:         {v.assertion}")
        _say(f"  serial-number:     {v.serial_number}")
        _say(f"  pinned domain CA:  {v.pinned_domain_subject or '(public key pin)'}")
    if result.ldevid is not None:
        s = cert_summary(result.ldevid)
        _say("LDevID issued")
        _say(f"  subject:           {s['subject']}")
        _say(f"  serial:            {s['serial']}")
        _say(f"  issuer:            {s['issuer']}")
        _say(f"  notBefore:         {s['not_before']}")
        _say(f"  notAfter:          {s['not_after']}")
    for path in result.files:
        _say(f"  saved:             {path}")
    if result.timings_ms:
        _say("timings (ms): " + ", ".join(f"{k}={v}" for k, v in result.timings_ms.items()))
    if not result.ok:
        _say(f"FAILED [{result.failed_check}]: {result.detail}")


def cmd_enroll(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
    try:
        cfg = load_config(
            args.config,
            {
                **_overrides(
                    args,
                    [
                        "registrar",
                        "idevid",
                        "key",
                        "chain",
                        "out",
                        "format",
                        "dir",
                        "server_hostname",
                        "timeout",
                        "chunked",
                        "key_type",
                        "interfaces",
                        "discovery_timeout",
                        "candidate_timeout",
                    ],
                ),
                "anchor": args.anchor,
            },
        )
        log = logging.getLogger("pledge_sim")
        if cfg.discover:
            from pledge_sim.discovery import discover_and_enroll

            outcome = asyncio.run(discover_and_enroll(cfg, log=log))
            result, doc = outcome.result, outcome.to_json()
        else:
            result = asyncio.run(enroll_one(cfg, log=log))
            doc = result.to_json()
    except errors.ConfigError as exc:
        print(f"configuration error [{exc.check}]: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        if cfg.discover:
            _print_discovery(doc)
        _print_enroll(result)
    return EXIT_OK if result.ok else EXIT_REFUSED


def _print_discovery(doc: dict[str, Any]) -> None:
    d = doc["discovery"]
    print(f"discovery on {', '.join(d['interfaces']) or '(no link)'}: {len(d['found'])} found in {d['seconds']} s")
    for a in d["attempts"]:
        outcome = "onboarded" if a["ok"] else f"rejected [{a['failed_check']}]"
        print(f"  {a['kind']:<9} {a['name']} [{a['address']}]:{a['port']}: {outcome} ({a['seconds']} s)")


def _renewal_due(cert: Any, fraction: float) -> bool:
    """Renew after a fraction of the validity (RFC 7030 4.2.2); say so when skipping."""
    from datetime import UTC, datetime

    from pledge_sim.renewal import renewal_due, renewal_due_at

    due_at = renewal_due_at(cert, fraction)
    if renewal_due(cert, fraction, now=datetime.now(UTC)):
        return True
    print(json.dumps({"ok": True, "renewed": False, "due_at": due_at.isoformat()}))
    return False


def cmd_reenroll(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
    try:
        cfg = load_config(
            args.config,
            {
                **_overrides(
                    args,
                    [
                        "registrar",
                        "out",
                        "server_hostname",
                        "timeout",
                        "chunked",
                        "key_type",
                        "domain_ca",
                    ],
                ),
            },
            purpose="reenroll",
        )
        try:
            cert = load_cert(Path(args.ldevid).read_bytes())
            key = load_private_key(Path(args.ldevid_key).read_bytes())
        except (OSError, errors.BrskiError) as exc:
            raise errors.ConfigError(
                f"cannot load the LDevID: {exc}", check="pledge.config"
            ) from exc
        if args.if_older_than is not None and not _renewal_due(cert, args.if_older_than):
            return EXIT_OK
        new_cert = asyncio.run(
            reenroll(
                cfg,
                ldevid_cert=cert,
                ldevid_key=key,
                new_key=args.new_key,
                log=logging.getLogger("pledge_sim"),
            )
        )
    except errors.ConfigError as exc:
        print(f"configuration error [{exc.check}]: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    except errors.BrskiError as exc:
        if args.json:
            print(json.dumps({"ok": False, "failed_check": exc.check, "detail": exc.detail}))
        else:
            _say(f"FAILED [{exc.check}]: {exc.detail}")
        return EXIT_REFUSED
    summary = cert_summary(new_cert)
    if args.json:
        print(json.dumps({"ok": True, "ldevid": summary, "rekeyed": args.new_key, "renewed": True}, indent=2))
    else:
        print("LDevID " + ("rekeyed" if args.new_key else "renewed"))
        for k, v in summary.items():
            _say(f"  {k + ':':<18} {v}")
    return EXIT_OK
