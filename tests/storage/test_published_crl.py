"""The registrar's view of the published CRL when another process publishes one.

RFC 5280 3.3: a revocation takes effect when its CRL is published. With two
registrar workers on one store, the worker that did not publish must see the
new CRL on its next check, although it keeps the last one parsed; it keys
that copy by the CRL number it reads from the store on every check.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from brski_storage import RegistrarStore
from registrar.identity import RegistrarKeys
from registrar.revocation import RevocationPublisher
from tests.pki_helpers import NOW, Issued, make_cert


def crl(ca: Issued, number: int, revoked: list[int]) -> bytes:
    cert, key = ca
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(NOW)
        .next_update(NOW + timedelta(days=1))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


async def test_a_crl_published_elsewhere_is_seen_on_the_next_check(store: RegistrarStore) -> None:
    ca = make_cert("domain ca", ca=True)
    keys = RegistrarKeys(ca_cert=ca[0], ca_key=ca[1], ra_cert=ca[0], ra_key=ca[1], tls_cert=ca[0])
    worker = RevocationPublisher(store, keys)

    async def listed(serial: int) -> bool:  # the newest CRL's number as a request reads it
        return await worker.listed_in(serial, await store.latest_crl_number())

    assert not await listed(0x77)  # no CRL yet

    await store.add_crl(number=1, this_update=NOW, next_update=NOW + timedelta(days=1), revoked_count=0,
                        der=crl(ca, 1, []))
    assert not await listed(0x77)  # CRL 1 parsed and kept

    # Another worker publishes CRL 2 listing the certificate.
    await store.add_crl(number=2, this_update=NOW, next_update=NOW + timedelta(days=1), revoked_count=1,
                        der=crl(ca, 2, [0x77]))
    assert await listed(0x77)
    assert not await listed(0x78)
