"""Files that are not deals CSVs, the command line's exit codes, and a load killed midway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TypeAlias

import asyncpg
import pytest

from service.load import generator as generate
from service.load.source import COLUMNS
from service.load.steps import LoadError, MalformedFile, UsageError, load_file
from tests import ROOT, loadkit
from tests.loadkit import csv_bytes, row, rows, write

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
HEADER = ",".join(COLUMNS).encode()
GOOD = csv_bytes(rows(3)).split(b"\n", 1)[1]  # three data lines, no header


def without(column: str) -> bytes:
    columns = [c for c in COLUMNS if c != column]
    return csv_bytes(rows(2), columns=columns)


MALFORMED = {
    "missing column": (without("categories"), "header: missing column categories"),
    "missing columns": (
        csv_bytes(rows(2), columns=COLUMNS[2:]),
        "header: missing columns deal_id, hotel_name",
    ),
    "unknown column": (
        csv_bytes([{**row(1), "wifi": "yes"}], columns=[*COLUMNS, "wifi"]),
        "header: unknown column wifi",
    ),
    "column twice": (
        csv_bytes(rows(1), columns=[*COLUMNS, "room_type"]),
        "header: column named twice: room_type",
    ),
    "unterminated quote": (
        HEADER + b"\n" + GOOD + b'4,"Hotel Open,Paris,France,+1,3,Std,1,1,0,2026-01-01\n5,x\n',
        'line 5: unterminated quoted field: a " opens a field that never closes',
    ),
    "empty file": (b"", "the file is empty (no header, no rows)"),
    "byte-order mark only": (b"\xef\xbb\xbf", "the file is empty (no header, no rows)"),
    "header only": (HEADER + b"\n", "no data rows after the header"),
    "header and blank lines": (HEADER + b"\r\n\r\n\n", "no data rows after the header"),
    "invalid UTF-8": (
        HEADER + b"\n" + GOOD + b"4,Caf\xe9 Royal" + GOOD.split(b"\n")[0][9:] + b"\n",
        "line 5: invalid UTF-8 (byte 0xe9); the file must be UTF-8 text",
    ),
    "invalid UTF-8 in the header": (
        b"deal_id\xff," + HEADER + b"\n" + GOOD,
        "line 1: invalid UTF-8 (byte 0xff) in the header",
    ),
    "NUL byte": (
        HEADER + b"\n" + GOOD.replace(b"Hotel 2", b"Hotel\x002"),
        "line 3: invalid UTF-8 (a NUL byte); the file must be UTF-8 text",
    ),
    "extra field": (
        HEADER + b"\n" + GOOD + GOOD.split(b"\n")[0] + b",extra\n",
        "line 5: extra data after last expected column",
    ),
    "missing field": (
        HEADER + b"\n" + GOOD.split(b"\n")[0].rsplit(b",", 1)[0] + b"\n",
        'line 2: missing data for column "created_at"',
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
async def test_a_malformed_file_is_a_clear_error_and_writes_nothing(
    database_url: str, conn: Conn, tmp_path: Path, case: str
) -> None:
    data, message = MALFORMED[case]
    path = tmp_path / "deals.csv"
    path.write_bytes(data)
    with pytest.raises(MalformedFile) as caught:
        await load_file(database_url, path, rejects=tmp_path / "rejects.csv")
    assert caught.value.message == f"{path}: {message}"
    assert caught.value.exit_code == 2
    assert await loadkit.counts(conn) == dict.fromkeys(loadkit.TABLES, 0)


@pytest.mark.read_only
async def test_no_such_file(database_url: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        await load_file(database_url, tmp_path / "missing.csv")
    with pytest.raises(UsageError, match="is a directory"):
        await load_file(database_url, tmp_path)


@pytest.mark.read_only
async def test_an_unwritable_rejects_file_fails_before_any_work(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    path = write(tmp_path / "d.csv", rows(3))
    with pytest.raises(UsageError, match="cannot write"):
        await load_file(database_url, path, rejects=tmp_path / "no" / "such" / "dir.csv")
    assert await loadkit.counts(conn) == dict.fromkeys(loadkit.TABLES, 0)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_a_full_disk_for_the_rejects_leaves_the_database_as_it_was(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    records = rows(4)
    records[1] = row(2, price_per_night="-1")
    path = write(tmp_path / "d.csv", records)
    with pytest.raises(UsageError, match="/dev/full: cannot write the rejects"):
        await load_file(database_url, path, skip_bad_rows=True, rejects="/dev/full")
    assert await loadkit.counts(conn) == dict.fromkeys(loadkit.TABLES, 0)


@pytest.mark.read_only
async def test_a_failure_is_a_load_error(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"")
    with pytest.raises(LoadError):
        await load_file(database_url, path)


async def cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(loadkit.cli, *args, database_url=database_url)


async def test_cli_exit_codes_and_messages(database_url: str, conn: Conn, tmp_path: Path) -> None:
    bad = rows(3)
    bad[1] = row(2, discount_percent="150")
    bad_path = write(tmp_path / "bad.csv", bad)

    strict = await cli("load", str(bad_path), database_url=database_url)
    assert strict.returncode == 1
    assert strict.stdout == ""
    assert strict.stderr.splitlines()[:2] == [
        f"error: {bad_path}: 1 of 3 rows are bad (1 problems); nothing was written",
        '  line 3: discount_percent "150": must be from 0 to 100',
    ]

    as_json = await cli("load", str(bad_path), "--json", database_url=database_url)
    error = json.loads(as_json.stdout)["error"]
    assert (as_json.returncode, error["code"], error["problem_count"]) == (1, "BAD_ROWS", 1)
    assert error["details"] == [
        {"line": 3, "column": "discount_percent", "value": "150", "reason": "must be from 0 to 100"}
    ]

    malformed = tmp_path / "m.csv"
    malformed.write_bytes(without("hotel_phone"))
    refused = await cli("load", str(malformed), database_url=database_url)
    assert refused.returncode == 2
    assert refused.stderr == f"error: {malformed}: header: missing column hotel_phone\n"

    usage = await cli("load", str(bad_path), "--skip-bad-rows", database_url=database_url)
    assert usage.returncode == 2
    assert "--skip-bad-rows needs --rejects" in usage.stderr

    rejects = tmp_path / "rejects.csv"
    skipped = await cli(
        "load", str(bad_path), "--skip-bad-rows", "--rejects", str(rejects), "--json",
        database_url=database_url,
    )  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["rows_rejected"] == 1
    assert (
        rejects.read_text().splitlines()[1].startswith("3,discount_percent must be from 0 to 100,")
    )
    assert (await loadkit.counts(conn))["deals"] == 2

    down = await cli("load", str(bad_path), database_url="postgresql://nobody@127.0.0.1:1/none")
    assert down.returncode == 2  # unreachable: exit 2, as every `deals` command
    assert down.stderr == (
        "error: cannot connect to the database at postgresql://nobody@127.0.0.1:1/none: "
        "[Errno 111] Connect call failed ('127.0.0.1', 1)\n"
    )
    for result in (strict, refused, usage, down):
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big enough that a load spends seconds in COPY and in the deals insert."""
    path = tmp_path_factory.mktemp("big") / "deals-300k.csv"
    generate.generate(path, 300_000, 150, seed=2)
    return path


