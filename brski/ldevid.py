"""What an LDevID may say: the registrar's profile, never the pledge's wishes.

RFC 8995 section 5.9.2 gives the CA "complete control over all fields issued
in the end-entity certificate". Every enrolled pledge trusts the domain CA,
so a certificate whose names or key purposes came from a CSR could
impersonate the registrar or any other domain service (a CSR for
``CN=localhost`` with serverAuth). So the registrar decides the whole
subject and every extension from configuration:

* the subject from a template (RFC 4514 text) whose ``{serial}`` is the
  device serial taken from the IDevID (RFC 8995 section 2.3.1); the template
  must carry ``serialNumber={serial}`` so the LDevID names the device;
* extendedKeyUsage from the profile: clientAuth only by default (an LDevID
  authenticates the device to EST and 802.1X); serverAuth or any other
  purpose only where a profile for that device class says so; never
  id-kp-cmcRA, which pledges take as the mark of a registrar (RFC 7030
  section 3.6.1);
* subjectAltName from templates, e.g. ``dns:{serial}.devices.example.net``
  or the rfc822Name form that RFC 8994 section 6.2.2 uses for ACP addresses.

A profile applies to the devices of one manufacturer (the name of its
``[[registrar.manufacturers]]`` entry or its anchor's subject) and/or whose
serial matches a glob; the first matching profile wins, else the default.
:func:`csr_beyond_grant` lists what a CSR asks for that the grant does not
give, so the registrar can ignore it (and record that) or refuse it.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.name import _ASN1Type  # no public spelling of the string types
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.errors import ConfigError, MalformedInput, PolicyRefused

__all__ = [
    "CSR_EXTRAS_POLICIES",
    "DEFAULT_SUBJECT",
    "LdevidGrant",
    "LdevidProfile",
    "LdevidProfiles",
    "csr_beyond_grant",
    "profiles_from_config",
]

DEFAULT_SUBJECT = "serialNumber={serial},CN={serial}"
# What the registrar does with a CSR that asks for more than it grants.
CSR_EXTRAS_POLICIES = ("ignore", "refuse")

_EKU_NAMES: dict[str, x509.ObjectIdentifier] = {
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
}
_EKU_BY_OID = {oid: name for name, oid in _EKU_NAMES.items()}
# Purposes an LDevID never carries: cmcRA marks a registrar to pledges
# (RFC 7030 3.6.1, RFC 8995 5.6.2), anyExtendedKeyUsage would mean everything.
_NEVER = {oids.ID_KP_CMC_RA, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
_DOTTED = re.compile(r"[0-2](\.(0|[1-9][0-9]{0,30})){1,63}")
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")
_DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_RFC822 = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}")
_SAN_FORMS = ("dns", "rfc822", "uri")
# RFC 4514 knows CN, O, OU, C, L, ST, DC, UID and STREET; X.520 serialNumber too.
_ATTR_NAMES = {"serialNumber": NameOID.SERIAL_NUMBER, "SERIALNUMBER": NameOID.SERIAL_NUMBER}
_PLACEHOLDER = "{serial}"
_SAMPLE_SERIAL = "SAMPLE-1"
# RFC 5280 Appendix A.1 upper bounds.
_UB = {NameOID.COMMON_NAME: 64, NameOID.SERIAL_NUMBER: 64, NameOID.ORGANIZATION_NAME: 64,
       NameOID.ORGANIZATIONAL_UNIT_NAME: 64}


def _eku_oid(text: str, where: str) -> x509.ObjectIdentifier:
    if text in _EKU_NAMES:
        oid = _EKU_NAMES[text]
    elif isinstance(text, str) and _DOTTED.fullmatch(text):
        oid = x509.ObjectIdentifier(text)
    else:
        raise ConfigError(
            f"{where}: unknown extended key usage {text!r}; one of {', '.join(_EKU_NAMES)} or a dotted OID",
            check="config.ldevid-eku",
        )
    if oid in _NEVER:
        raise ConfigError(f"{where}: an LDevID never carries {text}", check="config.ldevid-eku")
    return oid


def _eku_label(oid: x509.ObjectIdentifier) -> str:
    return _EKU_BY_OID.get(oid, oid.dotted_string)


def _fill(template: str, serial: str) -> str:
    return template.replace(_PLACEHOLDER, serial)


def _check_placeholders(text: str, where: str) -> None:
    if "{" in text.replace(_PLACEHOLDER, "") or "}" in text.replace(_PLACEHOLDER, ""):
        raise ConfigError(f"{where}: only {_PLACEHOLDER} may be substituted in {text!r}", check="config.ldevid-template")


def _attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    # X.520 serialNumber is a PrintableString; a serial outside that repertoire
    # keeps UTF8String rather than refusing the device (as the IDevID did).
    if oid == NameOID.SERIAL_NUMBER and not _PRINTABLE.fullmatch(value):
        return x509.NameAttribute(oid, value, _ASN1Type.UTF8String)
    if oid == NameOID.SERIAL_NUMBER:
        return x509.NameAttribute(oid, value, _ASN1Type.PrintableString)
    return x509.NameAttribute(oid, value)


def _san(form: str, value: str) -> x509.GeneralName:
    if form == "dns":
        if _DNS_NAME.fullmatch(value) is None:
            raise PolicyRefused(f"not a DNS name: {value!r}", check="ca.san-dns")
        return x509.DNSName(value.lower())
    if form == "rfc822":
        if _RFC822.fullmatch(value) is None:
            raise PolicyRefused(f"not an rfc822Name: {value!r}", check="ca.san-rfc822")
        return x509.RFC822Name(value)
    if not value.isascii() or not value.isprintable() or ":" not in value:
        raise PolicyRefused(f"not a URI: {value!r}", check="ca.san-uri")
    return x509.UniformResourceIdentifier(value)


@dataclass(frozen=True, kw_only=True)
class LdevidGrant:
    """What one device's LDevID says, decided by :meth:`LdevidProfile.grant`."""

    profile: str
    subject: x509.Name
    eku: tuple[x509.ObjectIdentifier, ...]
    san: tuple[x509.GeneralName, ...] = ()

    def describe(self) -> dict[str, object]:
        """For events: which profile, and the names and purposes it granted."""
        return {
            "profile": self.profile,
            "eku": [_eku_label(o) for o in self.eku],
            "san": [f"{type(g).__name__}:{g.value}" for g in self.san],
        }


