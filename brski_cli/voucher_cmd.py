"""``brski voucher inspect|verify``: what an operator reaches for instead of ``openssl cms``.

``inspect`` prints any voucher or voucher-request (CMS, COSE or JWS; DER,
base64 or PEM-armoured) as JSON with its signer and carried certificates.
``verify`` checks the signature, the chain to ``--anchor`` at ``--at`` (default:
now), and optionally the serial-number and nonce; it exits 0 when valid,
1 naming the rule that failed, and 2 when a file or an option is unusable.

A COSE voucher may carry no certificate at all (constrained-voucher section
6.3 strips them for constrained pledges): ``--cert`` supplies candidates for
the signer, and ``verify`` also offers the anchors, since a MASA may sign with
its CA key directly (the cbrski-draft31 voucher does).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from brski.artifact import SignedArtifact, detect_media_type, verify_artifact
from brski.errors import BrskiError, MalformedInput
from brski.oids import ID_KP_CMC_RA
from brski.pki import Role, load_certs, spki_sha256, verify_chain
from brski.voucher import Voucher, VoucherRequest

__all__ = ["add_parser", "load_artifact"]

_MAX_FILE = 1024 * 1024


def _raw_bytes(data: bytes) -> bytes:
    """Accept DER/CBOR/JSON as is, and base64 or PEM-armoured text."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        lines = [ln for ln in text.splitlines() if not ln.startswith(b"-----")]
        try:
            return base64.b64decode(b"".join(lines), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedInput("PEM armour around invalid base64", check="artifact.pem") from exc
    if text[:1] in (b"{",):
        return data
    try:
        decoded = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return data
    # DER SEQUENCE, COSE_Sign1 (tagged or bare array), or a JWS JSON object.
    return decoded if decoded[:1] in (b"\x30", b"\xd2", b"\x84", b"{") else data


def load_artifact(data: bytes, *, extra_certs: list[x509.Certificate] | None = None) -> SignedArtifact:
    """Detect the format and the model (voucher or voucher-request) and verify the signature."""
    raw = _raw_bytes(data)
    media = detect_media_type(raw)
    errors: list[BrskiError] = []
    for kind in (Voucher, VoucherRequest):
        try:
            return verify_artifact(raw, media_type=media, kind=kind, extra_certs=extra_certs or ())
        except BrskiError as exc:
            errors.append(exc)
    # Prefer the error that is not "wrong container" when reporting.
    raise min(errors, key=lambda e: "container" in e.check or "container" in e.detail)


def _cert_info(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "spki_sha256": spki_sha256(cert).hex(),
    }


def _summary(art: SignedArtifact) -> dict[str, Any]:
    kind = "voucher" if isinstance(art.payload, Voucher) else "voucher-request"
    return {
        "media_type": art.media_type,
        "kind": kind,
        "signature": "valid",
        "payload": art.payload.to_obj(),
        "signer": _cert_info(art.signer),
        "certificates": [_cert_info(c) for c in art.certificates],
    }


class _UsageError(Exception):
    """A file or option the command cannot use: exit status 2, not a verdict."""


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes() if str(path) != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        raise _UsageError(f"{path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_FILE:
        raise _UsageError(f"{path}: larger than {_MAX_FILE} bytes")
    return data


def _read_certs(paths: list[Path] | None, what: str) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for path in paths or ():
        try:
            out.extend(load_certs(_read(path)))
        except BrskiError as exc:
            raise _UsageError(f"{what} {path}: {exc.detail}") from exc
    return out


def _usage(exc: _UsageError, cmd: str) -> int:
    print(f"brski voucher {cmd}: {exc}", file=sys.stderr)
    return 2


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        data = _read(args.file)
        certs = _read_certs(args.cert, "--cert")
    except _UsageError as exc:
        return _usage(exc, "inspect")
    try:
        art = load_artifact(data, extra_certs=certs)
    except BrskiError as exc:
        print(json.dumps({"signature": "invalid", "check": exc.check, "detail": exc.detail}, indent=2))
        return 1
    print(json.dumps(_summary(art), indent=2, default=str))
    return 0


def _role_for(art: SignedArtifact) -> Role:
    if isinstance(art.payload, Voucher):
        return Role.MASA_SIGNER
    try:
        eku = art.signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ID_KP_CMC_RA in eku:
            return Role.REGISTRAR_RA
    except x509.ExtensionNotFound:
        pass
    return Role.IDEVID


def _parse_at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _nonce_matches(actual: bytes | None, expected: str) -> bool:
    if actual is None:
        return False
    candidates = {expected.encode()}
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            candidates.add(decoder(expected + "=" * (-len(expected) % 4)))
        except (binascii.Error, ValueError):
            pass
    return actual in candidates


def cmd_verify(args: argparse.Namespace) -> int:
    def fail(check: str, detail: str) -> int:
        print(f"INVALID: {detail} (check: {check})")
        return 1

    try:
        at = _parse_at(args.at)
    except ValueError:
        print(f"brski voucher verify: --at {args.at!r} is not an RFC 3339 date-time", file=sys.stderr)
        return 2
    try:
        anchors = _read_certs(args.anchor, "--anchor")
        candidates = [*_read_certs(args.cert, "--cert"), *anchors]
        data = _read(args.file)
    except _UsageError as exc:
        return _usage(exc, "verify")
    try:
        art = load_artifact(data, extra_certs=candidates)
        chain = verify_chain(art.signer, intermediates=art.certificates, anchors=anchors, now=at, role=_role_for(art))
    except BrskiError as exc:
        return fail(exc.check, exc.detail)
    payload = art.payload
    if args.expect_serial is not None and payload.serial_number != args.expect_serial:
        return fail("expect.serial-number", f"serial-number is {payload.serial_number!r}, expected {args.expect_serial!r}")
    if args.expect_nonce is not None and not _nonce_matches(payload.nonce, args.expect_nonce):
        return fail("expect.nonce", "nonce differs from the expected one")
    kind = "voucher" if isinstance(payload, Voucher) else "voucher-request"
    print(f"VALID: {kind} ({art.media_type}) serial-number={payload.serial_number} signer={art.signer.subject.rfc4514_string()}")
    for i, cert in enumerate(chain):
        print(f"  chain[{i}]: {cert.subject.rfc4514_string()}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    voucher = subparsers.add_parser("voucher", help="inspect and verify vouchers and voucher-requests", description=__doc__)
    cmds = voucher.add_subparsers(dest="voucher_cmd", required=True, metavar="COMMAND")
    inspect = cmds.add_parser("inspect", help="print any voucher or voucher-request as JSON")
    inspect.add_argument("file", type=Path, help="the artifact (DER, CBOR, JSON, base64 or PEM); - for stdin")
    inspect.add_argument("--cert", type=Path, action="append", help="candidate signer certificate(s), PEM or DER")
    inspect.set_defaults(func=cmd_inspect)
    verify = cmds.add_parser("verify", help="verify signature, chain and expectations; exit 0 if valid")
    verify.add_argument("file", type=Path)
    verify.add_argument("--anchor", type=Path, action="append", required=True, help="trust anchor PEM (repeatable)")
    verify.add_argument("--cert", type=Path, action="append", help="candidate signer certificate(s), PEM or DER")
    verify.add_argument("--at", help="validate the chain at this RFC 3339 time (default: now)")
    verify.add_argument("--expect-serial", dest="expect_serial")
    verify.add_argument(
        "--expect-nonce", dest="expect_nonce", help="base64, base64url or literal (write --expect-nonce=-X... for a value starting with -)"
    )
    verify.set_defaults(func=cmd_verify)
