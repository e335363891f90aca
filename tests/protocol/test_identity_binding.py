"""The LDevID says only what the registrar decided (RFC 8995 5.9.2), over real TLS.

A pledge with a voucher asks for ``CN=localhost`` with serverAuth and a
``localhost`` DNS name. Since every enrolled pledge trusts the domain CA,
such a certificate would impersonate the registrar or any domain service:
OpenSSL must not accept what the pledge gets for a TLS server named
localhost. The CSR's extras are ignored and recorded (default) or refused
by name (``ldevid_csr_extras = "refuse"``); serverAuth and names are
granted only by a profile for that device class. Then: one valid LDevID
per device (superseded on re-enrolment through the IDevID) and the
per-device issuance limit (429 + Retry-After, also as curl sees it).
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import est
from brski.ldevid import LdevidProfile, LdevidProfiles
from brski.oids import MT_PKCS10
from brski.pledge import build_csr_der
from tests.protocol.helpers import ENROLL, enroll, max_event_id, refused, vouched
from tests.protocol.net import PEM, Net, running_net

OPENSSL = "/usr/bin/openssl"
CURL = "/usr/bin/curl"


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Net]:
    with running_net(tmp_path_factory.mktemp("identity"), engine, request, pledges=16) as n:
        yield n


def _policy(net: Net, **changes: object) -> None:
    """Change the running registrar's issuance policy (as its config would)."""
    est_service = net.registrar.est
    est_service.issuance = replace(est_service.issuance, **changes)


@pytest.fixture(autouse=True)
def _default_policy(net: Net) -> Iterator[None]:
    before = net.registrar.est.issuance
    yield
    net.registrar.est.issuance = before


def _greedy_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    """CN=localhost, serverAuth + clientAuth, SAN DNS localhost: what a rogue device asks."""
    der = build_csr_der(
        key=key,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        san=x509.SubjectAlternativeName([x509.DNSName("localhost")]),
    )
    csr = x509.load_der_x509_csr(der)
    # build_csr_der takes one extension; add the EKU request by rebuilding.
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(csr.subject)
        .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    from cryptography.hazmat.primitives import hashes, serialization

    return base64.b64encode(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def _issued(body: bytes) -> x509.Certificate:
    (cert,) = est.parse_certs_only(est.decode_base64_body(body))
    return cert


def _openssl_verify(net: Net, cert: x509.Certificate, *args: str) -> subprocess.CompletedProcess[str]:
    leaf = net.root / f"leaf-{cert.serial_number:x}.pem"
    leaf.write_bytes(cert.public_bytes(PEM))
    return subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(net.path("registrar/domain-ca.crt")), *args, str(leaf)],
        capture_output=True, text=True, timeout=60,
    )


def _events(net: Net, since: int, serial: str) -> list[tuple[str, str, str]]:
    return [
        (str(k), str(o), str(c))
        for k, o, c in net.rows(
            "registrar",
            "SELECT kind, outcome, check_name FROM events WHERE id > ? AND device_serial = ? ORDER BY id",
            (since, serial),
        )
    ]


def test_csr_for_localhost_server_gets_a_client_only_ldevid(net: Net) -> None:
    serial = net.fresh_serial()
    me = net.pledge(serial)
    vouched(net, me)
    first = max_event_id(net, "registrar")
    reply = enroll(net, me, _greedy_csr(ec.generate_private_key(ec.SECP256R1())))
    assert reply.status == 200, reply.body[:300]
    cert = _issued(reply.body)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == serial
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    # OpenSSL, a verifier we did not write, as a relying party would ask it.
    as_server = _openssl_verify(net, cert, "-purpose", "sslserver", "-verify_hostname", "localhost")
    assert as_server.returncode != 0, as_server.stdout
    by_name = _openssl_verify(net, cert, "-purpose", "sslclient", "-verify_hostname", "localhost")
    assert by_name.returncode != 0 and "hostname mismatch" in by_name.stdout + by_name.stderr
    as_client = _openssl_verify(net, cert, "-purpose", "sslclient")
    assert as_client.returncode == 0, as_client.stdout + as_client.stderr
    events = _events(net, first, serial)
    assert ("credential.issued", "allow", "registrar.issue") in events
    assert ("credential.csr-ignored", "info", "est.csr-not-granted") in events
    detail = net.rows("registrar", "SELECT detail FROM events WHERE id > ? AND kind = 'credential.csr-ignored'", (first,))
    assert "extendedKeyUsage serverAuth" in detail[0][0] and "subject CN=localhost" in detail[0][0]


