"""brski.issuer_path: the same answer as a whole-path verify_chain, every time.

Each case builds a path, asks both functions with every memo emptied, and
compares the accepted path or the refusal (check and text); then asks the
split once more with the issuing CA's path remembered, as the MASA does for
the second device of a production run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from brski.errors import ChainInvalid
from brski.issuer_path import verify_chain_via_issuer
from brski.pki import Role, forget_verified_paths, verify_chain
from tests.pki_helpers import DAY, NOW, Issued, key_usage_for, make_cert


def _answer(fn: Callable[..., list[x509.Certificate]], leaf: x509.Certificate, **kw: Any) -> Any:
    try:
        return fn(leaf, now=kw.pop("now", NOW), role=kw.pop("role", Role.IDEVID), **kw)
    except ChainInvalid as exc:
        return ("refused", exc.check, exc.detail)


def _same(leaf: x509.Certificate, **kw: Any) -> Any:
    """Both answers, fresh and with the CA's path remembered; all equal."""
    forget_verified_paths()
    whole = _answer(verify_chain, leaf, **dict(kw))
    forget_verified_paths()
    split = _answer(verify_chain_via_issuer, leaf, **dict(kw))
    again = _answer(verify_chain_via_issuer, leaf, **dict(kw))
    assert split == whole
    assert again == whole
    return whole


def _root(**kw: Any) -> Issued:
    return make_cert("root", ca=True, not_after=NOW + 3650 * DAY, **kw)


def _ca(root: Issued, **kw: Any) -> Issued:
    return make_cert("idevid ca", issuer=root, ca=True, not_after=NOW + 3650 * DAY, **kw)


def _idevid(ca: Issued, **kw: Any) -> x509.Certificate:
    return make_cert("pledge", issuer=ca, serial="PLG-1", key_usage=False, **kw)[0]


def test_a_good_path_is_the_whole_path() -> None:
    root = _root(path_length=1)
    ca = _ca(root, path_length=0)
    leaf = _idevid(ca)
    assert _same(leaf, intermediates=[leaf, ca[0]], anchors=[root[0]]) == [leaf, ca[0], root[0]]


def test_a_root_with_path_length_zero_cannot_have_the_ca_in_between() -> None:
    # RFC 5280 6.1.4 (l): the CA's own path (root -> CA) is fine on its own; the
    # leaf's whole path needs the root to allow one intermediate.
    root = _root(path_length=0)
    ca = _ca(root)
    answer = _same(_idevid(ca), intermediates=[ca[0]], anchors=[root[0]])
    assert answer[0] == "refused"


