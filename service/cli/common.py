"""What every `deals` command shares: messages on stderr, the database URL, and
the one line a user sees when the database cannot be reached."""

from __future__ import annotations

import logging
import os
import socket
import sys
from urllib.parse import urlsplit

from service.logs import JsonFormatter
from service.settings import Settings, redact_url


class DatabaseUnreachable(Exception):
    """The database cannot be reached, or its URL is malformed: `deals` exits 2."""

    exit_code = 2

    def __init__(self, url: str, what: str) -> None:
        super().__init__(f"cannot connect to the database at {redact_url(url)}: {what}")


_JSON = {"lines": False}


def json_lines(on: bool) -> None:
    """With LOG_FORMAT=json, what `deals` says on stderr is one JSON object a line too."""
    _JSON["lines"] = on


def say(message: str) -> None:
    if _JSON["lines"]:
        level = logging.ERROR if message.startswith("error:") else logging.INFO
        record = logging.makeLogRecord(
            {
                "name": "service.cli",
                "levelno": level,
                "levelname": logging.getLevelName(level),
                "msg": message,
            }
        )
        message = JsonFormatter().format(record)
    print(message, file=sys.stderr)


def check_url(url: str) -> str:
    """The URL, or DatabaseUnreachable saying what is malformed in it.

    The message never quotes a part of the URL: in a URL that splits wrongly
    the "port" may be a piece of the password.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": a bracket left open
        raise DatabaseUnreachable(url, f"DATABASE_URL is malformed ({exc})") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise DatabaseUnreachable(
            url, "DATABASE_URL is malformed (it must start with postgresql://)"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        if "@" not in parts.netloc and "@" in url:
            what = "a '/', '?' or '#' in the user name or password must be percent-encoded"
        else:
            what = "the port must be a number from 1 to 65535"
        raise DatabaseUnreachable(url, f"DATABASE_URL is malformed ({what})")
    return url


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set; otherwise start (or reuse) the embedded server under .data/."""
    if settings.database_url:
        return check_url(settings.database_url)
    from service.embedded import EmbeddedPostgres  # only without DATABASE_URL

    server = EmbeddedPostgres(settings.data_dir)
    url = server.start()
    say(f"embedded PostgreSQL: data in {server.pgdata} (socket in {server.socket_dir})")
    return url


class NeedsDirectUrl(Exception):
    """DATABASE_URL points at PgBouncer and the command needs PostgreSQL itself: `deals` exits 2."""

    exit_code = 2


def session_url(settings: Settings, command: str, why: str) -> str:
    """The URL for a command that needs a session of its own: DATABASE_DIRECT_URL when
    set; DATABASE_URL unless DATABASE_POOLER=pgbouncer, where the command refuses."""
    if settings.database_direct_url:
        return check_url(settings.database_direct_url)
    if settings.database_pooler == "pgbouncer":
        raise NeedsDirectUrl(
            f"{command} needs a session of its own ({why}), which PgBouncer in transaction "
            "mode does not give: DATABASE_POOLER=pgbouncer, so DATABASE_URL is PgBouncer; "
            "set DATABASE_DIRECT_URL to PostgreSQL itself"
        )
    return database_url(settings)


def unreachable(exc: BaseException) -> str | None:
    """What failed, when `exc` says the database cannot be reached; None for anything else.

    Only the drivers already imported are consulted, so `deals` starts without them.
    """
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        # asyncio's "Connect call failed ('127.0.0.1', 1)" says less than "Connection refused"
        if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
            return os.strerror(exc.errno)
        return exc.strerror or str(exc) or exc.__class__.__name__
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None:
        if isinstance(exc, asyncpg.PostgresError):
            state = exc.sqlstate or ""
            # 08 connection, 28 authorization, 3D no such database, 57P03 starting up
            if state[:2] in ("08", "28", "3D") or state == "57P03":
                return f"{exc.__class__.__name__}: {exc}"
        elif isinstance(exc, asyncpg.ClientConfigurationError):
            return str(exc)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
    return None
