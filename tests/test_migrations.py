"""The schema's history: every step applies, rolls back and applies again."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest
from yoyo import read_migrations
from yoyo.migrations import read_sql_migration

from service import migrate
from service.db.catalogue import CATALOGUE
from service.load.generator import STAR_WEIGHTS
from tests import pg

BASELINE = 5  # 0001-0005 were applied in production before squawk: never edited, not linted
SQUAWK = Path(sysconfig.get_path("scripts")) / "squawk"
SQUAWK_CONFIG = Path(__file__).resolve().parents[1] / ".squawk.toml"


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    name = "test_migrations_empty"
    pg.drop(admin_url, name)
    pg.admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    yield pg.with_database(admin_url, name)
    pg.drop(admin_url, name)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT LIKE '%yoyo%'"
        ).fetchall()
    return {row[0] for row in rows}


def test_round_trip(empty_db: str) -> None:
    ids = migrate.migration_ids()
    assert migrate.apply(empty_db) == ids
    assert tables(empty_db) == {
        "hotels",
        "deals",
        "categories",
        "deal_categories",
        "events",
        "deal_totals",
        "deal_price_totals",
    }
    assert migrate.rollback(empty_db, None) == list(reversed(ids))
    assert tables(empty_db) == set()
    assert migrate.apply(empty_db) == ids
    assert all(state.applied for state in migrate.status(empty_db))
    assert migrate.apply(empty_db) == []


def test_every_migration_has_a_rollback() -> None:
    for mid in migrate.migration_ids():
        assert (migrate.migrations_dir() / f"{mid}.rollback.sql").is_file(), mid


CATEGORY_TEXTS = ["luxury,romantic", "", "budget", "budget,family,luxury", "romantic"]


def test_categories_data_migration(empty_db: str) -> None:
    # Apply up to the text column, fill rows that carry categories.
    migrate.apply(empty_db)
    since_0002 = len(migrate.migration_ids()) - 2
    migrate.rollback(empty_db, since_0002)  # back to 0002: deals.categories is text
    with psycopg.connect(empty_db) as conn:
        hotel = conn.execute(
            "INSERT INTO hotels (name, city, country, phone, star_rating) "
            "VALUES ('H', 'Paris', 'France', '+33 1', 4) RETURNING id"
        ).fetchone()
        assert hotel is not None
        for n, text in enumerate(CATEGORY_TEXTS, start=1):
            conn.execute(
                "INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, "
                "original_price, discount_percent, checkin_date, checkout_date, categories) "
                "VALUES (%s, %s, 'Suite', 100, 120, 16.67, '2027-01-01', '2027-01-03', %s)",
                (n, hotel[0], text),
            )
        # A messy text is normalized too: trimmed, lower-cased, deduplicated.
        conn.execute(
            "INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, original_price, "
            "discount_percent, checkin_date, checkout_date, categories) VALUES (99, %s, 'Suite', "
            "1, 1, 0, '2027-01-01', '2027-01-02', ' Luxury ,luxury,, BUDGET')",
            (hotel[0],),
        )

    migrate.apply(empty_db)
    with psycopg.connect(empty_db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM categories ORDER BY name")]
        assert names == ["budget", "family", "luxury", "romantic"]
        links = conn.execute("SELECT count(*) FROM deal_categories").fetchone()
        assert links == (2 + 0 + 1 + 3 + 1 + 2,)
        messy = conn.execute(
            "SELECT string_agg(c.name, ',' ORDER BY c.name) FROM deal_categories dc "
            "JOIN categories c ON c.id = dc.category_id JOIN deals d ON d.id = dc.deal_id "
            "WHERE d.deal_id = 99"
        ).fetchone()
        assert messy == ("budget,luxury",)
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'deals' AND column_name = 'categories'"
        ).fetchone()
        assert columns == (0,)

    migrate.rollback(empty_db, since_0002)
    with psycopg.connect(empty_db) as conn:
        restored: dict[int, str] = dict(
            conn.execute("SELECT deal_id, categories FROM deals WHERE deal_id < 99").fetchall()
        )
        assert restored == dict(enumerate(CATEGORY_TEXTS, start=1))
        assert conn.execute("SELECT categories FROM deals WHERE deal_id = 99").fetchone() == (
            "budget,luxury",
        )


def copy_migrations(folder: Path, up_to: int) -> Path:
    """The migrations numbered up to `up_to`, forward and rollback, copied into `folder`."""
    folder.mkdir()
    for path in migrate.migrations_dir().glob("[0-9]*.sql"):
        if int(path.name.split("_", 1)[0]) <= up_to:
            shutil.copy(path, folder / path.name)
    return folder


# The sample's shape (service/generate.py): 150 hotels, stars weighted like STAR_WEIGHTS.
SAMPLE_HOTELS = 150
STARS = [stars for stars, weight in enumerate(STAR_WEIGHTS, start=1) for _ in range(weight)]
MIN_STARS = re.compile(r"h\.star_rating >= \$(\d+)::int")
LIMIT = re.compile(r"LIMIT \$(\d+)::int")
UPSTREAM_ID = re.compile(r"d\.deal_id = \$(\d+)::bigint")
# A filter shape's query (sql/deals.sql) takes a city, not NULL, and a keyset id to start after.
REQUIRED: dict[str, dict[int, object]] = {
    "list_deals_in_city_by_id": {1: "City 1", 3: 0},
}


async def test_no_min_stars_query_uses_the_star_rating_index(empty_db: str, tmp_path: Path) -> None:
    """Why 0006 drops hotels_star_rating_idx: on the schema as 0005 left it, no query filtered
    by min_stars plans a scan of it, for any min_stars. The hotels table is a few pages, so
    the planner reads it whole (count and stats) or probes hotels_pkey per deal (lists).
    """
    migrate.apply(empty_db, copy_migrations(tmp_path / "to_0005", BASELINE))
    conn = await asyncpg.connect(empty_db, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        await conn.execute(
            "INSERT INTO hotels (name, city, country, phone, star_rating) "
            "SELECT 'Hotel ' || i, 'City ' || i % 60, 'Country', '+1-' || i, "
            "($2::smallint[])[1 + i % cardinality($2::smallint[])] "
            "FROM generate_series(1, $1::int) AS i",
            SAMPLE_HOTELS,
            STARS,
        )
        await conn.execute("INSERT INTO categories (name) VALUES ('budget'), ('luxury')")
        await conn.execute(
            "INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, original_price, "
            "discount_percent, checkin_date, checkout_date) "
            "SELECT i, 1 + i * 7919 % $1::int, 'Suite', 50 + i % 300, 400, 10, "
            "date '2027-01-01' + i % 90, date '2027-01-03' + i % 90 "
            "FROM generate_series(1, 5000) AS i",
            SAMPLE_HOTELS,
        )
        await conn.execute(
            "INSERT INTO deal_categories (deal_id, category_id) SELECT id, 1 + id % 2 FROM deals"
        )
        await conn.execute("ANALYZE")
        indexes = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'hotels_star_rating_idx'"
        )
        assert indexes == 1

        filtered = {  # deal_totals (0010) is not there yet: its queries read hotels whole
            name: q
            for name, q in CATALOGUE.items()
            if MIN_STARS.search(q.sql) and "deal_totals" not in q.sql
        }
        assert {"list_deals_by_id", "count_deals", "deal_stats_by_city"} <= filtered.keys()
        for name, query in filtered.items():
            for stars in range(1, 6):
                args: list[object] = [None] * query.params
                found = MIN_STARS.search(query.sql)
                assert found is not None
                args[int(found.group(1)) - 1] = stars
                limit = LIMIT.search(query.sql)
                if limit:
                    args[int(limit.group(1)) - 1] = 20
                upstream = UPSTREAM_ID.search(query.sql)
                if upstream:  # NULL would fold the plan away: look up a real one
                    args[int(upstream.group(1)) - 1] = 1
                for number, value in REQUIRED.get(name, {}).items():
                    args[number - 1] = value
                rows = await conn.fetch(f"EXPLAIN {query.sql}", *args)
                plan = "\n".join(row[0] for row in rows)
                assert "hotels h" in plan, (name, plan)
                assert "hotels_star_rating_idx" not in plan, (name, stars, plan)
    finally:
        await conn.close()


DROP_STARS = "0006_drop_hotels_star_rating_idx"


def star_index(url: str) -> list[tuple[bool]]:
    """hotels_star_rating_idx as pg_index has it: [(valid,)], or [] when absent."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = "
            "to_regclass('hotels_star_rating_idx')"
        ).fetchall()