@pytest.mark.parametrize(
    "case",
    [
        "forged-signature", "expired-leaf", "not-yet-valid-leaf", "expired-ca", "ca-without-key-cert-sign",
        "ca-not-a-ca", "unknown-critical-on-leaf", "unknown-critical-on-ca", "other-anchor", "no-ca-offered",
        "name-constraints-on-the-ca", "name-constraints-on-the-root", "two-issuers-by-name", "issued-by-the-anchor",
        "issued-by-the-anchor-beside-a-spare-ca", "ca-is-an-anchor",
    ],
)
def test_every_case_answers_as_the_whole_path(case: str) -> None:
    root = _root()
    ca = _ca(root)
    leaf = _idevid(ca)
    inter: list[x509.Certificate] = [ca[0]]
    anchors = [root[0]]
    critical = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    if case == "forged-signature":
        impostor = make_cert("idevid ca", ca=True)  # same issuer name, another key
        leaf = _idevid(impostor)
    elif case == "expired-leaf":
        leaf = _idevid(ca, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    elif case == "not-yet-valid-leaf":
        leaf = _idevid(ca, not_before=NOW + DAY)
    elif case == "expired-ca":
        old = make_cert("idevid ca", issuer=root, ca=True, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
        leaf, inter = _idevid(old), [old[0]]
    elif case == "ca-without-key-cert-sign":
        bad = _ca(root, key_usage=key_usage_for(ca=True, key_cert_sign=False))
        leaf, inter = _idevid(bad), [bad[0]]
    elif case == "ca-not-a-ca":
        ee = make_cert("idevid ca", issuer=root)
        leaf, inter = _idevid(ee), [ee[0]]
    elif case == "unknown-critical-on-leaf":
        leaf = _idevid(ca, extra=[(critical, True)])
    elif case == "unknown-critical-on-ca":
        odd = _ca(root, extra=[(critical, True)])
        leaf, inter = _idevid(odd), [odd[0]]
    elif case == "other-anchor":
        anchors = [_root()[0]]
    elif case == "no-ca-offered":
        inter = []
    elif case in ("name-constraints-on-the-ca", "name-constraints-on-the-root"):
        # RFC 5280 4.2.1.10: the leaf's names, bound by every CA above it.
        nc = x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None)
        san = x509.SubjectAlternativeName([x509.DNSName("pledge.example.org")])
        if case.endswith("root"):
            root = _root(extra=[(nc, True)])
            constrained = _ca(root)
            anchors = [root[0]]
        else:
            constrained = _ca(root, extra=[(nc, True)])
        leaf, inter = _idevid(constrained, extra=[(san, False)]), [constrained[0]]
    elif case == "two-issuers-by-name":
        inter = [make_cert("idevid ca", issuer=root, ca=True)[0], ca[0]]
    elif case == "issued-by-the-anchor":
        leaf, inter = _idevid(root), []
    elif case == "issued-by-the-anchor-beside-a-spare-ca":
        leaf = _idevid(root)
    elif case == "ca-is-an-anchor":
        anchors = [ca[0], root[0]]
    _same(leaf, intermediates=inter, anchors=anchors)


def test_one_devices_link_is_never_taken_for_anothers() -> None:
    # The remembered part is the CA's path alone: a second IDevID under the
    # same CA name, signed by another key, is refused after a good one passed.
    root = _root()
    ca = _ca(root)
    forget_verified_paths()
    good = _idevid(ca)
    assert verify_chain_via_issuer(good, intermediates=[ca[0]], anchors=[root[0]], now=NOW, role=Role.IDEVID)
    forged = _idevid(make_cert("idevid ca", ca=True))
    with pytest.raises(ChainInvalid) as exc:
        verify_chain_via_issuer(forged, intermediates=[ca[0]], anchors=[root[0]], now=NOW, role=Role.IDEVID)
    assert exc.value.check == "chain.untrusted"
    # ... and retiring the manufacturer anchor refuses the good one too.
    with pytest.raises(ChainInvalid):
        verify_chain_via_issuer(good, intermediates=[ca[0]], anchors=[_root()[0]], now=NOW, role=Role.IDEVID)


def test_the_second_device_under_a_ca_verifies_only_its_own_link(monkeypatch: pytest.MonkeyPatch) -> None:
    import brski.pki as pki_mod

    asked: list[tuple[str, list[str]]] = []
    real = pki_mod._verify_chain_uncached

    def spy(leaf: x509.Certificate, leaf_der: bytes, inter: Any, anchors: Any, *rest: Any) -> Any:
        asked.append((leaf.subject.rfc4514_string(), [a.subject.rfc4514_string() for a in anchors]))
        return real(leaf, leaf_der, inter, anchors, *rest)

    monkeypatch.setattr(pki_mod, "_verify_chain_uncached", spy)
    root = _root(path_length=1)
    ca = _ca(root, path_length=0)
    forget_verified_paths()
    first, second = _idevid(ca), make_cert("pledge 2", issuer=ca, serial="PLG-2")[0]
    for leaf in (first, second):
        verify_chain_via_issuer(leaf, intermediates=[leaf, ca[0]], anchors=[root[0]], now=NOW, role=Role.IDEVID)
    assert asked == [
        ("CN=idevid ca", ["CN=root"]),  # the CA's path, once
        ("2.5.4.5=PLG-1,CN=pledge", ["CN=idevid ca"]),
        ("2.5.4.5=PLG-2,CN=pledge 2", ["CN=idevid ca"]),
    ]
