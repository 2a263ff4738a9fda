"""The `deals` command line (the same as `python -m service`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from service import logs
from service.cli import common, doctor, generate, load, sql, token
from service.cli.common import (
    DatabaseUnreachable,
    NeedsDirectUrl,
    database_url,
    say,
    session_url,
    unreachable,
)
from service.settings import Settings, SettingsError, redact_url

log = logging.getLogger("service.serve")

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from service import serve
    from service.api.auth import verifier

    try:
        verifier(settings)  # a public key that cannot be used stops serve here, not in a worker
    except SettingsError as exc:
        say(f"error: {exc}")
        return 2
    os.environ["DATABASE_URL"] = database_url(settings)
    if not settings.auth_on:
        log.warning(
            "access control is off: neither AUTH_JWT_SECRET nor AUTH_JWT_PUBLIC_KEY is set, "
            "so any client may read and change deals"
        )
    serve.run(
        settings,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
    )
    return 0


# Why migrations refuse PgBouncer's transaction mode: what breaks there.
MIGRATE_NEEDS = (
    "a migration outside a transaction SETs lock_timeout, then builds its index "
    "CONCURRENTLY: through PgBouncer the two may run on different server connections, "
    "and the SET stays behind on one; psycopg prepares statements it runs often"
)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from service import migrate  # yoyo is imported only by the commands that use it

    if args.action == "new":
        forward, backward = migrate.new(args.name)
        print(f"created {forward}\ncreated {backward}")
        print("write both, then review with `deals migrate status` before `deals migrate apply`")
        return 0
    url = session_url(settings, "deals migrate", MIGRATE_NEEDS)
    if args.action == "apply":
        applied = migrate.apply(url)
        for mid in applied:
            print(f"applied {mid}")
        print(f"{len(applied)} migration(s) applied" if applied else "already up to date")
    elif args.action == "rollback":
        count = None if args.all else args.count
        rolled = migrate.rollback(url, count)
        for mid in rolled:
            print(f"rolled back {mid}")
        print(f"{len(rolled)} migration(s) rolled back")
    else:
        for state in migrate.status(url):
            print(f"{'applied' if state.applied else 'pending'}  {state.id}")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "url":
        url = database_url(settings)
        print(url if args.show_password else redact_url(url))
        return 0
    if settings.database_url:
        say("DATABASE_URL is set: that server is used and no embedded server is managed")
        return 2
    from service.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.data_dir)
    if args.action == "start":
        print(server.start())
    elif server.stop():
        say(f"stopped the embedded PostgreSQL in {server.pgdata}")
    else:
        say("the embedded PostgreSQL was not running")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deals", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the JSON API")
    serve.add_argument("--host", help="bind address (API_HOST)")
    serve.add_argument("--port", type=int, help="port (API_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (API_WORKERS)")
    serve.set_defaults(handler=cmd_serve)

    migrate = sub.add_parser("migrate", help="schema migrations in migrations/")
    msub = migrate.add_subparsers(dest="action", required=True, metavar="ACTION")
    msub.add_parser("apply", help="apply every pending migration")
    rollback = msub.add_parser("rollback", help="roll back the newest migrations")
    group = rollback.add_mutually_exclusive_group()
    group.add_argument("--count", type=int, default=1, help="how many (default 1)")
    group.add_argument("--all", action="store_true", help="every applied migration")
    msub.add_parser("status", help="list migrations, applied or pending")
    new = msub.add_parser("new", help="create the next migration and its rollback")
    new.add_argument("name")
    migrate.set_defaults(handler=cmd_migrate)

    db = sub.add_parser("db", help="the embedded PostgreSQL (when DATABASE_URL is unset)")
    dsub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    url = dsub.add_parser("url", help="print the database URL (password hidden)")
    url.add_argument("--show-password", action="store_true", help="print the password too")
    dsub.add_parser("start", help="start the embedded server (data in .data/)")
    dsub.add_parser("stop", help="stop the embedded server")
    db.set_defaults(handler=cmd_db)

    for module in (sql, generate, load, doctor, token):
        module.register(sub)
    return parser


def embedded_error(exc: Exception) -> bool:
    """An EmbeddedError: service.embedded is imported only by the commands that start or
    stop the embedded server (process start counts in `deals load`'s goal), so an
    exception can be one only once the module is loaded."""
    embedded = sys.modules.get("service.embedded")
    return embedded is not None and isinstance(exc, embedded.EmbeddedError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        say(f"error: {exc}")
        return 2
    logs.configure(settings)
    common.json_lines(settings.log_format == "json")
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except DatabaseUnreachable as exc:
        say(f"error: {exc}")
        return DatabaseUnreachable.exit_code
    except NeedsDirectUrl as exc:
        say(f"error: {exc}")
        return NeedsDirectUrl.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if embedded_error(exc):
            say(f"error: {exc}")
            return 1
        what = unreachable(exc)
        if what is None:
            raise
        url = settings.database_url or "the embedded server"
        say(f"error: {DatabaseUnreachable(url, what)}")
        return DatabaseUnreachable.exit_code
