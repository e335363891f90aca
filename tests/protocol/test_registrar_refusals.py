"""Registrar refusals 1-19: each a named test over real TLS.

Every test goes through :func:`tests.protocol.helpers.refused`: the HTTP
status, a problem body naming the failed check, nothing issued or signed, a
refusal event stored with that check, and a good pledge onboarding right
after. The registrar here denies one serial and one whole manufacturer.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski import cms
from brski.devpki import DevPki
from brski.errors import BadGateway
from brski.pki import cert_der, fingerprint_sha256
from brski.voucher import Assertion, VoucherRequest
from tests.protocol.helpers import (
    ENROLL,
    ENROLLSTATUS,
    JSON_HEADERS,
    REENROLL,
    STATUS,
    STATUS_OK,
    csr_b64,
    device_csr,
    enroll,
    load_key,
    post_vr,
    refused,
    serial_of,
    vouched,
)
from tests.protocol.net import (
    VR_HEADERS,
    Identity,
    Net,
    Reply,
    domain_issued,
    idevid_without_serial,
    issue,
    name,
    other_manufacturer,
    pledge_request,
    running_net,
    write_identity,
)

DENIED_SERIAL = "PLG-000120"


def _payload(signed: bytes) -> bytes:
    return cms.verify(signed).content


@pytest.fixture(scope="module")
def refusals_root(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Path:
    """A fresh directory per store engine (net runs once per engine)."""
    return tmp_path_factory.mktemp("refusals")


@pytest.fixture(scope="module")
def denied_pki(refusals_root: Path) -> DevPki:
    """A manufacturer the registrar's policy denies (net lists its anchor)."""
    return other_manufacturer(refusals_root / "denied-mfr")


@pytest.fixture(scope="module")
def net(
    refusals_root: Path, denied_pki: DevPki, engine: str, request: pytest.FixtureRequest
) -> Iterator[Net]:
    root = refusals_root
    with running_net(
        root,
        engine,
        request,
        pledges=120,
        registrar={
            "deny_serials": [DENIED_SERIAL],
            "manufacturers": [
                {"name": "denied-co", "anchor": str(root / "denied-mfr/other/manufacturer/root-ca.crt"), "policy": "deny"}
            ],
        },
    ) as n:
        n.reserved.add(DENIED_SERIAL)
        yield n


@pytest.fixture(scope="module")
def stranger(net: Net) -> tuple[DevPki, Identity]:
    """A pledge of a manufacturer the registrar has no anchor for."""
    pki = other_manufacturer(net.root / "stranger")
    s = pki.pledge_serials[0]
    ident = write_identity(
        net.root, "stranger", pki.cert(f"pledges/{s}/idevid.crt"), pki.key(f"pledges/{s}/idevid.key"),
        tuple(pki.certs(f"pledges/{s}/chain.pem")),
    )
    return pki, ident


# --- 1-9: the pledge voucher-request (RFC 8995 5.2, 5.3, 5.5, 5.6) ------------------------


def test_01_idevid_not_chaining_to_a_trusted_manufacturer(net: Net, stranger: tuple[DevPki, Identity]) -> None:
    _, ident = stranger
    refused(net, "registrar", lambda: post_vr(net, ident, pledge_request(net, ident)), status=403, check="chain.untrusted")


def test_02_idevid_without_serial_number(net: Net) -> None:
    ident = idevid_without_serial(net)
    body = pledge_request(net, ident, serial="PLG-000001")
    refused(net, "registrar", lambda: post_vr(net, ident, body), status=403, check="idevid.serial-number")


def test_03_voucher_request_signed_by_another_key(net: Net) -> None:
    me, other = net.pledge(net.fresh_serial()), net.pledge(net.fresh_serial())
    body = pledge_request(net, me, sign_key=other.key, sign_cert=other.cert)
    refused(net, "registrar", lambda: post_vr(net, me, body), status=403, check="pledge-request.signer-not-tls-client")


@pytest.mark.parametrize("how", ["unsigned", "bad-signature", "message-digest"])
def test_04_voucher_request_unsigned_or_badly_signed(net: Net, how: str) -> None:
    me = net.pledge(net.fresh_serial())
    good = pledge_request(net, me)
    if how == "unsigned":
        body, check = b'{"ietf-voucher-request:voucher":{"assertion":"proximity"}}', "asn1.length"
    elif how == "bad-signature":
        # The last octets of the DER are the ECDSA signature value's.
        body, check = good[:-2] + bytes([good[-2] ^ 0x01]) + good[-1:], "cms.signature"
    else:
        # Change one octet of the signed JSON: the messageDigest attribute no longer matches.
        at = good.index(b'"proximity"')
        body, check = good[:at + 1] + b"P" + good[at + 2:], "cms.message-digest"
    refused(net, "registrar", lambda: post_vr(net, me, body), status=400, check=check)


