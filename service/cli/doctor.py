"""`deals doctor [--api URL] [--json]`: diagnose a live database (and the service).

Four checks, in this order (shared/spec/ops.md): n_plus_one (statements per
request by route, from the service's /metrics: needs --api), missing_index
(big tables read by sequential scans, and the named queries behind them),
pool (sessions idle in transaction, the API's pool, max_connections), bloat
(dead rows, stale statistics, pages not all-visible). Each ends ok, warn or
fail with its evidence and the fix. Without --api, n_plus_one is `ok`, "not
checked", and pool leaves out the API's pool: a check that was not run never
fails a run.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from service.cli.common import session_url

if TYPE_CHECKING:
    from service.settings import Settings

EXIT_CODES = """exit codes:
  0  no check failed (ok or warn)
  1  a check failed
  2  the database cannot be reached, or DATABASE_URL is malformed
"""


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from service.doctor import checks, report

    thresholds = report.Thresholds(
        max_queries_per_request=args.max_queries,
        idle_in_transaction_warn=args.idle_warn,
        idle_in_transaction_fail=max(args.idle_fail, args.idle_warn),
    )
    url = session_url(
        settings,
        "deals doctor",
        "its statement_timeout and lock_timeout are session settings, and pg_stat_activity "
        "is read as PostgreSQL sees it",
    )
    found = asyncio.run(
        checks.diagnose(
            url,
            api=args.api,
            token=os.environ.get("METRICS_TOKEN") or None,
            thresholds=thresholds,
        )
    )
    if args.json:
        print(report.as_json(found).decode())
    else:
        print(report.human(found))
    return 1 if checks.statuses_of(found) == "fail" else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from service.doctor import report  # constants only: nothing heavy

    parser = sub.add_parser(
        "doctor",
        help="diagnose the database and the service: n+1, missing index, pool, bloat",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--api",
        metavar="URL",
        help="the running service (e.g. http://127.0.0.1:8000): its /metrics is read "
        "(with METRICS_TOKEN as a bearer token when set)",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as one JSON object")
    thresholds = (  # (flag, default, metavar, what it sets)
        ("--max-queries", report.MAX_QUERIES_PER_REQUEST, "N",
         "n_plus_one fails a route above N statements per request on average"),
        ("--idle-warn", report.IDLE_IN_TRANSACTION_WARN, "SECONDS",
         "pool warns of a session idle in transaction this long"),
        ("--idle-fail", report.IDLE_IN_TRANSACTION_FAIL, "SECONDS",
         "... and fails at this long"),
    )  # fmt: skip
    for flag, default, metavar, what in thresholds:
        parser.add_argument(
            flag, type=float, default=default, metavar=metavar, help=f"{what} (default %(default)g)"
        )
    parser.set_defaults(handler=cmd_doctor)
