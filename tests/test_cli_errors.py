"""Every `deals` command, when the database cannot be reached or DATABASE_URL is
malformed: one line on stderr naming the URL with its password hidden, exit 2,
no traceback. Run as real processes, as a user runs them (forked from one that imported
the CLI once: tests/forked.py; `deals serve` is started as it is on a command line)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.settings import ENV_VARS, redact_url
from tests import forked, pg
from tests.serving import free_port

PASSWORD = "s3cr3t-pw"

CSV = (
    "deal_id,hotel_name,hotel_city,hotel_country,hotel_phone,hotel_star_rating,room_type,"
    "price_per_night,original_price,discount_percent,checkin_date,checkout_date,is_available,"
    "categories,created_at\n"
    "1,Grand Hotel Paris,Paris,France,+33 100 000000,2,Standard,76.24,117.29,35,"
    "2026-01-07,2026-01-08,false,business,2025-10-12T03:50:43\n"
)


ROLE = f"deals_cli_{os.getpid()}"  # made by the `role` fixture, with PASSWORD


def on_server(admin_url: str, *, user: str, database: str) -> tuple[str, str]:
    """(URL, its password): the test server as `user` with PASSWORD, on `database`."""
    parts = urlsplit(admin_url)
    hostport = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{user}:{PASSWORD}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}")), PASSWORD


@pytest.fixture(scope="module")
def role(admin_url: str) -> Iterator[str]:
    pg.admin_execute(admin_url, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    yield ROLE
    pg.admin_execute(admin_url, f"DROP ROLE IF EXISTS {ROLE}")


# kind -> (admin URL -> (DATABASE_URL, the password that must never show))
Kind = Callable[[str], tuple[str, str]]
MALFORMED: dict[str, Kind] = {
    "port-not-a-number": lambda _: (f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db", PASSWORD),
    "port-out-of-range": lambda _: (f"postgresql://u:{PASSWORD}@127.0.0.1:70000/db", PASSWORD),
    "not-postgresql": lambda _: (f"mysql://u:{PASSWORD}@127.0.0.1/db", PASSWORD),
    "bracket-left-open": lambda _: (f"postgresql://u:{PASSWORD}@[::1/db", PASSWORD),
    "slash-in-password": lambda _: ("postgresql://u:s3cr/3t-pw@127.0.0.1/db", "s3cr/3t-pw"),
}
UNREACHABLE: dict[str, Kind] = {
    "connection-refused": lambda _: (
        f"postgresql://u:{PASSWORD}@127.0.0.1:{free_port()}/db",
        PASSWORD,
    ),
    "no-such-database": lambda admin: on_server(admin, user=ROLE, database="no_such_db_cli"),
    # a server that checks passwords refuses the password, a trusting one the role
    "login-refused": lambda admin: on_server(admin, user="no_such_role_cli", database="postgres"),
}

COMMANDS = {
    "migrate apply": ["migrate", "apply"],
    "migrate rollback": ["migrate", "rollback"],
    "migrate status": ["migrate", "status"],
    "sql explain": ["sql", "explain", "list_categories"],
    "load": ["load", "deals.csv"],
    "doctor": ["doctor"],
    "db url": ["db", "url"],  # prints the URL without connecting: only a malformed one fails
    "serve": ["serve", "--port", "0"],  # a reachable-or-not URL serves: see the test below
}
CONNECTING = [
    "migrate apply",
    "migrate rollback",
    "migrate status",
    "sql explain",
    "load",
    "doctor",
]

CASES = [
    pytest.param(command, kind, id=f"{command}-{kind}")
    for command in COMMANDS
    for kind in [*MALFORMED, *(UNREACHABLE if command in CONNECTING else [])]
]


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return {**env, "DATABASE_URL": url}


@pytest.fixture(scope="module")
def deals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[forked.Deals]:
    """Each command a process of its own, forked from one that imported the CLI once."""
    with forked.deals(tmp_path_factory.mktemp("cli-output")) as runner:
        yield runner


@pytest.mark.parametrize(("command", "kind"), CASES)
@pytest.mark.usefixtures("role")
def test_one_line_and_exit_2(
    deals: forked.Deals, admin_url: str, tmp_path: Path, command: str, kind: str
) -> None:
    url, password = {**MALFORMED, **UNREACHABLE}[kind](admin_url)
    (tmp_path / "deals.csv").write_text(CSV)
    result = deals.run(COMMANDS[command], cwd=tmp_path, env=environment(url), timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert redact_url(url) in lines[0]
    assert "***" in lines[0]
    assert password not in output
    assert password[:4] not in output  # nor a piece of it
    assert result.stdout == ""


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("kind", list(UNREACHABLE))
@pytest.mark.usefixtures("role")
def test_serve_keeps_serving_an_unreachable_database(
    admin_url: str, tmp_path: Path, kind: str
) -> None:
    """By design: the pool opens on demand, so serve starts and answers 503 until the
    database comes; what it says about it is a warning, never a traceback."""
    url, password = UNREACHABLE[kind](admin_url)
    port = free_port()
    server = subprocess.Popen(
        [forked.DEALS, "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**environment(url), "SHUTDOWN_DRAIN_SECONDS": "0"},  # stops at SIGINT, no drain
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = get(f"http://127.0.0.1:{port}/health/ready")
                break
            except OSError:
                time.sleep(0.1)
        assert status == 503
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=20)
    assert "Traceback" not in output, output
    assert password not in output
    assert redact_url(url) in output  # the start-up warning names it
