"""A throw-away PostgreSQL cluster for tests, the lab and the benchmark.

``initdb`` into a temporary directory, ``pg_ctl start`` listening on a Unix
socket only (no TCP port to collide with anything), trust authentication on
that private socket, and ``stop`` + removal afterwards. PostgreSQL refuses to
run as root, so as root the cluster runs as the unprivileged system user
``brski-pg`` (created on first use); as anyone else, as that user.

The binaries are found in ``$BRSKI_PG_BINDIR``, on ``PATH`` (``pg_ctl``,
``initdb`` and ``postgres`` side by side, e.g. /usr/local/bin symlinks) or in
Debian's /usr/lib/postgresql/<version>/bin (package ``postgresql``, listed in
tools/sysdeps/postgresql.txt).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

__all__ = ["PG_USER", "PgCluster", "PgUnavailable", "find_pg_bindir", "pg_cluster"]

#: The unprivileged system user the cluster runs as when we are root.
PG_USER = "brski-pg"
#: The database superuser initdb creates (trust auth on the private socket).
DB_USER = "brski"
DB_NAME = "brski"
_TOOLS = ("initdb", "pg_ctl", "postgres")


class PgUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or they cannot run."""


def _has_tools(folder: Path) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in _TOOLS)


def _version(folder: Path) -> tuple[int, ...]:
    found = re.findall(r"\d+", folder.parent.name)
    return tuple(int(x) for x in found)


def find_pg_bindir() -> Path | None:
    env = os.environ.get("BRSKI_PG_BINDIR")
    if env:
        return Path(env) if _has_tools(Path(env)) else None
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        folder = Path(on_path).resolve().parent
        if _has_tools(folder):
            return folder
        if _has_tools(Path(on_path).parent):
            return Path(on_path).parent
    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_tools(p)),
        key=_version,
        reverse=True,
    )
    return debian[0] if debian else None


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", PG_USER],
        check=True, capture_output=True, timeout=30,
    )
    return pwd.getpwnam(PG_USER)


class PgCluster:
    """One running cluster; :meth:`url` names a database (and a schema) in it."""

    def __init__(self, root: Path, *, bindir: Path, durable: bool) -> None:
        self.root = root
        self.bindir = bindir
        self.durable = durable
        self.data = root / "data"
        self.sockdir = root / "sock"
        self.log = root / "postgres.log"
        self._as: pwd.struct_passwd | None = _ensure_user() if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._as is not None:
            kwargs = {"user": self._as.pw_uid, "group": self._as.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        proc: subprocess.CompletedProcess[str] = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=self.root,
            **kwargs,  # type: ignore[call-overload]
        )
        if proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PgUnavailable(f"{' '.join(args[:2])} failed: {proc.stderr.strip()}\n{tail}")
        return proc

    def start(self) -> None:
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if self._as is not None:
            for path in (self.root, self.sockdir):
                os.chown(path, self._as.pw_uid, self._as.pw_gid)
        os.chmod(self.root, 0o700)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", DB_USER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )
        options = [
            "-c listen_addresses=''",
            f"-c unix_socket_directories={self.sockdir}",
            "-c max_connections=400",
            "-c shared_buffers=64MB",
        ]
        if not self.durable:
            # Tests: crash safety of the test cluster itself is irrelevant; the
            # stores still wait for every COMMIT, only the disk flush is skipped.
            options += ["-c fsync=off", "-c full_page_writes=off"]
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", "60", "-o", " ".join(options), "start",
        )
        self.execute(f"CREATE DATABASE {DB_NAME}", database="postgres")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PgUnavailable, subprocess.TimeoutExpired):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, *, database: str = DB_NAME, schema: str | None = None) -> str:
        """A libpq URL for the private socket; with ``schema``, it is the search_path."""
        url = f"postgresql://{DB_USER}@/{database}?host={quote(str(self.sockdir), safe='/')}"
        if schema is not None:
            url += "&options=" + quote(f"-csearch_path={schema}", safe="")
        return url

    def execute(self, sql: str, *, database: str = DB_NAME) -> None:
        import psycopg

        with psycopg.connect(self.url(database=database), autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_schema(self, prefix: str = "t") -> str:
        """A fresh empty schema and the store URL that uses it."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.execute(f"CREATE SCHEMA {name}")
        return self.url(schema=name)


@contextlib.contextmanager
def pg_cluster(*, durable: bool = False) -> Iterator[PgCluster]:
    """Start a cluster in a fresh temporary directory; stop and remove it after."""
    bindir = find_pg_bindir()
    if bindir is None:
        raise PgUnavailable(
            "no PostgreSQL binaries (initdb, pg_ctl, postgres): install the Debian package "
            "postgresql (tools/sysdeps/postgresql.txt) or set BRSKI_PG_BINDIR"
        )
    root = Path(tempfile.mkdtemp(prefix="brski-pg-"))
    cluster = PgCluster(root, bindir=bindir, durable=durable)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