def test_05_serial_number_differs_from_the_idevid(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    body = pledge_request(net, me, serial="PLG-999999")
    refused(net, "registrar", lambda: post_vr(net, me, body), status=403, check="pledge-request.serial-number")


def test_06_assertion_other_than_proximity(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    body = pledge_request(net, me, assertion=Assertion.LOGGED)
    reply = refused(net, "registrar", lambda: post_vr(net, me, body), status=401, check="pledge-request.assertion")
    # RFC 8995 5.2: 401, then the connection is closed (tests/protocol/test_interop_answers.py).
    assert reply.headers["connection"] == "close"


def test_07_proximity_registrar_cert_missing(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    body = pledge_request(net, me, omit_proximity=True)
    reply = refused(net, "registrar", lambda: post_vr(net, me, body), status=401,
                    check="pledge-request.proximity-registrar-cert-missing")
    assert reply.headers["connection"] == "close"


def test_07_proximity_registrar_cert_not_ours(net: Net, stranger: tuple[DevPki, Identity]) -> None:
    pki, _ = stranger
    me = net.pledge(net.fresh_serial())
    body = pledge_request(net, me, proximity=cert_der(pki.cert("registrar/tls.crt")))
    reply = refused(net, "registrar", lambda: post_vr(net, me, body), status=401,
                    check="pledge-request.proximity-registrar-cert")
    assert reply.headers["connection"] == "close"


@pytest.mark.parametrize(
    ("nonce", "check"),
    [(None, "pledge-request.nonce-missing"), (b"1234567", "voucher-request.nonce-length"), (b"x" * 65, "voucher-request.nonce-length")],
    ids=["missing", "too-short", "too-long"],
)
def test_08_nonce_missing_too_short_or_too_long(net: Net, nonce: bytes | None, check: str) -> None:
    me = net.pledge(net.fresh_serial())
    if nonce is None:
        body = pledge_request(net, me, nonce=None)
    else:
        # Our own model refuses to build such a request: write the JSON by hand.
        template = json.loads(VoucherRequest.from_json(_payload(pledge_request(net, me))).to_json())
        template["ietf-voucher-request:voucher"]["nonce"] = base64.b64encode(nonce).decode()
        assert me.key is not None and me.cert is not None
        body = cms.sign(json.dumps(template).encode(), key=me.key, cert=me.cert, chain=me.chain)
    refused(net, "registrar", lambda: post_vr(net, me, body), status=400, check=check)


@pytest.mark.parametrize(
    ("headers", "status", "check"),
    [
        ({"Content-Type": "text/plain", "Accept": "application/voucher-cms+json"}, 415, "http.content-type"),
        ({"Accept": "application/voucher-cms+json"}, 415, "http.content-type"),
        ({"Content-Type": "application/voucher-cms+json", "Accept": "application/pdf"}, 406, "http.accept"),
    ],
    ids=["wrong-content-type", "no-content-type", "unacceptable-accept"],
)
def test_09_content_type_and_accept(net: Net, headers: dict[str, str], status: int, check: str) -> None:
    me = net.pledge(net.fresh_serial())
    body = pledge_request(net, me)
    refused(net, "registrar", lambda: post_vr(net, me, body, headers), status=status, check=check)


# --- 10: audit-log review (RFC 8995 5.8.3) ---------------------------------------------------


@pytest.mark.parametrize(
    ("nonce", "check"),
    [(None, "registrar.audit.nonceless-other-domain"), (b"o" * 16, "registrar.audit.unexpected-domain")],
    ids=["nonceless-other-domain", "nonced-unexpected-domain"],
)
def test_10_masa_audit_log_breaks_the_review_policy(net: Net, nonce: bytes | None, check: str) -> None:
    serial = net.fresh_serial()
    # The MASA's history for this device shows another domain's voucher.
    net.call(net.masa.store.append_audit_entry(
        serial=serial, at=datetime.now(UTC) - timedelta(days=3), domain_id=base64.b64encode(b"another domain").decode(),
        nonce=nonce, assertion="logged",
    ))
    before_certs = net.count("registrar", "certificates")

    def attempt() -> object:
        result = net.enroll(serial)
        # The pledge names its own check (an HTTP refusal); the registrar's is in the detail.
        assert not result.ok and f"(check: {check})" in (result.detail or ""), (result.failed_check, result.detail)
        return result

    attempt()
    assert net.count("registrar", "certificates") == before_certs
    reviews = net.rows("registrar", "SELECT outcome, check_name FROM events WHERE kind = 'auditlog.reviewed' AND device_serial = ?", (serial,))
    assert reviews == [("refuse", check)]
    refusals = net.rows("registrar", "SELECT check_name FROM events WHERE outcome = 'refuse' AND device_serial = ? AND kind LIKE 'refused %'", (serial,))
    assert (check,) in refusals
    # Asking again changes nothing: EST stays refused for this device.
    me = net.pledge(serial)
    refused(net, "registrar", lambda: enroll(net, me, device_csr(serial)), status=403, check=check,
            same=("registrar.certificates",))


@pytest.mark.parametrize("failure", ["masa-refuses", "fetch-crashes"])
def test_10_the_voucher_status_is_on_record_whatever_the_audit_log_fetch_does(net: Net, failure: str) -> None:
    """RFC 8995 5.7-5.8: the report and the fetch's outcome are stored in one
    transaction (a MASA that fails the fetch is recorded, not fatal); if the
    fetch itself breaks, the report is still stored before the error is answered."""
    serial = net.fresh_serial()
    masa = net.registrar.vouchers.masa

    async def failing(target: str, *, body: bytes, media_type: str) -> object:
        if failure == "masa-refuses":
            raise BadGateway("the MASA refused the audit-log request", check="masa.audit-log-refused")
        raise RuntimeError("the fetch broke")

    masa.request_audit_log = failing
    try:
        result = net.enroll(serial)
    finally:
        del masa.request_audit_log
    # Telemetry is not the pledge's to fail on (a 500 to voucher_status included): it goes on and enrolls.
    assert result.ok, (result.failed_check, result.detail)
    assert net.rows("registrar", "SELECT kind, status FROM status_reports WHERE serial = ? AND kind = 'voucher'",
                    (serial,)) == [("voucher", 1)]
    kinds = [k for (k,) in net.rows("registrar", "SELECT kind FROM events WHERE device_serial = ? AND kind NOT LIKE"
                                    " 'state.%' ORDER BY id", (serial,))]
    after = kinds[kinds.index("telemetry.voucher-status") + 1:]
    if failure == "masa-refuses":
        assert after[0] == "auditlog.fetch-failed", kinds  # in the report's transaction
    assert "auditlog.reviewed" not in kinds and net.rows(
        "registrar", "SELECT count(*) FROM audit_logs WHERE serial = ?", (serial,)) == [(0,)]


# --- 11-15: EST (RFC 7030, RFC 8995 5.9) -----------------------------------------------------


def test_11_simpleenroll_by_a_device_never_seen(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    refused(net, "registrar", lambda: enroll(net, me, device_csr(serial_of(me))), status=403,
            check="simpleenroll.unknown-device")


def test_11_simpleenroll_before_the_voucher(net: Net) -> None:
    # A device on record (inventory: discovered) but never vouched for. (A
    # refused voucher-request records no device, so it is put on record the
    # way an accepted one would, without the voucher.)
    me = net.pledge(net.fresh_serial())
    serial = serial_of(me)
    assert me.cert is not None
    net.call(net.registrar.store.upsert_device(
        serial, idevid_issuer=me.cert.issuer.rfc4514_string(), idevid_fingerprint=fingerprint_sha256(me.cert),
        manufacturer=me.chain[-1].subject.rfc4514_string(), at=datetime.now(UTC),
    ))
    refused(net, "registrar", lambda: enroll(net, me, device_csr(serial)), status=403, check="est.not-authorised")


def test_12_csr_names_another_device(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    refused(net, "registrar", lambda: enroll(net, me, device_csr("PLG-000002")), status=403, check="est.csr-identity")


def test_13_csr_with_an_invalid_signature(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    der = bytearray(base64.b64decode(device_csr(serial_of(me))))
    der[-3] ^= 0x01  # inside the signature value
    refused(net, "registrar", lambda: enroll(net, me, base64.b64encode(bytes(der))), status=400, check="est.csr-signature")


def test_14_csr_with_the_idevid_key(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    assert me.key is not None
    refused(net, "registrar", lambda: enroll(net, me, device_csr(serial_of(me), me.key)), status=403,
            check="est.csr-idevid-key")


def test_14_csr_with_an_already_certified_key(net: Net) -> None:
    first = net.enroll()
    assert first.ok
    certified = load_key(net.root / "out" / first.serial / "ldevid.key")
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    refused(net, "registrar", lambda: enroll(net, me, device_csr(serial_of(me), certified)), status=403,
            check="est.csr-key-reused")


def _ldevid_identity(net: Net, label: str) -> tuple[Identity, str]:
    result = net.enroll()
    assert result.ok
    out = net.root / "out" / result.serial
    from brski.pki import load_cert

    cert = load_cert((out / "ldevid.crt").read_bytes())
    return write_identity(net.root, label, cert, load_key(out / "ldevid.key")), result.serial


def test_15_reenroll_with_another_subject(net: Net) -> None:
    ident, serial = _ldevid_identity(net, "ldevid-subject")
    refused(net, "registrar", lambda: enroll(net, ident, csr_b64(ec.generate_private_key(ec.SECP256R1()), name("someone else", serial=serial)), REENROLL),
            status=403, check="est.reenroll-subject")


def test_15_reenroll_with_an_expired_ldevid(net: Net) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    ident = domain_issued(net, "expired-ldevid", serial="PLG-000003", not_before=past - timedelta(days=1), not_after=past)
    assert ident.cert is not None
    body = csr_b64(ec.generate_private_key(ec.SECP256R1()), ident.cert.subject)
    refused(net, "registrar", lambda: enroll(net, ident, body, REENROLL), status=403, check="chain.expired")


def test_15_reenroll_with_a_revoked_ldevid(net: Net) -> None:
    ident, _serial = _ldevid_identity(net, "revoked-ldevid")
    assert ident.cert is not None
    net.call(net.registrar.store.revoke_certificate(ident.cert.serial_number, reason="keyCompromise", at=datetime.now(UTC)))
    body = csr_b64(ec.generate_private_key(ec.SECP256R1()), ident.cert.subject)
    refused(net, "registrar", lambda: enroll(net, ident, body, REENROLL), status=403, check="ldevid.revoked")


# --- 16: TLS -------------------------------------------------------------------------------------


def _handshake(net: Net, ctx: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", net.registrar_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        tls.recv(100)


@pytest.mark.parametrize("what", ["tls1.1", "anonymous-cipher", "static-rsa-cbc-cipher"])
def test_16_old_protocols_and_weak_ciphers_fail_the_handshake(net: Net, what: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if what == "tls1.1":
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.set_ciphers("aNULL:@SECLEVEL=0" if what == "anonymous-cipher" else "AES128-SHA:@SECLEVEL=0")
        except ssl.SSLError:
            pytest.skip(f"this OpenSSL cannot even offer {what}")
    before = net.snapshot()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(net, ctx)
    assert net.snapshot() == before
    good = net.enroll()
    assert good.ok


def test_16_no_client_certificate_where_one_is_required(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    body = pledge_request(net, me)
    from tests.protocol.net import NO_CERT

    refused(net, "registrar", lambda: post_vr(net, NO_CERT, body), status=401, check="tls.client-cert")


# --- 17: hostile bodies -------------------------------------------------------------------------


def test_17_body_over_the_size_limit(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    refused(net, "registrar", lambda: post_vr(net, me, b"\x30" + b"\x00" * 70000), status=413, check="http.body-too-large")


def test_17_malformed_base64(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    refused(net, "registrar", lambda: enroll(net, me, b"not*base64!!"), status=400, check="est.base64")


def test_17_certificate_posted_instead_of_a_csr(net: Net) -> None:
    """Some clients post their certificate to /simpleenroll: the refusal says so."""
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    assert me.cert is not None
    body = base64.b64encode(cert_der(me.cert))
    reply = refused(net, "registrar", lambda: enroll(net, me, body), status=400, check="est.csr-is-certificate")
    assert b"X.509 certificate" in reply.body  # whichever body form the client asked for


@pytest.mark.parametrize(
    ("body", "check"),
    [
        (b"\x30\x80" * 40 + b"\x00\x00" * 40, "asn1.depth"),
        (b"\x30\x84\x7f\xff\xff\xff\x02\x01\x00", "asn1.length"),
    ],
    ids=["deep-nesting", "bad-length"],
)
def test_17_malformed_asn1(net: Net, body: bytes, check: str) -> None:
    me = net.pledge(net.fresh_serial())
    refused(net, "registrar", lambda: post_vr(net, me, body), status=400, check=check)


def test_17_chunked_body_that_never_ends(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    assert me.pem_path is not None and me.key_path is not None
    ctx = ssl.create_default_context(cafile=str(net.path("registrar/domain-ca.crt")))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(me.pem_path), str(me.key_path))

    def send() -> Reply:

        with socket.create_connection(("127.0.0.1", net.registrar_port), timeout=30) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(
                b"POST /.well-known/brski/requestvoucher HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/voucher-cms+json\r\nAccept: application/problem+json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                b"4\r\n\x30\x80\x30\x80\r\n"  # one chunk, then silence: no terminating 0-chunk
            )
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        return Reply(status, {}, body if body.startswith(b"{") else body[body.index(b"{"):body.rindex(b"}") + 1])

    refused(net, "registrar", send, status=408, check="http.body-timeout")


# --- 18: telemetry from a client that is not the device ------------------------------------------


def test_18_voucher_status_from_a_device_the_registrar_never_vouched(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    refused(net, "registrar", lambda: net.request("registrar", "POST", STATUS, body=STATUS_OK, headers=JSON_HEADERS, identity=me),
            status=403, check="voucher-status.unknown-device")


def _clone_of(net: Net, serial: str, label: str) -> Identity:
    """Same serial, same trusted issuer, different key: not the device it names."""
    ca = net.pki.cert("manufacturer/idevid-ca.crt")
    cert, key = issue(name("clone", serial=serial, org="brski dev manufacturer"),
                      issuer_cert=ca, issuer_key=net.pki.key("manufacturer/idevid-ca.key"))
    return write_identity(net.root, label, cert, key, (ca,))


def test_18_enroll_status_from_a_clone_of_a_known_device(net: Net) -> None:
    known = net.enroll()
    assert known.ok
    clone = _clone_of(net, known.serial, "clone")
    refused(net, "registrar", lambda: net.request("registrar", "POST", ENROLLSTATUS, body=STATUS_OK, headers=JSON_HEADERS, identity=clone),
            status=403, check="enroll-status.unknown-device")


def test_18_voucher_request_from_a_clone_of_a_known_device(net: Net) -> None:
    """RFC 8995 5.3: the first accepted voucher-request pins the serial's
    IDevID; another certificate under that serial is a clone (or two
    manufacturers' collision), refused before anything is decided or stored."""
    known = net.enroll()
    assert known.ok
    clone = _clone_of(net, known.serial, "vr-clone")
    requests = net.rows("registrar", "SELECT count(*) FROM voucher_requests WHERE serial = ?", (known.serial,))
    refused(net, "registrar", lambda: post_vr(net, clone, pledge_request(net, clone)), status=409,
            check="storage.idevid-mismatch")
    assert net.rows("registrar", "SELECT count(*) FROM voucher_requests WHERE serial = ?", (known.serial,)) == requests


# --- 19: policy ----------------------------------------------------------------------------------


def test_19_device_on_the_deny_list(net: Net) -> None:
    me = net.pledge(DENIED_SERIAL)
    refused(net, "registrar", lambda: post_vr(net, me, pledge_request(net, me)), status=403, check="registrar.serial-denied")
    # A refusal commits nothing but its event: not even the device it names.
    assert net.rows("registrar", "SELECT count(*) FROM devices WHERE serial = ?", (DENIED_SERIAL,)) == [(0,)]


def test_19_device_rejected_in_the_approval_queue(net: Net) -> None:
    from registrar.cli import main as registrar_cli

    serial = net.fresh_serial()
    assert registrar_cli(["devices", "reject", serial, "--database", net.db_url("registrar"), "--by", "test"]) == 0
    me = net.pledge(serial)
    refused(net, "registrar", lambda: post_vr(net, me, pledge_request(net, me)), status=403, check="registrar.approval-rejected")


def test_19_manufacturer_set_to_deny(net: Net, denied_pki: DevPki) -> None:
    pki = denied_pki
    s = pki.pledge_serials[0]
    ident = write_identity(net.root, "denied-mfr", pki.cert(f"pledges/{s}/idevid.crt"), pki.key(f"pledges/{s}/idevid.key"),
                           tuple(pki.certs(f"pledges/{s}/chain.pem")))
    refused(net, "registrar", lambda: post_vr(net, ident, pledge_request(net, ident)), status=403,
            check="registrar.manufacturer-denied")


def test_every_admission_is_one_event_with_its_rule(net: Net) -> None:
    result = net.enroll()
    assert result.ok
    rows = net.rows("registrar", "SELECT outcome, check_name FROM events WHERE kind = 'admission.decided' AND device_serial = ?", (result.serial,))
    assert rows == [("allow", "registrar.manufacturer-trusted")]


_unused = (Path, ExtendedKeyUsageOID, VR_HEADERS, ENROLL)
