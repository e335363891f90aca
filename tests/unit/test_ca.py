"""brski.ca: LDevID issuance, checked with openssl as an independent verifier."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.ca import CLOCK_SKEW, LdevidIssuer, csr_names_device, issue_ldevid, new_serial
from brski.errors import BrskiError, ConfigError, MalformedInput, PolicyRefused
from brski.ldevid import LdevidProfile
from tests.ca_helpers import SERIAL, YEAR, issue, make_ca, make_csr
from tests.pki_helpers import NOW

# --- serials --------------------------------------------------------------------


def test_new_serial_is_random_positive_and_20_octets() -> None:
    serials = {new_serial() for _ in range(200)}
    assert len(serials) == 200
    for serial in serials:
        assert serial > 0
        assert serial.bit_length() >= 64
        # DER INTEGER content: minimal two's complement, positive, at most 20 octets.
        assert len(core.Integer(serial).contents) <= 20


# --- issuance -----------------------------------------------------------------------


def test_ldevid_profile() -> None:
    ca_cert, ca_key = make_ca()
    csr = make_csr()
    leaf = issue(csr, ca=(ca_cert, ca_key), serial=12345)
    assert leaf.serial_number == 12345
    assert leaf.issuer == ca_cert.subject
    # RFC 8995 5.9.2: the registrar's subject, not the CSR's CN "pledge".
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL
    assert leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == SERIAL
    assert leaf.public_key() == csr.public_key()
    assert leaf.not_valid_before_utc == NOW - CLOCK_SKEW
    assert leaf.not_valid_after_utc == NOW + YEAR
    ext = leaf.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # no serverAuth unless a profile grants it
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(csr.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    for absent in (
        x509.CRLDistributionPoints,
        x509.AuthorityInformationAccess,
        x509.SubjectAlternativeName,
    ):
        with pytest.raises(x509.ExtensionNotFound):
            ext.get_extension_for_class(absent)


def test_csr_extensions_are_not_copied() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    leaf = issue(csr)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_subject_is_the_registrars_whatever_the_csr_says() -> None:
    leaf = issue(make_csr(subject=[]))
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL
    localhost = make_csr(subject=[x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    assert issue(localhost).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL
    grant = LdevidProfile(subject="serialNumber={serial},CN=device {serial},O=Example").grant(serial=SERIAL)
    text = issue(localhost, grant=grant).subject.rfc4514_string({NameOID.SERIAL_NUMBER: "serialNumber"})
    assert text == f"serialNumber={SERIAL},CN=device {SERIAL},O=Example"  # the template, filled in


def test_serial_number_encoding() -> None:
    der = issue().public_bytes(serialization.Encoding.DER)
    assert b"\x06\x03\x55\x04\x05\x13\x11" + SERIAL.encode() in der  # PrintableString
    odd = issue(device_serial="dev_1@site").public_bytes(serialization.Encoding.DER)
    assert b"\x06\x03\x55\x04\x05\x0c\x0adev_1@site" in odd  # UTF8String fallback


def test_not_after_capped_at_ca_not_after() -> None:
    ca_end = NOW + timedelta(days=30)
    ca = make_ca(not_after=ca_end)
    leaf = issue(ca=ca, validity=YEAR)
    assert leaf.not_valid_after_utc == ca_end
    assert issue(ca=ca, validity=timedelta(days=1)).not_valid_after_utc == NOW + timedelta(days=1)


def test_expired_ca_refused() -> None:
    ca = make_ca(not_after=NOW - timedelta(days=1))
    with pytest.raises(ConfigError) as info:
        issue(ca=ca)
    assert info.value.check == "ca.expired"


def test_aki_computed_when_ca_has_no_ski() -> None:
    ca_cert, ca_key = make_ca(with_ski=False)
    leaf = issue(ca=(ca_cert, ca_key))
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest
    )


@pytest.mark.parametrize(
    ("kwargs", "check"),
    [
        ({"serial": 0}, "ca.serial"),
        ({"serial": 1 << 159}, "ca.serial"),
        ({"now": NOW.replace(tzinfo=None)}, "ca.now-naive"),
        ({"validity": timedelta(0)}, "ca.validity"),
        ({"device_serial": ""}, "ca.device-serial"),
        ({"device_serial": "x" * 65}, "ca.device-serial"),
        ({"grant": LdevidProfile().grant(serial="other-device")}, "ca.grant-serial"),
    ],
)
def test_issue_refusals(kwargs: dict[str, Any], check: str) -> None:
    with pytest.raises(BrskiError) as info:
        issue(**kwargs)
    assert info.value.check == check


def test_mismatched_or_non_ca_issuer_refused() -> None:
    ca_cert, _ = make_ca()
    with pytest.raises(ConfigError) as info:
        issue(ca=(ca_cert, ec.generate_private_key(ec.SECP256R1())))
    assert info.value.check == "ca.key-mismatch"
    with pytest.raises(ConfigError) as info:
        issue(ca=make_ca(ca=False))
    assert info.value.check == "ca.not-ca"


def test_one_issuer_for_many_devices_carries_nothing_from_one_to_the_next() -> None:
    # The registrar keeps one LdevidIssuer for the life of the process: what
    # it builds once is the CA's; each certificate's subject, key, SKI,
    # serial, validity and names are its own device's.
    ca_cert, ca_key = make_ca()
    issuer = LdevidIssuer(ca_cert=ca_cert, ca_key=ca_key, crl_url="http://r/crl", ocsp_url="http://r/ocsp")
    profile = LdevidProfile(san=("dns:{serial}.example",))
    issued = []
    for i, serial in enumerate(("DEV-A", "DEV-B")):
        csr = make_csr()
        cert = issuer.issue_ldevid(
            csr, serial=1000 + i, now=NOW + i * YEAR, validity=YEAR, device_serial=serial,
            grant=profile.grant(serial=serial),
        )
        assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == serial
        assert cert.public_key() == csr.public_key()
        assert cert.serial_number == 1000 + i
        assert cert.not_valid_before_utc == NOW + i * YEAR - CLOCK_SKEW
        ext = cert.extensions
        assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == (
            x509.SubjectKeyIdentifier.from_public_key(csr.public_key())
        )
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [f"{serial.lower()}.example"]
        assert len(list(ext)) == 8  # BC, KU, EKU, SKI, AKI, CRL DP, AIA, SAN: none twice
        issued.append(cert)
    # The same certificate as the one-shot function makes, extension for extension.
    again = issue_ldevid(
        make_csr(), ca_cert=ca_cert, ca_key=ca_key, serial=1001, now=NOW + YEAR, validity=YEAR,
        device_serial="DEV-B", crl_url="http://r/crl", ocsp_url="http://r/ocsp", grant=profile.grant(serial="DEV-B"),
    )
    assert [e.oid for e in again.extensions] == [e.oid for e in issued[1].extensions]
    assert [e.value for e in again.extensions if e.oid != x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER] == [
        e.value for e in issued[1].extensions if e.oid != x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER
    ]


def test_an_issuer_refuses_a_ca_its_key_does_not_match() -> None:
    ca_cert, _ = make_ca()
    with pytest.raises(ConfigError) as info:
        LdevidIssuer(ca_cert=ca_cert, ca_key=ec.generate_private_key(ec.SECP256R1()))
    assert info.value.check == "ca.key-mismatch"


# --- csr_names_device ---------------------------------------------------------------


def _hmn(serial: bytes) -> x509.OtherName:
    class HardwareModuleName(core.Sequence):  # type: ignore[misc]
        _fields = [("hw_type", core.ObjectIdentifier), ("hw_serial_num", core.OctetString)]  # noqa: RUF012

    value = HardwareModuleName({"hw_type": "1.3.6.1.4.1.99999.1", "hw_serial_num": serial}).dump()
    return x509.OtherName(oids.ID_ON_HARDWARE_MODULE_NAME, value)


def _sn(value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(NameOID.SERIAL_NUMBER, value)


def _cn(value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(NameOID.COMMON_NAME, value)


@pytest.mark.parametrize(
    ("subject", "san", "expected"),
    [
        ([_cn("pledge")], None, True),
        ([], None, True),
        ([_sn(SERIAL)], None, True),
        ([_cn("x"), _sn(SERIAL)], [x509.DNSName("pledge.example.com")], True),
        ([_sn("00-D0-E5-F2-00-03")], None, False),
        ([_sn(SERIAL), _sn("other")], None, False),
        ([_cn(SERIAL)], [x509.DirectoryName(x509.Name([_sn("other")]))], False),
        ([], [x509.DirectoryName(x509.Name([_sn(SERIAL)]))], True),
        ([], [_hmn(SERIAL.encode())], True),
        ([_sn(SERIAL)], [_hmn(b"00-D0-E5-F2-00-03")], False),
    ],
    ids=[
        "cn-only",
        "empty-subject",
        "matching-serial",
        "serial-and-dns-san",
        "other-serial",
        "two-serials",
        "san-dirname-other",
        "san-dirname-same",
        "hwmodule-same",
        "hwmodule-other",
    ],
)
def test_csr_names_device(
    subject: list[x509.NameAttribute[str]], san: list[x509.GeneralName] | None, expected: bool
) -> None:
    assert csr_names_device(make_csr(subject=subject, san=san), SERIAL) is expected


def test_csr_names_device_malformed_hardware_module_name() -> None:
    bad = x509.OtherName(oids.ID_ON_HARDWARE_MODULE_NAME, b"\x04\x01x")
    with pytest.raises(MalformedInput):
        csr_names_device(make_csr(subject=[], san=[bad]), SERIAL)


def test_issue_refuses_nothing_csr_names_device_refuses() -> None:
    """issue_ldevid always writes the registrar's serial, whatever the CSR said."""
    csr = make_csr(subject=[_sn("someone-else")])
    assert not csr_names_device(csr, SERIAL)
    leaf = issue(csr)
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)] == [SERIAL]


def test_policy_refused_is_forbidden() -> None:
    assert PolicyRefused.http_status == 403
