"""``brski demo``: the whole system once, on one machine, narrated.

Generates the development PKI if it is absent, starts the MASA and the
registrar as two processes on loopback, onboards each pledge with the pledge
simulator (its own process, real TLS), prints what each pledge accepted and
received, then stops both servers with SIGTERM. Exit 0 only if every pledge
enrolled and both servers shut down cleanly.

With ``--keep-running`` both servers stay up after the onboarding: the demo
prints the web consoles' URLs and how to load the admin certificates into a
browser (PKCS#12 files it writes next to the stores), and stops the servers
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import time
from pathlib import Path
from types import FrameType

from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from brski.pki import load_cert, load_private_key
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


def _p12(cert: Path, key: Path, out: Path, password: str, name: str) -> bool:
    """The admin certificate and key as PKCS#12, the form browsers import."""
    if not cert.exists():
        return False
    der = pkcs12.serialize_key_and_certificates(
        name.encode(), load_private_key(key.read_bytes()), load_cert(cert.read_bytes()), None,
        BestAvailableEncryption(password.encode()),
    )
    out.write_bytes(der)
    out.chmod(0o600)
    return True


def console_help(lab: Lab, workdir: Path) -> str:
    """Console URLs and how to load the admin certificates into a browser."""
    password = secrets.token_urlsafe(9)
    reg, mfr = lab.certs / "registrar", lab.certs / "manufacturer"
    reg_p12, masa_p12 = workdir / "registrar-admin.p12", workdir / "masa-admin.p12"
    _p12(reg / "admin.crt", reg / "admin.key", reg_p12, password, "brski registrar admin")
    has_masa = _p12(lab.certs / "masa" / "admin.crt", lab.certs / "masa" / "admin.key", masa_p12, password, "brski MASA admin")
    lines = [
        "",
        "web consoles (sign in with the admin client certificate):",
        f"  registrar  {lab.registrar_url}/console/",
        f"  MASA       {lab.masa_url}/console/" + ("" if has_masa else "  (this PKI has no masa/admin: regenerate it with brski pki init --force)"),
        "",
        f"admin certificates for a browser (PKCS#12, password {password}):",
        f"  registrar  {reg_p12}",
    ]
    if has_masa:
        lines.append(f"  MASA       {masa_p12}")
    lines += [
        "load them:",
        "  Chromium/Chrome: Settings > Privacy and security > Security > Manage certificates:",
        "    Your certificates > Import the .p12 file(s); Authorities > Import",
        f"    {reg / 'domain-ca.crt'} and {mfr / 'root-ca.crt'} (trust for websites).",
        "    On Linux, from a shell, into the same NSS database:",
        f"      pk12util -i {reg_p12} -d sql:$HOME/.pki/nssdb -W {password}",
        f"      certutil -A -d sql:$HOME/.pki/nssdb -n 'brski dev domain CA' -t C,, -i {reg / 'domain-ca.crt'}",
        f"      certutil -A -d sql:$HOME/.pki/nssdb -n 'brski dev manufacturer' -t C,, -i {mfr / 'root-ca.crt'}",
        "  Firefox: Settings > Privacy & Security > Certificates > View Certificates:",
        "    Your Certificates > Import the .p12 file(s); Authorities > Import both CA files above.",
        "  curl:",
        f"    curl --cacert {reg / 'domain-ca.crt'} --cert {reg / 'admin.crt'} --key {reg / 'admin.key'} {lab.registrar_url}/console/",
        "",
        "servers keep running; Ctrl-C stops them.",
    ]
    return "\n".join(lines)


def _wait_for_stop(lab: Lab) -> None:
    """Until Ctrl-C, SIGTERM or a server exits."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while all(lab.running(name) for name in ("masa", "registrar")):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        if args.keep_running:
            _say(console_help(lab, workdir))
            _wait_for_stop(lab)
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
    p.add_argument("--keep-running", action="store_true",
                   help="leave MASA and registrar up (web consoles) until Ctrl-C")
    p.set_defaults(func=cmd_demo)


