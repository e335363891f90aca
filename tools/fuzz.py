"""A bounded fuzz run over every parser of untrusted bytes (``make fuzz``).

Why this exists beside the hypothesis tests: those run a few hundred cases per
parser on every ``make test``; this feeds tens of thousands of random and
mutated inputs, seeded from the published vectors (tests/vectors), within a
time or count budget, and reports per parser how many inputs were tried and
how many raised something other than a :class:`brski.errors.BrskiError`. The
rule under test is the project convention (docs/architecture.md): a parser of
untrusted bytes refuses with the project's own error, never with a
ValueError, KeyError, asn1crypto or cbor2 exception (RFC 8995 section 5.6
has a server answer a refusal, not crash).

Usage::

    python tools/fuzz.py [--seconds 60] [--count N] [--seed S] [--only NAME] [--save DIR]

Exit status 0 when no parser raised an unhandled exception, 1 otherwise; the
first inputs that did are written to ``--save`` (default var/fuzz/) so they
can be replayed and turned into regression tests. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from brski import asn1, cbor, cms, csrattrs, est, oids, pki, sid, telemetry  # noqa: E402
from brski.artifact import sign_artifact, verify_artifact  # noqa: E402
from brski.errors import BrskiError  # noqa: E402
from brski.voucher import Assertion, Voucher, VoucherRequest  # noqa: E402

VECTORS = ROOT / "tests" / "vectors"
MAX_SAVED = 5


@dataclass
class Target:
    """One parser, the seeds its mutations start from, and what happened."""

    name: str
    fn: Callable[[bytes], object]
    seeds: list[bytes]
    tried: int = 0
    refused: int = 0
    accepted: int = 0
    unhandled: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)


def _files(*patterns: str) -> list[bytes]:
    out: list[bytes] = []
    for pattern in patterns:
        out.extend(p.read_bytes() for p in sorted(VECTORS.glob(pattern)) if p.is_file())
    return out


def _own_artifacts() -> dict[str, list[bytes]]:
    """Artifacts signed here in every format, so JWS (no published vector) has seeds."""
    key = pki.generate_key("p256")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    now = datetime(2026, 1, 1, tzinfo=UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz MASA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    voucher = Voucher(
        created_on=now, assertion=Assertion.LOGGED, serial_number="FUZZ-1", nonce=b"0123456789abcdef",
        pinned_domain_cert=pki.cert_der(cert),
    )
    request = VoucherRequest(
        created_on=now, assertion=Assertion.PROXIMITY, serial_number="FUZZ-1", nonce=b"0123456789abcdef",
        proximity_registrar_cert=pki.cert_der(cert),
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "FUZZ-1")]))
        .sign(key, hashes.SHA256())
    )
    # The RFC 7030 A.3 CSR is sha1WithRSA (refused by default): seed a valid one too.
    out: dict[str, list[bytes]] = {"csr": [csr.public_bytes(Encoding.DER)]}
    for media in oids.VOUCHER_MEDIA_TYPES:
        out[media] = [sign_artifact(p, media_type=media, key=key, cert=cert) for p in (voucher, request)]
    return out


def _verify_as(data: bytes, *, media_type: str, kind: type[Voucher] | type[VoucherRequest]) -> object:
    return verify_artifact(data, media_type=media_type, kind=kind)


def _sid_model(data: bytes) -> object:
    """SID-keyed CBOR through brski.sid and into the model it names (brski.voucher_model)."""
    obj = sid.decode_payload(data)
    kind = Voucher if sid.VOUCHER in obj else VoucherRequest
    return kind.from_obj(obj)


def build_targets() -> list[Target]:
    own = _own_artifacts()
    cms_seeds = _files("rfc8995/*.der", "rfc8366bis/*.pkcs", "interop-minerva/*.der", "interop-minerva/*.pkcs")
    cms_seeds += own[oids.MT_VOUCHER_CMS_JSON]
    cose_seeds = _files("cbrski-draft31/*.cbor", "interop-minerva/*.vrq") + own[oids.MT_VOUCHER_COSE_CBOR]
    jws_seeds = own[oids.MT_VOUCHER_JWS_JSON]
    json_seeds = _files("rfc8366/*.json", "rfc8366bis/*.json", "rfc8995/*.content.json")
    certs = _files("rfc8995/*.crt", "rfc8366bis/*.crt", "cbrski-draft31/*.crt.der")
    est_der = _files("rfc7030/*.der", "csrattrs-draft/*.der")
    est_b64 = _files("rfc7030/*.b64", "csrattrs-draft/*.b64")
    status = [
        b'{"version":1,"status":true}',
        b'{"version":"1","status":false,"reason":"Informative human readable message",'
        b'"reason-context":{"additional":"JSON"}}',
    ]
    targets = [
        Target("cms.verify", lambda b: cms.verify(b), cms_seeds),
        Target("asn1.check_der", lambda b: asn1.check_der(b), cms_seeds + est_der + certs),
        Target("cbor.decode_cbor", lambda b: cbor.decode_cbor(b, allowed_tags=(18,)), cose_seeds),
        Target("sid.decode_payload+from_obj", _sid_model, _files("cbrski-draft31/*-nonsigned.cbor")),
        Target("voucher.Voucher.from_json", Voucher.from_json, json_seeds),
        Target("voucher.VoucherRequest.from_json", VoucherRequest.from_json, json_seeds),
        Target("est.parse_csr", lambda b: est.parse_csr(b), _files("rfc7030/*.p10.der") + own["csr"]),
        Target("est.parse_certs_only", lambda b: est.parse_certs_only(b), _files("rfc7030/*.p7.der")),
        Target("csrattrs.parse_csrattrs", lambda b: csrattrs.parse_csrattrs(b), _files("rfc7030/*csrattrs*.der", "csrattrs-draft/*.der")),
        Target("est.decode_base64_body", lambda b: est.decode_base64_body(b), est_b64),
        Target("telemetry.parse_status", lambda b: telemetry.parse_status(b, kind="voucher-status"), status),
        Target("pki.load_cert", pki.load_cert, certs),
    ]
    for media, seeds in (
        (oids.MT_VOUCHER_CMS_JSON, cms_seeds),
        (oids.MT_VOUCHER_COSE_CBOR, cose_seeds),
        (oids.MT_VOUCHER_JWS_JSON, jws_seeds),
    ):
        for kind in (Voucher, VoucherRequest):
            targets.append(
                Target(
                    f"artifact.verify_artifact[{media.split('/')[1]},{kind.__name__}]",
                    functools.partial(_verify_as, media_type=media, kind=kind),
                    seeds,
                )
            )
    return targets


# --- mutation ------------------------------------------------------------------------------

_INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x9F, 0xBF, 0xD2, 0xFF, 0x30, 0x31, 0xA0, 0x7B, 0x22]


def mutate(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """1-4 structure-blind edits; the interesting bytes are DER/CBOR/JSON framing."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(_INTERESTING)
        elif op == 2:
            buf.insert(rng.randrange(n + 1), rng.randrange(256))
        elif op == 3 and n:
            del buf[rng.randrange(n)]
        elif op == 4 and n:
            del buf[rng.randrange(n) :]
        elif op == 5 and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            buf[j:j] = buf[i:j] * rng.randint(1, 8)
        elif op == 6 and pool:
            other = rng.choice(pool)
            if other:
                i, k = rng.randrange(n + 1), rng.randrange(len(other))
                buf[i:] = other[k:]
        elif op == 7 and n >= 4:
            # A length field set to something huge, where DER or CBOR would read one.
            i = rng.randrange(n - 3)
            buf[i : i + 4] = bytes([rng.choice((0x84, 0x1A, 0x5A, 0x9A)), 0xFF, 0xFF, 0xFF])
        elif op == 8 and n:
            i = rng.randrange(n)
            buf[i : i + 1] = b"[" * rng.randint(1, 200) if rng.random() < 0.5 else b"\x81" * rng.randint(1, 200)
    return bytes(buf)


