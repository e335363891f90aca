"""The registrar's LDevID check (registrar.identity.ClientIdentity.ldevid_record).

A certificate whose exact bytes the registrar recorded when its current CA key
issued it needs no RFC 5280 6.1 path validation (the signature is its own);
every other LDevID still gets one, and what changes with time (validity,
revocation) is checked on every request either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from brski.errors import Forbidden
from brski.pki import PrivateKey, forget_verified_paths, verify_chain
from brski_storage.base import CertificateRecord, RegistrarStore
from brski_storage.certificates import EstFacts
from brski_web.identity import PeerIdentity
from registrar.identity import ClientIdentity, RegistrarKeys
from tests.ca_helpers import SERIAL, YEAR, issue, make_ca
from tests.pki_helpers import DAY, NOW, key_usage_for, make_cert


class _Store:
    """The read ldevid_record makes (the certificate's row; no device row), from rows held in memory."""

    def __init__(self, *records: CertificateRecord) -> None:
        self.certs = {r.cert_serial: r for r in records}

    async def est_facts(self, *, cert_serial: int | str, crl_number: bool = False, **_: Any) -> EstFacts:
        record = self.certs.get(cert_serial if isinstance(cert_serial, str) else format(cert_serial, "x"))
        return EstFacts(client_certificate=record, crl_number=3 if crl_number else None)


def _record(cert: x509.Certificate, *, state: str = "issued", der: bytes | None = None) -> CertificateRecord:
    return CertificateRecord(
        cert_serial=format(cert.serial_number, "x"), device_serial=SERIAL, spki_sha256=b"\0" * 32,
        state=state,  # type: ignore[arg-type]
        der=cert.public_bytes(Encoding.DER) if der is None else der,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        reserved_at=NOW, issued_at=NOW, revoked_at=None, revocation_reason=None,
    )


def _identity(ca: tuple[x509.Certificate, PrivateKey], *records: CertificateRecord) -> ClientIdentity:
    ca_cert, ca_key = ca
    keys = RegistrarKeys(ca_cert=ca_cert, ca_key=ca_key, ra_cert=ca_cert, ra_key=ca_key, tls_cert=ca_cert)
    return ClientIdentity(store=cast(RegistrarStore, _Store(*records)), keys=keys)


def _peer(cert: x509.Certificate) -> PeerIdentity:
    der = cert.public_bytes(Encoding.DER)
    # As the TLS layer hands it over: parsed afresh from the bytes the client sent.
    return PeerIdentity(leaf=x509.load_der_x509_certificate(der), chain=(), tls_verified=True, leaf_der=der)


def _check(clients: ClientIdentity, cert: x509.Certificate, now: datetime = NOW) -> CertificateRecord:
    return asyncio.run(clients.ldevid_record(_peer(cert), now=now))


@pytest.fixture
def path_validations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[x509.Certificate]]:
    """Counts the full path validations ldevid_record asks for (and still runs them)."""
    forget_verified_paths()
    seen: list[x509.Certificate] = []

    def spy(leaf: x509.Certificate, **kw: Any) -> list[x509.Certificate]:
        seen.append(leaf)
        return verify_chain(leaf, **kw)

    monkeypatch.setattr("registrar.identity.verify_chain", spy)
    yield seen
    forget_verified_paths()


def test_a_recorded_ldevid_needs_no_path_validation(path_validations: list[x509.Certificate]) -> None:
    ca = make_ca()
    cert = issue(ca=ca)
    assert _check(_identity(ca, _record(cert)), cert).device_serial == SERIAL
    assert path_validations == []


def test_other_bytes_under_a_recorded_serial_are_path_validated(path_validations: list[x509.Certificate]) -> None:
    ca = make_ca()
    cert = issue(ca=ca)
    other = issue(ca=ca, serial=cert.serial_number)  # same CA and serial, another key: other bytes
    clients = _identity(ca, _record(cert))
    assert _check(clients, other).cert_serial == format(cert.serial_number, "x")
    assert len(path_validations) == 1


