"""A real PgBouncer for the tests: transaction pooling on a free 127.0.0.1 port, in front of
the tests' PostgreSQL, its files in a folder of its own.

Every database of that server is reachable through it (the `*` fallback entry), so a
per-test clone needs no reload. Clients authenticate with `trust`: PgBouncer still
wants the user in its auth_file, which lists the one user the tests connect as; the
connection to PostgreSQL uses the admin URL's own credentials (the embedded server
trusts its unix socket). Started as root, PgBouncer refuses to run unless told which
user to become: the embedded server's own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import psycopg
import pytest

from service.embedded import SYSTEM_USER
from tests.serving import free_port, started

BINARY_HINT = "pgbouncer not installed: apt-get install -y pgbouncer"


@dataclass(frozen=True)
class Upstream:
    """Where PostgreSQL listens, as PgBouncer's connect string needs it."""

    host: str  # a TCP host, or the folder of a unix socket
    port: int
    user: str
    password: str | None


def upstream_of(url: str) -> Upstream:
    """host, port, user and password of a postgresql:// URL (libpq's ?host= form too)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [str(parts.port or 5432)])[0])
    user = unquote(parts.username or "postgres")
    password = unquote(parts.password) if parts.password else None
    return Upstream(host=host, port=port, user=user, password=password)


def quoted(value: str) -> str:
    """A value of PgBouncer's connect string, quoted as libpq reads it."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class PgBouncer:
    port: int
    user: str
    folder: Path
    process: subprocess.Popen[bytes]

    def url(self, database_url: str) -> str:
        """The same database as `database_url`, through PgBouncer (no password: trust)."""
        name = urlsplit(database_url).path
        return urlunsplit(("postgresql", f"{self.user}@127.0.0.1:{self.port}", name, "", ""))

    def show(self, what: str) -> list[dict[str, object]]:
        """SHOW <what> on PgBouncer's admin console (POOLS, CLIENTS, SERVERS, STATS...)."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=pgbouncer",
            autocommit=True,
            prepare_threshold=None,
        ) as conn:
            cursor = conn.execute(f"SHOW {what}".encode())
            columns = [c.name for c in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def log(self) -> str:
        return (self.folder / "pgbouncer.log").read_text(errors="replace")


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def run_as() -> str | None:
    """The user PgBouncer becomes when started as root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in (SYSTEM_USER, "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.skip("pgbouncer will not run as root and no other user exists to run it as")


@contextmanager
def pgbouncer(
    folder: Path,
    admin_url: str,
    *,
    pool_size: int = 20,
    max_client_conn: int = 1000,
    extra: dict[str, str] | None = None,
) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the server of `admin_url`, while the block
    runs; the test skips when the binary is missing."""
    binary = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)),
        None,
    )
    if binary is None:
        pytest.skip(BINARY_HINT)
    upstream = upstream_of(admin_url)
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # read again after PgBouncer drops root (a reload)
    connect = f"host={quoted(upstream.host)} port={upstream.port} user={quoted(upstream.user)}"
    if upstream.password is not None:
        connect += f" password={quoted(upstream.password)}"
    (folder / "userlist.txt").write_text(f'"{upstream.user}" ""\n')
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(folder / "userlist.txt"),
        "admin_users": upstream.user,
        "pool_mode": "transaction",
        "default_pool_size": str(pool_size),
        "max_client_conn": str(max_client_conn),
        "server_login_retry": "1",
        **(extra or {}),
    }
    user = run_as()
    if user is not None:
        settings["user"] = user
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        f"[databases]\n* = {connect}\n\n[pgbouncer]\n"
        + "".join(f"{key} = {value}\n" for key, value in settings.items())
    )
    for path in (ini, folder / "userlist.txt"):
        path.chmod(0o644)
    with (
        (folder / "pgbouncer.log").open("wb") as log,
        started(
            [binary, str(ini)],
            what="pgbouncer",
            ready=lambda: answers(port),
            output=log,
            detail=lambda: f":\n{(folder / 'pgbouncer.log').read_text(errors='replace')}",
        ) as process,
    ):
        yield PgBouncer(port=port, user=upstream.user, folder=folder, process=process)
