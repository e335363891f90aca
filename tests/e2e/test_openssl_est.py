"""EST certs-only and CSR attributes read back by openssl (a subprocess, so not a unit test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from brski import csrattrs, est
from tests.est_helpers import RFC7030, _der

OPENSSL = "/usr/bin/openssl"


def test_certs_only_round_trip_and_openssl(tmp_path: Path) -> None:
    certs = est.parse_certs_only((RFC7030 / "A.1-cacerts-response.p7.der").read_bytes())
    der = est.build_certs_only(certs)
    back = est.parse_certs_only(der)
    # DER sorts the SET OF certificates; membership, not order, is preserved.
    assert sorted(map(_der, back)) == sorted(map(_der, certs))
    assert est.parse_certs_only(est.build_certs_only(certs[:1])) == certs[:1]
    body = est.build_pkcs7_certs_only_response(certs)
    assert est.decode_base64_body(body) == der
    # Independent check: openssl reads it as a degenerate PKCS#7 with 4 certificates.
    path = tmp_path / "certs.p7"
    path.write_bytes(der)
    out = subprocess.run(
        [OPENSSL, "pkcs7", "-inform", "DER", "-in", str(path), "-print_certs", "-noout"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.count("subject=") == 4
    dump = subprocess.run(
        [OPENSSL, "asn1parse", "-inform", "DER", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "pkcs7-signedData" in dump and "pkcs7-data" in dump


def test_csrattrs_for_device_template_and_legacy(tmp_path: Path) -> None:
    der = csrattrs.csrattrs_for_device(serial_number="00-D0-E5-F2-00-02")
    attrs = csrattrs.parse_csrattrs(der)
    template = attrs.template()
    assert template == csrattrs.CsrTemplate(
        subject=(("2.5.4.5", "00-D0-E5-F2-00-02"),),
        key_algorithm="1.2.840.10045.2.1",
        key_parameters="1.2.840.10045.3.1.7",
    )
    # RFC 7030 style for pre-RFC 9908 pledges, as in RFC 9908's examples.
    ec_attr = attrs.attribute("1.2.840.10045.2.1")
    assert ec_attr is not None and ec_attr.value_oids() == ("1.2.840.10045.3.1.7",)
    assert attrs.oids == ("2.5.4.5", "1.2.840.10045.4.3.2")
    # Independent check of the template's shape: openssl's structure dump.
    path = tmp_path / "csrattrs.der"
    path.write_bytes(der)
    dump = subprocess.run(
        [OPENSSL, "asn1parse", "-inform", "DER", "-in", str(path), "-i"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "1.2.840.113549.1.9.16.2.61" in dump
    assert "PRINTABLESTRING   :00-D0-E5-F2-00-02" in dump
    assert "cont [ 0 ]" in dump and "cont [ 1 ]" in dump
