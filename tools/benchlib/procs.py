"""CPU time and memory of processes, read from ``/proc`` (Linux)."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from brski_cli.lab import Lab

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return round(int(m.group(1)) / 1024, 1) if m else 0.0


def role_pids(lab: Lab, name: str) -> list[int]:
    """The process serving ``name`` and, with workers, every worker (from its ready file)."""
    try:
        workers = json.loads((lab.workdir / f"{name}.ready").read_text()).get("workers", [])
    except (OSError, ValueError):
        workers = []
    return [lab.pid(name), *workers]


def postgres_pids(cluster: Any) -> list[int]:
    """The postmaster and its backends (their parent is the postmaster)."""
    if cluster is None:
        return []
    master = int((cluster.data / "postmaster.pid").read_text().split()[0])
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == master:
            kids.append(int(stat.parent.name))
    return [master, *kids]


def group_cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except OSError:
            pass  # exited meanwhile
    return out