def test_refuse_switch_refuses_the_greedy_csr_by_name(net: Net) -> None:
    _policy(net, profiles=LdevidProfiles(csr_extras="refuse"))
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    key = ec.generate_private_key(ec.SECP256R1())
    refused(net, "registrar", lambda: enroll(net, me, _greedy_csr(key)), status=403, check="est.csr-not-granted",
            then_good_pledge=False)
    # A CSR within the grant (the reference pledge's) is still served.
    assert net.enroll(net.fresh_serial()).ok


def test_a_profile_grants_server_auth_and_names_to_its_device_class(net: Net) -> None:
    serial = net.fresh_serial()
    profile = LdevidProfile(name="gateways", serials=serial, eku=("clientAuth", "serverAuth"),
                            san=("dns:{serial}.devices.example.net",))
    _policy(net, profiles=LdevidProfiles(profiles=(profile,), csr_extras="refuse"))
    me = net.pledge(serial)
    vouched(net, me)
    first = max_event_id(net, "registrar")
    reply = enroll(net, me, base64.b64encode(build_csr_der(
        key=ec.generate_private_key(ec.SECP256R1()),
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]),
    )))
    assert reply.status == 200, reply.body[:300]
    cert = _issued(reply.body)
    host = f"{serial.lower()}.devices.example.net"
    ok = _openssl_verify(net, cert, "-purpose", "sslserver", "-verify_hostname", host)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert _openssl_verify(net, cert, "-purpose", "sslserver", "-verify_hostname", "localhost").returncode != 0
    detail = net.rows("registrar", "SELECT detail FROM events WHERE id > ? AND kind = 'credential.issued'", (first,))
    assert '"profile":"gateways"' in detail[0][0] and "serverAuth" in detail[0][0]


def _reference_csr() -> bytes:
    return base64.b64encode(build_csr_der(key=ec.generate_private_key(ec.SECP256R1()),
                                          subject=x509.Name([])))


def test_enrolling_again_through_the_idevid_supersedes_the_previous_ldevid(net: Net) -> None:
    serial = net.fresh_serial()
    me = net.pledge(serial)
    vouched(net, me)
    first_cert = _issued(enroll(net, me, _reference_csr()).body)
    mark = max_event_id(net, "registrar")
    second = enroll(net, me, _reference_csr())  # a factory-reset device comes back
    assert second.status == 200, second.body[:300]
    second_cert = _issued(second.body)
    rows = dict(net.rows("registrar", "SELECT cert_serial, state || ':' || coalesce(revocation_reason, '')"
                                      " FROM certificates WHERE device_serial = ?", (serial,)))
    assert rows == {format(first_cert.serial_number, "x"): "revoked:superseded",
                    format(second_cert.serial_number, "x"): "issued:"}
    assert ("credential.revoked", "allow", "registrar.supersede") in _events(net, mark, serial)
    # Configurable: with supersede off, both stay valid.
    _policy(net, supersede=False)
    third = _issued(enroll(net, me, _reference_csr()).body)
    states = dict(net.rows("registrar", "SELECT cert_serial, state FROM certificates WHERE device_serial = ?", (serial,)))
    assert states[format(second_cert.serial_number, "x")] == "issued"
    assert states[format(third.serial_number, "x")] == "issued"


def test_issuance_limit_answers_429_with_retry_after(net: Net) -> None:
    _policy(net, limit=2, window=timedelta(hours=1))
    me = net.pledge(net.fresh_serial())
    vouched(net, me)
    for _ in range(2):
        assert enroll(net, me, _reference_csr()).status == 200
    reply = refused(net, "registrar", lambda: enroll(net, me, _reference_csr()), status=429,
                    check="est.issuance-limit", then_good_pledge=False)
    assert 3500 <= int(reply.headers["retry-after"]) <= 3600
    # The same answer as curl sees it (a client we did not write).
    csr_file = net.root / "limit.csr.b64"
    csr_file.write_bytes(_reference_csr())
    assert me.pem_path is not None and me.key_path is not None
    out = subprocess.run(
        [CURL, "-sS", "-D", "-", "-o", "/dev/null", "--cacert", str(net.path("registrar/domain-ca.crt")),
         "--cert", str(me.pem_path), "--key", str(me.key_path), "-H", f"Content-Type: {MT_PKCS10}",
         "-H", "Content-Transfer-Encoding: base64", "--data-binary", f"@{csr_file}",
         "--resolve", f"localhost:{net.registrar_port}:127.0.0.1",
         f"https://localhost:{net.registrar_port}{ENROLL}"],
        capture_output=True, text=True, timeout=60,
    )
    head = out.stdout.lower()
    assert head.startswith("http/1.1 429"), out.stdout + out.stderr
    assert "\nretry-after: " in head
    # Limit 0 lifts it.
    _policy(net, limit=0)
    assert enroll(net, me, _reference_csr()).status == 200


