"""check_pledge_request after the manufacturer check: the IDevID's path is the
one already validated, even when the CMS certificate set and the TLS chain
both carry the IDevID's CA (and the IDevID itself).

A copy of a certificate adds nothing to a path (RFC 5280 section 6.1), but as
two candidates for the IDevID's issuer it sent the registrar's second check
of every voucher-request through a whole-path validation of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from brski.artifact import sign_artifact
from brski.errors import ChainInvalid, Forbidden
from brski.issuer_path import verify_chain_via_issuer
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import Role, cert_der, forget_verified_paths
from brski.validation import check_pledge_request
from brski.voucher import Assertion, VoucherRequest
from tests.pki_helpers import DAY, NOW, Issued, make_cert


def _request(idevid: Issued, serial: str, chain: tuple[x509.Certificate, ...], registrar: x509.Certificate) -> bytes:
    return sign_artifact(
        VoucherRequest(created_on=NOW, assertion=Assertion.PROXIMITY, serial_number=serial,
                       nonce=os.urandom(16), proximity_registrar_cert=cert_der(registrar)),
        media_type=MT_VOUCHER_CMS_JSON, key=idevid[1], cert=idevid[0], chain=chain,
    )


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[str]]]]:
    """Every path validation actually computed (verify_chain's memo missed)."""
    import brski.pki as pki_mod

    seen: list[tuple[str, list[str]]] = []
    real = pki_mod._verify_chain_uncached

    def spy(leaf: x509.Certificate, leaf_der: bytes, inter: Any, anchors: Any, *rest: Any) -> Any:
        seen.append((leaf.subject.rfc4514_string(), [a.subject.rfc4514_string() for a in anchors]))
        return real(leaf, leaf_der, inter, anchors, *rest)

    monkeypatch.setattr(pki_mod, "_verify_chain_uncached", spy)
    forget_verified_paths()
    yield seen
    forget_verified_paths()


def _check(idevid: x509.Certificate, body: bytes, tls_chain: list[x509.Certificate],
           anchors: list[x509.Certificate], registrar: x509.Certificate) -> None:
    # As the registrar does it: the manufacturer's check on the TLS chain
    # (registrar.admission), then the voucher-request's own checks.
    verify_chain_via_issuer(idevid, intermediates=tls_chain, anchors=anchors, now=NOW, role=Role.IDEVID)
    check_pledge_request(body, media_type=MT_VOUCHER_CMS_JSON, tls_client_cert=idevid, tls_client_chain=tls_chain,
                         manufacturer_anchors=anchors, own_certs=[registrar], now=NOW)


def test_a_ca_carried_twice_is_not_validated_again(asked: list[tuple[str, list[str]]]) -> None:
    root = make_cert("root", ca=True, not_after=NOW + 3650 * DAY)
    ca = make_cert("idevid ca", issuer=root, ca=True, not_after=NOW + 3650 * DAY)
    registrar = make_cert("registrar", key_usage=False)[0]
    for n in (1, 2):
        serial = f"PLG-{n}"
        idevid = make_cert(f"pledge {n}", issuer=ca, serial=serial, key_usage=False)
        # Separately parsed copies, as TLS and CMS hand them over.
        tls_chain = [x509.load_der_x509_certificate(cert_der(ca[0]))]
        body = _request(idevid, serial, (ca[0],), registrar)
        _check(idevid[0], body, tls_chain, [root[0]], registrar)
    # Each device's own link once, the CA's path once; no whole path.
    assert asked == [
        ("CN=idevid ca", ["CN=root"]),
        ("2.5.4.5=PLG-1,CN=pledge 1", ["CN=idevid ca"]),
        ("2.5.4.5=PLG-2,CN=pledge 2", ["CN=idevid ca"]),
    ]


def test_another_ca_under_the_same_name_is_still_refused(asked: list[tuple[str, list[str]]]) -> None:
    # Copies are merged by their bytes only: a different certificate with
    # the issuer's name, carried beside the real one, still decides nothing.
    root = make_cert("root", ca=True, not_after=NOW + 3650 * DAY)
    ca = make_cert("idevid ca", issuer=root, ca=True, not_after=NOW + 3650 * DAY)
    impostor = make_cert("idevid ca", ca=True, not_after=NOW + 3650 * DAY)
    registrar = make_cert("registrar", key_usage=False)[0]
    forged = make_cert("pledge", issuer=impostor, serial="PLG-9", key_usage=False)
    body = _request(forged, "PLG-9", (impostor[0],), registrar)
    with pytest.raises(ChainInvalid):
        _check(forged[0], body, [ca[0]], [root[0]], registrar)
    with pytest.raises(ChainInvalid):
        check_pledge_request(body, media_type=MT_VOUCHER_CMS_JSON, tls_client_cert=forged[0],
                             tls_client_chain=[ca[0]], manufacturer_anchors=[root[0]], own_certs=[registrar], now=NOW)


def test_the_idevids_key_is_not_encoded_again_when_it_signed(
    asked: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The signer is the TLS client certificate itself (the same bytes): its
    # key is the TLS key without encoding and hashing each copy's SPKI.
    from brski.certfacts import cert_spki_sha256 as real

    hashed: list[str] = []

    def spy(cert: x509.Certificate) -> bytes:
        hashed.append(cert.subject.rfc4514_string())
        return real(cert)

    monkeypatch.setattr("brski.pki.cert_spki_sha256", spy)  # what spki_sha256 calls
    root = make_cert("root", ca=True, not_after=NOW + 3650 * DAY)
    ca = make_cert("idevid ca", issuer=root, ca=True, not_after=NOW + 3650 * DAY)
    registrar = make_cert("registrar", key_usage=False)[0]
    idevid = make_cert("pledge", issuer=ca, serial="PLG-1", key_usage=False)
    tls_leaf = x509.load_der_x509_certificate(cert_der(idevid[0]))
    _check(tls_leaf, _request(idevid, "PLG-1", (ca[0],), registrar), [ca[0]], [root[0]], registrar)
    assert hashed == []


def test_a_request_signed_by_another_key_is_still_refused(asked: list[tuple[str, list[str]]]) -> None:
    root = make_cert("root", ca=True, not_after=NOW + 3650 * DAY)
    ca = make_cert("idevid ca", issuer=root, ca=True, not_after=NOW + 3650 * DAY)
    registrar = make_cert("registrar", key_usage=False)[0]
    tls_idevid = make_cert("pledge", issuer=ca, serial="PLG-1", key_usage=False)
    other = make_cert("pledge", issuer=ca, serial="PLG-1", key_usage=False)  # same name, another key
    body = _request(other, "PLG-1", (ca[0],), registrar)
    with pytest.raises(Forbidden) as exc:
        _check(tls_idevid[0], body, [ca[0]], [root[0]], registrar)
    assert exc.value.check == "pledge-request.signer-not-tls-client"
