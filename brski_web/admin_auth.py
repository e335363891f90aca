"""Who is an admin: a TLS client certificate, checked the same way by every role.

The registrar's admin API and console and the MASA's console accept an
operator's client certificate when it chains to the role's admin trust
anchors and is configured by SHA-256 fingerprint or by RFC 4514 subject.
Each role adds its own rules on top (the registrar refuses the LDevIDs it
issued to devices). Refusals name the check that failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from cryptography import x509

from brski.errors import ChainInvalid, Forbidden, Unauthenticated
from brski.pki import Role, fingerprint_sha256, verify_chain

__all__ = ["admin_subject", "normalise_fingerprint"]


def normalise_fingerprint(value: str) -> str:
    return value.replace(":", "").strip().lower()


async def admin_subject(
    leaf: x509.Certificate | None,
    *,
    anchors: Sequence[x509.Certificate],
    subjects: Iterable[str],
    fingerprints: Iterable[str],
    now: datetime,
    what: str = "the admin API",
    role_check: Callable[[x509.Certificate], Awaitable[None]] | None = None,
) -> str:
    """The admin's RFC 4514 subject, or a refusal naming the failed check.

    ``role_check`` runs on a certificate whose chain is valid, before it is
    matched against the configured admins (a role's own refusals come first).
    """
    subjects, fingerprints = list(subjects), list(fingerprints)
    if not (subjects or fingerprints) or not anchors:
        raise Forbidden(f"{what} is not enabled (no admin_subjects or admin_fingerprints)", check="admin.disabled")
    if leaf is None:
        raise Unauthenticated(f"{what} needs an admin client certificate", check="admin.client-cert")
    try:
        # An end-entity client certificate: the LDevID profile's rules apply.
        verify_chain(leaf, anchors=list(anchors), now=now, role=Role.LDEVID)
    except ChainInvalid as exc:
        raise Forbidden(f"admin certificate not valid: {exc.detail}", check="admin.chain") from exc
    if role_check is not None:
        await role_check(leaf)
    subject = leaf.subject.rfc4514_string()
    pins = {normalise_fingerprint(f) for f in fingerprints}
    if normalise_fingerprint(fingerprint_sha256(leaf)) not in pins and subject not in subjects:
        raise Forbidden(f"{subject} is not an admin", check="admin.not-authorised")
    return subject
