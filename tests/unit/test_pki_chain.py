"""brski.pki.verify_chain: path rules, role rules, and the RFC 8995 Appendix C certificates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski import oids
from brski.errors import ChainInvalid, ConfigError
from brski.pki import (
    Role,
    device_serial,
    load_cert,
    load_certs,
    verify_chain,
)
from tests import VECTORS
from tests.pki_helpers import DAY, NOW, ChainPki, key_usage_for, leaf_under, make_cert


def _chain(
    chain_pki: ChainPki,
    leaf: x509.Certificate,
    *,
    intermediates: list[x509.Certificate] | None = None,
    anchors: list[x509.Certificate] | None = None,
    role: Role = Role.IDEVID,
) -> list[x509.Certificate]:
    """verify_chain at NOW, by default through chain_pki's intermediate to its root."""
    return verify_chain(
        leaf,
        intermediates=[chain_pki["inter"][0]] if intermediates is None else intermediates,
        anchors=[chain_pki["root"][0]] if anchors is None else anchors,
        now=NOW,
        role=role,
    )


def _refused(chain_pki: ChainPki, leaf: x509.Certificate, **kw: Any) -> ChainInvalid:
    """The ChainInvalid that ``_chain`` must raise."""
    with pytest.raises(ChainInvalid) as exc:
        _chain(chain_pki, leaf, **kw)
    return exc.value


# --- verify_chain: paths ------------------------------------------------------------


def test_chain_to_anchor_leaf_first(chain_pki: ChainPki) -> None:
    leaf = leaf_under(chain_pki)
    assert _chain(chain_pki, leaf) == [leaf, chain_pki["inter"][0], chain_pki["root"][0]]


def test_sanless_eku_less_kuless_idevid_accepted(chain_pki: ChainPki) -> None:
    leaf = leaf_under(
        chain_pki, key_usage=False, serial="X1", not_after=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    )
    assert not any(
        isinstance(e.value, x509.SubjectAlternativeName | x509.ExtendedKeyUsage | x509.KeyUsage)
        for e in leaf.extensions
    )
    assert _chain(chain_pki, leaf)[0] == leaf


def test_802_1ar_no_expiry_date_validates_far_in_future() -> None:
    far = datetime(9000, 1, 1, tzinfo=UTC)
    forever = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    root = make_cert("root", ca=True, not_after=forever)
    leaf, _ = make_cert("idevid", issuer=root, not_after=forever, key_usage=False)
    assert verify_chain(leaf, anchors=[root[0]], now=far, role=Role.IDEVID) == [leaf, root[0]]


def test_expired_leaf(chain_pki: ChainPki) -> None:
    err = _refused(chain_pki, leaf_under(chain_pki, not_before=NOW - 10 * DAY, not_after=NOW - DAY))
    assert err.check == "chain.expired"
    assert err.http_status == 403


def test_not_yet_valid_leaf(chain_pki: ChainPki) -> None:
    err = _refused(chain_pki, leaf_under(chain_pki, not_before=NOW + DAY, not_after=NOW + 10 * DAY))
    assert err.check == "chain.not-yet-valid"


def test_expired_intermediate(chain_pki: ChainPki) -> None:
    old_inter = make_cert(
        "old inter", issuer=chain_pki["root"], ca=True, not_before=NOW - 10 * DAY, not_after=NOW - DAY
    )
    leaf, _ = make_cert("leaf", issuer=old_inter)
    assert _refused(chain_pki, leaf, intermediates=[old_inter[0]]).check == "chain.expired"


def test_stale_spare_intermediate_does_not_break_a_good_path(chain_pki: ChainPki) -> None:
    stale = make_cert(
        "stale", issuer=chain_pki["root"], ca=True, not_before=NOW - 10 * DAY, not_after=NOW - DAY
    )
    leaf = leaf_under(chain_pki)
    chain = _chain(chain_pki, leaf, intermediates=[stale[0], chain_pki["inter"][0]])
    assert chain == [leaf, chain_pki["inter"][0], chain_pki["root"][0]]


