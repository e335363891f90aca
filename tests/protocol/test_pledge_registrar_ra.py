"""RFC 7030 3.6.1 / RFC 8995 5.6.2 over real TLS: a discovered registrar must be an RA.

The reference pledge (``pledge_sim.service.enroll_one``) talks to a server
whose TLS certificate the domain CA issued -- so it chains to the
pinned-domain-cert of a genuine voucher -- but that lacks id-kp-cmcRA, as
another device's LDevID would. The pledge must refuse it by name, report
the failure (RFC 8995 5.7) and never ask it for a certificate. The same
server with the registrar's own certificate (which carries cmcRA) passes
the voucher phase.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski.devpki import build_dev_pki
from tests.protocol.hostile import Hostile, enroll_against, refused_with_telemetry, serve_hostile
from tests.protocol.net import issue, key_pem, name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hostile, int, int]]:
    root = tmp_path_factory.mktemp("ra")
    pki = build_dev_pki(pledges=1, masa_url="https://localhost:1", now=datetime.now(UTC))
    for rel, data in pki.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    # What a device holding a domain certificate with serverAuth could present.
    cert, key = issue(
        name("127.0.0.1", serial="PLG-424242", org="brski dev domain"),
        issuer_cert=pki.cert("registrar/domain-ca.crt"), issuer_key=pki.key("registrar/domain-ca.key"),
        eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    (root / "rogue.crt").write_bytes(cert.public_bytes(Encoding.PEM))
    (root / "rogue.key").write_bytes(key_pem(key))
    h = Hostile(pki=pki, root=root)
    h.answer = lambda req: h.voucher(req)  # a genuine voucher, pinned to the domain CA
    rogue_port, loop1 = serve_hostile(h, root / "rogue.crt", root / "rogue.key")
    real_port, loop2 = serve_hostile(h, root / "registrar/tls.crt", root / "registrar/tls.key")
    yield h, rogue_port, real_port
    for loop in (loop1, loop2):
        loop.call_soon_threadsafe(loop.stop)


def test_domain_certificate_without_cmc_ra_is_refused(world: tuple[Hostile, int, int]) -> None:
    h, rogue, _ = world
    refused_with_telemetry(h, enroll_against(h, rogue), "pledge.registrar-not-ra")


def test_the_registrar_certificate_with_cmc_ra_passes(world: tuple[Hostile, int, int]) -> None:
    h, _, real = world
    result = enroll_against(h, real)
    # The voucher phase passed: the pledge went on to EST (which this server refuses).
    assert result.failed_check != "pledge.registrar-not-ra", result.detail
    assert any(path.startswith("/.well-known/est/") for _, path in h.calls), h.calls
