"""``brski pledge conformance`` judged against a mock registrar that behaves as others do.

Each mock answers as a registrar we did not write was seen to answer (NIST SP
1800-36 Build 5's), over real TLS, and the suite's verdict is checked:

* telemetry (RFC 8995 5.7, 5.9.4): 200 or 404 is allowed and "the client
  ignores any response": reported, never a failure;
* a registrar that refuses every voucher-request with one answer makes the
  refusal cases that get that same answer inconclusive, not passed;
* ``reenroll-forged-ldevid`` with a /cacerts that answers 404 checks the
  status before parsing, and still runs;
* ``vr-foreign-proximity-cert`` and ``vr-assertion-not-proximity`` pass only
  on a 401 followed by the server closing the connection (RFC 8995 5.2).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from brski.devpki import DevPki, build_dev_pki
from brski.oids import MT_PROBLEM_JSON, MT_VOUCHER_CMS_JSON
from brski.pki import load_certs
from brski_web.serve import server_tls
from brski_web.tls import TlsServerConfig, bound_port, start_tls_server
from pledge_sim.config import load_config
from pledge_sim.conformance import CASES, CaseResult, Suite, make_stranger, run_suite
from pledge_sim.fleet import load_idevid_dir

VR = "/.well-known/brski/requestvoucher"


@dataclass
class Behaviour:
    """How the mock answers; every field is one way a registrar was seen to behave."""

    voucher: str = "refuse-403"  # "refuse-403" | "401-close" | "401-open" | "400"
    telemetry_status: int = 404
    cacerts_status: int = 404


def mock_registrar(b: Behaviour) -> web.Application:
    async def request_voucher(request: web.Request) -> web.Response:
        await request.read()
        if request.content_type != MT_VOUCHER_CMS_JSON:
            return web.Response(status=415, text="unsupported media type (check: mock.content-type)\n")
        if b.voucher == "refuse-403":
            doc = {"title": "Forbidden", "status": 403, "detail": "no", "check": "mock.refused"}
            return web.Response(status=403, body=json.dumps(doc).encode(), content_type=MT_PROBLEM_JSON)
        if b.voucher in ("401-close", "401-open"):
            resp = web.Response(status=401, text="not for me (check: mock.proximity)\n",
                                headers={"WWW-Authenticate": 'TLS-Client-Certificate realm="mock"'})
            if b.voucher == "401-close":
                resp.force_close()
            return resp
        return web.Response(status=400, text="bad (check: mock.bad)\n")

    async def telemetry(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=b.telemetry_status, text="" if b.telemetry_status == 200 else "Not Found\n")

    async def cacerts(request: web.Request) -> web.Response:
        return web.Response(status=b.cacerts_status, text="404: Not Found")

    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=403, text="forbidden (check: mock.forbidden)\n")

    app = web.Application()
    app.router.add_post(VR, request_voucher)
    app.router.add_post("/.well-known/brski/voucher_status", telemetry)
    app.router.add_post("/.well-known/brski/enrollstatus", telemetry)
    app.router.add_get("/.well-known/est/cacerts", cacerts)
    app.router.add_post("/.well-known/est/simpleenroll", refuse)
    app.router.add_post("/.well-known/est/simplereenroll", refuse)
    return app


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("judging")
    pki: DevPki = build_dev_pki(pledges=2, masa_url="https://localhost:1", now=datetime.now(UTC) - timedelta(minutes=5))
    for rel, data in pki.files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    yield root


def judge(pki_dir: Path, behaviour: Behaviour, names: list[str]) -> dict[str, CaseResult]:
    """Serve the mock over real TLS, run the named cases in suite order, return their results."""

    async def run() -> list[CaseResult]:
        runner = web.AppRunner(mock_registrar(behaviour), access_log=None, handle_signals=False)
        await runner.setup()
        tls = server_tls("pyopenssl", cert=pki_dir / "registrar/tls.crt", key=pki_dir / "registrar/tls.key",
                         client_cas=[pki_dir / "manufacturer/root-ca.crt"], client_auth="optional")
        assert runner.server is not None
        assert isinstance(tls, TlsServerConfig)  # the pyopenssl backend's settings
        server = await start_tls_server(runner.server, host="127.0.0.1", port=0, cfg=tls)
        try:
            anchor = pki_dir / "manufacturer/root-ca.crt"
            # The timeout only bounds a registrar that never closes the connection.
            cfg = load_config(None, {"registrar": f"https://127.0.0.1:{bound_port(server)}", "anchor": [str(anchor)],
                                     "timeout": 3.0}, purpose="reenroll")
            pledges = load_idevid_dir(pki_dir / "pledges")
            suite = Suite(cfg=cfg, anchors=load_certs(anchor.read_bytes()), device=pledges[0], second=pledges[1],
                          stranger=make_stranger())
            return await run_suite(suite, cases=[c for c in CASES if c.name in names])
        finally:
            server.close()
            await runner.cleanup()

    results = {r.name: r for r in asyncio.run(run())}
    assert sorted(results) == sorted(names)
    return results


TELEMETRY = ["voucher-status-unknown-device", "voucher-status-other-device", "enroll-status-unknown-device",
             "telemetry-wrong-content-type"]


@pytest.mark.parametrize("status", [200, 404])
def test_telemetry_answers_are_reported_never_failed(pki_dir: Path, status: int) -> None:
    """RFC 8995 5.7 / 5.9.4: "SHOULD respond with an HTTP 200 but MAY simply fail with an HTTP 404"."""
    results = judge(pki_dir, Behaviour(telemetry_status=status), TELEMETRY)
    for name in TELEMETRY:
        assert results[name].outcome == "report", results[name]
        assert results[name].observed.startswith(str(status)), results[name]


def test_refusals_that_repeat_the_happy_path_failure_are_inconclusive(pki_dir: Path) -> None:
    """A registrar refusing every voucher-request with 403 proves nothing by refusing a bad one."""
    names = ["happy-path", "vr-wrong-serial-number", "vr-nonce-missing", "vr-wrong-content-type"]
    results = judge(pki_dir, Behaviour(voucher="refuse-403"), names)
    assert results["happy-path"].outcome == "fail"
    assert "HTTP 403" in results["happy-path"].observed
    for name in ("vr-wrong-serial-number", "vr-nonce-missing"):
        assert results[name].outcome == "inconclusive", results[name]
        assert results[name].observed.startswith("403 mock.refused")
    # A different answer (415 for the wrong Content-Type) is still judged.
    assert results["vr-wrong-content-type"].outcome == "pass", results["vr-wrong-content-type"]


def test_forged_ldevid_case_checks_the_cacerts_status(pki_dir: Path) -> None:
    """/cacerts answering 404 is not parsed as certificates; the case still runs."""
    results = judge(pki_dir, Behaviour(cacerts_status=404), ["reenroll-forged-ldevid"])
    r = results["reenroll-forged-ldevid"]
    assert r.outcome == "pass", r
    assert r.observed.startswith("403 mock.forbidden") and "/cacerts answered 404" in r.observed


@pytest.mark.parametrize(
    ("voucher", "outcome", "observed"),
    [
        ("401-close", "pass", "401 mock.proximity, connection closed"),
        ("401-open", "fail", "401 mock.proximity, connection left open"),
        ("400", "fail", "400 mock.bad, connection left open"),
    ],
)
def test_proximity_cases_need_401_and_a_closed_connection(
    pki_dir: Path, voucher: str, outcome: str, observed: str
) -> None:
    names = ["vr-foreign-proximity-cert", "vr-assertion-not-proximity"]
    results = judge(pki_dir, Behaviour(voucher=voucher), names)
    for name in names:
        assert (results[name].outcome, results[name].observed) == (outcome, observed), results[name]
