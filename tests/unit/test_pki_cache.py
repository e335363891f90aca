"""verify_chain remembers valid paths, and only while they are valid.

The memo must never change an answer: a path is reused only for the same
leaf, anchors and role, when the intermediates offered include the path's,
and only while ``now`` lies inside every certificate's validity period;
refusals are recomputed each time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski import pki as pki_mod
from brski.errors import ChainInvalid
from brski.pki import Role, verify_chain
from tests.pki_helpers import DAY, NOW, make_cert


@pytest.fixture
def tree() -> dict[str, Any]:
    root = make_cert("root", ca=True, path_length=1, not_after=NOW + 3650 * DAY)
    inter = make_cert("inter", issuer=root, ca=True, path_length=0, not_after=NOW + 100 * DAY)
    leaf, _ = make_cert("leaf", issuer=inter, not_after=NOW + 30 * DAY, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return {"root": root[0], "inter": inter[0], "leaf": leaf}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = pki_mod._verify_chain_uncached

    def spy(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(pki_mod, "_verify_chain_uncached", spy)
    return calls


def _verify(t: dict[str, Any], *, now: Any = NOW, role: Role = Role.IDEVID, anchors: Any = None) -> Any:
    return verify_chain(
        t["leaf"], intermediates=[t["inter"]], anchors=anchors or [t["root"]], now=now, role=role
    )


def test_same_question_inside_the_window_is_answered_from_memory(tree: dict[str, Any], counted: list[int]) -> None:
    first = _verify(tree)
    again = _verify(tree, now=NOW + 10 * DAY)
    assert first == again == [tree["leaf"], tree["inter"], tree["root"]]
    assert len(counted) == 1
    again.pop()  # callers get their own list
    assert _verify(tree) == first


def test_past_the_leafs_expiry_it_is_refused_again(tree: dict[str, Any], counted: list[int]) -> None:
    _verify(tree)
    with pytest.raises(ChainInvalid) as exc:
        _verify(tree, now=NOW + 31 * DAY)
    assert exc.value.check == "chain.expired"
    with pytest.raises(ChainInvalid):  # refusals are not remembered either
        _verify(tree, now=NOW + 31 * DAY)
    assert len(counted) == 3


def test_before_the_window_it_is_refused(tree: dict[str, Any]) -> None:
    _verify(tree)
    with pytest.raises(ChainInvalid) as exc:
        _verify(tree, now=NOW - timedelta(days=5))
    assert exc.value.check == "chain.not-yet-valid"


def test_role_and_anchors_are_part_of_the_question(tree: dict[str, Any], counted: list[int]) -> None:
    _verify(tree, role=Role.IDEVID)
    with pytest.raises(ChainInvalid) as exc:  # clientAuth-only EKU: not a registrar RA
        _verify(tree, role=Role.REGISTRAR_RA)
    assert exc.value.check == "chain.eku"
    other = make_cert("other root", ca=True)[0]
    with pytest.raises(ChainInvalid) as exc:
        _verify(tree, anchors=[other])
    assert exc.value.check == "chain.untrusted"
    assert len(counted) == 3


def test_the_memo_is_bounded(tree: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pki_mod, "_VERIFIED_PATHS_MAX", 3)
    pki_mod.forget_verified_paths()
    for role in (Role.IDEVID, Role.LDEVID, Role.MASA_SIGNER, Role.TLS_SERVER):
        try:
            _verify(tree, role=role)
        except ChainInvalid:
            pass
    assert len(pki_mod._verified_paths) <= 3


def test_a_remembered_path_answers_for_any_intermediates_that_include_it(
    tree: dict[str, Any], counted: list[int]
) -> None:
    """The registrar checks an IDevID with the TLS chain, then with the CMS
    certificates added: one verification.  A question that does not offer the
    path's intermediate is verified afresh (and refused: there is no path)."""
    other = make_cert("unrelated", ca=True)[0]
    _verify(tree)
    wider = verify_chain(
        tree["leaf"], intermediates=[other, tree["leaf"], tree["inter"]], anchors=[tree["root"]], now=NOW, role=Role.IDEVID
    )
    assert wider == [tree["leaf"], tree["inter"], tree["root"]]
    assert len(counted) == 1
    with pytest.raises(ChainInvalid):
        verify_chain(tree["leaf"], intermediates=[other], anchors=[tree["root"]], now=NOW, role=Role.IDEVID)
    assert len(counted) == 2
