"""The approval queue and first-use manufacturers on a running registrar.

The queue (RFC 8995 5.6): an unlisted device gets 202 with Retry-After of at
most 60 s until an operator runs ``brski registrar devices approve|reject``
against the store the running server reads. First use: an IDevID from a
manufacturer no anchor covers is admitted once and its issuer pinned; a
different certificate under the same issuer name is refused afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from cryptography.x509 import Certificate

from brski.pki import cert_der
from registrar.cli import main as registrar_cli
from tests.protocol.helpers import post_vr
from tests.protocol.net import (
    Net,
    issue,
    other_manufacturer,
    pledge_request,
    running_net,
    write_identity,
)

ALLOWED = "PLG-000010"


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Net]:
    with running_net(
        tmp_path_factory.mktemp("policy"),
        engine,
        request,
        pledges=12,
        registrar={
            "unlisted_devices": "queue",
            "approval_retry_after_s": 45,
            "allow_serials": [ALLOWED],
            "manufacturers": [{"name": "anyone", "policy": "first-use"}],
        },
    ) as n:
        n.reserved.add(ALLOWED)
        yield n


def _cli(net: Net, *args: str) -> int:
    return registrar_cli(["devices", *args, "--database", net.db_url("registrar")])


def test_unlisted_device_waits_in_the_queue_until_approved(net: Net) -> None:
    serial = net.fresh_serial()
    me = net.pledge(serial)
    for _ in range(2):  # asking again changes nothing until an operator decides
        reply = post_vr(net, me, pledge_request(net, me))
        assert reply.status == 202 and reply.check == "registrar.approval-pending", reply.body[:200]
        assert 1 <= int(reply.headers["retry-after"]) <= 60
    assert net.count("masa", "vouchers") == 0 or net.rows("masa", "SELECT count(*) FROM vouchers WHERE serial = ?", (serial,)) == [(0,)]
    assert net.rows("registrar", "SELECT decision FROM device_approvals WHERE serial = ?", (serial,)) == [("pending",)]
    assert ("info", "registrar.approval-pending") in net.rows(
        "registrar", "SELECT outcome, check_name FROM events WHERE device_serial = ?", (serial,))
    assert net.rows("registrar", "SELECT state FROM devices WHERE serial = ?", (serial,)) == [("awaiting-approval",)]
    assert _cli(net, "approve", serial, "--by", "test") == 0
    result = net.enroll(serial)
    assert result.ok, (result.failed_check, result.detail)
    # The lifecycle shows the wait, recorded once however often the pledge asked.
    assert net.rows(
        "registrar", "SELECT from_state, to_state FROM device_transitions WHERE serial = ? ORDER BY id", (serial,)
    )[:3] == [(None, "discovered"), ("discovered", "awaiting-approval"), ("awaiting-approval", "voucher-obtained")]
    assert net.rows("registrar", "SELECT check_name FROM events WHERE kind = 'admission.decided' AND device_serial = ?",
                    (serial,)) == [("registrar.approval-approved",)]


def test_the_reference_pledge_retries_while_pending_then_gives_up(net: Net) -> None:
    result = net.enroll(net.fresh_serial(), max_voucher_attempts=2)
    assert not result.ok and result.failed_check == "pledge.voucher-retries-exhausted"


def test_allow_listed_device_skips_the_queue(net: Net) -> None:
    result = net.enroll(ALLOWED)
    assert result.ok, (result.failed_check, result.detail)
    assert net.rows("registrar", "SELECT check_name FROM events WHERE kind = 'admission.decided' AND device_serial = ?",
                    (ALLOWED,)) == [("registrar.serial-allowed",)]


def test_rejected_while_pending_is_refused(net: Net) -> None:
    serial = net.fresh_serial()
    me = net.pledge(serial)
    assert post_vr(net, me, pledge_request(net, me)).status == 202
    assert _cli(net, "reject", serial, "--by", "test") == 0
    reply = post_vr(net, me, pledge_request(net, me))
    assert reply.status == 403 and reply.check == "registrar.approval-rejected"


def test_first_use_pins_an_unknown_manufacturer(net: Net) -> None:
    pki = other_manufacturer(net.root / "tofu")
    s = pki.pledge_serials[0]
    first = write_identity(net.root, "tofu-1", pki.cert(f"pledges/{s}/idevid.crt"), pki.key(f"pledges/{s}/idevid.key"),
                           tuple(pki.certs(f"pledges/{s}/chain.pem")))
    assert _cli(net, "approve", s, "--by", "test") == 0
    reply = post_vr(net, first, pledge_request(net, first))
    # Admitted and pinned; our MASA did not make it, so the MASA refuses it upstream.
    assert reply.status == 403 and reply.check == "masa.chain.untrusted", reply.body[:200]
    issuer = pki.cert("manufacturer/idevid-ca.crt")
    assert net.rows("registrar", "SELECT cert_der FROM pinned_manufacturers WHERE issuer = ?",
                    (issuer.subject.rfc4514_string(),)) == [(cert_der(issuer),)]
    assert net.rows("registrar", "SELECT check_name FROM events WHERE kind = 'admission.decided' AND device_serial = ?",
                    (s,)) == [("registrar.approval-approved",)]
    # An impostor CA with the same name: refused against the pin.
    fake_ca, fake_key = issue(issuer.subject, issuer_cert=None, issuer_key=None, ca=True)
    cert, key = issue(pki.cert(f"pledges/{s}/idevid.crt").subject, issuer_cert=fake_ca, issuer_key=fake_key)
    impostor = write_identity(net.root, "tofu-impostor", cert, key, (fake_ca,))
    reply = post_vr(net, impostor, pledge_request(net, impostor))
    assert reply.status == 403 and reply.check == "registrar.first-use.pin-mismatch", reply.body[:200]


def test_network_access_hears_of_an_idevid_only_once_its_device_is_on_record(net: Net) -> None:
    """The device row rides with the voucher decision, so network access
    (RFC 8520 10: the MUD URL an IDevID names) is told after that commit for
    a new device, before the decision for a known one, never for a device a
    refusal left unrecorded."""
    vouchers = net.registrar.vouchers
    heard: list[tuple[str, bool]] = []

    async def note(serial: str, idevid: Certificate, now: datetime) -> None:
        heard.append((serial, await vouchers.store.get_device(serial) is not None))

    saved, vouchers.on_idevid = vouchers.on_idevid, note
    try:
        serial = net.fresh_serial()
        me = net.pledge(serial)
        assert post_vr(net, me, pledge_request(net, me)).status == 202  # new device, parked
        assert heard == [(serial, True)]
        assert _cli(net, "approve", serial, "--by", "test") == 0
        assert net.enroll(serial).ok  # known device, forwarded
        assert heard == [(serial, True), (serial, True)]
    finally:
        vouchers.on_idevid = saved
