"""``brski registrar|masa audit verify|export``: the evidence an auditor asks for.

Both roles keep a hash-chained event log (:mod:`brski_storage.chain`).
``verify`` re-walks it and exits 1 naming the first broken event and how
it broke (edited, removed, reordered), then compares every evidenced table
with the state the log implies, naming each row that disagrees
(:mod:`brski_web.evidence`); ``checkpoint`` and ``adopt`` write the state
evidence's checkpoints; ``export`` writes the events as JSON
Lines or CSV, optionally only those at or after ``--since`` or about one
``--device``, each with its hashes so the export can be checked on its own.

The role CLIs call :func:`add_audit_commands` with their store opener, so
this module needs neither role (it imports :mod:`brski_storage` only).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from brski.errors import BrskiError, ConfigError
from brski_storage.base import EventLog
from brski_storage.export import all_events, event_json, export_header, export_line
from brski_web.evidence import audit_report, checkpoint_after, state_summary

__all__ = ["add_audit_commands", "event_json", "parse_since"]

OpenStore = Callable[[argparse.Namespace], Awaitable[EventLog]]
# A role's checks of its tables against the evidence it published (e.g. the
# registrar's store against its last CRL): one line per problem, check named.
StateChecks = Callable[[argparse.Namespace, Any], Awaitable[list[str]]]


def parse_since(text: str) -> datetime:
    """ISO 8601 date or date-time; naive values are UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r} is not an ISO 8601 date or date-time", check="audit.since") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _verify(
    store: EventLog, role: str, out: IO[str], *, checks: StateChecks | None = None,
    args: argparse.Namespace | None = None,
) -> int:
    """The whole chain, then every evidenced table against the state the
    log implies (brski_web.evidence), then the role's own checks."""
    audit = await audit_report(store)
    report = audit.chain
    code = 0
    if report.ok:
        head = report.head_hash.hex() if report.head_hash else "-"
        print(f"{role} event log intact: {report.count} events, head id {report.head_id}, head hash {head}", file=out)
    else:
        print(
            f"{role} event log TAMPERED: {report.problem} at event {report.first_bad_id}: {report.detail}"
            f" ({report.count} events verified before it)",
            file=out,
        )
        code = 1
    if audit.state.ok:
        print(f"{role} store consistent with its event log: {state_summary(audit.state)}", file=out)
    else:
        for line in audit.state.lines():
            print(f"{role} store INCONSISTENT: {line}", file=out)
        print(f"{role} store: {len(audit.state.disagreements)} row(s) disagree with the event log"
              f" ({state_summary(audit.state)})", file=out)
        code = 1
    if checks is not None:
        problems = await checks(args or argparse.Namespace(), store)
        for line in problems:
            print(f"{role} store INCONSISTENT: {line}", file=out)
        if problems:
            code = 1
    return code


async def _checkpoint(store: EventLog, role: str, out: IO[str]) -> int:
    """Verify, then fold the state events since the last checkpoint (chained)."""
    audit = await audit_report(store)
    made = await checkpoint_after(store, audit, audit.state, now=datetime.now(UTC))
    if not audit.chain.ok:
        print(f"{role} event log TAMPERED ({audit.chain.detail}): no checkpoint taken", file=out)
        return 1
    print(f"{role} checkpoint: {'event ' + str(made) if made else 'nothing new to fold'}", file=out)
    return 0 if audit.state.ok else 1


async def _adopt(store: EventLog, role: str, reason: str, out: IO[str]) -> int:
    event = await store.adopt_state_baseline(at=datetime.now(UTC), reason=reason)
    print(f"{role} store adopted as found: baseline checkpoint event {event} ({reason})", file=out)
    return 0


async def _export(store: EventLog, args: argparse.Namespace, out: IO[str]) -> int:
    since = parse_since(args.since) if args.since else None
    out.write(export_header(args.format))
    count = 0
    async for e in all_events(store, device=args.device, since=since):
        out.write(export_line(e, args.format))
        count += 1
    print(f"exported {count} event(s)", file=sys.stderr)
    return 0


def add_audit_commands(
    cmds: Any, *, role: str, common: Callable[[argparse.ArgumentParser], None], open_store: OpenStore,
    state_checks: StateChecks | None = None,
) -> None:
    """Add ``audit verify`` and ``audit export`` to a role's subcommands."""

    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            store = await open_store(args)
            try:
                if args.audit_cmd == "verify":
                    return await _verify(store, role, sys.stdout, checks=state_checks, args=args)
                if args.audit_cmd == "checkpoint":
                    return await _checkpoint(store, role, sys.stdout)
                if args.audit_cmd == "adopt":
                    return await _adopt(store, role, args.reason, sys.stdout)
                if args.out:
                    with Path(args.out).open("w", encoding="utf-8", newline="") as fh:
                        return await _export(store, args, fh)
                return await _export(store, args, sys.stdout)
            finally:
                await store.close()

        try:
            return asyncio.run(main())
        except ConfigError as exc:
            print(f"brski {role} audit: {exc.detail}", file=sys.stderr)
            return 2
        except BrskiError as exc:
            print(f"brski {role} audit: {exc.detail} (check: {exc.check})", file=sys.stderr)
            return 1

    audit = cmds.add_parser("audit", help="verify, checkpoint or export the hash-chained event log")
    acmds = audit.add_subparsers(dest="audit_cmd", required=True, metavar="COMMAND")
    verify = acmds.add_parser(
        "verify", help="exit 0 if the chain is intact (and the store agrees with what it published), 1 naming each problem"
    )
    common(verify)
    verify.set_defaults(func=run)
    checkpoint = acmds.add_parser(
        "checkpoint", help="verify, then fold the state evidence so far into a chained checkpoint (faster verifies)"
    )
    common(checkpoint)
    checkpoint.set_defaults(func=run)
    adopt = acmds.add_parser(
        "adopt", help="take the tables as they are now as the evidence (recorded with --reason; for a store checked by other means)"
    )
    common(adopt)
    adopt.add_argument("--reason", required=True, help="why the store is trusted as found (stored in the chain)")
    adopt.set_defaults(func=run)
    export = acmds.add_parser("export", help="events as JSON Lines or CSV, with their hashes")
    common(export)
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--since", metavar="T", help="only events at or after T (ISO 8601)")
    export.add_argument("--device", metavar="SERIAL", help="only events about this device")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(func=run)
