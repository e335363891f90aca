"""The EST gate of RFC 8995 5.8.3 (registrar.admission.AdmissionControl.enroll_gate_on).

The latest audit log of the device is read on every EST request (with the
request's other facts, ``est_facts``) and handed to the gate; the verdict
on a log is remembered by its bytes, so each device gets the verdict on its
own latest log, whichever other device asked before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from brski.auditlog import AuditEvent, AuditLog
from brski.errors import PolicyRefused
from brski_storage.base import ApprovalRecord, AuditLogRecord, RegistrarStore
from registrar.admission import AdmissionControl, AdmissionPolicy

OWN = "b3du"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _log(*domains: tuple[str, str | None]) -> bytes:
    return AuditLog(
        events=tuple(
            AuditEvent(date=NOW, domain_id=domain, nonce=nonce, assertion="proximity") for domain, nonce in domains
        )
    ).to_json()


CLEAN = _log((OWN, "bm9uY2U"))
# RFC 8995 5.8.3: a nonceless entry by another domain is always refused.
TAKEN = _log((OWN, "bm9uY2U"), ("b3RoZXI", None))


class _Store:
    """Each device's newest audit log, as ``est_facts(gate=True)`` reads it."""

    def __init__(self) -> None:
        self.logs: dict[str, bytes] = {}

    def approval(self, serial: str) -> ApprovalRecord | None:
        return None

    def latest_audit_log(self, serial: str) -> AuditLogRecord | None:
        body = self.logs.get(serial)
        return None if body is None else AuditLogRecord(id=1, serial=serial, fetched_at=NOW, body=body)


def _gate() -> tuple[AdmissionControl, _Store]:
    store = _Store()
    control = AdmissionControl(store=cast(RegistrarStore, store), policy=AdmissionPolicy(), own_domain_id=OWN)
    return control, store


def _check(control: AdmissionControl, store: _Store, serial: str) -> str | None:
    """None when the gate lets ``serial`` enrol, else the refusal's check."""
    try:
        control.enroll_gate_on(serial, approval=store.approval(serial), audit_log=store.latest_audit_log(serial))
    except PolicyRefused as exc:
        assert exc.extra.get("serial") == serial
        return exc.check
    return None


def test_each_device_gets_the_verdict_on_its_own_latest_log() -> None:
    control, store = _gate()
    store.logs = {"A": TAKEN, "B": CLEAN}
    for _ in range(3):  # in turn, so that a remembered verdict would show
        assert _check(control, store, "A") == "registrar.audit.nonceless-other-domain"
        assert _check(control, store, "B") is None
    store.logs["A"] = CLEAN  # a newer log for A
    store.logs["B"] = TAKEN
    assert _check(control, store, "A") is None
    assert _check(control, store, "B") == "registrar.audit.nonceless-other-domain"


def test_a_log_is_parsed_and_reviewed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    control, store = _gate()
    store.logs = {"A": CLEAN, "B": CLEAN, "C": TAKEN}
    reviewed: list[Any] = []
    real = control.review

    def spy(log: AuditLog) -> Any:
        reviewed.append(log)
        return real(log)

    monkeypatch.setattr(control, "review", spy)
    for _ in range(3):
        for serial in ("A", "B", "C"):
            _check(control, store, serial)
    assert len(reviewed) == 2  # one per distinct log, not one per request


def test_a_malformed_log_refuses_every_time() -> None:
    control, store = _gate()
    store.logs = {"A": b"{not json"}
    assert _check(control, store, "A") == "registrar.audit.malformed"
    assert _check(control, store, "A") == "registrar.audit.malformed"
