"""How the registrar records an LDevID it issues (RFC 7030 4.2.1, 4.2.2), over real TLS.

The certificate is signed first and recorded in one flushed write that
re-checks the key and the renewed certificate; two requests racing for one
key get exactly one certificate, the other the refusal a reservation before
signing gave (est.csr-key-reused, est.already-renewed), and nothing of the
loser is recorded. A reservation left 'reserved' by an older version or a
crash is still completed under its serial.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from brski import est
from brski.ca import new_serial
from brski.pki import spki_sha256
from tests.protocol.helpers import REENROLL, csr_b64, device_csr, enroll, serial_of, vouched
from tests.protocol.net import Identity, Net, Reply, write_identity

GATE_TIMEOUT_S = 20


def issued_cert(reply: Reply) -> x509.Certificate:
    assert reply.status == 200, (reply.status, reply.body[:300])
    certs = est.parse_certs_only(base64.b64decode(reply.body))
    assert len(certs) == 1
    return certs[0]


@contextmanager
def writes_of(net: Net) -> Iterator[list[bool]]:
    """Every write job the registrar's store runs meanwhile: whether it asked for its flush."""
    db = net.registrar.est.store.database
    seen: list[bool] = []
    original = db.write

    async def write(fn: Callable[[Any], Any], *, flush: bool = True) -> Any:
        seen.append(flush)
        return await original(fn, flush=flush)

    db.write = write
    try:
        yield seen
    finally:
        del db.write  # the class's method again


@contextmanager
def racing_for(net: Net, spki: bytes, requests: int = 2) -> Iterator[None]:
    """The registrar's read of ``spki``'s certificates returns to no request
    until ``requests`` of them have read it: all of them pass the check before
    signing, so only the recording transaction can tell them apart."""
    store = net.registrar.est.store
    original = store.latest_certificate_for_key
    arrived = 0
    together: asyncio.Event | None = None

    async def gated(key: bytes) -> Any:
        nonlocal arrived, together
        result = await original(key)
        if key != spki:
            return result
        if together is None:
            together = asyncio.Event()  # on the servers' loop
        arrived += 1
        if arrived >= requests:
            together.set()
        await asyncio.wait_for(together.wait(), GATE_TIMEOUT_S)
        return result

    store.latest_certificate_for_key = gated
    try:
        yield
    finally:
        del store.latest_certificate_for_key


def at_once(*sends: Callable[[], Reply]) -> list[Reply]:
    with ThreadPoolExecutor(len(sends)) as pool:
        return [f.result() for f in [pool.submit(send) for send in sends]]


def count(net: Net, sql: str, *params: Any) -> int:
    return int(net.rows("registrar", sql, params)[0][0])


def events_of(net: Net, serial: str, since: int) -> list[tuple[str, str, str | None]]:
    rows = net.rows("registrar", "SELECT kind, outcome, check_name FROM events WHERE device_serial = ? AND id > ?"
                    " AND kind <> 'state.recorded' ORDER BY id", (serial, since))
    return [(str(k), str(o), None if c is None else str(c)) for k, o, c in rows]


def max_event(net: Net) -> int:
    return count(net, "SELECT coalesce(max(id), 0) FROM events")


def ldevid_identity(net: Net, label: str) -> tuple[Identity, ec.EllipticCurvePrivateKey, str]:
    """A vouched pledge enrolled with a key of ours: its LDevID as a TLS identity."""
    me = net.pledge(net.fresh_serial())
    serial = serial_of(me)
    vouched(net, me)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issued_cert(enroll(net, me, device_csr(serial, key)))
    return write_identity(net.root, label, cert, key), key, serial