def test_a_recorded_ldevid_of_an_earlier_ca_key_is_refused(path_validations: list[x509.Certificate]) -> None:
    # The CA replaced by a new key under the same name: what the old key
    # issued is still in the store, byte for byte, but no longer chains.
    old_ca = make_ca()
    cert = issue(ca=old_ca)
    new_ca = make_ca()
    assert new_ca[0].subject == old_ca[0].subject
    with pytest.raises(Forbidden) as refused:
        _check(_identity(new_ca, _record(cert)), cert)
    assert refused.value.check == "chain.untrusted"
    assert len(path_validations) == 1


@pytest.mark.parametrize(("when", "check"), [(NOW + 2 * YEAR, "chain.expired"), (NOW - 2 * DAY, "chain.not-yet-valid")])
def test_a_recorded_ldevid_outside_its_validity_is_refused(
    path_validations: list[x509.Certificate], when: datetime, check: str
) -> None:
    ca = make_ca()
    cert = issue(ca=ca)
    with pytest.raises(Forbidden) as refused:
        _check(_identity(ca, _record(cert)), cert, now=when)
    assert refused.value.check == check


def test_a_recorded_ldevid_is_refused_once_revoked(path_validations: list[x509.Certificate]) -> None:
    ca = make_ca()
    cert = issue(ca=ca)
    with pytest.raises(Forbidden) as refused:
        _check(_identity(ca, _record(cert, state="revoked")), cert)
    assert refused.value.check == "ldevid.revoked"


def test_a_recorded_ldevid_is_refused_once_listed_on_the_crl(path_validations: list[x509.Certificate]) -> None:
    ca = make_ca()
    cert = issue(ca=ca)
    clients = _identity(ca, _record(cert))

    async def listed(serial: int, crl_number: int | None) -> bool:
        assert crl_number == 3  # the number read with the request's facts
        return serial == cert.serial_number

    clients.listed_on_crl = listed
    with pytest.raises(Forbidden) as refused:
        _check(clients, cert)
    assert refused.value.check == "ldevid.revoked"


def test_one_devices_record_does_not_pass_another_devices_certificate(
    path_validations: list[x509.Certificate],
) -> None:
    # Nothing is kept between requests: the match is against the row read for
    # this certificate's own serial, so another device's row never applies.
    ca = make_ca()
    mine, theirs = issue(ca=ca), issue(ca=ca)
    stored = replace(_record(theirs), cert_serial=format(mine.serial_number, "x"))
    clients = _identity(ca, stored)
    _check(clients, mine)
    assert len(path_validations) == 1


def _ca_with_ski(ski: bytes, key: PrivateKey | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A "Domain CA" whose SKI is ``ski``, not derived from its key."""
    return make_cert(
        "Domain CA", key=key, ca=True, not_before=NOW - YEAR, not_after=NOW + 10 * YEAR,
        key_usage=key_usage_for(ca=True), ski=False,
        extra=[(x509.SubjectKeyIdentifier(ski), False)],
    )


def test_a_ca_whose_key_identifier_is_not_derived_from_its_key_always_path_validates(
    path_validations: list[x509.Certificate],
) -> None:
    ca = _ca_with_ski(b"\x01" * 20)
    cert = issue(ca=ca)
    assert _check(_identity(ca, _record(cert)), cert).device_serial == SERIAL
    assert len(path_validations) == 1


def test_a_replaced_ca_key_under_a_reused_key_identifier_is_refused(
    path_validations: list[x509.Certificate],
) -> None:
    # An operator re-keys the CA but keeps its name and its (arbitrary) SKI:
    # the AKI of what the old key issued still matches; only the signature
    # tells the keys apart, so such a CA gets full path validation.
    old_ca = _ca_with_ski(b"\x02" * 20)
    cert = issue(ca=old_ca)
    new_ca = _ca_with_ski(b"\x02" * 20)
    with pytest.raises(Forbidden) as refused:
        _check(_identity(new_ca, _record(cert)), cert)
    assert refused.value.check == "chain.untrusted"
