"""``brski demo``: the whole system once, on one machine, narrated.

Generates the development PKI if it is absent, starts the MASA and the
registrar as two processes on loopback, onboards each pledge with the pledge
simulator (its own process, real TLS), prints what each pledge accepted and
received, then stops both servers with SIGTERM. Exit 0 only if every pledge
enrolled and both servers shut down cleanly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from brski_cli.lab import Lab, LabError, ensure_dev_pki

__all__ = ["add_parser"]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _enroll(lab: Lab, pledge_dir: Path, out: Path) -> dict[str, object]:
    proc = lab.enroll(pledge_dir, out)
    try:
        result: dict[str, object] = json.loads(proc.stdout)
    except ValueError:
        result = {"ok": False, "failed_check": "pledge.crashed", "detail": proc.stderr.strip()[-2000:]}
    result["exit_code"] = proc.returncode
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    certs: Path = args.certs
    workdir: Path = args.workdir
    lab = Lab(workdir=workdir, certs=certs, masa_port=args.masa_port, registrar_port=args.registrar_port)
    if ensure_dev_pki(certs, pledges=args.pledges, masa_url=lab.masa_url):
        _say(f"generated the development PKI in {certs}/ ({args.pledges} pledges, MASA at {lab.masa_url})")
    else:
        _say(f"using the development PKI in {certs}/ (brski pki init --out {certs} --force regenerates it)")
    pledges = lab.pledge_dirs()[: args.pledges]
    if len(pledges) < args.pledges:
        _say(f"error: {certs}/pledges has {len(pledges)} pledges, {args.pledges} asked; regenerate with --force")
        return 1
    # Each demo starts from empty stores so that its output tells one story.
    shutil.rmtree(workdir, ignore_errors=True)
    lab.write_configs()
    failures = 0
    try:
        _say(lab.import_devices().strip())
        _say(f"MASA       listening at {lab.start('masa')}  (log: {workdir}/masa.log)")
        _say(f"registrar  listening at {lab.start('registrar')}  (log: {workdir}/registrar.log)")
        for pledge_dir in pledges:
            started = time.perf_counter()
            r = _enroll(lab, pledge_dir, workdir / "pledges" / pledge_dir.name)
            ms = (time.perf_counter() - started) * 1000
            _say()
            if not r.get("ok"):
                failures += 1
                _say(f"pledge {pledge_dir.name}: FAILED at {r.get('failed_check')}: {r.get('detail') or r.get('error')}")
                continue
            v = r["voucher"]
            ld = r["ldevid"]
            assert isinstance(v, dict) and isinstance(ld, dict)
            _say(f"pledge {r['serial']}: onboarded in {ms:.0f} ms (process start included)")
            _say(f"  voucher accepted: assertion={v['assertion']} serial-number={v['serial_number']}")
            _say(f"                    pinned domain CA: {v['pinned_domain_subject']}")
            _say(f"  LDevID received:  subject={ld['subject']}")
            _say(f"                    serial={ld['serial']}")
            _say(f"                    issuer={ld['issuer']}")
            _say(f"                    valid {ld['not_before']} .. {ld['not_after']}")
        _say()
        _say("registrar inventory:")
        _say(lab._run_cli("registrar", "devices", "list", "--config", str(workdir / "registrar.toml")).rstrip())
    except LabError as exc:
        _say(f"error: {exc}")
        lab.stop_all()
        return 1
    codes = lab.stop_all()
    _say()
    _say("servers stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    if failures or any(code != 0 for code in codes.values()):
        _say(f"demo FAILED: {failures} pledge(s) did not enrol")
        return 1
    _say(f"demo OK: {len(pledges)} pledges onboarded; stores and logs are in {workdir}/")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("demo", help="run MASA + registrar and onboard pledges, narrated", description=__doc__)
    p.add_argument("--pledges", type=int, default=3)
    p.add_argument("--certs", type=Path, default=Path("certs/dev"))
    p.add_argument("--workdir", type=Path, default=Path("var/demo"))
    p.add_argument("--masa-port", type=int, default=8443)
    p.add_argument("--registrar-port", type=int, default=8444)
    p.set_defaults(func=cmd_demo)