def test_config_keys_build_the_policy(tmp_path: Path) -> None:
    from registrar.config import load_config

    toml = tmp_path / "r.toml"
    toml.write_text(
        '[registrar]\nldevid_csr_extras = "refuse"\nldevid_eku = ["clientAuth"]\nldevid_issuance_limit = 3\n'
        'ldevid_supersede = false\n'
        '[[registrar.ldevid_profiles]]\nname = "gw"\nmanufacturer = "acme"\neku = ["clientAuth", "serverAuth"]\n'
        'san = ["dns:{serial}.example.net"]\n'
    )
    base = {k: "x" for k in ("tls_cert", "tls_key", "ca_cert", "ca_key", "ra_cert", "ra_key")}
    cfg = load_config(toml, {**base, "masa_trust": ["x"], "manufacturer_anchors": ["x"]})
    assert cfg.ldevid.csr_extras == "refuse" and cfg.ldevid_issuance_limit == 3 and not cfg.ldevid_supersede
    grant = cfg.ldevid.grant(serial="D-1", manufacturers=("CN=root", "acme"))
    assert grant.profile == "gw" and ExtendedKeyUsageOID.SERVER_AUTH in grant.eku
    assert cfg.ldevid.grant(serial="D-1", manufacturers=("CN=root",)).eku == (ExtendedKeyUsageOID.CLIENT_AUTH,)


def test_openssl_csr_posted_by_curl(net: Net) -> None:
    """The same, with clients we did not write: openssl req makes the CSR, curl posts it."""
    serial = net.fresh_serial()
    me = net.pledge(serial)
    vouched(net, me)
    d = net.root / f"curl-{serial}"
    d.mkdir()
    made = subprocess.run(
        [OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(d / "key.pem"), "-subj", "/CN=localhost",
         "-addext", "extendedKeyUsage=serverAuth,clientAuth", "-addext", "subjectAltName=DNS:localhost",
         "-outform", "DER", "-out", str(d / "csr.der")],
        capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    (d / "csr.b64").write_bytes(base64.b64encode((d / "csr.der").read_bytes()))
    assert me.pem_path is not None and me.key_path is not None

    def curl() -> tuple[str, bytes]:
        out = subprocess.run(
            [CURL, "-sS", "-o", str(d / "resp"), "-w", "%{http_code}", "--cacert", str(net.path("registrar/domain-ca.crt")),
             "--cert", str(me.pem_path), "--key", str(me.key_path), "-H", f"Content-Type: {MT_PKCS10}",
             "-H", "Content-Transfer-Encoding: base64", "-H", "Accept: */*", "--data-binary", f"@{d / 'csr.b64'}",
             "--resolve", f"localhost:{net.registrar_port}:127.0.0.1", f"https://localhost:{net.registrar_port}{ENROLL}"],
            capture_output=True, text=True, timeout=60,
        )
        return out.stdout, (d / "resp").read_bytes()

    _policy(net, profiles=LdevidProfiles(csr_extras="refuse"))
    code, body = curl()
    # curl asks for no media type, so the problem comes as text (brski_web.middleware).
    assert code == "403" and b"(check: est.csr-not-granted)" in body, body[:300]
    _policy(net, profiles=LdevidProfiles(csr_extras="ignore"))
    code, body = curl()
    assert code == "200", body[:300]
    (d / "p7.der").write_bytes(base64.b64decode(body))
    shown = subprocess.run([OPENSSL, "pkcs7", "-inform", "DER", "-in", str(d / "p7.der"), "-print_certs",
                            "-out", str(d / "leaf.pem")], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    verify = [OPENSSL, "verify", "-CAfile", str(net.path("registrar/domain-ca.crt"))]
    as_server = subprocess.run([*verify, "-purpose", "sslserver", "-verify_hostname", "localhost", str(d / "leaf.pem")],
                               capture_output=True, text=True, timeout=60)
    assert as_server.returncode != 0, as_server.stdout
    as_client = subprocess.run([*verify, "-purpose", "sslclient", str(d / "leaf.pem")],
                               capture_output=True, text=True, timeout=60)
    assert as_client.returncode == 0, as_client.stdout + as_client.stderr