def test_a_first_enrolment_records_its_certificate_in_one_flushed_write(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    serial = serial_of(me)
    vouched(net, me)
    with writes_of(net) as writes:
        cert = issued_cert(enroll(net, me, device_csr(serial)))
    # No reservation before signing: one write, flushed before the 200.
    assert writes == [True]
    row = net.rows("registrar", "SELECT state, device_serial FROM certificates WHERE cert_serial = ?",
                   (format(cert.serial_number, "x"),))
    assert row == [("issued", serial)]
    assert net.rows("registrar", "SELECT state FROM devices WHERE serial = ?", (serial,)) == [("enrolled",)]


def test_a_same_key_renewal_records_its_certificate_in_one_flushed_write(net: Net) -> None:
    ident, key, _serial = ldevid_identity(net, "renew-once")
    assert ident.cert is not None
    with writes_of(net) as writes:
        renewed = issued_cert(enroll(net, ident, csr_b64(key, ident.cert.subject), REENROLL))
    assert writes == [True]
    assert net.rows("registrar", "SELECT state, renews FROM certificates WHERE cert_serial = ?",
                    (format(renewed.serial_number, "x"),)) == [("issued", format(ident.cert.serial_number, "x"))]


def test_two_enrolments_with_one_key_at_once_issue_one_certificate(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    serial = serial_of(me)
    vouched(net, me)
    key = ec.generate_private_key(ec.SECP256R1())
    spki = spki_sha256(key.public_key())
    since = max_event(net)
    with racing_for(net, spki):
        replies = at_once(lambda: enroll(net, me, device_csr(serial, key)), lambda: enroll(net, me, device_csr(serial, key)))
    assert sorted(r.status for r in replies) == [200, 403], [(r.status, r.body[:200]) for r in replies]
    refused = next(r for r in replies if r.status == 403)
    assert refused.check == "est.csr-key-reused", refused.problem
    cert = issued_cert(next(r for r in replies if r.status == 200))
    # One certificate for the key, the one answered; the loser's signed
    # certificate was discarded and left no row, no event, no transition.
    assert net.rows("registrar", "SELECT cert_serial, state FROM certificates WHERE device_serial = ?", (serial,)) \
        == [(format(cert.serial_number, "x"), "issued")]
    # The winner's events (the CSR's extras it ignored included), the loser's refusal.
    assert sorted(events_of(net, serial, since)) == sorted([
        ("credential.issued", "allow", "registrar.issue"),
        ("credential.csr-ignored", "info", "est.csr-not-granted"),
        ("refused /.well-known/est/simpleenroll", "refuse", "est.csr-key-reused"),
    ])
    assert count(net, "SELECT count(*) FROM device_transitions WHERE serial = ? AND to_state = 'enrolled'", serial) == 1


def test_two_renewals_of_one_certificate_at_once_issue_one(net: Net) -> None:
    ident, key, serial = ldevid_identity(net, "renew-race")
    assert ident.cert is not None
    subject = ident.cert.subject
    since = max_event(net)
    with racing_for(net, spki_sha256(key.public_key())):
        replies = at_once(lambda: enroll(net, ident, csr_b64(key, subject), REENROLL),
                          lambda: enroll(net, ident, csr_b64(key, subject), REENROLL))
    assert sorted(r.status for r in replies) == [200, 403], [(r.status, r.body[:200]) for r in replies]
    refused = next(r for r in replies if r.status == 403)
    assert refused.check == "est.already-renewed", refused.problem
    renewed = issued_cert(next(r for r in replies if r.status == 200))
    rows = net.rows("registrar", "SELECT cert_serial, renews FROM certificates WHERE device_serial = ? ORDER BY id", (serial,))
    assert rows == [(format(ident.cert.serial_number, "x"), None),
                    (format(renewed.serial_number, "x"), format(ident.cert.serial_number, "x"))]
    assert sorted(events_of(net, serial, since)) == sorted([
        ("credential.renewed", "allow", "registrar.issue"),
        ("refused /.well-known/est/simplereenroll", "refuse", "est.already-renewed"),
    ])


def test_an_orphaned_reservation_is_completed_under_its_serial(net: Net) -> None:
    """A row left 'reserved' (a version that reserved before signing, then a
    crash): the device asking again with that key gets that serial."""
    me = net.pledge(net.fresh_serial())
    serial = serial_of(me)
    vouched(net, me)
    key = ec.generate_private_key(ec.SECP256R1())
    reserved = new_serial()
    net.call(net.registrar.est.store.reserve_certificate(
        cert_serial=reserved, device_serial=serial, spki_sha256=spki_sha256(key.public_key()), at=datetime.now(UTC)))
    with writes_of(net) as writes:
        cert = issued_cert(enroll(net, me, device_csr(serial, key)))
    assert cert.serial_number == reserved
    assert writes == [True]  # the completion
    assert net.rows("registrar", "SELECT cert_serial, state FROM certificates WHERE device_serial = ?", (serial,)) \
        == [(format(reserved, "x"), "issued")]
    assert net.rows("registrar", "SELECT state FROM devices WHERE serial = ?", (serial,)) == [("enrolled",)]