async def loader_backend(conn: Conn, query_like: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deals-load' "
            "AND state = 'active' AND query LIKE $1",
            query_like,
        )
    )


@pytest.mark.parametrize(
    ("phase", "query_like"),
    [("mid-COPY", "COPY %"), ("mid-insert", "%name: insert_deals%")],
)
async def test_a_load_killed_midway_leaves_no_trace(
    database_url: str, conn: Conn, big_file: Path, tmp_path: Path, phase: str, query_like: str
) -> None:
    await load_file(database_url, write(tmp_path / "first.csv", rows(5)))
    before = await loadkit.snapshot(conn)
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "service", "load", str(big_file)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not await loader_backend(conn, query_like):
            assert process.returncode is None, f"the load ended before {phase}"
            assert time.monotonic() < deadline, f"never saw {phase}"
            await asyncio.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    # the backend notices the dead client (client_connection_check_interval) and rolls back
    deadline = time.monotonic() + 60
    while await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deals-load'"
    ):
        assert time.monotonic() < deadline, "the killed load's backend lingers"
        await asyncio.sleep(0.05)
    assert await loadkit.snapshot(conn) == before
    assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    again = await load_file(database_url, write(tmp_path / "again.csv", rows(5, start=6)))
    assert again.deals_new == 5
