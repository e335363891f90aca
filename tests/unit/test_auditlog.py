"""The RFC 8995 5.8.1 audit log model (brski.auditlog): what the MASA sends, what the
registrar accepts, and the 5.8.3 review over it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from brski.admission import audit_log_review
from brski.auditlog import AuditEvent, AuditLog, Truncation
from brski.errors import MalformedInput

# The example of RFC 8995 5.8.1 (Figure 19), numbers as strings as printed there.
RFC_EXAMPLE = b"""{
  "version":"1",
  "events":[
    {"date":"2019-05-15T17:25:55.644-04:00", "domainID":"BduJhdHPpfhQLyponf48JzXSGZ8=",
     "nonce":"VOUFT-WwrEv0NuAQEHoV7Q", "assertion":"proximity", "truncated":"0"},
    {"date":"2017-05-15T17:25:55.644-04:00", "domainID":"BduJhdHPpfhQLyponf48JzXSGZ8=",
     "nonce":"f4G6Vi1t8nKo/FieCVgpBg==", "assertion":"proximity"}
  ],
  "truncation": {"nonced duplicates": "0", "nonceless duplicates": "1", "arbitrary": "2"}
}"""


def test_the_rfc_example_parses() -> None:
    log = AuditLog.from_json(RFC_EXAMPLE)
    assert log.version == 1 and len(log.events) == 2
    assert log.events[0].domain_id == "BduJhdHPpfhQLyponf48JzXSGZ8=" and log.events[0].date.utcoffset() is not None
    assert log.truncation == Truncation(nonceless_duplicates=1, arbitrary=2)


def test_we_send_what_the_cddl_says_and_read_it_back() -> None:
    log = AuditLog(events=(
        AuditEvent(date=datetime(2026, 12, 2, 12, 0, tzinfo=UTC), domain_id="ZG9t", nonce=None, assertion="logged"),
        AuditEvent(date=datetime(2026, 12, 2, 12, 5, tzinfo=UTC), domain_id="ZG9t", nonce="bm9uY2U", assertion="proximity", truncated=3),
    ))
    doc = json.loads(log.to_json())
    assert doc["version"] == 1 and doc["events"][0]["nonce"] is None  # null, not omitted
    assert doc["events"][0]["date"] == "2026-12-02T12:00:00Z" and doc["events"][1]["truncated"] == 3
    assert doc["truncation"] == {"nonced duplicates": 0, "nonceless duplicates": 0, "arbitrary": 0}
    assert AuditLog.from_json(log.to_json()) == log


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"version": 1}',
        b'{"version": 0, "events": []}',
        b'{"version": true, "events": []}',
        b'{"version": 1, "events": [{"date": "yesterday", "domainID": "x", "nonce": null, "assertion": "logged"}]}',
        b'{"version": 1, "events": [{"date": "2026-01-01T00:00:00", "domainID": "x", "nonce": null, "assertion": "logged"}]}',
        b'{"version": 1, "events": [{"date": "2026-01-01T00:00:00Z", "domainID": "x", "nonce": 7, "assertion": "logged"}]}',
        b'{"version": 1, "events": [{"date": "2026-01-01T00:00:00Z", "domainID": "x", "nonce": null, "assertion": "trusted"}]}',
        b'{"version": 1, "events": [{"date": "2026-01-01T00:00:00Z", "domainID": "x", "nonce": null, "assertion": "logged", "truncated": -1}]}',
        b'{"version": 1, "events": [], "truncation": {"arbitrary": "many"}}',
        b'{"version": 1, "events": [7]}',
    ],
)
def test_off_the_cddl_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedInput) as info:
        AuditLog.from_json(body)
    assert info.value.check == "auditlog.malformed"


def test_review_reads_typed_events() -> None:
    log = AuditLog.from_json(RFC_EXAMPLE)
    own = log.events[0].domain_id
    assert audit_log_review(events=log.events, own_domain=own, allowed_domains=(), other_domains="refuse").allow
    refused = audit_log_review(events=log.events, own_domain="b3RoZXI=", allowed_domains=(), other_domains="refuse")
    assert not refused.allow and refused.rule == "registrar.audit.unexpected-domain"
    nonceless = AuditLog(events=(
        AuditEvent(date=datetime(2026, 1, 1, tzinfo=UTC), domain_id="ZXZpbA==", nonce=None, assertion="logged"),
    ))
    decision = audit_log_review(events=nonceless.events, own_domain=own, allowed_domains=(), other_domains="allow-nonced")
    assert not decision.allow and decision.rule == "registrar.audit.nonceless-other-domain"
