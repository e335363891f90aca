"""What signing in a PKCS#11 token costs, beside the same signature with a PEM key.

A throw-away SoftHSM2 token (SOFTHSM2_CONF in a temporary directory) gets the
dev PKI's domain CA and MASA voucher-signer keys (`build_dev_pki(external_key=)`,
as `brski pki init --pkcs11` does); each operation a role signs is timed with
the token key and with a software key of the same curve, in the same run.
Printed, never asserted. SoftHSM2 is a software token: a hardware HSM adds
its own latency per C_Sign (often 1-20 ms) and its own signatures/second cap.

Usage::

    python tools/bench_hsm.py [--seconds 1] [--module /usr/lib/softhsm/libsofthsm2.so]
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from brski import oids  # noqa: E402
from brski.artifact import sign_artifact  # noqa: E402
from brski.devpki import build_dev_pki  # noqa: E402
from brski.pki import cert_der  # noqa: E402
from brski.voucher import Assertion, Voucher  # noqa: E402

NOW = datetime.now(UTC)


def per_call_ms(fn: Callable[[], object], seconds: float) -> float:
    """Milliseconds per call, best of three rounds."""
    fn()
    best = float("inf")
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while (now := time.perf_counter()) - start < seconds / 3 or n == 0:
            fn()
            n += 1
        best = min(best, (now - start) / n * 1000)
    return best


def _sign_voucher(voucher: Voucher, media: str, key: Any, cert: x509.Certificate) -> bytes:
    return sign_artifact(voucher, media_type=media, key=key, cert=cert)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--module", default="/usr/lib/softhsm/libsofthsm2.so")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokens").mkdir()
        conf = Path(tmp) / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tmp}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        os.environ["BENCH_PIN"] = "bench-1234"
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "bench-1234", "--so-pin", "bench-so"],
            check=True, capture_output=True,
        )
        from brski_hsm import Pkcs11Settings, close_tokens, generate_token_key, load_token_key

        settings = Pkcs11Settings(module=args.module, pin_env="BENCH_PIN")
        pki = build_dev_pki(
            pledges=0, masa_url="https://masa.example", now=NOW,
            external_key=lambda path: generate_token_key(f"pkcs11:token=bench;object={path.replace('/', '-')}", settings),
        )
        soft_pki = build_dev_pki(pledges=0, masa_url="https://masa.example", now=NOW)
        token_signer = (load_token_key("pkcs11:token=bench;object=masa-voucher-signer", settings), pki.cert("masa/voucher-signer"))
        soft_signer = (soft_pki.key("masa/voucher-signer"), soft_pki.cert("masa/voucher-signer"))
        leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
        ldevid = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(leaf_key)
            .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        crl = (
            x509.CertificateRevocationListBuilder().issuer_name(name).last_update(NOW)
            .next_update(NOW + timedelta(days=1))
        )
        voucher = Voucher(
            created_on=NOW, assertion=Assertion.PROXIMITY, serial_number="PLG-000001", nonce=b"0123456789abcdef",
            idevid_issuer=b"\x01" * 20, pinned_domain_cert=cert_der(pki.cert("registrar/domain-ca")),
            domain_cert_revocation_checks=False,
        )
        rows: list[tuple[str, Callable[[Any, Any], object]]] = [
            ("ECDSA P-256 signature", lambda k, _c: k.sign(b"x" * 256, ec.ECDSA(hashes.SHA256()))),
            ("LDevID certificate", lambda k, _c: ldevid.sign(k, hashes.SHA256())),
            ("CRL", lambda k, _c: crl.sign(k, hashes.SHA256())),
        ]
        for fmt, media in (("CMS", oids.MT_VOUCHER_CMS_JSON), ("COSE", oids.MT_VOUCHER_COSE_CBOR), ("JWS", oids.MT_VOUCHER_JWS_JSON)):
            rows.append((f"{fmt} voucher", functools.partial(_sign_voucher, voucher, media)))
        print(f"{'operation':<24} {'PEM key ms':>10} {'token ms':>10} {'extra ms':>9}")
        for label, op in rows:
            soft = per_call_ms(functools.partial(op, *soft_signer), args.seconds)
            token = per_call_ms(functools.partial(op, *token_signer), args.seconds)
            print(f"{label:<24} {soft:>10.3f} {token:>10.3f} {token - soft:>9.3f}")
        close_tokens()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