def test_0006_drops_and_rebuilds_the_index_outside_a_transaction(
    empty_db: str, tmp_path: Path
) -> None:
    (migration,) = [m for m in read_migrations(str(migrate.migrations_dir())) if m.id == DROP_STARS]
    migration.load()
    assert migration.use_transactions is False  # yoyo read `-- transactional: false`

    folder = copy_migrations(tmp_path / "to_0006", BASELINE + 1)  # 0006 the newest
    migrate.apply(empty_db, folder)
    assert star_index(empty_db) == []
    assert migrate.rollback(empty_db, 1, folder) == [DROP_STARS]
    assert star_index(empty_db) == [(True,)]  # CREATE INDEX CONCURRENTLY finished: valid
    assert migrate.apply(empty_db, folder) == [DROP_STARS]
    assert star_index(empty_db) == []


def test_0006_would_fail_inside_a_transaction(empty_db: str, tmp_path: Path) -> None:
    """The directive is what makes 0006 work: without it yoyo wraps the file in a
    transaction and PostgreSQL refuses DROP INDEX CONCURRENTLY there."""
    folder = copy_migrations(tmp_path / "transactional", BASELINE + 1)
    forward = folder / f"{DROP_STARS}.sql"
    text = forward.read_text()
    assert "-- transactional: false\n" in text
    forward.write_text(text.replace("-- transactional: false\n", ""))
    with pytest.raises(psycopg.errors.ActiveSqlTransaction, match="transaction block"):
        migrate.apply(empty_db, folder)
    assert star_index(empty_db) == [(True,)]


