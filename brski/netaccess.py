"""May this device use the operational network now? The registrar as policy
decision point for IEEE 802.1X (pure: facts in, a :class:`Decision` out).

The RADIUS server has already run EAP-TLS (RFC 5216 5.3): the client
certificate chains to the domain CA, is within its validity and is not
revoked according to OCSP. It then asks the registrar, which knows what the
RADIUS server cannot: whether the certificate is one this registrar issued,
the device's lifecycle state, and the operator's policy for the device's
class. Every answer names the rule that made it; that name is stored with
the event (SP 1800-36 "continuous assurance": the evidence says why a device
was let on, or kept off, the network).

The same function decides again whenever a fact changes (a revocation, a
decommission, a class moved out of the allowed set): a session whose
decision turns into a refusal is cut off with an RFC 5176 Disconnect-Request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from brski.admission import Decision
from brski.errors import ConfigError

__all__ = ["MUD_FAILURE_POLICIES", "OPERATIONAL_STATES", "AccessPolicy", "mud_gate", "network_access"]

# The lifecycle states in which a device holds a current LDevID of this
# domain (brski.lifecycle.DeviceState): only these may join.
OPERATIONAL_STATES = frozenset({"enrolled", "renewed"})
_CLASS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


@dataclass(frozen=True, kw_only=True)
class AccessPolicy:
    """The operator's network-access policy per device class.

    ``allowed_classes`` empty: every class not in ``denied_classes`` may join.
    ``default_class``: the class of a device nobody classified (no MUD file
    and no operator setting).
    """

    allowed_classes: frozenset[str] = field(default_factory=frozenset)
    denied_classes: frozenset[str] = field(default_factory=frozenset)
    default_class: str = "default"

    def __post_init__(self) -> None:
        for name in (*self.allowed_classes, *self.denied_classes, self.default_class):
            if not name or not set(name) <= _CLASS_CHARS or len(name) > 64:
                raise ConfigError(f"device class {name!r}: 1..64 of [A-Za-z0-9-_.:]", check="config.netaccess-class")
        both = self.allowed_classes & self.denied_classes
        if both:
            raise ConfigError(f"classes both allowed and denied: {sorted(both)}", check="config.netaccess-class")


def network_access(
    *,
    cert_known: bool,
    cert_state: str | None,
    device_state: str | None,
    device_class: str,
    policy: AccessPolicy,
) -> Decision:
    """Decide whether the holder of an EAP-TLS client certificate may join.

    ``cert_known``: the certificate's serial is one this registrar issued
    (an IDevID, or an LDevID of another domain CA, is not, even when some
    RADIUS server was configured to trust its issuer). ``cert_state``:
    "issued" or "revoked". ``device_state``: the device's lifecycle state.
    Refusals come first, in the order an auditor reads them.
    """
    if not cert_known:
        return Decision(
            allow=False,
            rule="netaccess.certificate-unknown",
            detail="the client certificate is not an LDevID this registrar issued (RFC 8995 5.9.3)",
        )
    if cert_state == "revoked":
        return Decision(allow=False, rule="netaccess.certificate-revoked", detail="the LDevID is revoked (RFC 5280 5.3.1)")
    if cert_state != "issued":
        return Decision(allow=False, rule="netaccess.certificate-not-issued", detail=f"certificate state {cert_state!r}")
    if device_state not in OPERATIONAL_STATES:
        return Decision(
            allow=False,
            rule=f"netaccess.device-{device_state or 'unknown'}",
            detail=f"device state {device_state!r} is not one of {sorted(OPERATIONAL_STATES)}",
        )
    if device_class in policy.denied_classes:
        return Decision(allow=False, rule="netaccess.class-denied", detail=f"class {device_class!r} is denied")
    if policy.allowed_classes and device_class not in policy.allowed_classes:
        return Decision(
            allow=False, rule="netaccess.class-not-allowed", detail=f"class {device_class!r} is not in the allowed classes"
        )
    return Decision(
        allow=True,
        rule="netaccess.allowed",
        detail=f"{device_state} device of class {device_class!r} with a current LDevID",
    )


MUD_FAILURE_POLICIES = ("deny", "default")


def mud_gate(*, mud_url: str | None, profile_ok: bool, failure_policy: str, problem: str | None = None) -> Decision:
    """RFC 8520 for a device the class policy already allows: its MUD file
    must have been fetched and verified, or the configured failure policy
    decides: "deny" keeps it off the network, "default" lets it on with the
    operator's default profile."""
    if mud_url is None:
        return Decision(allow=True, rule="netaccess.mud-none", detail="the IDevID names no MUD URL")
    if profile_ok:
        return Decision(allow=True, rule="netaccess.mud-profile", detail=f"MUD profile of {mud_url}")
    if failure_policy == "default":
        return Decision(allow=True, rule="netaccess.mud-default-profile",
                        detail=f"MUD file {mud_url} unusable ({problem}): default profile")
    return Decision(allow=False, rule="netaccess.mud-unavailable",
                    detail=f"MUD file {mud_url} unusable ({problem}) and mud_failure is deny")