def _one_input(rng: random.Random, target: Target) -> bytes:
    if not target.seeds or rng.random() < 0.08:
        return rng.randbytes(rng.randrange(0, 512))
    return mutate(rng, rng.choice(target.seeds), target.seeds)


def _record(target: Target, data: bytes, exc: BaseException, save: Path | None) -> None:
    target.unhandled += 1
    key = f"{type(exc).__module__}.{type(exc).__name__}"
    target.kinds[key] = target.kinds.get(key, 0) + 1
    if save is not None and len(target.saved) < MAX_SAVED:
        save.mkdir(parents=True, exist_ok=True)
        stem = f"{target.name}-{hashlib.sha256(data).hexdigest()[:12]}".replace("/", "_")
        path = save / f"{stem}.bin"
        path.write_bytes(data)
        (save / f"{stem}.txt").write_text("".join(traceback.format_exception(exc)))
        target.saved.append(path)


def run(
    targets: list[Target], *, seconds: float, count: int | None, seed: int, save: Path | None
) -> list[Target]:
    """Give each target an equal share of the budget; stop a target at ``count`` inputs."""
    rng = random.Random(seed)
    share = seconds / max(1, len(targets))
    for target in targets:
        # Seeds first, unmodified: the vectors must not trip anything either.
        inputs: list[bytes] = list(target.seeds)
        deadline = time.monotonic() + share
        while True:
            if count is not None and target.tried >= count:
                break
            if count is None and time.monotonic() >= deadline:
                break
            data = inputs.pop() if inputs else _one_input(rng, target)
            target.tried += 1
            try:
                target.fn(data)
            except BrskiError:
                target.refused += 1
            except Exception as exc:  # exactly what the run looks for (RecursionError included)
                _record(target, data, exc, save)
            else:
                target.accepted += 1
    return targets