CITY_INDEX = "0007_hotels_city_folded_idx"


def index_state(url: str, name: str) -> list[tuple[bool, str]]:
    """The index as pg_index has it: [(valid, definition)], or [] when absent."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT indisvalid, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indexrelid = to_regclass(%s)",
            (name,),
        ).fetchall()


def test_0007_builds_the_folded_city_index_outside_a_transaction(
    empty_db: str, tmp_path: Path
) -> None:
    folder = copy_migrations(tmp_path / "to_0007", 7)
    (migration,) = [m for m in read_migrations(str(folder)) if m.id == CITY_INDEX]
    migration.load()
    assert migration.use_transactions is False

    migrate.apply(empty_db, folder)
    ((valid, definition),) = index_state(empty_db, "hotels_city_folded_idx")
    assert valid
    assert definition == (
        "CREATE INDEX hotels_city_folded_idx ON public.hotels USING btree "
        "(lower(upper((NORMALIZE(city, NFC) COLLATE pg_c_utf8))))"
    )
    assert migrate.rollback(empty_db, 1, folder) == [CITY_INDEX]
    assert index_state(empty_db, "hotels_city_folded_idx") == []


DROP_LOWER_CITY = "0008_drop_hotels_lower_city_idx"


def test_0008_drops_the_lower_city_index_that_no_query_uses(empty_db: str, tmp_path: Path) -> None:
    assert not [name for name, q in CATALOGUE.items() if "lower(h.city)" in q.sql]
    folder = copy_migrations(tmp_path / "to_0008", 8)
    (migration,) = [m for m in read_migrations(str(folder)) if m.id == DROP_LOWER_CITY]
    migration.load()
    assert migration.use_transactions is False

    migrate.apply(empty_db, folder)
    assert index_state(empty_db, "hotels_lower_city_idx") == []
    assert index_state(empty_db, "hotels_city_folded_idx")[0][0]
    assert migrate.rollback(empty_db, 1, folder) == [DROP_LOWER_CITY]
    assert index_state(empty_db, "hotels_lower_city_idx") == [
        (True, "CREATE INDEX hotels_lower_city_idx ON public.hotels USING btree (lower(city))")
    ]
    assert migrate.apply(empty_db, folder) == [DROP_LOWER_CITY]
    assert index_state(empty_db, "hotels_lower_city_idx") == []


# What production ran; an applied migration is never edited (CONTRIBUTING.md).
BASELINE_SHA256 = {
    "0001_create_hotels": "06b3fa477cc3569a5c480c4b2570782b04f70a5ac28b7aff1e92e887832b2894",
    "0002_create_deals": "72aea533e2a800ce1cc5868e35863218d5e06d2c33f4e28cb40e85b3a4c150c3",
    "0003_normalize_categories": "307a5351764a377c40ae795d338d04a55b2d61eeff6759d169a1618a1a85ef1a",
    "0004_deals_version": "7c6ae571ec0b44a83efa9427512994d58590c1c4d8671612935bb720bb4294b3",
    "0005_filter_indexes": "5b2cfbe61c0ed18f77b34a7305bc691626c47700dd73c55c8f83a18cc59a78c1",
}


def test_the_baseline_is_unchanged() -> None:
    found = {
        mid: hashlib.sha256((migrate.migrations_dir() / f"{mid}.sql").read_bytes()).hexdigest()
        for mid in migrate.migration_ids()[:BASELINE]
    }
    assert found == BASELINE_SHA256


def after_baseline(folder: Path | None = None) -> list[str]:
    return [mid for mid in migrate.migration_ids(folder) if int(mid[:4]) > BASELINE]


SETTING = re.compile(
    r"SET\s+(?P<local>LOCAL\s+)?(?P<name>lock_timeout|statement_timeout)\s*(=|TO)\s*\S.*",
    re.IGNORECASE,
)


def timeouts_first(path: Path, transactional: bool) -> None:
    """The file's first two statements, as yoyo runs them, set lock_timeout and
    statement_timeout: SET LOCAL inside yoyo's transaction, plain SET without one."""
    _, _, statements = read_sql_migration(str(path))
    settings = [SETTING.fullmatch(s.strip().rstrip(";").strip()) for s in statements[:2]]
    assert all(settings), (path.name, statements[:2])
    assert {m["name"].lower() for m in settings if m} == {"lock_timeout", "statement_timeout"}
    assert all(bool(m["local"]) is transactional for m in settings if m), path.name