@dataclass(frozen=True, kw_only=True)
class LdevidProfile:
    """One LDevID profile; validated on construction (config errors name the key)."""

    name: str = "default"
    subject: str = DEFAULT_SUBJECT
    eku: tuple[str, ...] = ("clientAuth",)
    san: tuple[str, ...] = ()
    manufacturer: str | None = None
    serials: str | None = None
    _subject: tuple[tuple[x509.ObjectIdentifier, str], ...] = field(default=(), init=False, repr=False)
    _eku: tuple[x509.ObjectIdentifier, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"LDevID profile {self.name!r}"
        if not isinstance(self.subject, str):
            raise ConfigError(f"{where}: subject must be a string", check="config.ldevid-subject")
        _check_placeholders(self.subject, where)
        try:
            parsed = x509.Name.from_rfc4514_string(self.subject, _ATTR_NAMES)
        except ValueError as exc:
            raise ConfigError(f"{where}: subject {self.subject!r} is not RFC 4514: {exc}",
                              check="config.ldevid-subject") from exc
        attrs: list[tuple[x509.ObjectIdentifier, str]] = []
        for rdn in parsed.rdns:
            if len(rdn) != 1:
                raise ConfigError(f"{where}: multi-valued RDNs are not supported", check="config.ldevid-subject")
            attr = next(iter(rdn))
            attrs.append((attr.oid, str(attr.value)))
        if (NameOID.SERIAL_NUMBER, _PLACEHOLDER) not in attrs:
            # RFC 8995 2.3.1 / 5.9.2: the LDevID names the device it was issued to.
            raise ConfigError(f"{where}: subject must contain serialNumber={_PLACEHOLDER}",
                              check="config.ldevid-subject")
        object.__setattr__(self, "_subject", tuple(attrs))
        eku = tuple(_eku_oid(e, where) for e in self.eku)
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            # An LDevID authenticates the device as a TLS client (EST, EAP-TLS).
            raise ConfigError(f"{where}: eku must include clientAuth", check="config.ldevid-eku")
        object.__setattr__(self, "_eku", eku)
        for entry in self.san:
            form, sep, template = entry.partition(":") if isinstance(entry, str) else ("", "", "")
            if not sep or form not in _SAN_FORMS or not template:
                raise ConfigError(
                    f"{where}: subjectAltName {entry!r} must be one of {', '.join(f + ':TEMPLATE' for f in _SAN_FORMS)}",
                    check="config.ldevid-san",
                )
            _check_placeholders(template, where)
            try:
                _san(form, _fill(template, _SAMPLE_SERIAL.lower()))
            except PolicyRefused as exc:
                raise ConfigError(f"{where}: {exc.detail}", check="config.ldevid-san") from exc
        self.grant(serial=_SAMPLE_SERIAL)  # the template works for a plain serial

    def matches(self, *, serial: str, manufacturers: Sequence[str]) -> bool:
        if self.manufacturer is not None and self.manufacturer not in manufacturers:
            return False
        return self.serials is None or fnmatch.fnmatchcase(serial, self.serials)

    def grant(self, *, serial: str) -> LdevidGrant:
        """The subject and extensions for ``serial``; PolicyRefused if it does not fit."""
        try:
            subject = x509.Name([_attribute(oid, _fill(v, serial)) for oid, v in self._subject])
        except ValueError as exc:  # e.g. a CN longer than ub-common-name
            raise PolicyRefused(f"device serial does not fit the LDevID subject: {exc}",
                                check="ca.ldevid-subject") from exc
        for oid, bound in _UB.items():
            for attr in subject.get_attributes_for_oid(oid):
                if not 0 < len(str(attr.value)) <= bound:
                    raise PolicyRefused(f"subject {oid._name} must be 1..{bound} characters",
                                        check="ca.ldevid-subject")
        san = tuple(_san(f, _fill(t, serial)) for f, _, t in (s.partition(":") for s in self.san))
        return LdevidGrant(profile=self.name, subject=subject, eku=self._eku, san=san)


@dataclass(frozen=True, kw_only=True)
class LdevidProfiles:
    """The default profile, the per-class profiles, and what to do with CSR extras."""

    default: LdevidProfile = field(default_factory=LdevidProfile)
    profiles: tuple[LdevidProfile, ...] = ()
    csr_extras: str = "ignore"

    def __post_init__(self) -> None:
        if self.csr_extras not in CSR_EXTRAS_POLICIES:
            raise ConfigError(f"ldevid_csr_extras must be one of {', '.join(CSR_EXTRAS_POLICIES)}",
                              check="config.ldevid-csr-extras")
        for p in self.profiles:
            if p.manufacturer is None and p.serials is None:
                raise ConfigError(f"LDevID profile {p.name!r} needs manufacturer or serials",
                                  check="config.ldevid-profiles")

    def grant(self, *, serial: str, manufacturers: Sequence[str] = ()) -> LdevidGrant:
        """``manufacturers``: every name the device's manufacturer goes by."""
        for p in self.profiles:
            if p.matches(serial=serial, manufacturers=manufacturers):
                return p.grant(serial=serial)
        return self.default.grant(serial=serial)


# --- what a CSR asks for beyond the grant --------------------------------------------


def _names_device_itself(general_name: x509.GeneralName) -> bool:
    # csr_names_device already refused these when they name another device;
    # one naming this device states its identity and asks for nothing.
    if isinstance(general_name, x509.DirectoryName):
        return True
    return isinstance(general_name, x509.OtherName) and general_name.type_id == oids.ID_ON_HARDWARE_MODULE_NAME


def csr_beyond_grant(csr: x509.CertificateSigningRequest, grant: LdevidGrant) -> tuple[str, ...]:
    """Everything the CSR asks for that ``grant`` does not give, as short labels.

    The subject may be empty or any part of the granted subject; extension
    requests may ask for granted key purposes and names, a non-CA
    basicConstraints and digitalSignature; anything else is listed.
    """
    wanted: list[str] = []
    granted = {(a.oid, str(a.value)) for a in grant.subject}
    for attr in csr.subject:
        if (attr.oid, str(attr.value)) not in granted:
            wanted.append(f"subject {attr.rfc4514_string()}")
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise MalformedInput(f"bad CSR extensions: {exc}", check="ca.csr-extensions") from exc
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.ExtendedKeyUsage):
            wanted.extend(f"extendedKeyUsage {_eku_label(o)}" for o in value if o not in grant.eku)
        elif isinstance(value, x509.SubjectAlternativeName):
            wanted.extend(
                f"subjectAltName {type(g).__name__}:{g.value!r}"
                for g in value
                if g not in grant.san and not _names_device_itself(g)
            )
        elif isinstance(value, x509.BasicConstraints):
            if value.ca:
                wanted.append("basicConstraints cA")
        elif isinstance(value, x509.KeyUsage):
            if not value.digital_signature or any(
                getattr(value, bit) for bit in ("content_commitment", "key_encipherment", "data_encipherment",
                                                "key_agreement", "key_cert_sign", "crl_sign")
            ):
                wanted.append("keyUsage beyond digitalSignature")
        elif isinstance(value, x509.SubjectKeyIdentifier):
            continue  # the CA computes its own
        else:
            wanted.append(f"extension {ext.oid.dotted_string}")
    return tuple(wanted)


