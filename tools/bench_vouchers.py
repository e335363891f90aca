"""Voucher signing and verification speed per format, beside bare ECDSA P-256.

The speed target: a CMS voucher verification (parse, digest, signature,
one-level chain check with ``brski.pki.verify_chain``) should cost at most
twice the bare signature verification plus the same chain check. Both sides
are measured in the same run, with the same keys, so the ratio means
something on any machine; absolute figures do not travel. Printed, never
asserted (``make bench`` and ``make bench-vouchers`` call this).

Usage::

    python tools/bench_vouchers.py [--seconds 0.5] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from brski import cms, oids  # noqa: E402
from brski.artifact import sign_artifact, verify_artifact  # noqa: E402
from brski.pki import Role, cert_der, forget_verified_paths, verify_chain  # noqa: E402
from brski.voucher import Assertion, Voucher  # noqa: E402

NOW = datetime(2026, 11, 28, tzinfo=UTC)
FORMATS = {"cms": oids.MT_VOUCHER_CMS_JSON, "cose": oids.MT_VOUCHER_COSE_CBOR, "jws": oids.MT_VOUCHER_JWS_JSON}


def _pki() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 manufacturer CA and a MASA signer it issued (one level, as in RFC 8995 C.1)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench manufacturer CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench MASA")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca, key, leaf


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``, best of three timed rounds (less scheduler noise)."""
    fn()  # warm caches and lazy imports
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            fn()
            n += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def measure(seconds: float) -> dict[str, object]:
    ca, key, leaf = _pki()
    voucher = Voucher(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number="PLG-000001",
        nonce=b"0123456789abcdef",
        idevid_issuer=b"\x01" * 20,
        pinned_domain_cert=cert_der(ca),
        domain_cert_revocation_checks=False,
    )
    payload = voucher.to_json()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)

    # Cold: verify_chain remembers valid paths (brski.pki); every figure here
    # is for a first sight of the chain, so the memo is emptied each time.
    def chain() -> None:
        forget_verified_paths()
        verify_chain(leaf, anchors=[ca], now=NOW, role=Role.MASA_SIGNER)

    bare_sign = rate(lambda: key.sign(payload, ec.ECDSA(hashes.SHA256())), seconds)
    bare_verify = rate(lambda: public.verify(signature, payload, ec.ECDSA(hashes.SHA256())), seconds)
    chain_rate = rate(chain, seconds)
    out: dict[str, object] = {
        "bare_ecdsa_p256": {"sign_per_s": bare_sign, "verify_per_s": bare_verify},
        "chain_check_per_s": chain_rate,
    }
    # Cost in microseconds of bare verify + chain check: the ratio's denominator.
    baseline_us = 1e6 / bare_verify + 1e6 / chain_rate
    formats: dict[str, dict[str, float]] = {}
    for name, media in FORMATS.items():
        raw = sign_artifact(voucher, media_type=media, key=key, cert=leaf)

        def full_verify(raw: bytes = raw, media: str = media) -> None:
            art = verify_artifact(raw, media_type=media, kind=Voucher)
            forget_verified_paths()
            verify_chain(art.signer, intermediates=art.certificates, anchors=[ca], now=NOW, role=Role.MASA_SIGNER)

        sign_rate = rate(functools.partial(sign_artifact, voucher, media_type=media, key=key, cert=leaf), seconds)
        verify_rate = rate(full_verify, seconds)
        formats[name] = {
            "bytes": len(raw),
            "sign_per_s": sign_rate,
            "verify_per_s": verify_rate,
            "verify_vs_bare_plus_chain": (1e6 / verify_rate) / baseline_us,
        }
    out["formats"] = formats
    # The target, exactly: CMS verification = parse, digest, signature
    # (brski.cms.verify) + one-level chain check, without the YANG model decode.
    cms_raw = sign_artifact(voucher, media_type=oids.MT_VOUCHER_CMS_JSON, key=key, cert=leaf)

    def cms_verify() -> None:
        message = cms.verify(cms_raw)
        forget_verified_paths()
        verify_chain(message.signer, intermediates=message.certificates, anchors=[ca], now=NOW, role=Role.MASA_SIGNER)

    cms_rate = rate(cms_verify, seconds)
    out["cms_verification"] = {"per_s": cms_rate, "vs_bare_plus_chain": (1e6 / cms_rate) / baseline_us}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="time per measurement (default 0.6)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    bare = result["bare_ecdsa_p256"]
    assert isinstance(bare, dict)
    print(f"bare ECDSA P-256     sign {bare['sign_per_s']:>9.0f}/s   verify {bare['verify_per_s']:>9.0f}/s")
    print(f"chain check (1 level, verify_chain MASA_SIGNER)      {result['chain_check_per_s']:>9.0f}/s")
    print(f"{'format':<6} {'bytes':>6} {'sign/s':>9} {'verify/s':>9}  verify+model+chain cost / (bare verify + chain)")
    formats = result["formats"]
    assert isinstance(formats, dict)
    for name, f in formats.items():
        print(
            f"{name:<6} {f['bytes']:>6} {f['sign_per_s']:>9.0f} {f['verify_per_s']:>9.0f}  "
            f"{f['verify_vs_bare_plus_chain']:.2f}x"
        )
    target = result["cms_verification"]
    assert isinstance(target, dict)
    print(
        f"CMS verification (brski.cms.verify + chain): {target['per_s']:.0f}/s, "
        f"{target['vs_bare_plus_chain']:.2f}x bare verify + chain check (target <= 2x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