def transactional(path: Path) -> bool:
    directives, _, _ = read_sql_migration(str(path))
    return str(directives.get("transactional", "true")).lower() != "false"


def test_migrations_after_the_baseline_set_their_timeouts_first() -> None:
    folder = migrate.migrations_dir()
    ids = after_baseline()
    assert ids, "no migration after the baseline"
    for mid in ids:
        in_transaction = transactional(folder / f"{mid}.sql")
        timeouts_first(folder / f"{mid}.sql", in_transaction)
        timeouts_first(folder / f"{mid}.rollback.sql", in_transaction)


def squawk(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SQUAWK), "--config", str(SQUAWK_CONFIG), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_squawk_passes_on_every_migration_after_the_baseline() -> None:
    """What `make lint` runs: every file, the baseline left out by .squawk.toml."""
    files = sorted(migrate.migrations_dir().glob("[0-9]*.sql"))
    result = squawk(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    linted = 2 * len(after_baseline())  # forward and rollback
    assert f"Found 0 issues in {linted} files" in result.stdout, result.stdout


PROBE = (
    "CREATE TABLE {table} AS SELECT current_setting('lock_timeout') AS lock_timeout, "
    "current_setting('statement_timeout') AS statement_timeout;\n"
)


def probe(url: str, table: str) -> tuple[str, str] | None:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT lock_timeout, statement_timeout FROM {table}").fetchone()


def test_new_writes_the_timeouts_and_the_rules(empty_db: str, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path / "migrations", 9999)
    newest = migrate.migration_ids(folder)[-1]
    forward, backward = migrate.new("Add hotel notes", folder)
    stem = f"{int(newest[:4]) + 1:04d}_add_hotel_notes"
    assert (forward.name, backward.name) == (f"{stem}.sql", f"{stem}.rollback.sql")

    text = forward.read_text()
    assert text.startswith(f"-- depends: {newest}\n")
    for rule in (
        "Expand, migrate, contract",
        "NOT VALID",
        "VALIDATE CONSTRAINT",
        "CONCURRENTLY",
        "`-- transactional: false`",
        "Never edit",
    ):
        assert rule in text, rule
    assert transactional(forward)  # the rules quote the directive; yoyo must not read it
    set_local = [
        f"SET LOCAL lock_timeout = '{migrate.LOCK_TIMEOUT}';",
        f"SET LOCAL statement_timeout = '{migrate.STATEMENT_TIMEOUT}';",
    ]
    for path in (forward, backward):
        _, _, statements = read_sql_migration(str(path))
        assert [s.strip() for s in statements] == set_local, path.name
        timeouts_first(path, transactional=True)
    result = squawk(forward, backward)
    assert result.returncode == 0, result.stdout + result.stderr

    # Filled in, the timeouts are what squawk asks for and are in force for the statements.
    with forward.open("a") as f:
        f.write("ALTER TABLE hotels ADD COLUMN note text;\n" + PROBE.format(table="probe"))
    with backward.open("a") as f:
        f.write("-- squawk-ignore ban-drop-table\nDROP TABLE probe;\n")
        f.write("-- squawk-ignore ban-drop-column\n")
        f.write("ALTER TABLE hotels DROP COLUMN note;\n")
    result = squawk(forward, backward)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Found 0 issues in 2 files" in result.stdout
    # Without them squawk fails: the filled statements are what it checks.
    bare = tmp_path / "bare.sql"
    bare.write_text(forward.read_text().replace(migrate.TIMEOUTS, ""))
    assert squawk(bare).returncode == 1

    # SET LOCAL holds inside yoyo's transaction for this file and ends with it.
    after = folder / f"{int(stem[:4]) + 1:04d}_after.sql"
    after.write_text(f"-- depends: {stem}\n" + PROBE.format(table="probe_after"))
    (folder / f"{after.stem}.rollback.sql").write_text("DROP TABLE probe_after;\n")
    migrate.apply(empty_db, folder)
    assert probe(empty_db, "probe") == (migrate.LOCK_TIMEOUT, migrate.STATEMENT_TIMEOUT)
    assert probe(empty_db, "probe_after") == ("0", "0")
    assert migrate.rollback(empty_db, 2, folder) == [after.stem, stem]