# --- configuration -------------------------------------------------------------------

_PROFILE_KEYS = {"name", "manufacturer", "serials", "subject", "eku", "san"}


def _strings(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings", check="config.ldevid")
    return tuple(value)


def _opt_str(value: object, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string", check="config.ldevid")
    return value


def profiles_from_config(
    *,
    subject: object = None,
    eku: object = None,
    san: object = None,
    csr_extras: object = None,
    profiles: object = None,
) -> LdevidProfiles:
    """``ldevid_subject``, ``ldevid_eku``, ``ldevid_san``, ``ldevid_csr_extras`` and
    the ``[[registrar.ldevid_profiles]]`` tables; a profile's missing keys
    take the default profile's values."""
    default = LdevidProfile(
        subject=_opt_str(subject, "ldevid_subject") or DEFAULT_SUBJECT,
        eku=_strings(eku, "ldevid_eku") if eku is not None else ("clientAuth",),
        san=_strings(san, "ldevid_san") if san is not None else (),
    )
    out: list[LdevidProfile] = []
    if profiles is not None and not isinstance(profiles, list):
        raise ConfigError("ldevid_profiles must be an array of tables", check="config.ldevid-profiles")
    for i, raw in enumerate(profiles or []):
        if isinstance(raw, LdevidProfile):
            out.append(raw)
            continue
        if not isinstance(raw, dict) or set(raw) - _PROFILE_KEYS:
            raise ConfigError(
                f"each [[registrar.ldevid_profiles]] takes {', '.join(sorted(_PROFILE_KEYS))}",
                check="config.ldevid-profiles",
            )
        out.append(
            LdevidProfile(
                name=_opt_str(raw.get("name"), "ldevid_profiles.name") or f"profile-{i + 1}",
                manufacturer=_opt_str(raw.get("manufacturer"), "ldevid_profiles.manufacturer"),
                serials=_opt_str(raw.get("serials"), "ldevid_profiles.serials"),
                subject=_opt_str(raw.get("subject"), "ldevid_profiles.subject") or default.subject,
                eku=_strings(raw["eku"], "ldevid_profiles.eku") if "eku" in raw else default.eku,
                san=_strings(raw["san"], "ldevid_profiles.san") if "san" in raw else default.san,
            )
        )
    return LdevidProfiles(
        default=default, profiles=tuple(out), csr_extras=_opt_str(csr_extras, "ldevid_csr_extras") or "ignore"
    )
