"""brski.ldevid: the registrar's LDevID profiles and what a CSR asks beyond them."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.errors import ConfigError, PolicyRefused
from brski.ldevid import LdevidProfile, LdevidProfiles, csr_beyond_grant, profiles_from_config

SERIAL = "PLG-000001"


def _csr(subject: list[x509.NameAttribute[str]], *extensions: x509.ExtensionType) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())


def test_default_grant_is_serial_subject_and_client_auth_only() -> None:
    grant = LdevidProfile().grant(serial=SERIAL)
    assert [(a.oid, a.value) for a in grant.subject] == [
        (NameOID.COMMON_NAME, SERIAL), (NameOID.SERIAL_NUMBER, SERIAL)
    ]
    assert grant.eku == (ExtendedKeyUsageOID.CLIENT_AUTH,) and grant.san == ()
    assert grant.describe() == {"profile": "default", "eku": ["clientAuth"], "san": []}


def test_template_values_are_data_not_structure() -> None:
    # A serial with RFC 4514 specials stays one attribute value.
    grant = LdevidProfile(subject="serialNumber={serial},CN={serial},O=Example").grant(serial="a,CN=localhost")
    assert grant.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a,CN=localhost"
    assert len(grant.subject.get_attributes_for_oid(NameOID.COMMON_NAME)) == 1


@pytest.mark.parametrize(
    ("kwargs", "check"),
    [
        ({"subject": "CN={serial}"}, "config.ldevid-subject"),  # must name the device
        ({"subject": "serialNumber={serial},CN={model}"}, "config.ldevid-template"),
        ({"subject": "serialNumber={serial},=x"}, "config.ldevid-subject"),
        ({"eku": ("serverAuth",)}, "config.ldevid-eku"),  # clientAuth is the LDevID's job
        ({"eku": ("clientAuth", "1.3.6.1.5.5.7.3.28")}, "config.ldevid-eku"),  # never cmcRA
        ({"eku": ("clientAuth", "anything")}, "config.ldevid-eku"),
        ({"san": ("ip:10.0.0.1",)}, "config.ldevid-san"),
        ({"san": ("dns:bad name.example",)}, "config.ldevid-san"),
    ],
)
def test_profile_config_errors_name_the_key(kwargs: dict[str, Any], check: str) -> None:
    with pytest.raises(ConfigError) as info:
        LdevidProfile(**kwargs)
    assert info.value.check == check


def test_a_serial_that_cannot_fit_is_refused_not_truncated() -> None:
    profile = LdevidProfile(subject="serialNumber={serial},CN=device {serial}")
    with pytest.raises(PolicyRefused) as info:
        profile.grant(serial="x" * 60)
    assert info.value.check == "ca.ldevid-subject"
    with pytest.raises(PolicyRefused) as info:
        LdevidProfile(san=("dns:{serial}.example.net",)).grant(serial="has space")
    assert info.value.check == "ca.san-dns"


def test_profiles_match_by_manufacturer_or_serial_glob_first_wins() -> None:
    profiles = LdevidProfiles(profiles=(
        LdevidProfile(name="cams", serials="CAM-*", eku=("clientAuth", "serverAuth")),
        LdevidProfile(name="acme", manufacturer="acme", san=("rfc822:rfcSELF+{serial}@acp.example.com",)),
    ))
    assert profiles.grant(serial="CAM-1", manufacturers=("acme",)).profile == "cams"
    acme = profiles.grant(serial="X-1", manufacturers=("CN=acme root", "acme"))
    assert acme.profile == "acme" and acme.san == (x509.RFC822Name("rfcSELF+X-1@acp.example.com"),)
    assert profiles.grant(serial="X-1", manufacturers=("other",)).profile == "default"
    with pytest.raises(ConfigError):
        LdevidProfiles(profiles=(LdevidProfile(name="everyone"),))
    with pytest.raises(ConfigError):
        LdevidProfiles(csr_extras="maybe")


def test_csr_within_the_grant_asks_nothing_more() -> None:
    grant = LdevidProfile(san=("dns:{serial}.example.net",)).grant(serial=SERIAL)
    assert csr_beyond_grant(_csr([]), grant) == ()
    assert csr_beyond_grant(_csr([x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)]), grant) == ()
    within = _csr(
        [x509.NameAttribute(NameOID.COMMON_NAME, SERIAL)],
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
        x509.SubjectAlternativeName([
            x509.DNSName(f"{SERIAL.lower()}.example.net"),
            x509.OtherName(oids.ID_ON_HARDWARE_MODULE_NAME, b"\x30\x00"),  # states identity, asks nothing
        ]),
        x509.BasicConstraints(ca=False, path_length=None),
        x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                      encipher_only=False, decipher_only=False),
    )
    assert csr_beyond_grant(within, grant) == ()


def test_csr_beyond_the_grant_lists_every_extra() -> None:
    grant = LdevidProfile().grant(serial=SERIAL)
    greedy = _csr(
        [x509.NameAttribute(NameOID.COMMON_NAME, "localhost"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "X")],
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, oids.ID_KP_CMC_RA]),
        x509.SubjectAlternativeName([x509.DNSName("localhost")]),
        x509.BasicConstraints(ca=True, path_length=None),
        x509.OCSPNoCheck(),
    )
    assert csr_beyond_grant(greedy, grant) == (
        "subject CN=localhost",
        "subject O=X",
        "extendedKeyUsage serverAuth",
        "extendedKeyUsage 1.3.6.1.5.5.7.3.28",
        "subjectAltName DNSName:'localhost'",
        "basicConstraints cA",
        "extension 1.3.6.1.5.5.7.48.1.5",
    )


def test_profiles_from_config_inherit_the_default() -> None:
    profiles = profiles_from_config(
        subject="serialNumber={serial},CN={serial},O=Plant 7", eku=None, san=["dns:{serial}.plant7.example"],
        csr_extras="refuse", profiles=[{"name": "gw", "serials": "GW-*", "eku": ["clientAuth", "serverAuth"]}],
    )
    gw = profiles.grant(serial="GW-1")
    assert gw.profile == "gw" and gw.san == (x509.DNSName("gw-1.plant7.example"),)
    assert gw.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Plant 7"
    with pytest.raises(ConfigError):
        profiles_from_config(profiles=[{"name": "gw", "serials": "GW-*", "colour": "red"}])
    with pytest.raises(ConfigError):
        profiles_from_config(eku="clientAuth")
