"""End to end: /metrics, /healthz and /readyz of both servers during a fleet run.

The fleet onboards COUNT generated pledges while /metrics is scraped; the
final counters must add up to what the fleet reports and what the stores
hold: one onboarding, one enrolment and one MASA round trip per pledge, on
both sides; plus exactly the refusals and refused handshakes sent on purpose.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from brski_cli.lab import Lab, ensure_dev_pki, free_port
from tests.e2e.labtools import engine_databases, post, rows
from tests.tls_old import restrict_to_tls11

COUNT = 16
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def metrics_lab(tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("metricslab")
    masa_port, registrar_port = free_port(), free_port()
    certs = root / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url=f"https://localhost:{masa_port}")
    lab = Lab(
        workdir=root / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
        masa_metrics_port=free_port(), registrar_metrics_port=free_port(), **engine_databases(engine, request),
    )
    lab.up()
    yield lab
    lab.stop_all()


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def scrape(port: int) -> Samples:
    status, body = _get(port, "/metrics")
    assert status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def _tls11_handshake(port: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if not restrict_to_tls11(ctx):
        pytest.skip("the local OpenSSL cannot offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw).close()


def test_health_and_readiness(metrics_lab: Lab) -> None:
    for port, role, keys in (
        (metrics_lab.masa_metrics_port, "masa", {"key:voucher-signer"}),
        (metrics_lab.registrar_metrics_port, "registrar", {"key:domain-ca", "key:ra"}),
    ):
        status, body = _get(port, "/healthz")
        assert status == 200 and json.loads(body)["role"] == role
        status, body = _get(port, "/readyz")
        ready = json.loads(body)
        assert status == 200, ready
        assert ready["checks"] == dict.fromkeys({"store", *keys}, "ok")


def test_counters_add_up_to_what_the_fleet_did(metrics_lab: Lab, tmp_path: Path) -> None:
    lab = metrics_lab
    reg_port, masa_port = lab.registrar_metrics_port, lab.masa_metrics_port
    before_reg, before_masa = scrape(reg_port), scrape(masa_port)

    # One refusal on purpose (a body that is no voucher-request) and one refused handshake.
    status, problem = post(lab, "/.well-known/brski/requestvoucher", b"not cms", "application/voucher-cms+json", tmp_path)
    assert status == 400, problem
    refused_check = str(problem["check"])
    _tls11_handshake(lab.registrar_port)
    # One CRL fetch on the plain-HTTP revocation port.
    with urllib.request.urlopen(f"{lab.revocation_url}/crl", timeout=30) as resp:
        assert resp.status == 200

    summary_path = tmp_path / "fleet.json"
    fleet = subprocess.Popen(
        lab.fleet_command(count=COUNT, concurrency=4, processes=1, json_path=summary_path, extra=("--no-progress",)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    during: list[Samples] = []
    while fleet.poll() is None:  # scrape while the fleet runs
        during.append(scrape(reg_port))
        time.sleep(0.2)
    output = fleet.communicate()[0].decode(errors="replace")
    assert fleet.returncode == 0, output
    summary = json.loads(summary_path.read_text())
    assert summary["successes"] == COUNT, summary

    reg, masa = scrape(reg_port), scrape(masa_port)

    def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Registrar: every pledge got a voucher and an LDevID, each through one MASA round trip.
    assert delta(reg, before_reg, "brski_onboardings_total") == COUNT
    assert delta(reg, before_reg, "brski_enrollments_total", operation="enroll") == COUNT
    assert delta(
        reg, before_reg, "brski_http_requests_total",
        endpoint="/.well-known/brski/requestvoucher", method="POST", status="200",
    ) == COUNT
    assert delta(
        reg, before_reg, "brski_http_request_duration_seconds_count", endpoint="/.well-known/est/simpleenroll"
    ) == COUNT
    assert delta(
        reg, before_reg, "brski_masa_request_duration_seconds_count", call="requestvoucher", outcome="ok"
    ) == COUNT
    assert delta(reg, before_reg, "brski_masa_request_duration_seconds_count", outcome="refused") == 0
    assert delta(reg, before_reg, "brski_masa_request_duration_seconds_count", outcome="unreachable") == 0
    # The refusal sent on purpose, by its check; and the TLS 1.1 handshake.
    assert delta(reg, before_reg, "brski_refusals_total") == 1
    assert delta(reg, before_reg, "brski_refusals_total", check=refused_check, status="400") == 1
    assert delta(reg, before_reg, "brski_tls_handshake_refusals_total") == 1
    assert delta(reg, before_reg, "brski_http_requests_total", endpoint="/crl", status="200") == 1
    # Store writes were timed, and none is left in flight; one worker.
    assert delta(reg, before_reg, "brski_store_write_duration_seconds_count") >= 2 * COUNT
    assert total(reg, "brski_store_writes_in_flight") == 0
    assert total(reg, "brski_workers") == 1

    # MASA: one voucher per pledge, and its store agrees.
    assert delta(masa, before_masa, "brski_onboardings_total") == COUNT
    issued = rows(lab.db_url("masa"), "SELECT count(*) FROM vouchers")[0][0]
    assert total(masa, "brski_onboardings_total") == issued
    assert total(masa, "brski_refusals_total") == 0

    # Scrapes during the run only ever grew, and never passed the final count.
    seen = [total(s, "brski_onboardings_total") for s in during]
    assert seen == sorted(seen)
    assert all(v <= total(reg, "brski_onboardings_total") for v in seen)


def test_invented_methods_and_paths_do_not_create_series(metrics_lab: Lab) -> None:
    """A scanner's methods and paths land in 'other' and 'unmatched'."""
    ctx = ssl.create_default_context(cafile=str(metrics_lab.certs / "registrar" / "domain-ca.crt"))
    # Methods HTTP parsers know but no route uses (an unknown token is a 400 from the parser).
    for i, method in enumerate(("PROPFIND", "MKCOL", "LOCK")):
        conn = http.client.HTTPSConnection("localhost", metrics_lab.registrar_port, context=ctx, timeout=30)
        try:
            conn.request(method, f"/no/such/path/{i}")
            assert conn.getresponse().status in (404, 405)
        finally:
            conn.close()
    samples = scrape(metrics_lab.registrar_metrics_port)
    labels = {dict(lab).get("method") for (n, lab) in samples if n == "brski_http_requests_total"}
    paths = {dict(lab).get("endpoint") for (n, lab) in samples if n == "brski_http_requests_total"}
    assert not labels & {"PROPFIND", "MKCOL", "LOCK"}
    assert total(samples, "brski_http_requests_total", method="other", endpoint="unmatched") == 3
    assert not any(p and p.startswith("/no/such") for p in paths)