def report(targets: list[Target], *, elapsed: float, out: Any = sys.stdout) -> int:
    width = max(len(t.name) for t in targets)
    print(f"{'parser':<{width}}  {'tried':>8}  {'refused':>8}  {'accepted':>8}  {'unhandled':>9}", file=out)
    for t in targets:
        print(f"{t.name:<{width}}  {t.tried:>8}  {t.refused:>8}  {t.accepted:>8}  {t.unhandled:>9}", file=out)
        for kind, n in sorted(t.kinds.items()):
            print(f"{'':<{width}}    {n} x {kind}", file=out)
        for path in t.saved:
            print(f"{'':<{width}}    saved {path}", file=out)
    total = sum(t.tried for t in targets)
    bad = sum(t.unhandled for t in targets)
    print(f"total: {total} inputs in {elapsed:.1f} s, {bad} unhandled exceptions", file=out)
    return 1 if bad else 0


def main(argv: list[str] | None = None, *, targets: list[Target] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total time budget (default 60)")
    parser.add_argument("--count", type=int, help="inputs per parser instead of a time budget")
    parser.add_argument("--seed", type=int, default=8995, help="RNG seed (runs are reproducible by count)")
    parser.add_argument("--only", action="append", help="run only parsers whose name contains this")
    parser.add_argument("--save", type=Path, default=ROOT / "var" / "fuzz", help="where failing inputs go")
    parser.add_argument("--json", action="store_true", help="print the per-parser figures as JSON")
    args = parser.parse_args(argv)
    # Mutated certificates trip cryptography's deprecation warnings (negative
    # serials); they are expected here and would bury the report.
    warnings.simplefilter("ignore")
    chosen = targets if targets is not None else build_targets()
    if args.only:
        chosen = [t for t in chosen if any(o in t.name for o in args.only)]
    started = time.monotonic()
    run(chosen, seconds=args.seconds, count=args.count, seed=args.seed, save=args.save)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({t.name: {"tried": t.tried, "unhandled": t.unhandled} for t in chosen}))
        return 1 if any(t.unhandled for t in chosen) else 0
    return report(chosen, elapsed=elapsed)


if __name__ == "__main__":
    sys.exit(main())
