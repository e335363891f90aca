"""The authorisation matrix, every endpoint x every client identity.

One table-driven test. Rows are endpoints of the registrar (R) and the MASA
(M), each sent the request that identity would send if it were entitled to
(a voucher-request signed by its own key, a CSR for its own serial, ...);
columns are TLS client identities. Each cell is the HTTP status expected.
Read a row as "who may do this".

Cells that succeed change state (a voucher, an LDevID), so every cell gets a
fresh identity of its kind: a fresh pledge, a freshly vouched pledge, a
freshly enrolled LDevID.

Why the MASA rows look permissive: RFC 8995 5.5.4 lets the MASA skip TLS
authentication for nonced requests ("validation of the Registrar's identity
(via TLS Client Certificate or HTTP authentication) MAY be omitted"); it
authorises by the signed voucher-request (cmcRA, chain, prior-signed request,
ownership). Only nonceless requests need an authenticated registrar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from brski.pki import cert_der, device_serial, load_cert, spki_sha256
from tests.protocol.helpers import (
    AUDIT,
    CSR_HEADERS,
    ENROLL,
    ENROLLSTATUS,
    JSON_HEADERS,
    REENROLL,
    STATUS,
    STATUS_OK,
    VR,
    csr_b64,
    device_csr,
    load_key,
    rvr,
    vouched,
)
from tests.protocol.net import (
    NO_CERT,
    VR_HEADERS,
    Identity,
    Net,
    domain_issued,
    other_manufacturer,
    pledge_request,
    running_net,
    write_identity,
)

ADMIN_SUBJECT = "CN=admin,O=brski dev domain"
IDENTITIES = ("none", "unknown-mfr", "idevid-new", "idevid-vouched", "ldevid", "ldevid-revoked", "ldevid-expired", "registrar", "unrelated-ca", "admin")

# fmt: off
#                                   none  unknown-mfr idevid-new idevid-vouched ldevid ldevid-revoked ldevid-expired registrar unrelated-ca admin
MATRIX: dict[str, tuple[int, ...]] = {
    "R POST requestvoucher":        (401,  403,        200,       200,           403,   403,           403,           403,      403,         403),
    "R POST voucher_status":        (401,  403,        403,       200,           403,   403,           403,           403,      403,         403),
    "R POST enrollstatus":          (401,  403,        403,       200,           200,   403,           403,           403,      403,         403),
    "R GET  cacerts":               (200,  200,        200,       200,           200,   200,           200,           200,      200,         200),
    "R GET  csrattrs":              (200,  200,        200,       200,           200,   200,           200,           200,      200,         200),
    "R POST simpleenroll":          (401,  403,        403,       200,           403,   403,           403,           403,      403,         403),
    "R POST simplereenroll":        (401,  401,        401,       401,           200,   403,           403,           403,      401,         403),
    "R GET  healthz":               (200,  200,        200,       200,           200,   200,           200,           200,      200,         200),
    "R GET  admin devices":         (401,  403,        403,       403,           403,   403,           403,           403,      403,         200),
    "R GET  admin device":          (401,  403,        403,       403,           403,   403,           403,           403,      403,         200),
    "R POST admin revoke":          (401,  403,        403,       403,           403,   403,           403,           403,      403,         200),
    "R GET  admin audit verify":    (401,  403,        403,       403,           403,   403,           403,           403,      403,         200),
    "M POST requestvoucher":        (200,  200,        200,       200,           200,   200,           200,           200,      200,         200),
    "M POST requestvoucher nonceless": (403, 403,      403,       403,           403,   403,           403,           200,      403,         403),
    "M POST requestauditlog":       (200,  200,        200,       200,           200,   200,           200,           200,      200,         200),
    "M GET  healthz":               (200,  200,        200,       200,           200,   200,           200,           200,      200,         200),
}
# fmt: on
# Not in the matrix: GET /crl and /ocsp on the registrar's plain-HTTP port. They
# serve signed objects to anyone, by design (RFC 5280 4.2.1.13, RFC 6960 A.1);
# tests/e2e/test_revocation.py fetches them with openssl.


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Net]:
    with running_net(
        tmp_path_factory.mktemp("matrix"), engine, request,
        pledges=140, registrar={"admin_subjects": [ADMIN_SUBJECT]},
    ) as n:
        yield n


class Identities:
    """Fresh client identities of each kind, built on demand."""

    def __init__(self, net: Net) -> None:
        self.net = net
        pki = other_manufacturer(net.root / "unknown-mfr")
        s = pki.pledge_serials[0]
        self.unknown = write_identity(net.root, "unknown-mfr", pki.cert(f"pledges/{s}/idevid.crt"),
                                      pki.key(f"pledges/{s}/idevid.key"), tuple(pki.certs(f"pledges/{s}/chain.pem")))
        self.registrar = write_identity(net.root, "registrar-ra", net.pki.cert("registrar/ra.crt"), net.pki.key("registrar/ra.key"))
        from tests.protocol.net import unrelated_ca_identity

        self.unrelated = unrelated_ca_identity(net)
        self.admin = write_identity(net.root, "admin", net.pki.cert("registrar/admin.crt"), net.pki.key("registrar/admin.key"))
        self._n = 0

    def ldevid(self, *, revoked: bool = False) -> Identity:
        result = self.net.enroll()
        assert result.ok, (result.failed_check, result.detail)
        out = self.net.root / "out" / result.serial
        cert = load_cert((out / "ldevid.crt").read_bytes())
        if revoked:
            self.net.call(self.net.registrar.store.revoke_certificate(cert.serial_number, reason="keyCompromise", at=datetime.now(UTC)))
        self._n += 1
        return write_identity(self.net.root, f"ldevid-{self._n}", cert, load_key(out / "ldevid.key"))

    def make(self, kind: str) -> Identity:
        n = self.net
        if kind == "none":
            return NO_CERT
        if kind == "unknown-mfr":
            return self.unknown
        if kind == "idevid-new":
            return n.pledge(n.fresh_serial())
        if kind == "idevid-vouched":
            me = n.pledge(n.fresh_serial())
            vouched(n, me)
            return me
        if kind == "ldevid":
            return self.ldevid()
        if kind == "ldevid-revoked":
            return self.ldevid(revoked=True)
        if kind == "ldevid-expired":
            past = datetime.now(UTC) - timedelta(days=2)
            return domain_issued(n, f"expired-{n.fresh_serial()}", serial="PLG-000001", not_before=past - timedelta(days=1), not_after=past)
        if kind == "registrar":
            return self.registrar
        if kind == "unrelated-ca":
            return self.unrelated
        if kind == "admin":
            return self.admin
        raise AssertionError(kind)


def _serial(ident: Identity) -> str:
    return (device_serial(ident.cert) if ident.cert is not None else None) or "PLG-000001"


def _own_vr(net: Net, ident: Identity) -> bytes:
    if ident.key is None:  # no certificate: the body a pledge would send, signed by someone
        other = net.pledge(net.fresh_serial())
        return pledge_request(net, other)
    return pledge_request(net, ident, serial=_serial(ident))


def _masa_vr(net: Net, *, nonceless: bool = False) -> bytes:
    p = net.pledge(net.fresh_serial())
    if not nonceless:
        return rvr(net, p)
    ca = net.pki.cert("registrar/domain-ca.crt")
    net.call(net.masa.store.add_owner(_serial(p), domain_ca_spki_sha256=spki_sha256(ca), domain_ca_der=cert_der(ca), at=datetime.now(UTC)))
    return rvr(net, p, nonce=None, prior=pledge_request(net, p, nonce=None))


def _claimed_audit_request(net: Net) -> bytes:
    result = net.enroll()
    assert result.ok
    return rvr(net, net.pledge(result.serial))


def _enrolled_serial(net: Net) -> str:
    """A device with an LDevID, so that a permitted revoke has something to revoke."""
    result = net.enroll()
    assert result.ok
    return result.serial


_KNOWN: dict[Path, str] = {}  # per net (one per store engine)


def _known_serial(net: Net) -> str:
    """One enrolled device every cell may try to look at."""
    if net.root not in _KNOWN:
        _KNOWN[net.root] = _enrolled_serial(net)
    return _KNOWN[net.root]


Send = Callable[[Net, Identity], int]


def _req(role: str, method: str, path: str, body: Callable[[Net, Identity], bytes | None], headers: dict[str, str]) -> Send:
    def send(net: Net, ident: Identity) -> int:
        return net.request(role, method, path, body=body(net, ident), headers=headers, identity=ident).status

    return send


def _reenroll_body(net: Net, ident: Identity) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    if ident.cert is None:
        return device_csr("PLG-000001", key)
    return csr_b64(key, ident.cert.subject)


SENDERS: dict[str, Send] = {
    "R POST requestvoucher": _req("registrar", "POST", VR, _own_vr, VR_HEADERS),
    "R POST voucher_status": _req("registrar", "POST", STATUS, lambda n, i: STATUS_OK, JSON_HEADERS),
    "R POST enrollstatus": _req("registrar", "POST", ENROLLSTATUS, lambda n, i: STATUS_OK, JSON_HEADERS),
    "R GET  cacerts": _req("registrar", "GET", "/.well-known/est/cacerts", lambda n, i: None, {}),
    "R GET  csrattrs": _req("registrar", "GET", "/.well-known/est/csrattrs", lambda n, i: None, {}),
    "R POST simpleenroll": _req("registrar", "POST", ENROLL, lambda n, i: device_csr(_serial(i)), CSR_HEADERS),
    "R POST simplereenroll": _req("registrar", "POST", REENROLL, _reenroll_body, CSR_HEADERS),
    "R GET  healthz": _req("registrar", "GET", "/healthz", lambda n, i: None, {}),
    "R GET  admin devices": _req("registrar", "GET", "/admin/v1/devices", lambda n, i: None, {}),
    "R GET  admin device": lambda n, i: n.request(
        "registrar", "GET", f"/admin/v1/devices/{_known_serial(n)}", identity=i
    ).status,
    "R POST admin revoke": lambda n, i: n.request(
        "registrar", "POST", f"/admin/v1/devices/{_enrolled_serial(n)}/revoke",
        body=b'{"reason": "keyCompromise"}', headers={"Content-Type": "application/json"}, identity=i,
    ).status,
    "R GET  admin audit verify": _req("registrar", "GET", "/admin/v1/audit/verify", lambda n, i: None, {}),
    "M POST requestvoucher": _req("masa", "POST", VR, lambda n, i: _masa_vr(n), VR_HEADERS),
    "M POST requestvoucher nonceless": _req("masa", "POST", VR, lambda n, i: _masa_vr(n, nonceless=True), VR_HEADERS),
    "M POST requestauditlog": _req("masa", "POST", AUDIT, lambda n, i: _claimed_audit_request(n), VR_HEADERS),
    "M GET  healthz": _req("masa", "GET", "/healthz", lambda n, i: None, {}),
}


def test_authorisation_matrix(net: Net) -> None:
    assert set(SENDERS) == set(MATRIX)
    ids = Identities(net)
    # Identities that never change state are reused; the rest are fresh per cell.
    reusable = {"none", "unknown-mfr", "registrar", "unrelated-ca", "admin"}
    cache: dict[str, Identity] = {}
    got: dict[str, tuple[int, ...]] = {}
    for row, send in SENDERS.items():
        cells = []
        for kind in IDENTITIES:
            if kind in reusable:
                ident = cache.setdefault(kind, ids.make(kind))
            else:
                ident = ids.make(kind)
            cells.append(send(net, ident))
        got[row] = tuple(cells)
    mismatches = {row: (MATRIX[row], got[row]) for row in MATRIX if MATRIX[row] != got[row]}
    assert not mismatches, "\n".join(
        f"{row}: expected {exp} got {act}" for row, (exp, act) in mismatches.items()
    )
