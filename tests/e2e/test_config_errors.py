"""A wrong type in a config file: a configuration error naming the key and the
file, exit 2, no traceback (the README's promise), from the real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _serve(module: str, example: str, line: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    gen = subprocess.run([sys.executable, "-m", module, "config-example"], capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    key = line.split(" = ")[0]
    text = "\n".join(line if ln.startswith(f"{key} = ") else ln for ln in gen.stdout.splitlines())
    assert line in text, "the example sets the key"
    config = tmp_path / example
    config.write_text(text + "\n")
    return subprocess.run(
        [sys.executable, "-m", module, *extra, "--config", str(config)], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )


def test_registrar_refuses_a_string_where_a_number_goes(tmp_path: Path) -> None:
    proc = _serve("registrar", "registrar.toml", 'ldevid_validity_days = "365"', tmp_path, "serve", "--port", "0")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "configuration error" in proc.stderr and "Traceback" not in proc.stderr
    assert f"{tmp_path}/registrar.toml: [registrar] ldevid_validity_days = '365': expected an integer" in proc.stderr


def test_pledge_refuses_a_string_where_a_number_goes(tmp_path: Path) -> None:
    proc = _serve("pledge_sim", "pledge.toml", 'max_voucher_attempts = "10"', tmp_path, "enroll")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "configuration error [config.type]" in proc.stderr and "Traceback" not in proc.stderr
    assert f"{tmp_path}/pledge.toml: [pledge] max_voucher_attempts = '10': expected an integer" in proc.stderr


def test_proxy_refuses_a_string_where_a_number_goes(tmp_path: Path) -> None:
    proc = _serve("join_proxy", "proxy.toml", 'max_circuits = "256"', tmp_path, "serve")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "configuration error" in proc.stderr and "Traceback" not in proc.stderr
    assert f"{tmp_path}/proxy.toml: [proxy] max_circuits = '256': expected an integer" in proc.stderr
