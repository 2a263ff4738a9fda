"""A real streaming replica of the test PostgreSQL, for tests/test_replicas.py.

pg_basebackup (shipped with the embedded server's binaries) copies the test
server's whole cluster with -R (standby.signal, and primary_conninfo naming
the test server) and -X stream, into a temporary folder; the copy starts as a
hot standby listening on a free 127.0.0.1 port and on a unix socket of its
own (the benchmarks compare it with the primary's socket), with the test
server's settings (max_connections, shared_buffers). Every
database the tests create on the primary afterwards is replayed onto it, so
a test's own clone is there once `caught_up()` returns. Like the test server
it runs as the `embedded_postgres` system user when the tests run as root
(PostgreSQL refuses root). The embedded test server's pg_hba (initdb
--auth=trust) lets local connections replicate, and its wal_level (replica)
and max_wal_senders (10) are PostgreSQL's defaults, so nothing is changed on it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from service.embedded import SYSTEM_USER, bin_dir, cluster_running
from tests.serving import free_port


class StandbyError(RuntimeError):
    """The standby could not be made, started or stopped."""


def run_as() -> dict[str, Any]:
    """subprocess arguments that run a tool as the server's user when we are root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def conninfo(url: str) -> str:
    """The libpq keyword form of a postgresql:// URL (host may be a socket folder)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    fields = {
        "host": parts.hostname or query.get("host", ""),
        "port": str(parts.port or query.get("port", "5432")),
        "user": parts.username or query.get("user", ""),
    }
    return " ".join(f"{k}={v}" for k, v in fields.items() if v)


def lsn(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(f"SELECT ({sql} - '0/0'::pg_lsn)::bigint".encode()).fetchone()
    assert row is not None
    return int(row[0])


class Standby:
    """A hot standby of the server at `primary_url` (an admin URL), in its own folder."""

    def __init__(self, primary_url: str) -> None:
        self.primary_url = primary_url
        self.root = Path(tempfile.mkdtemp(prefix="deals-test-standby-"))
        self.pgdata = self.root / "pg"
        self.log = self.root / "server.log"
        self.sockets = self.root / "run"
        self.sockets.mkdir()
        self.port = free_port()
        identity = run_as()
        if identity:  # the server's user owns its folders
            for path in (self.root, self.sockets):
                path.chmod(0o755)
                os.chown(path, identity["user"], identity["group"])

    def url(self, database: str = "postgres", *, socket: bool = False) -> str:
        if socket:
            return f"postgresql://postgres@/{database}?host={self.sockets}&port={self.port}"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _tool(self, tool: str, *args: str, timeout: float = 120) -> str:
        try:
            done = subprocess.run(
                [str(bin_dir() / tool), *args],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                **run_as(),
            )
        except subprocess.CalledProcessError as exc:
            why = exc.stderr.strip() or exc.stdout.strip()
            raise StandbyError(f"{tool} failed: {why}") from None
        return str(done.stdout)

    def create(self) -> None:
        """Copy the primary with pg_basebackup -R (a fast checkpoint: no waiting for one)."""
        self._tool(
            "pg_basebackup", "-d", conninfo(self.primary_url), "-D", str(self.pgdata),
            "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories='{self.sockets}' "
            "-c hot_standby=on -c shared_preload_libraries=pg_stat_statements "
            "-c max_connections=200 -c shared_buffers=256MB -c fsync=off"
        )
        self._tool(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._tool("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return cluster_running(self.pgdata, run_as())

    def remove(self) -> None:
        if self.pgdata.exists() and self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True)

    def caught_up(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary_url, autocommit=True) as primary:
            target = lsn(primary, "pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect() as standby:
                    if lsn(standby, "pg_last_wal_replay_lsn()") >= target:
                        return
            except psycopg.OperationalError:
                pass  # starting up
            if time.monotonic() > deadline:
                raise StandbyError(
                    f"the standby did not catch up within {timeout} s: {self.tail()}"
                )
            time.sleep(0.05)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
