"""LDevID issuance by the registrar's domain CA (RFC 8995 section 5.9, RFC 5280).

Pure: the caller supplies the CA key, the serial and ``now``; nothing here
reads a clock, a file or a random source other than :func:`new_serial`. The
certificate profile aims at RFC 5280 cleanliness (pkilint's PKIX profile):
a non-empty subject, SKI and AKI key identifiers, a critical basicConstraints
and keyUsage, and a validity that never outlives the issuing CA.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, ClassVar

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from brski import oids
from brski.errors import ConfigError, MalformedInput, PolicyRefused
from brski.ldevid import LdevidGrant, LdevidProfile
from brski.pki import PrivateKey

# An end entity's keyUsage: signatures only (RFC 5280 4.2.1.3), what an LDevID
# needs for TLS client authentication and CMS signing; dev fixtures use it too.
EE_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)

__all__ = [
    "CLOCK_SKEW",
    "EE_KEY_USAGE",
    "LdevidIssuer",
    "authority_key_id",
    "csr_names_device",
    "issue_ldevid",
    "new_serial",
    "signature_hash",
]

# notBefore is backdated by this much so a device whose clock is slightly
# behind the registrar's accepts its new certificate immediately.
CLOCK_SKEW = timedelta(minutes=5)
# RFC 5280 section 4.1.2.2: serial numbers are positive and at most 20 octets.
_SERIAL_BITS = 159
# RFC 5280 Appendix A.1: ub-serial-number 64.
_UB_SERIAL_NUMBER = 64


def new_serial() -> int:
    """A certificate serial with 158 random bits and a fixed top bit.

    RFC 5280 section 4.1.2.2 caps serials at 20 octets and asks for positive
    values; CA/B Forum practice asks for at least 64 bits of CSPRNG output.
    Setting bit 158 makes every serial exactly 159 bits long, so its DER
    INTEGER is always 20 octets without a leading zero octet and never
    negative, and the remaining 158 bits are random.
    """
    return (1 << (_SERIAL_BITS - 1)) | secrets.randbits(_SERIAL_BITS - 1)


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """Match the hash strength to the CA key (RFC 5480 section 4; Ed25519 has none)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP384R1):
            return hashes.SHA384()
        if isinstance(key.curve, ec.SECP521R1):
            return hashes.SHA512()
        return hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    raise ConfigError(f"unsupported CA key type {type(key).__name__}", check="ca.key-type")


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _check_ca(ca_cert: x509.Certificate, ca_key: PrivateKey) -> None:
    """Refuse a CA configuration that would yield certificates nobody can verify."""
    if _spki(ca_cert.public_key()) != _spki(ca_key.public_key()):
        raise ConfigError("CA key does not match the CA certificate", check="ca.key-mismatch")
    try:
        bc = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ConfigError("issuer certificate is not a CA", check="ca.not-ca")


