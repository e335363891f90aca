"""brski.devpki and `brski pki`: the generated PKI is well-formed and chains as documented."""

from __future__ import annotations

import argparse
import stat
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.devpki import NO_EXPIRY, DevPki, build_dev_pki
from brski.errors import ConfigError
from brski.pki import Role, device_serial, load_certs, masa_url, spki_sha256, verify_chain
from brski_cli import pki_cmd
from tests.devpki_helpers import (
    MASA_URL,
    NOW,
)

CAS = ("manufacturer/root-ca", "manufacturer/idevid-ca", "registrar/domain-ca")
EES = (
    "masa/voucher-signer",
    "masa/tls",
    "masa/admin",
    "registrar/tls",
    "registrar/ra",
    "registrar/admin",
    "registrar/radius",
    "pledges/PLG-000001/idevid",
    "pledges/PLG-000002/idevid",
    "pledges/PLG-000003/idevid",
)


E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, cls: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(cls)


def test_layout(dev: DevPki) -> None:
    expected = {f"{p}.{s}" for p in (*CAS, *EES) for s in ("crt", "key")}
    expected |= {"manufacturer/anchors.pem", "registrar/ca-bundle.pem"}
    expected |= {f"pledges/PLG-00000{i}/chain.pem" for i in (1, 2, 3)}
    assert set(dev.files) == expected
    assert dev.pledge_serials == ("PLG-000001", "PLG-000002", "PLG-000003")
    assert set(dev.key_paths()) == {p for p in expected if p.endswith(".key")}
    assert dev.certs("manufacturer/anchors.pem") == [dev.cert("manufacturer/root-ca")]
    assert dev.certs("registrar/ca-bundle.pem") == [dev.cert("registrar/domain-ca")]
    for serial in dev.pledge_serials:
        assert dev.certs(f"pledges/{serial}/chain.pem") == [dev.cert("manufacturer/idevid-ca")]


def test_every_file_parses_and_keys_match(dev: DevPki) -> None:
    for path in (*CAS, *EES):
        cert = dev.cert(path)
        key = dev.key(path)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert spki_sha256(cert) == spki_sha256(key.public_key())
        assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert dev.files[f"{path}.key"].startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8


def test_serials_unique_positive_and_at_least_64_bits(dev: DevPki) -> None:
    serials = [dev.cert(p).serial_number for p in (*CAS, *EES)]
    assert len(set(serials)) == len(serials)
    # RFC 5280 4.1.2.2: positive, <= 20 octets; random 64+ bits.
    assert all(2**63 <= s < 2**159 for s in serials)


