"""The registrar's EST requests read their facts once (registrar.est_service).

``/simpleenroll`` and ``/simplereenroll`` read everything they check (the
device or the LDevID's row, the EST gate's rows, the device's certificates,
the newest row for the CSR's key, the CRL number) in one ``est_facts`` read
per request, for the requesting device only, and still refuse in the order
they always did: a malformed CSR is refused only after the device, the gate
and the issuance limit were checked. A first enrolment supersedes the
device's earlier LDevIDs in the transaction that records it, not by a read
and writes after it.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from brski import est
from brski.errors import BrskiError
from brski.pki import PrivateKey, spki_sha256
from brski_storage.base import (
    ApprovalRecord,
    AuditLogRecord,
    CertificateRecord,
    DeviceRecord,
    RegistrarStore,
)
from brski_storage.certificates import EstFacts, Supersede
from brski_web.identity import PeerIdentity
from registrar.admission import AdmissionControl, AdmissionPolicy
from registrar.est_service import EstService
from registrar.identity import ClientIdentity, RegistrarKeys
from registrar.issuance import IssuancePolicy
from tests.ca_helpers import SERIAL, YEAR, make_ca, make_csr
from tests.pki_helpers import NOW, make_cert

OTHER = "00-D0-E5-F2-00-03"
ATTRS = [x509.NameAttribute(NameOID.COMMON_NAME, SERIAL), x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)]
SUBJECT = x509.Name(ATTRS)


class _Store:
    """What an EST request may ask of the store: ``est_facts`` before issuing,
    the recording (which supersedes the device's earlier LDevIDs in its own
    transaction), and the device's certificates only when superseding after
    an orphaned reservation completed; anything else is missing."""

    def __init__(self, facts: EstFacts) -> None:
        self.facts = facts
        self.reads: list[dict[str, Any]] = []
        self.listed: list[str] = []
        self.recorded: list[dict[str, Any]] = []
        self.superseding: list[Supersede] = []

    async def est_facts(self, **asked: Any) -> EstFacts:
        self.reads.append(asked)
        return self.facts

    async def record_issued_certificate(self, **kw: Any) -> CertificateRecord:
        self.recorded.append(kw)
        return _row(kw["cert_serial"], device=kw["device_serial"], spki=kw["spki_sha256"], der=kw["der"])

    async def record_issued_superseding(self, *, supersede: Supersede, **kw: Any) -> tuple[CertificateRecord, tuple[()]]:
        self.superseding.append(supersede)
        return await self.record_issued_certificate(**kw), ()

    async def list_certificates(self, device_serial: str) -> list[CertificateRecord]:
        self.listed.append(device_serial)
        return []


def _row(cert_serial: str, *, device: str = SERIAL, spki: bytes = b"\0" * 32, der: bytes | None = None,
         at: Any = NOW) -> CertificateRecord:
    return CertificateRecord(
        cert_serial=cert_serial, device_serial=device, spki_sha256=spki, state="issued", der=der,
        not_before=at, not_after=at + YEAR, reserved_at=at, issued_at=at, revoked_at=None, revocation_reason=None,
    )


def _peer(cert: x509.Certificate) -> PeerIdentity:
    der = cert.public_bytes(Encoding.DER)
    return PeerIdentity(leaf=x509.load_der_x509_certificate(der), chain=(), tls_verified=True, leaf_der=der)


def _device(peer: PeerIdentity, state: str = "voucher-obtained") -> DeviceRecord:
    assert peer.fingerprint is not None
    return DeviceRecord(serial=SERIAL, idevid_issuer="CN=m", idevid_fingerprint=peer.fingerprint,
                        manufacturer="m", state=state, first_seen=NOW, updated_at=NOW)


def _csr_body(key: PrivateKey | None = None) -> tuple[bytes, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(key, subject=ATTRS)
    return base64.b64encode(csr.public_bytes(Encoding.DER)), spki_sha256(key.public_key())


CA = make_ca()
IDEVID = make_cert("pledge", serial=SERIAL)


def _service(facts: EstFacts) -> tuple[EstService, _Store]:
    store = _Store(facts)
    keys = RegistrarKeys(ca_cert=CA[0], ca_key=CA[1], ra_cert=CA[0], ra_key=CA[1], tls_cert=CA[0])
    gate = AdmissionControl(store=cast(RegistrarStore, store), policy=AdmissionPolicy(), own_domain_id="b3du")
    service = EstService(
        store=cast(RegistrarStore, store), keys=keys, clients=ClientIdentity(store=cast(RegistrarStore, store), keys=keys),
        enroll_gate=gate.enroll_gate_on, ldevid_validity=YEAR, issuance=IssuancePolicy(limit=2),
    )
    return service, store


def test_an_enrolment_reads_its_facts_once_for_its_own_device() -> None:
    peer = _peer(IDEVID[0])
    body, spki = _csr_body()
    service, store = _service(EstFacts(device=_device(peer)))
    answer = asyncio.run(service.simpleenroll(body=body, cte="base64", peer=peer, now=NOW))
    assert est.parse_certs_only(base64.b64decode(answer))[0].subject.rfc4514_string().endswith(SERIAL)
    assert store.reads == [{
        "device_serial": SERIAL, "cert_serial": None, "spki_sha256": spki,
        "gate": True, "certificates": True, "crl_number": False,
    }]
    assert len(store.recorded) == 1
    # The earlier LDevIDs are superseded in the recording's transaction: no read after it.
    assert [s.check for s in store.superseding] == ["registrar.supersede"] and store.listed == []


def test_a_renewal_reads_its_facts_once_by_its_ldevid() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    body, spki = _csr_body(key)
    ldevid = make_cert("ldevid", subject=SUBJECT, issuer=CA, key=key)[0]
    peer = _peer(ldevid)
    row = _row(format(ldevid.serial_number, "x"), spki=spki, der=peer.leaf_der)
    service, store = _service(EstFacts(
        client_certificate=row, device=_device(_peer(IDEVID[0]), state="enrolled"), key_certificate=row,
        certificates=(row,),
    ))
    service.clients._recorded_here = lambda *a, **k: True  # type: ignore[method-assign]  # the path is not the point
    asyncio.run(service.simplereenroll(body=body, cte="base64", peer=peer, now=NOW))
    assert store.reads == [{
        "device_serial": None, "cert_serial": ldevid.serial_number, "spki_sha256": spki,
        "gate": True, "certificates": True, "crl_number": True,
    }]
    assert store.recorded[0]["renews"] == row.cert_serial and store.listed == [] and store.superseding == []


def _refusal(facts: EstFacts, body: bytes) -> str:
    service, _ = _service(facts)
    with pytest.raises(BrskiError) as refused:
        asyncio.run(service.simpleenroll(body=body, cte="base64", peer=_peer(IDEVID[0]), now=NOW))
    return refused.value.check


def test_a_malformed_csr_is_refused_after_the_device_gate_and_limit_checks() -> None:
    peer = _peer(IDEVID[0])
    bad = base64.b64encode(b"\x30\x03\x02\x01\x01")
    device = _device(peer)
    rejected = ApprovalRecord(serial=SERIAL, decision="rejected", requested_at=NOW, decided_at=NOW,
                              decided_by="op", reason=None)
    recent = (_row("a1", at=NOW - timedelta(minutes=1)), _row("a2", at=NOW - timedelta(minutes=2)))
    assert _refusal(EstFacts(), bad) == "simpleenroll.unknown-device"
    assert _refusal(EstFacts(device=replace(device, idevid_fingerprint="00")), bad) == "simpleenroll.unknown-device"
    assert _refusal(EstFacts(device=replace(device, state="discovered")), bad) == "est.not-authorised"
    assert _refusal(EstFacts(device=device, approval=rejected), bad) == "registrar.approval-rejected"
    assert _refusal(EstFacts(device=device, certificates=recent), bad) == "est.issuance-limit"
    csr_check = _refusal(EstFacts(device=device), bad)
    assert csr_check.startswith("est.") and csr_check != "est.issuance-limit"


def test_the_checks_refuse_another_devices_rows() -> None:
    gate = AdmissionControl(store=cast(RegistrarStore, None), policy=AdmissionPolicy(), own_domain_id="b3du")
    log = AuditLogRecord(id=1, serial=OTHER, fetched_at=NOW, body=b"{}")
    with pytest.raises(ValueError):
        gate.enroll_gate_on(SERIAL, approval=None, audit_log=log)
    with pytest.raises(ValueError):
        gate.enroll_gate_on(SERIAL, approval=ApprovalRecord(
            serial=OTHER, decision="approved", requested_at=NOW, decided_at=NOW, decided_by="op", reason=None
        ), audit_log=None)
    with pytest.raises(ValueError):
        IssuancePolicy(limit=2).check_limit_on([_row("b1", device=OTHER)], SERIAL, now=NOW)