def authority_key_id(ca_cert: x509.Certificate, ca_key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    """AKI keyIdentifier = the CA's SKI (RFC 5280 section 4.2.1.1), computed if absent."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _check_device_serial(device_serial: str) -> None:
    if not device_serial or len(device_serial) > _UB_SERIAL_NUMBER:
        raise PolicyRefused(
            f"device serial must be 1..{_UB_SERIAL_NUMBER} characters",
            check="ca.device-serial",
        )


class LdevidIssuer:
    """The domain CA as an LDevID issuer: what is the same for every
    certificate it signs, checked and built once.

    The CA certificate and key are checked against each other once (they do
    not change for the life of the object); the issuer name, the AKI
    (RFC 5280 4.2.1.1), the signature hash, the constant extensions and the
    CRL and OCSP pointers are built once. Per certificate only the CSR's key,
    the serial, the validity and the device's grant are added, and signed.
    """

    def __init__(
        self,
        *,
        ca_cert: x509.Certificate,
        ca_key: PrivateKey,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
    ) -> None:
        _check_ca(ca_cert, ca_key)
        self.ca_cert = ca_cert
        self.ca_key = ca_key
        self._hash = signature_hash(ca_key)
        self._ca_from = ca_cert.not_valid_before_utc
        self._ca_until = ca_cert.not_valid_after_utc
        self._aki = authority_key_id(ca_cert, ca_key)
        # The builder is immutable (each step returns a new one), so the
        # common head is shared; extensions keep the order they always had.
        self._head = (
            x509.CertificateBuilder()
            .issuer_name(ca_cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(EE_KEY_USAGE, critical=True)
        )
        self._tail: list[x509.ExtensionType] = []
        if crl_url is not None:
            # RFC 5280 section 4.2.1.13: a distributionPoint fullName URI.
            point = x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            self._tail.append(x509.CRLDistributionPoints([point]))
        if ocsp_url is not None:
            # RFC 5280 section 4.2.2.1: id-ad-ocsp accessLocation.
            access = x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
            self._tail.append(x509.AuthorityInformationAccess([access]))

    def issue_ldevid(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        serial: int,
        now: datetime,
        validity: timedelta,
        device_serial: str,
        grant: LdevidGrant | None = None,
    ) -> x509.Certificate:
        """Sign the pledge's LDevID (see :func:`issue_ldevid`)."""
        if now.tzinfo is None:
            raise ConfigError("now must be timezone-aware", check="ca.now-naive")
        if validity <= timedelta(0):
            raise ConfigError("validity must be positive", check="ca.validity")
        # RFC 5280 section 4.1.2.2: positive, at most 20 octets.
        if not 0 < serial < (1 << _SERIAL_BITS):
            raise ConfigError("serial must be positive and fit in 20 octets", check="ca.serial")
        _check_device_serial(device_serial)
        if grant is None:
            grant = LdevidProfile().grant(serial=device_serial)
        if (NameOID.SERIAL_NUMBER, device_serial) not in {(a.oid, a.value) for a in grant.subject}:
            raise ConfigError("the grant does not name this device", check="ca.grant-serial")

        # The certificate may not outlive its issuer (RFC 5280 section 6.1.3
        # would refuse it at the CA's expiry anyway) nor predate it.
        not_before = max(now - CLOCK_SKEW, self._ca_from)
        not_after = min(now + validity, self._ca_until)
        if not_after <= not_before:
            raise ConfigError("the CA certificate is not valid now", check="ca.expired")

        public_key = csr.public_key()
        if not isinstance(
            public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
        ):
            raise PolicyRefused("CSR key type not accepted", check="ca.csr-key-type")

        builder = (
            self._head.subject_name(grant.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage(list(grant.eku)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._aki, critical=False)
        )
        for extension in self._tail:
            builder = builder.add_extension(extension, critical=False)
        if grant.san:
            # RFC 5280 section 4.2.1.6: non-critical since the subject is not empty.
            builder = builder.add_extension(x509.SubjectAlternativeName(list(grant.san)), critical=False)
        return builder.sign(self.ca_key, self._hash)


def issue_ldevid(
    csr: x509.CertificateSigningRequest,
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    serial: int,
    now: datetime,
    validity: timedelta,
    device_serial: str,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    grant: LdevidGrant | None = None,
) -> x509.Certificate:
    """Sign the pledge's LDevID from a CSR already checked by ``brski.est.parse_csr``.

    Only the public key is taken from the CSR: the subject, the key purposes
    and the names are the registrar's ``grant`` (RFC 8995 section 5.9.2,
    :mod:`brski.ldevid`), by default ``CN=<serial>, serialNumber=<serial>``
    with clientAuth only, so a pledge cannot ask for a name or a purpose
    (serverAuth for ``localhost``, cA=true) the registrar did not decide.
    A server issuing many keeps one :class:`LdevidIssuer` instead.
    """
    issuer = LdevidIssuer(ca_cert=ca_cert, ca_key=ca_key, crl_url=crl_url, ocsp_url=ocsp_url)
    return issuer.issue_ldevid(
        csr, serial=serial, now=now, validity=validity, device_serial=device_serial, grant=grant
    )


# --- does the CSR claim this device? ----------------------------------------------


class _HardwareModuleName(core.Sequence):
    # RFC 4108 section 5
    _fields: ClassVar[list[Any]] = [
        ("hw_type", core.ObjectIdentifier),
        ("hw_serial_num", core.OctetString),
    ]


def _hardware_serial(value: bytes) -> bytes:
    try:
        hmn = _HardwareModuleName.load(value, strict=True)
        serial: bytes = hmn["hw_serial_num"].native
    except Exception as exc:  # asn1crypto raises many types on hostile input
        raise MalformedInput(
            f"malformed HardwareModuleName: {exc}", check="ca.csr-hardware-module-name"
        ) from exc
    return serial


def _name_serials(name: x509.Name) -> list[str]:
    values = []
    for attr in name.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = attr.value
        values.append(value if isinstance(value, str) else value.decode("latin-1"))
    return values


def csr_names_device(csr: x509.CertificateSigningRequest, device_serial: str) -> bool:
    """True unless the CSR claims a device identity other than ``device_serial``.

    RFC 8995 section 5.9 says the registrar MUST validate the CSR against the
    expected attributes, and section 5.9.2 that it MUST confirm the CSR is
    formatted as indicated; the identity the registrar vouched for is the
    IDevID's subject serialNumber (section 2.3.1). So a CSR may omit the
    serial (the CA adds it), but every place that can name a device serial
    must agree with it:

    * each subject serialNumber attribute equals ``device_serial``;
    * in a subjectAltName requested through extensionRequest, each
      directoryName's serialNumber equals it, and each HardwareModuleName
      otherName (RFC 4108, the 802.1AR form) has hwSerialNum equal to its
      UTF-8 encoding.

    A malformed extension request raises MalformedInput rather than
    answering, because "cannot tell" must not be read as "yes".
    """
    if any(value != device_serial for value in _name_serials(csr.subject)):
        return False
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise MalformedInput(f"bad CSR extensions: {exc}", check="ca.csr-extensions") from exc
    for general_name in san:
        if isinstance(general_name, x509.DirectoryName):
            if any(v != device_serial for v in _name_serials(general_name.value)):
                return False
        elif isinstance(general_name, x509.OtherName):
            if general_name.type_id == oids.ID_ON_HARDWARE_MODULE_NAME:
                if _hardware_serial(general_name.value) != device_serial.encode("utf-8"):
                    return False
    return True
