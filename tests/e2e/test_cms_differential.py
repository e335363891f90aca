"""OpenSSL as a second opinion on every structural mutation of a genuine voucher.

``openssl cms -verify -noverify`` checks structure and signature only (no
chain), which is exactly what :func:`brski.cms.verify` answers. Rule: what
OpenSSL refuses, we refuse. We may be stricter (RFC 5652 CMSVersion values,
signature algorithms that name another hash than digestAlgorithm, attribute
certificates, an empty unsignedAttrs), and the stricter cases are printed,
not failed, since each is a rule cited where it is enforced.

Justified exceptions: none among the mutations. Outside them, one known
class: inside a carried certificate, a Name attribute value that is not a
valid DirectoryString (an invalid UTF8String, a tag such as 0x0e) is refused
by OpenSSL's X509_NAME decoder while decoding the message, and left to
whoever reads the name by cryptography, which decodes names lazily.
Certificate contents are the chain validator's business (brski.pki), not
the CMS layer's, and such a certificate cannot carry a genuine issuer's
signature; the byte flips therefore skip the certificates.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from brski import cms
from brski.errors import BrskiError
from tests.cms_helpers import VOUCHER_JSON, _cert, _key, _name
from tests.cms_mutations import mutations

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not available")

# Mutations OpenSSL refuses and we accept on purpose, with the reason (empty: none).
JUSTIFIED: dict[str, str] = {}


def _openssl_accepts(tmp: Path, der: bytes, index: int = 0) -> bytes | None:
    path = tmp / f"m{index}.der"
    path.write_bytes(der)
    result = subprocess.run(
        [str(OPENSSL), "cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in", str(path)],
        capture_output=True,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def test_we_refuse_every_mutation_openssl_refuses(tmp_path: Path) -> None:
    ca_key = _key("p256", 1)
    ca = _cert(ca_key, cn="differential CA", serial=1)
    key = _key("p256")
    cert = _cert(key, cn="differential MASA", serial=77, issuer=(_name("differential CA"), ca_key))
    genuine = cms.sign(VOUCHER_JSON, key=key, cert=cert, chain=[ca])
    assert _openssl_accepts(tmp_path, genuine) == VOUCHER_JSON
    assert cms.verify(genuine).content == VOUCHER_JSON

    cases = list(mutations(genuine))
    # Two cores: two OpenSSL processes at a time halve the wall time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = list(pool.map(lambda i: _openssl_accepts(tmp_path, cases[i][1], i), range(len(cases))))
    total = 0
    openssl_refused = 0
    missed: list[str] = []
    stricter: list[str] = []
    for (name, der), theirs in zip(cases, verdicts, strict=True):
        total += 1
        try:
            ours: bytes | None = cms.verify(der).content
        except BrskiError as exc:
            ours = None
            refusal = exc.check
        if theirs is None:
            openssl_refused += 1
            if ours is not None and name not in JUSTIFIED:
                missed.append(name)
        elif ours is None:
            stricter.append(f"{name}: {refusal}")
        else:
            assert ours == theirs, name  # both accept: the same content
    print(f"{total} mutations, OpenSSL refused {openssl_refused}; stricter than OpenSSL on:")
    print("\n".join(f"  {line}" for line in stricter))
    assert total >= 300
    assert openssl_refused >= 150  # the mutations do exercise refusals
    assert not missed, f"accepted although OpenSSL refuses: {missed}"
