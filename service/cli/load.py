"""`deals load`: the command line of the loader (service/load/).

Kept apart so that building the `deals` parser imports nothing heavy; the
loader itself is imported only when `deals load` runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli.common import database_url, say

if TYPE_CHECKING:
    from service.load.errors import BadRows
    from service.settings import Settings

EXIT_CODES = """exit codes:
  0  loaded (or skipped by --if-empty)
  1  bad rows (strict mode: nothing written) or conflicting hotels
  2  usage, unreadable or malformed file (empty, header only, missing or unknown
     columns, invalid UTF-8, broken quoting), unwritable rejects file, database
     unreachable or DATABASE_URL malformed
  3  database failing during the load
"""


def shown(value: str | None, width: int = 60) -> str:
    if value is None:
        return "(empty)"
    text = value if len(value) <= width else value[: width - 3] + "..."
    return '"' + text.replace("\n", "\\n").replace("\r", "\\r") + '"'


def problems_text(exc: BadRows) -> str:
    lines = [f"error: {exc.message}"]
    for p in exc.problems:
        where = f"line {p.line}" if p.line is not None else "line ?"
        lines.append(f"  {where}: {p.column} {shown(p.value)}: {p.reason}")
    more = exc.problem_count - len(exc.problems)
    if more > 0:
        lines.append(f"  ... and {more:,} more problem{'s' if more > 1 else ''}")
    lines.append(
        "  --rejects FILE writes every bad row with its reasons; "
        "--skip-bad-rows --rejects FILE loads the good rows"
    )
    return "\n".join(lines)


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    if args.skip_bad_rows and args.rejects is None:
        say("error: --skip-bad-rows needs --rejects FILE: no bad row may vanish silently")
        return 2
    import asyncio

    import asyncpg
    import msgspec

    from service.load import errors, report, steps

    path = Path(args.path)
    progress = report.progress_for(path) if path.is_file() else None
    try:
        # PostgreSQL itself when DATABASE_DIRECT_URL is set; else through PgBouncer works too
        url = settings.database_direct_url or database_url(settings)
        pooled = settings.database_pooler == "pgbouncer" and not settings.database_direct_url
        summary = asyncio.run(
            steps.load_file(
                url,
                path,
                skip_bad_rows=args.skip_bad_rows,
                rejects=args.rejects,
                if_empty=args.if_empty,
                progress=progress,
                notify=say,
                row_fk_checks=args.row_fk_checks,
                events_retention=settings.events_retention,
                pooled=pooled,
            )
        )
    except errors.BadRows as exc:
        if args.json:
            error = {
                "code": exc.code,
                "message": exc.message,
                "rows_rejected": exc.rows_rejected,
                "problem_count": exc.problem_count,
                "details": exc.details,
            }
            print(msgspec.json.encode({"error": error}).decode())
        say(problems_text(exc))
        return exc.exit_code
    except errors.LoadError as exc:
        if args.json:
            error = {"code": exc.code, "message": exc.message}
            print(msgspec.json.encode({"error": error}).decode())
        say(f"error: {exc.message}")
        return exc.exit_code
    except asyncpg.UndefinedTableError as exc:
        say(f"error: database: {exc}; is the schema migrated? (deals migrate apply)")
        return 3
    except asyncpg.PostgresError as exc:
        say(f"error: database: {exc.__class__.__name__}: {exc}")
        return 3
    if args.json:
        print(msgspec.json.encode(summary).decode())
    elif summary.skipped:
        say(f"the deals table has rows already: {path} not loaded (--if-empty)")
    else:
        print(report.summary_text(summary))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "load",
        help="load a deals CSV (all or nothing; see --skip-bad-rows)",
        description=(
            "Load a deals CSV (shared/spec/deals-csv.md) in one transaction: COPY into a "
            "staging table, every rule checked in SQL, then hotels, categories, deals "
            "(upserted on deal_id) and links. Any bad row fails the load unless "
            "--skip-bad-rows."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", help="the CSV file")
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="load the good rows; every bad row goes to --rejects",
    )
    parser.add_argument(
        "--rejects",
        metavar="PATH",
        help="write every bad row (line, reason, original fields) to PATH, before the commit",
    )
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="load only when the deals table is empty (what `make run` does)",
    )
    parser.add_argument(
        "--row-fk-checks",
        action="store_true",
        help="keep the per-row foreign-key triggers even where the role may skip them "
        "(slower; by default a superuser, or a role granted SET on session_replication_role, "
        "has the load check its references set-based)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.set_defaults(handler=cmd_load)
