"""The two CMS extractors must agree: a fast path may never see a different message.

``brski.cms`` reads plain DER directly and leaves every other form to
asn1crypto; the checks then run on what either extracted. These tests prove
the fast path is really taken for what BRSKI peers send, and that wherever
it is taken it extracts exactly what asn1crypto does: on every published CMS
vector, on artifacts signed here with each key type and signer-id kind, and on
mutations of them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from brski import cms, cms_parts, oids
from brski.asn1 import NotPlainDer, check_der
from brski.errors import BrskiError
from tests import VECTORS
from tests.cms_helpers import _signed
from tests.cms_mutations import mutations

CMS_VECTORS = sorted(
    [
        *VECTORS.glob("rfc8995/*_00-D0-E5-F2-00-02.der"),
        *VECTORS.glob("rfc8366bis/*.pkcs"),
        *VECTORS.glob("interop-minerva/*.der"),
        *VECTORS.glob("interop-minerva/*.pkcs"),
    ]
)


ACCEPTED = (oids.ID_CT_ANIMA_JSON_VOUCHER, oids.ID_DATA)


def _both(der: bytes) -> tuple[object, object]:
    return cms_parts.extract_plain_der(der), cms_parts.extract_asn1crypto(der)


@pytest.mark.parametrize("path", CMS_VECTORS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_published_vectors_extract_identically(path: Path) -> None:
    der = path.read_bytes()
    check_der(der)
    try:
        fast = cms_parts.extract_plain_der(der)
    except NotPlainDer:
        pytest.skip("not plain DER: only asn1crypto reads it")
    assert fast == cms_parts.extract_asn1crypto(der)


def test_most_published_vectors_take_the_fast_path() -> None:
    fast = 0
    for path in CMS_VECTORS:
        try:
            cms_parts.extract_plain_der(path.read_bytes())
            fast += 1
        except NotPlainDer:
            pass
    assert fast >= len(CMS_VECTORS) - 2, f"only {fast} of {len(CMS_VECTORS)} on the fast path"


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "rsa"])
@pytest.mark.parametrize("signer_id", ["issuer-serial", "ski"])
def test_our_artifacts_take_the_fast_path_and_agree(kind: str, signer_id: str) -> None:
    der, _, _ = _signed(kind, signer_id=signer_id)
    fast, slow = _both(der)
    assert fast == slow


def test_mutations_never_make_the_paths_disagree() -> None:
    """Flip bytes: either the fast path declines, or both paths see the same thing."""
    rng = random.Random(8995)
    seeds = [p.read_bytes() for p in CMS_VECTORS] + [_signed("p256")[0]]
    agreed = declined = 0
    for _ in range(1500):
        der = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            der[rng.randrange(len(der))] = rng.randrange(256)
        data = bytes(der)
        try:
            check_der(data)
        except BrskiError:
            continue
        try:
            fast = cms_parts.extract_plain_der(data)
        except (NotPlainDer, BrskiError):
            declined += 1
            continue
        try:
            slow = cms_parts.extract_asn1crypto(data)
        except Exception:  # asn1crypto refuses what the fast path read
            slow = None
        if slow is None:
            # Acceptable only when the checks refuse it anyway.
            with pytest.raises(BrskiError):
                cms._check_parts(fast, extra_certs=(), content_types=ACCEPTED)
            continue
        assert fast == slow
        agreed += 1
    assert agreed > 100 and declined > 0


def _outcome(extract: Any, der: bytes) -> object:
    try:
        return extract(der)
    except NotPlainDer:
        return NotPlainDer
    except BrskiError as exc:
        return exc.check


def test_structural_mutations_get_one_answer_from_both_paths() -> None:
    """Elements added, dropped, duplicated or swapped anywhere in the CMS
    layers: both extractors refuse with the same check, or read the same
    parts (the fast path may leave BER to the other, never decide otherwise)."""
    der, _, _ = _signed("p256")
    refused: set[str] = set()
    compared = 0
    for name, data in mutations(der, flips=200):
        try:
            check_der(data)
        except BrskiError:
            continue
        fast = _outcome(cms_parts.extract_plain_der, data)
        slow = _outcome(cms_parts.extract_asn1crypto, data)
        if fast is NotPlainDer:
            continue
        assert fast == slow, name
        compared += 1
        if isinstance(fast, str):
            refused.add(fast)
    assert compared > 300
    # The walk names what it refuses (RFC 5652 sections 5.1-5.3, 10.2).
    assert {"cms.structure", "cms.version", "cms.certificates", "cms.crls", "cms.unsigned-attrs"} <= refused