def test_expired_anchor(chain_pki: ChainPki) -> None:
    old_root = make_cert("old root", ca=True, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    leaf, _ = make_cert("leaf", issuer=old_root)
    assert _refused(chain_pki, leaf, intermediates=[], anchors=[old_root[0]]).check == "chain.expired"


def test_wrong_anchor(chain_pki: ChainPki) -> None:
    err = _refused(chain_pki, leaf_under(chain_pki), anchors=[chain_pki["other"][0]])
    assert err.check == "chain.untrusted"


def test_missing_intermediate(chain_pki: ChainPki) -> None:
    leaf = leaf_under(chain_pki)
    err = _refused(chain_pki, leaf, intermediates=[])
    assert err.check == "chain.untrusted"
    # What a lab needs: which issuer is missing, and that the leaf came alone.
    missing = leaf.issuer.rfc4514_string()
    assert f"no certificate for issuer {missing!r}" in err.detail
    assert "1 certificate(s) offered (the leaf alone)" in err.detail
    problem = err.problem()
    assert problem["missing_issuer"] == missing and problem["certificates_sent"] == 1


def test_untrusted_names_the_issuer_when_intermediates_were_sent(chain_pki: ChainPki) -> None:
    inter = chain_pki["inter"][0]
    err = _refused(chain_pki, leaf_under(chain_pki), anchors=[chain_pki["other"][0]])
    assert f"no certificate for issuer {inter.issuer.rfc4514_string()!r}" in err.detail
    assert "2 certificate(s) offered (the leaf and 1 more)" in err.detail


def test_forged_signature_refused(chain_pki: ChainPki) -> None:
    # Same issuer name, different key: names match, the signature cannot.
    impostor = make_cert("inter", ca=True)
    leaf, _ = make_cert("leaf", issuer=impostor)
    err = _refused(chain_pki, leaf)
    assert err.check == "chain.untrusted"
    assert "reaches the trust anchor" in err.detail and err.problem()["missing_issuer"] is None


def test_end_entity_cannot_issue(chain_pki: ChainPki) -> None:
    ee = make_cert("ee", issuer=chain_pki["root"])
    leaf, _ = make_cert("leaf", issuer=ee)
    _refused(chain_pki, leaf, intermediates=[ee[0]])


def test_ca_key_usage_without_key_cert_sign_cannot_issue(chain_pki: ChainPki) -> None:
    bad = make_cert(
        "bad ca", issuer=chain_pki["root"], ca=True, key_usage=key_usage_for(ca=True, key_cert_sign=False)
    )
    leaf, _ = make_cert("leaf", issuer=bad)
    assert "keyCertSign" in _refused(chain_pki, leaf, intermediates=[bad[0]]).detail


def test_path_length_enforced(chain_pki: ChainPki) -> None:
    # inter has pathLen 0, so it may not issue another CA.
    sub = make_cert("sub", issuer=chain_pki["inter"], ca=True)
    leaf, _ = make_cert("leaf", issuer=sub)
    _refused(chain_pki, leaf, intermediates=[sub[0], chain_pki["inter"][0]])


def test_unknown_critical_extension_refused(chain_pki: ChainPki) -> None:
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    _refused(chain_pki, leaf_under(chain_pki, extra=[(ext, True)]))


def test_leaf_is_the_anchor(chain_pki: ChainPki) -> None:
    # RFC 8995 Appendix C pins the registrar's own certificate.
    leaf = leaf_under(chain_pki, eku=[oids.ID_KP_CMC_RA])
    assert verify_chain(leaf, anchors=[leaf], now=NOW, role=Role.REGISTRAR_RA) == [leaf]


def test_leaf_is_the_anchor_still_time_checked_and_role_checked(chain_pki: ChainPki) -> None:
    old = leaf_under(chain_pki, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    assert _refused(chain_pki, old, intermediates=[], anchors=[old]).check == "chain.expired"
    no_ra = leaf_under(chain_pki, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    err = _refused(chain_pki, no_ra, intermediates=[], anchors=[no_ra], role=Role.REGISTRAR_RA)
    assert err.check == "chain.eku"


def test_intermediate_as_trust_anchor(chain_pki: ChainPki) -> None:
    # RFC 8366: pinned-domain-cert may be an intermediate CA, not self-signed.
    leaf = leaf_under(chain_pki)
    assert verify_chain(leaf, anchors=[chain_pki["inter"][0]], now=NOW, role=Role.IDEVID) == [
        leaf,
        chain_pki["inter"][0],
    ]


def test_naive_now_and_empty_anchors(chain_pki: ChainPki) -> None:
    leaf = leaf_under(chain_pki)
    with pytest.raises(ConfigError):
        verify_chain(leaf, anchors=[chain_pki["root"][0]], now=NOW.replace(tzinfo=None), role=Role.IDEVID)
    assert _refused(chain_pki, leaf, intermediates=[], anchors=[]).check == "chain.untrusted"


# --- verify_chain: role rules ------------------------------------------------------------


def test_registrar_ra_requires_cmc_ra(chain_pki: ChainPki) -> None:
    ok = leaf_under(chain_pki, eku=[oids.ID_KP_CMC_RA, ExtendedKeyUsageOID.CLIENT_AUTH])
    assert _chain(chain_pki, ok, role=Role.REGISTRAR_RA)[0] == ok
    for eku in (None, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]):
        assert _refused(chain_pki, leaf_under(chain_pki, eku=eku), role=Role.REGISTRAR_RA).check == "chain.eku"


def test_masa_signer_needs_digital_signature_when_key_usage_present(chain_pki: ChainPki) -> None:
    assert _chain(chain_pki, leaf_under(chain_pki), role=Role.MASA_SIGNER)
    assert _chain(chain_pki, leaf_under(chain_pki, key_usage=False), role=Role.MASA_SIGNER)
    ka_only = leaf_under(chain_pki, key_usage=key_usage_for(ca=False, digital_signature=False))
    assert _refused(chain_pki, ka_only, role=Role.MASA_SIGNER).check == "chain.key-usage"


@pytest.mark.parametrize(
    ("role", "wanted", "other"),
    [
        (Role.LDEVID, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH),
        (Role.TLS_SERVER, ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    ],
    ids=["ldevid", "tls-server"],
)
def test_tls_roles_need_their_purpose_when_eku_present(
    chain_pki: ChainPki,
    role: Role,
    wanted: x509.ObjectIdentifier,
    other: x509.ObjectIdentifier,
) -> None:
    # LDevID: clientAuth; TLS server: serverAuth; no EKU at all is accepted.
    assert _chain(chain_pki, leaf_under(chain_pki), role=role)
    assert _chain(chain_pki, leaf_under(chain_pki, eku=[wanted]), role=role)
    assert _refused(chain_pki, leaf_under(chain_pki, eku=[other]), role=role).check == "chain.eku"


def test_idevid_ignores_usage_extensions(chain_pki: ChainPki) -> None:
    odd = leaf_under(
        chain_pki,
        eku=[ExtendedKeyUsageOID.CODE_SIGNING],
        key_usage=key_usage_for(ca=False, digital_signature=False),
    )
    assert _chain(chain_pki, odd)[0] == odd


def test_ca_role_requires_a_ca_leaf(chain_pki: ChainPki) -> None:
    inter = chain_pki["inter"][0]
    assert verify_chain(inter, anchors=[chain_pki["root"][0]], now=NOW, role=Role.CA) == [
        inter,
        chain_pki["root"][0],
    ]
    root = chain_pki["root"][0]
    assert verify_chain(root, anchors=[root], now=NOW, role=Role.CA) == [root]
    assert _refused(chain_pki, leaf_under(chain_pki), role=Role.CA).check == "chain.not-ca"


# --- verify_chain on the RFC 8995 Appendix C certificates ---------------------------------


def _vec(*parts: str) -> x509.Certificate:
    return load_cert(VECTORS.joinpath(*parts).read_bytes())


def test_vector_idevid_chains_to_rsa_vendor_ca() -> None:
    # Caveat 1 of the vectors README: the printed C.1.5 IDevID is issued by the
    # RSA-3072 CA shipped with rfc8366bis (valid 2021-04-05 .. 2021-05-06).
    idevid = _vec("rfc8995", "idevid_00-D0-E5-F2-00-02.crt")
    ca = _vec("rfc8366bis", "vendor-00-D0-E5-F2-00-02.crt")
    when = datetime(2021, 4, 30, tzinfo=UTC)
    assert verify_chain(idevid, anchors=[ca], now=when, role=Role.IDEVID) == [idevid, ca]
    with pytest.raises(ChainInvalid) as exc:
        verify_chain(idevid, anchors=[_vec("rfc8995", "vendor.crt")], now=when, role=Role.IDEVID)
    assert exc.value.check == "chain.untrusted"
    with pytest.raises(ChainInvalid) as exc:
        verify_chain(idevid, anchors=[ca], now=datetime(2021, 6, 1, tzinfo=UTC), role=Role.IDEVID)
    assert exc.value.check == "chain.expired"


def test_vector_embedded_idevid_chains_to_vendor() -> None:
    idevid = load_certs((VECTORS / "rfc8995" / "vr.embedded-certs.pem").read_bytes())[0]
    vendor = _vec("rfc8995", "vendor.crt")
    assert device_serial(idevid) == "00-D0-E5-F2-00-02"
    chain = verify_chain(
        idevid, anchors=[vendor], now=datetime(2022, 6, 1, tzinfo=UTC), role=Role.IDEVID
    )
    assert chain == [idevid, vendor]


def test_vector_registrar_is_a_cmc_ra_only() -> None:
    jrc = _vec("rfc8995", "jrc_prime256v1.crt")
    owner = _vec("rfc8995", "ownerca_secp384r1.crt")
    when = datetime(2021, 6, 1, tzinfo=UTC)
    assert verify_chain(jrc, anchors=[owner], now=when, role=Role.REGISTRAR_RA) == [jrc, owner]
    # The voucher pins jrc itself (pinned-domain-cert == registrar cert).
    assert verify_chain(jrc, anchors=[jrc], now=when, role=Role.REGISTRAR_RA) == [jrc]
    # Its EKU is cmcRA alone: not usable as a TLS client (LDevID) or server.
    for role in (Role.LDEVID, Role.TLS_SERVER):
        with pytest.raises(ChainInvalid) as exc:
            verify_chain(jrc, anchors=[owner], now=when, role=role)
        assert exc.value.check == "chain.eku"


def test_vector_masa_signer() -> None:
    masa = _vec("rfc8995", "masa.crt")
    vendor = _vec("rfc8995", "vendor.crt")
    assert verify_chain(
        masa, anchors=[vendor], now=datetime(2022, 6, 1, tzinfo=UTC), role=Role.MASA_SIGNER
    )
    with pytest.raises(ChainInvalid) as exc:
        verify_chain(
            masa, anchors=[vendor], now=datetime(2024, 1, 1, tzinfo=UTC), role=Role.MASA_SIGNER
        )
    assert exc.value.check == "chain.expired"