def test_rfc5280_extensions_and_criticality(dev: DevPki) -> None:
    for path in CAS:
        cert = dev.cert(path)
        bc = _ext(cert, x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = _ext(cert, x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert not ku.value.digital_signature
        assert not _ext(cert, x509.SubjectKeyIdentifier).critical
    assert _ext(dev.cert("manufacturer/root-ca"), x509.BasicConstraints).value.path_length == 1
    assert _ext(dev.cert("manufacturer/idevid-ca"), x509.BasicConstraints).value.path_length == 0
    for path in EES:
        cert = dev.cert(path)
        bc = _ext(cert, x509.BasicConstraints)
        assert bc.critical and not bc.value.ca
        if "/idevid" not in path:
            ku = _ext(cert, x509.KeyUsage)
            assert ku.critical and ku.value.digital_signature
            assert not ku.value.key_cert_sign
    for path in (*CAS, *EES):
        cert = dev.cert(path)
        ski = _ext(cert, x509.SubjectKeyIdentifier).value
        assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        self_signed = cert.issuer == cert.subject
        if self_signed:
            with pytest.raises(x509.ExtensionNotFound):
                _ext(cert, x509.AuthorityKeyIdentifier)
        else:
            aki = _ext(cert, x509.AuthorityKeyIdentifier)
            assert not aki.critical
            issuer = next(dev.cert(c) for c in CAS if dev.cert(c).subject == cert.issuer)
            issuer_ski = _ext(issuer, x509.SubjectKeyIdentifier).value
            assert aki.value.key_identifier == issuer_ski.digest


def test_validity_starts_an_hour_early(dev: DevPki) -> None:
    for path in (*CAS, *EES):
        assert dev.cert(path).not_valid_before_utc == (NOW - timedelta(hours=1)).replace(
            microsecond=0
        )
        assert dev.cert(path).not_valid_after_utc > NOW


def test_idevid_is_802_1ar_shaped(dev: DevPki) -> None:
    for serial in dev.pledge_serials:
        cert = dev.cert(f"pledges/{serial}/idevid")
        assert device_serial(cert) == serial
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert cert.not_valid_after_utc == NO_EXPIRY
        ext = cert.extensions.get_extension_for_oid(oids.ID_PE_MASA_URL)
        assert not ext.critical
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        assert ext.value.value == b"\x16" + bytes([len(MASA_URL)]) + MASA_URL.encode()
        assert masa_url(cert) == MASA_URL
        for cls in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.KeyUsage):
            with pytest.raises(x509.ExtensionNotFound):
                _ext(cert, cls)


def test_idevid_not_after_is_generalized_time(dev: DevPki) -> None:
    # RFC 5280 4.1.2.5: 99991231235959Z as GeneralizedTime (tag 0x18).
    der = dev.cert("pledges/PLG-000001/idevid").tbs_certificate_bytes
    assert b"\x18\x0f99991231235959Z" in der


def test_tls_and_ra_usages(dev: DevPki) -> None:
    def eku(path: str) -> list[x509.ObjectIdentifier]:
        return list(_ext(dev.cert(path), x509.ExtendedKeyUsage).value)

    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert eku("masa/tls") == both
    assert eku("registrar/tls") == [*both, oids.ID_KP_CMC_RA]  # RFC 7030 3.6.1: what a pledge looks for
    assert eku("registrar/ra") == [oids.ID_KP_CMC_RA, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert eku("registrar/admin") == [ExtendedKeyUsageOID.CLIENT_AUTH]
    admin_cn = dev.cert("registrar/admin").subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert admin_cn[0].value == "admin"
    with pytest.raises(x509.ExtensionNotFound):
        _ext(dev.cert("masa/voucher-signer"), x509.ExtendedKeyUsage)

    reg_san = _ext(dev.cert("registrar/tls"), x509.SubjectAlternativeName).value
    assert reg_san.get_values_for_type(x509.DNSName) == ["registrar.example"]
    assert [str(ip) for ip in reg_san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    masa_san = _ext(dev.cert("masa/tls"), x509.SubjectAlternativeName).value
    assert masa_san.get_values_for_type(x509.DNSName) == ["masa.example.com"]


def test_chains_with_verify_chain(dev: DevPki) -> None:
    root = dev.cert("manufacturer/root-ca")
    idevid_ca = dev.cert("manufacturer/idevid-ca")
    domain_ca = dev.cert("registrar/domain-ca")
    for serial in dev.pledge_serials:
        leaf = dev.cert(f"pledges/{serial}/idevid")
        chain = verify_chain(
            leaf,
            intermediates=dev.certs(f"pledges/{serial}/chain.pem"),
            anchors=dev.certs("manufacturer/anchors.pem"),
            now=NOW,
            role=Role.IDEVID,
        )
        assert chain == [leaf, idevid_ca, root]
    cases = [
        ("masa/voucher-signer", root, Role.MASA_SIGNER),
        ("masa/tls", root, Role.TLS_SERVER),
        (
            "registrar/tls",
            domain_ca,
            Role.TLS_SERVER,
        ),  # RFC 8995 5.6.2: chains to the pinned domain CA
        ("registrar/ra", domain_ca, Role.REGISTRAR_RA),
        ("registrar/ra", domain_ca, Role.LDEVID),
        ("registrar/admin", domain_ca, Role.LDEVID),
    ]
    for path, anchor, role in cases:
        leaf = dev.cert(path)
        assert verify_chain(leaf, anchors=[anchor], now=NOW, role=role) == [leaf, anchor]
    # Cross-checks: the domain and the manufacturer are separate trust domains.
    from brski.errors import ChainInvalid

    with pytest.raises(ChainInvalid):
        verify_chain(dev.cert("registrar/tls"), anchors=[root], now=NOW, role=Role.TLS_SERVER)
    # Only the registrar's certificates carry cmcRA (its TLS one too, for
    # discovered pledges, RFC 7030 3.6.1); a domain client certificate does not.
    with pytest.raises(ChainInvalid) as exc:
        verify_chain(
            dev.cert("registrar/admin"), anchors=[domain_ca], now=NOW, role=Role.REGISTRAR_RA
        )
    assert exc.value.check == "chain.eku"


def test_pledge_count_and_prefix() -> None:
    pki = build_dev_pki(pledges=0, masa_url="masa.example", now=NOW)
    assert pki.pledge_serials == ()
    assert not any(p.startswith("pledges/") for p in pki.files)
    pki = build_dev_pki(pledges=2, masa_url="masa.example", now=NOW, serial_prefix="ACME")
    assert pki.pledge_serials == ("ACME-000001", "ACME-000002")
    assert device_serial(pki.cert("pledges/ACME-000002/idevid")) == "ACME-000002"
    assert masa_url(pki.cert("pledges/ACME-000002/idevid")) == "https://masa.example"


def test_thousand_pledges_get_distinct_serials() -> None:
    pki = build_dev_pki(pledges=1000, masa_url=MASA_URL, now=NOW)
    assert len(pki.pledge_serials) == 1000
    assert pki.pledge_serials[-1] == "PLG-001000"
    serials = {
        load_certs(pki.files[f"pledges/{s}/idevid.crt"])[0].serial_number
        for s in pki.pledge_serials
    }
    assert len(serials) == 1000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pledges": -1},
        {"pledges": True},
        {"masa_url": ""},
        {"masa_url": "https://mäsa.example"},
        {"masa_hosts": ()},
        {"registrar_hosts": "localhost"},
        {"now": NOW.replace(tzinfo=None)},
        {"serial_prefix": "../x"},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"pledges": 1, "masa_url": MASA_URL, "now": NOW, **kwargs}
    with pytest.raises(ConfigError):
        build_dev_pki(**args)  # type: ignore[arg-type]


def test_devpki_refuses_escaping_paths() -> None:
    with pytest.raises(ConfigError):
        DevPki(files={"../evil.key": b"x"})
    with pytest.raises(ConfigError):
        DevPki(files={"/etc/passwd": b"x"})
    with pytest.raises(ConfigError):
        DevPki(files={}, pledge_serials=("PLG-000001",))


def test_files_mapping_is_read_only(dev: DevPki) -> None:
    with pytest.raises(TypeError):
        dev.files["x"] = b"y"  # type: ignore[index]


# --- the CLI -----------------------------------------------------------------------------------


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="brski")
    pki_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_init_writes_keys_0600_and_refuses_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dev"
    args = _cli(
        "pki", "init", "--out", str(out), "--pledges", "2",
        "--registrar-host", "reg.example", "--registrar-host", "10.0.0.1",
    )  # fmt: skip
    assert args.func is pki_cmd.run_init
    assert args.func(args) == 0
    key = out / "registrar/ra.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "registrar/ra.crt").stat().st_mode) == 0o644
    keys = list(out.rglob("*.key"))
    assert len(keys) == 10 + 2 and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    san = x509.load_pem_x509_certificate((out / "registrar/tls.crt").read_bytes()).extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["reg.example"]

    before = (out / "manufacturer/root-ca.crt").read_bytes()
    again = _cli("pki", "init", "--out", str(out))
    assert again.func(again) == 1
    assert "--force" in capsys.readouterr().err
    assert (out / "manufacturer/root-ca.crt").read_bytes() == before

    forced = _cli("pki", "init", "--out", str(out), "--pledges", "1", "--force")
    assert forced.func(forced) == 0
    assert (out / "manufacturer/root-ca.crt").read_bytes() != before
    # The stale second pledge (issued under the old root) is gone.
    assert not (out / "pledges/PLG-000002").exists()
    assert (out / "pledges/PLG-000001/idevid.crt").exists()


def test_cli_init_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli("pki", "init", "--out", str(tmp_path / "x"), "--pledges", "-3")
    assert args.func(args) == 1
    assert "devpki.pledges" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dev"
    init = _cli("pki", "init", "--out", str(out), "--pledges", "1")
    assert init.func(init) == 0
    capsys.readouterr()
    show = _cli("pki", "show", "--dir", str(out))
    assert show.func(show) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["file", "subject", "issuer", "serial", "notAfter"]
    ra = x509.load_pem_x509_certificate((out / "registrar/ra.crt").read_bytes())
    row = next(line for line in lines if line.startswith("registrar/ra.crt"))
    assert f"{ra.serial_number:x}" in row
    assert "9999-12-31T23:59:59Z" in next(line for line in lines if "idevid.crt" in line)
    missing = _cli("pki", "show", "--dir", str(tmp_path / "nope"))
    assert missing.func(missing) == 1
