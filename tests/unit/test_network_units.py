"""Network pieces in process: proxy and pledge configuration, the candidate order
and the discovery loop (with fakes for mDNS and enrolment), the lab's topology,
via-proxy marking, and the lab CLI's exit 2 without root."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from brski.devpki import build_dev_pki
from brski.errors import ConfigError
from brski_cli.netlab.topology import Topology
from brski_net.mdns import Candidate
from brski_web.proxies import parse_proxy_addresses, via_proxy
from join_proxy.config import Upstream, load_config, parse_upstream
from pledge_sim.config import load_config as load_pledge_config
from pledge_sim.discovery import discover_and_enroll
from pledge_sim.service import EnrollResult

# --- join proxy configuration --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("[fd00::2]:8443", "fd00::2", 8443), ("[fe80::1%eth0]:443", "fe80::1%eth0", 443), ("reg.example:8443", "reg.example", 8443)],
)
def test_upstream_forms(text: str, host: str, port: int) -> None:
    assert parse_upstream(text) == Upstream(host=host, port=port)


@pytest.mark.parametrize("text", ["fd00::2:8443", "[fd00::2]", "host", "host:0", "host:x", "[fd00::2]:70000"])
def test_upstream_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_upstream(text)


def test_proxy_config_file_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "proxy.toml"
    f.write_text('[proxy]\nregistrar = "[fd00::2]:8443"\nannounce_interfaces = ["pl1"]\nmax_circuits_per_source = 2\n')
    cfg = load_config(f, {"max_circuits": 10})
    assert cfg.registrar == Upstream(host="fd00::2", port=8443)
    assert (cfg.limits.max_circuits, cfg.limits.max_circuits_per_source, cfg.announce_interfaces) == (10, 2, ("pl1",))


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ('registrar = "auto"\n', "proxy.config.registrar"),  # auto needs somewhere to browse
        ('registrar = "r:1"\nmax_circuits = 2\nmax_circuits_per_source = 3\n', "proxy.config.limits"),
        ('registrar = "r:1"\nidle_timeout_s = 0\n', "config.range"),
        ('registrar = "r:1"\nmax_circuit_bytes = true\n', "config.type"),
        ('registrar = "r:1"\nannounce_interfaces = "pl1"\n', "config.type"),
        ('registrar = "r"\n', "proxy.config.registrar"),
        ('registrar = "r:1"\nannounce_interfaces = ["pl1"]\nlisten_port = 0\n', "proxy.config.port"),
        ('registrar = "r:1"\nbogus = 1\n', "config.unknown-key"),
    ],
)
def test_proxy_config_refused(tmp_path: Path, body: str, check: str) -> None:
    f = tmp_path / "proxy.toml"
    f.write_text("[proxy]\n" + body)
    with pytest.raises(ConfigError) as exc:
        load_config(f, {})
    assert exc.value.check == check and str(f) in exc.value.detail


# --- pledge: discovery configuration and candidate order ---------------------------


@pytest.fixture(scope="module")
def pledge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from brski_cli.pki_cmd import write_dev_pki

    root = tmp_path_factory.mktemp("pki")
    write_dev_pki(root, build_dev_pki(pledges=1, masa_url="https://localhost:1", now=datetime.now(UTC)), force=True)
    return next((root / "pledges").iterdir())


@pytest.mark.parametrize("registrar", [None, "auto"])
def test_pledge_without_a_registrar_discovers(pledge_dir: Path, registrar: str | None) -> None:
    cfg = load_pledge_config(None, {"dir": str(pledge_dir), "registrar": registrar, "interfaces": ["eth0"]})
    assert cfg.discover and cfg.interfaces == ("eth0",)
    with pytest.raises(ConfigError):
        load_pledge_config(None, {"registrar": registrar, "out": str(pledge_dir)}, purpose="reenroll")


def _cand(kind: str, name: str, address: str = "fe80::1%eth0", priority: int = 0, weight: int = 0) -> Candidate:
    return Candidate(kind=kind, name=name, interface="eth0", address=address, port=8443, priority=priority, weight=weight)


def test_candidate_order_proxies_then_registrars_then_srv() -> None:
    cands = [
        _cand("registrar", "r-low", priority=0),
        _cand("proxy", "p-heavy", priority=5, weight=10),
        _cand("proxy", "p-ula", address="fd00::1", priority=5, weight=10),
        _cand("proxy", "p-light", priority=5, weight=1),
        _cand("proxy", "p-first", priority=1),
    ]
    assert [c.name for c in sorted(cands, key=Candidate.sort_key)] == ["p-first", "p-heavy", "p-ula", "p-light", "r-low"]
    assert _cand("proxy", "x").url == "https://[fe80::1%25eth0]:8443"


class _Fakes:
    def __init__(self, found: list[Candidate], outcomes: dict[str, str | None]) -> None:
        self.found, self.outcomes = found, outcomes
        self.tried: list[tuple[str, int, str]] = []

    async def browse(self, interfaces: Any, *, timeout: float) -> list[Candidate]:
        return self.found

    async def enroll(self, cfg: Any, *, log: Any, identity: Any) -> EnrollResult:
        self.tried.append((cfg.host, cfg.port, cfg.server_hostname))
        check = self.outcomes[cfg.host]
        if check == "hang":
            await asyncio.sleep(3600)
        return EnrollResult(ok=check is None, serial="S", failed_check=check, detail=check)


async def _discover(pledge_dir: Path, fakes: _Fakes, **cfg: Any) -> Any:
    import logging

    config = load_pledge_config(None, {"dir": str(pledge_dir), "interfaces": ["eth0"], **cfg})
    return await discover_and_enroll(config, log=logging.getLogger("t"), browse_fn=fakes.browse, enroll_fn=fakes.enroll)


async def test_a_candidate_whose_voucher_does_not_verify_is_left_for_the_next(pledge_dir: Path) -> None:
    fakes = _Fakes(
        [_cand("proxy", "rogue", "fe80::66%eth0"), _cand("proxy", "real", "fe80::1%eth0")],
        {"fe80::66%eth0": "pledge.voucher-signature", "fe80::1%eth0": None},
    )
    out = await _discover(pledge_dir, fakes)
    assert out.result.ok and out.chosen.name == "real"
    assert [(a.candidate.name, a.failed_check) for a in out.attempts] == [("rogue", "pledge.voucher-signature"), ("real", None)]
    assert fakes.tried[0] == ("fe80::66%eth0", 8443, "")  # an address, no SNI
    assert out.to_json()["discovered"] == "proxy" and out.to_json()["via"] == "fe80::1%eth0"


async def test_a_candidate_that_hangs_costs_its_budget_only(pledge_dir: Path) -> None:
    fakes = _Fakes(
        [_cand("proxy", "tarpit", "fe80::66%eth0"), _cand("registrar", "real", "fd00::2")],
        {"fe80::66%eth0": "hang", "fd00::2": None},
    )
    out = await _discover(pledge_dir, fakes, candidate_timeout=0.2)
    assert out.result.ok and out.chosen.kind == "registrar"
    assert out.attempts[0].failed_check == "pledge.discovery.candidate-timeout"


async def test_nothing_found_and_all_refused(pledge_dir: Path) -> None:
    out = await _discover(pledge_dir, _Fakes([], {}))
    assert (out.result.ok, out.result.failed_check) == (False, "pledge.discovery.nothing-found")
    assert "no join proxy" in (out.result.detail or "")
    out = await _discover(pledge_dir, _Fakes([_cand("proxy", "a")], {"fe80::1%eth0": "pledge.voucher-pin"}))
    assert out.result.failed_check == "pledge.discovery.exhausted"
    assert "pledge.voucher-pin" in (out.result.detail or "")


# --- lab topology --------------------------------------------------------------------


def test_topology_names_and_ownership() -> None:
    t = Topology(prefix="brski-", pledges=2)
    assert t.namespaces() == ["brski-edge", "brski-domain", "brski-vendor", "brski-pledge1", "brski-pledge2"]
    assert t.owns("brski-pledge17") and t.owns("brski-edge")
    # Another lab's (or helper's) namespaces are never ours.
    for other in ("brx-1060-edge", "brski-t42-edge", "brski-edgex", "brski-", "edge"):
        assert not t.owns(other)
    with pytest.raises(ValueError):
        Topology(prefix="brx-")


def test_pledge_links_are_link_local_only_and_the_edge_forwards_none_of_them() -> None:
    t = Topology(pledges=3, quiet_ports=(3,))
    pledge_links = [ln for ln in t.links() if ln.b_ns.startswith("brski-pledge")]
    assert len(pledge_links) == 3
    assert all(ln.b_addrs == () and ln.a_addrs == ("fe80::1/64",) for ln in pledge_links)
    assert all(ns.startswith("brski-pledge") is False for ns in t.routes())
    assert [p.edge_if for p in t.announced_ports()] == ["pl1", "pl2"]
    rules = t.edge_nftables()
    assert re.search(r"hook forward priority filter; policy drop;", rules)
    assert 'iifname "pl*" counter drop' in rules


# --- registrar: via=proxy, and no decision on the source address --------------------


def test_via_proxy() -> None:
    nets = parse_proxy_addresses(["fd00:b5c1:d::1", "fe80::1", "192.0.2.0/24"])
    assert via_proxy(nets, "fd00:b5c1:d::1") and via_proxy(nets, "fe80::1%dom0")
    assert via_proxy(nets, "::ffff:192.0.2.7") and via_proxy(nets, "192.0.2.7")
    assert not via_proxy(nets, "fd00:b5c1:d::2") and not via_proxy(nets, None) and not via_proxy((), "fe80::1")
    with pytest.raises(ConfigError):
        parse_proxy_addresses(["not an address"])


def test_registrar_decisions_never_read_the_source_address() -> None:
    """RFC 8995 4.3: behind a circuit proxy every pledge has the proxy's address;
    the registrar's services and policy must not look at it (only the request log does)."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for p in [*(root / "registrar").glob("*.py"), *(root / "brski").rglob("*.py")]
        if re.search(r"\.remote\b|peername|get_extra_info\(", p.read_text())
    ]
    assert offenders == []


# --- lab CLI: exit 2 where it cannot run ----------------------------------------------


def test_lab_without_root_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from brski_cli import main

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    for cmd in (["lab", "up"], ["lab", "status"], ["lab", "down"], ["lab", "demo", "--pledges", "1"]):
        assert main(cmd) == 2
    assert "needs root" in capsys.readouterr().err


async def test_proxy_looks_for_the_registrar_again_when_none_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from join_proxy import service

    f = tmp_path / "proxy.toml"
    f.write_text('[proxy]\nregistrar_interfaces = ["dom0"]\n')
    cfg = load_config(f, {})
    calls: list[int] = []
    new = [Upstream(host="fd00::9", port=8443)]

    async def fake_find(c: Any) -> list[Upstream]:
        calls.append(1)
        return new

    monkeypatch.setattr(service, "find_registrars", fake_find)
    regs = service._Registrars(cfg, [Upstream(host="fd00::2", port=8443)])
    regs.unreachable()  # just found at start: not again so soon
    assert calls == []
    regs._last -= service.REDISCOVER_AFTER_S
    regs.unreachable()
    regs.unreachable()  # one search at a time
    assert regs._task is not None
    await regs._task
    assert calls == [1] and regs.current == new
    await regs.close()