def test_two_processes_share_one_metrics_port_and_sum(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> None:
    """prometheus-client multiprocess mode, as --workers will run it: two MASA
    processes with one PROMETHEUS_MULTIPROC_DIR bind the same metrics port
    (SO_REUSEPORT); whichever answers a scrape reports both, and a process
    that stops cleanly stops counting as a worker."""
    masa_port = free_port()
    certs = tmp_path / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url=f"https://localhost:{masa_port}")
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    lab = Lab(
        workdir=tmp_path / "run", certs=certs, masa_port=masa_port, masa_metrics_port=free_port(),
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir)}, **engine_databases(engine, request),
    )
    lab.write_configs()
    with lab:
        lab.start("masa")
        second_ready = lab.workdir / "masa2.ready"
        second = subprocess.Popen(
            [lab.python, "-m", "masa", "serve", "--config", str(lab.workdir / "masa.toml"),
             "--port", str(free_port()), "--ready-file", str(second_ready)],
            env={**os.environ, **lab.extra_env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not second_ready.exists():
                assert second.poll() is None and time.monotonic() < deadline, "second MASA did not start"
                time.sleep(0.05)
            for _ in range(8):  # whichever process the kernel picks, the sum is the same
                assert total(scrape(lab.masa_metrics_port), "brski_workers") == 2
        finally:
            second.terminate()
            assert second.wait(timeout=30) == 0
        assert total(scrape(lab.masa_metrics_port), "brski_workers") == 1
