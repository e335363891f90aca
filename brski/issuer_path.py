"""A leaf's certification path, its issuing CA's part taken from memory.

The MASA validates the IDevID that signed every pledge voucher-request
(RFC 8995 5.5.5: the serial-number it trusts is the one that certificate
carries). Every pledge brings a new IDevID, so ``verify_chain``'s memo never
hits on the whole path, yet the part above the IDevID (its manufacturer CA up
to a configured anchor) is the same for every device of a production run:
re-verifying it costs a signature verification and the path building each
time (isolated, this VM: the whole path 300-370 us a device, split as below
175-225 us).

:func:`verify_chain_via_issuer` splits RFC 5280 section 6.1 validation there:

* the issuing CA's path to the anchors, ``verify_chain(ca, role=Role.CA)``,
  remembered by ``verify_chain`` while every certificate on it is valid;
* the leaf's own link, validated per call by the same verifier with that CA
  as its one trust anchor: the CA's signature over the leaf, the leaf's
  validity at ``now``, its extensions (unknown critical ones refused), and
  the role rules.

The verifier holds its trust anchor to the CA extension policy (keyCertSign,
RFC 5280 4.2.1.3) and applies the anchor's own name constraints, so the CA's
rules on the leaf are kept. What a whole-path validation checks that neither
half sees is checked here: every pathLenConstraint above the CA must admit
the CA itself as one more intermediate (RFC 5280 4.2.1.9, 6.1.4 (l)-(m)).
Anything the split could answer differently falls back to the whole path
through ``verify_chain``: a path with name, policy or anyPolicy constraints
above the leaf (RFC 5280 4.2.1.10-11, 4.2.1.14: they bind the leaf's names
and policies to every CA above it, not only to its issuer), a long path, no
single offered issuer, a leaf issued directly by an anchor, and every refusal
(so the refusal names the same check and says the same thing as the
whole-path validation). tests/unit/test_issuer_path.py holds the two answers
equal case by case.

Why not trust the MASA's own device record instead (it holds the SHA-256 of
the exact IDevID it made, and the MASA refuses any other certificate,
``masa.idevid-mismatch``)? A byte-identical certificate is the one recorded,
but records are imported as given (``brski masa devices import`` validates no
signature), and the manufacturer anchors are a separate control: retiring a
CA from them must refuse the devices it issued. Only a signature by a CA that
chains to a configured anchor says that; the record alone would not, so it
replaces nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from brski.certfacts import cert_der, issuer_name_der, subject_name_der
from brski.errors import ChainInvalid
from brski.pki import Role, verify_chain

__all__ = ["verify_chain_via_issuer"]

# Extensions that bind a leaf to every CA above it (RFC 5280 4.2.1.10, 4.2.1.11,
# 4.2.1.14): a path carrying one is validated whole.
_WHOLE_PATH_EXTENSIONS = (x509.NameConstraints, x509.PolicyConstraints, x509.InhibitAnyPolicy)
# Longer paths are validated whole, well inside the verifier's own depth limit.
_MAX_UPPER = 6


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _upper_half_admits(upper: Sequence[x509.Certificate]) -> bool:
    """True when the CA's own path (``upper``: the CA first, the anchor last)
    makes the split equivalent to the whole path."""
    for above, cert in enumerate(upper):
        if any(_ext(cert, kind) is not None for kind in _WHOLE_PATH_EXTENSIONS):
            return False
        if above:
            # RFC 5280 6.1.4 (l)-(m): in the whole path, ``above`` CAs follow
            # this one (the CA and those between); verify_chain counted one fewer.
            bc = _ext(cert, x509.BasicConstraints)
            if isinstance(bc, x509.BasicConstraints) and bc.path_length is not None and bc.path_length < above:
                return False
    return True


def verify_chain_via_issuer(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate] = (),
    anchors: Sequence[x509.Certificate],
    now: datetime,
    role: Role,
) -> list[x509.Certificate]:
    """``verify_chain``'s answer (leaf first), its issuing CA's path remembered.

    Same arguments, same result and same refusals as
    :func:`brski.pki.verify_chain`; see the module docstring for why.
    """

    def whole() -> list[x509.Certificate]:
        return verify_chain(leaf, intermediates=intermediates, anchors=anchors, now=now, role=role)

    leaf_der = cert_der(leaf)
    offered = [c for c in intermediates if c is not leaf and cert_der(c) != leaf_der]
    if len(offered) > 1:  # several: the issuer by name, and only if one has it
        wanted = issuer_name_der(leaf)
        offered = [c for c in offered if subject_name_der(c) == wanted]
    # Not offered, or a leaf issued by an anchor: nothing above the leaf to remember.
    anchor_ders = {cert_der(a) for a in anchors}
    if len(offered) != 1 or cert_der(offered[0]) in anchor_ders or leaf_der in anchor_ders:
        return whole()
    ca = offered[0]
    others = [c for c in intermediates if c is not ca and c is not leaf and cert_der(c) != leaf_der]
    try:
        upper = verify_chain(ca, intermediates=others, anchors=anchors, now=now, role=Role.CA)
        if not _admits(upper):
            return whole()
        # The one certificate that signed the leaf: a candidate that did not
        # (a leaf issued by someone else) is refused here and decided whole.
        lower = verify_chain(leaf, anchors=[ca], now=now, role=role)
    except ChainInvalid:
        return whole()  # the whole path's own refusal, named and worded as ever
    return [lower[0], *upper]


# upper path (DER, the CA first) -> _upper_half_admits; its certificates never
# change, so neither does the answer.
_admitted: dict[tuple[bytes, ...], bool] = {}


def _admits(upper: Sequence[x509.Certificate]) -> bool:
    key = tuple(cert_der(c) for c in upper)
    known = _admitted.get(key)
    if known is None:
        if len(_admitted) >= 64:
            _admitted.clear()
        known = _admitted[key] = len(upper) <= _MAX_UPPER and _upper_half_admits(upper)
    return known
