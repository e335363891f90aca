"""pkcs11: URIs and PIN sources, key loading rules, and the metrics' bookkeeping
(the token itself is exercised end to end in tests/e2e/test_hsm.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pkcs11
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from brski.devpki import DevPki, build_dev_pki
from brski.errors import BrskiError, ConfigError
from brski.pki import PrivateKey
from brski_cli.pki_cmd import key_uri
from brski_hsm import KeyUnavailable, Pkcs11Settings, Pkcs11Uri, TokenEcKey, load_key, probe_key
from brski_web.metrics import Metrics, _readiness
from registrar.config import load_config


@pytest.fixture(scope="module")
def pki() -> DevPki:
    return build_dev_pki(pledges=0, masa_url="https://masa.example", now=datetime.now(UTC))


def test_uri_attributes_and_percent_encoding() -> None:
    uri = Pkcs11Uri.parse(
        "pkcs11:token=my%20token;object=domain-ca;id=%01%ff;type=private"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/brski/pin"
    )
    assert uri.token == "my token" and uri.object == "domain-ca" and uri.id == b"\x01\xff"
    assert uri.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert uri.pin_file == Path("/etc/brski/pin")


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("pkcs11:token=t;object=k?pin-value=1234", "pkcs11.pin-in-config"),
        ("pkcs11:token=t;object=k;colour=red", "pkcs11.uri"),
        ("pkcs11:token=t", "pkcs11.uri"),  # which key?
        ("pkcs11:object=k", "pkcs11.uri"),  # which token?
        ("pkcs11:token=t;object=k;type=cert", "pkcs11.uri"),
        ("pkcs11:token=t;object=k?pin-source=pin.txt", "pkcs11.uri"),  # relative
        ("pkcs11:token=t;object=k%zz", "pkcs11.uri"),
        ("pkcs11:token=t;token=u;object=k", "pkcs11.uri"),
        ("file:/x", "pkcs11.uri"),
    ],
)
def test_bad_uris_are_refused_by_rule(text: str, check: str) -> None:
    with pytest.raises(ConfigError) as err:
        Pkcs11Uri.parse(text)
    assert err.value.check == check


def test_pin_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = Pkcs11Uri.parse("pkcs11:token=t;object=k")
    (tmp_path / "pin").write_text("s3cret\nignored\n")
    assert Pkcs11Settings(pin_file=tmp_path / "pin").pin_for(uri) == "s3cret"
    monkeypatch.setenv("TEST_PIN", "from-env")
    assert Pkcs11Settings(pin_env="TEST_PIN").pin_for(uri) == "from-env"
    # The URI's own pin-source wins over the settings.
    (tmp_path / "other").write_text("other\n")
    own = Pkcs11Uri.parse(f"pkcs11:token=t;object=k?pin-source=file:{tmp_path / 'other'}")
    assert Pkcs11Settings(pin_env="TEST_PIN").pin_for(own) == "other"
    for settings in (Pkcs11Settings(), Pkcs11Settings(pin_env="UNSET_PIN_VAR"), Pkcs11Settings(pin_file=tmp_path / "nope")):
        with pytest.raises(ConfigError) as err:
            settings.pin_for(uri)
        assert err.value.check == "pkcs11.pin"
    with pytest.raises(ConfigError) as err:
        Pkcs11Settings().module_for(uri)
    assert err.value.check == "pkcs11.module"


def test_a_key_must_be_its_certificates(pki: DevPki, tmp_path: Path) -> None:
    probe_key(pki.key("registrar/ra"), pki.cert("registrar/ra"))
    with pytest.raises(KeyUnavailable) as err:
        probe_key(pki.key("registrar/ra"), pki.cert("registrar/domain-ca"))
    assert err.value.check == "config.key-mismatch"
    path = tmp_path / "ra.key"
    path.write_bytes(pki.files["registrar/ra.key"])
    assert load_key(path, cert=pki.cert("registrar/ra")) is not None
    with pytest.raises(ConfigError) as cerr:
        load_key(path, cert=pki.cert("masa/voucher-signer"))
    assert cerr.value.check == "config.key-mismatch"


def test_config_keeps_a_pkcs11_uri_as_text_and_needs_a_tls_key_for_the_masa(tmp_path: Path) -> None:
    uri = "pkcs11:token=brski;object=brski-registrar-ra"
    toml = tmp_path / "registrar.toml"
    toml.write_text(
        f'[server]\ntls_cert = "t.crt"\ntls_key = "t.key"\n[registrar]\nca_cert = "ca.crt"\nca_key = "ca.key"\n'
        f'ra_cert = "ra.crt"\nra_key = "{uri}"\nmasa_client_cert = "c.crt"\nmasa_client_key = "c.key"\n'
        'masa_trust = ["m.crt"]\nmanufacturer_anchors = ["m.crt"]\n'
    )
    from_file = load_config(toml, {})
    assert from_file.ra_key == uri and from_file.ca_key == tmp_path.resolve() / "ca.key"
    base = {
        "tls_cert": "t.crt", "tls_key": "t.key", "ca_cert": "ca.crt", "ca_key": "ca.key", "ra_cert": "ra.crt",
        "masa_trust": ["m.crt"], "manufacturer_anchors": ["m.crt"],
    }
    with pytest.raises(ConfigError) as err:
        load_config(None, {**base, "ra_key": uri})
    assert err.value.check == "config.masa-client"
    cfg = load_config(None, {**base, "ra_key": uri, "masa_client_cert": "c.crt", "masa_client_key": "c.key"})
    assert cfg.ra_key == uri and cfg.masa_client == (Path("c.crt").resolve(), Path("c.key").resolve())
    assert load_config(None, {**base, "ra_key": "ra.key"}).masa_client == (Path("ra.crt").resolve(), Path("ra.key").resolve())


def test_key_uri_adds_the_label() -> None:
    assert key_uri("pkcs11:token=brski", "k") == "pkcs11:token=brski;object=k"
    assert key_uri("pkcs11:token=b?module-path=/m.so", "k") == "pkcs11:token=b;object=k?module-path=/m.so"
    with pytest.raises(ConfigError):
        key_uri("pkcs11:token=b;object=x", "k")


def _values(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(metrics.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_onboardings_and_enrolments_from_successful_answers() -> None:
    m = Metrics("registrar")
    m.answered("/.well-known/brski/requestvoucher", "POST", 200, 0.01)
    m.answered("/.well-known/brski/requestvoucher", "POST", 202, 0.01)  # queued: not onboarded
    m.answered("/.well-known/brski/requestvoucher", "POST", 403, 0.01)
    m.answered("/.well-known/est/simpleenroll", "POST", 200, 0.01)
    m.answered("/.well-known/est/simpleenroll", "POST", 200, 0.01)  # its counter again, from the memo
    m.answered("/.well-known/est/simplereenroll", "POST", 200, 0.01)
    m.answered("/.well-known/est/simplereenroll", "POST", 400, 0.01)
    m.write_started()
    m.write_started()
    m.write_finished(0.002)
    v = _values(m)
    assert v[("brski_onboardings_total", ())] == 1
    assert v[("brski_enrollments_total", (("operation", "enroll"),))] == 2
    assert v[("brski_enrollments_total", (("operation", "reenroll"),))] == 1
    key = ("brski_http_requests_total", (("endpoint", "/.well-known/brski/requestvoucher"), ("method", "POST"), ("status", "403")))
    assert v[key] == 1
    assert v[("brski_store_writes_in_flight", ())] == 1
    assert v[("brski_store_write_duration_seconds_count", ())] == 1
    assert v[("brski_workers", ())] == 1


async def test_readiness_names_the_failing_check() -> None:
    async def ok(_app: web.Application) -> None:
        return None

    async def broken(_app: web.Application) -> None:
        raise KeyUnavailable("token gone", check="pkcs11.sign-failed")

    ready, results = await _readiness(web.Application(), {"store": ok, "key:ra": broken})
    assert not ready
    assert results == {"store": "ok", "key:ra": "pkcs11.sign-failed: token gone"}
    assert (await _readiness(web.Application(), {"store": ok}))[0]
    assert issubclass(KeyUnavailable, BrskiError)


async def test_token_signing_runs_off_the_event_loop(pki: DevPki) -> None:
    import threading

    from brski_hsm import TokenEcKey, signing

    loop_thread = threading.get_ident()
    token_key = object.__new__(TokenEcKey)  # only its type matters here
    assert await signing(token_key, threading.get_ident) != loop_thread
    assert await signing(pki.key("registrar/ra"), threading.get_ident) == loop_thread
    def add(a: int, *, b: int) -> int:
        return a + b

    assert await signing(token_key, add, 1, b=2) == 3


# --- TokenEcKey through every signer, with a stand-in for the token ------------------


class _SoftToken:
    """Answers C_Sign(CKM_ECDSA) like a token: r || s over the given digest."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, fail: bool = False) -> None:
        self.key, self.fail, self.calls = key, fail, 0

    def sign(self, digest: bytes, *, mechanism: object) -> bytes:
        self.calls += 1
        if self.fail:
            raise pkcs11.exceptions.DeviceRemoved()
        r, s = decode_dss_signature(self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _token_key(key: PrivateKey, *, fail: bool = False) -> tuple[TokenEcKey, _SoftToken]:
    from brski_hsm.token import _Token

    assert isinstance(key, ec.EllipticCurvePrivateKey)  # a token holds the dev PKI's P-256 keys
    soft = _SoftToken(key, fail=fail)
    tok = _Token(None, pid=os.getpid(), label="stand-in", rw=False)
    return TokenEcKey(token=tok, private=soft, public=key.public_key(), uri="pkcs11:token=t;object=k"), soft


def test_every_signed_object_goes_through_the_token_key(pki: DevPki) -> None:
    from brski.artifact import sign_artifact, verify_artifact
    from brski.ca import issue_ldevid
    from brski.crl import build_crl
    from brski.ocsp import CertStatus, OcspQuery, read_request, respond
    from brski.oids import MT_VOUCHER_CMS_JSON, MT_VOUCHER_COSE_CBOR, MT_VOUCHER_JWS_JSON
    from brski.pki import cert_der
    from brski.voucher import Assertion, Voucher

    now = datetime.now(UTC)
    ca_cert = pki.cert("registrar/domain-ca")
    ca_key, ca_token = _token_key(pki.key("registrar/domain-ca"))
    device_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "PLG-1")]))
        .sign(device_key, hashes.SHA256())
    )
    ldevid = issue_ldevid(
        csr, ca_cert=ca_cert, ca_key=ca_key, serial=1234, now=now, validity=timedelta(days=1), device_serial="PLG-1"
    )
    ldevid.verify_directly_issued_by(ca_cert)
    public = ca_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    crl = build_crl(ca_cert=ca_cert, ca_key=ca_key, entries=[], number=1, now=now, validity=timedelta(hours=1))
    assert crl.is_signature_valid(public)
    request = ocsp.OCSPRequestBuilder().add_certificate(ldevid, ca_cert, hashes.SHA256()).build()
    query = read_request(request.public_bytes(serialization.Encoding.DER), ca_cert=ca_cert)
    assert isinstance(query, OcspQuery)  # a well-formed request about this CA needs a lookup
    answer = respond(query, CertStatus(status="good"), ca_cert=ca_cert, ca_key=ca_key, now=now, validity=timedelta(hours=1))
    response = ocsp.load_der_ocsp_response(answer.der)
    public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    assert ca_token.calls == 3

    signer_key, signer_token = _token_key(pki.key("masa/voucher-signer"))
    voucher = Voucher(
        created_on=now, assertion=Assertion.PROXIMITY, serial_number="PLG-1", nonce=b"0123456789abcdef",
        idevid_issuer=b"\x01" * 20, pinned_domain_cert=cert_der(ca_cert), domain_cert_revocation_checks=False,
    )
    for media in (MT_VOUCHER_CMS_JSON, MT_VOUCHER_COSE_CBOR, MT_VOUCHER_JWS_JSON):
        raw = sign_artifact(voucher, media_type=media, key=signer_key, cert=pki.cert("masa/voucher-signer"))
        art = verify_artifact(raw, media_type=media, kind=Voucher, extra_certs=[pki.cert("masa/voucher-signer")])
        assert art.payload.serial_number == "PLG-1"
    assert signer_token.calls == 3


def test_a_failing_token_is_a_503_naming_the_check_through_every_builder(pki: DevPki) -> None:
    from brski.crl import build_crl

    ca_key, _ = _token_key(pki.key("registrar/domain-ca"), fail=True)
    now = datetime.now(UTC)
    with pytest.raises(KeyUnavailable) as err:
        build_crl(
            ca_cert=pki.cert("registrar/domain-ca"), ca_key=ca_key, entries=[], number=1, now=now,
            validity=timedelta(hours=1),
        )
    assert err.value.check == "pkcs11.sign-failed" and err.value.http_status == 503
    with pytest.raises(KeyUnavailable):
        probe_key(ca_key, pki.cert("registrar/domain-ca"))
