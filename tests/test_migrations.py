"""The schema's history: every step applies, rolls back and applies again."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from service import migrate
from tests import pg


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
    assert tables(empty_db) == {"hotels", "deals", "categories", "deal_categories"}
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
    migrate.rollback(empty_db, 3)  # back to 0002: deals.categories is text
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

    migrate.rollback(empty_db, 3)
    with psycopg.connect(empty_db) as conn:
        restored: dict[int, str] = dict(
            conn.execute("SELECT deal_id, categories FROM deals WHERE deal_id < 99").fetchall()
        )
        assert restored == dict(enumerate(CATEGORY_TEXTS, start=1))
        assert conn.execute("SELECT categories FROM deals WHERE deal_id = 99").fetchone() == (
            "budget,luxury",
        )
