"""GET /events, the change feed: every committed change once, in commit order."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import msgspec
import pytest

from service.api.events import FeedPosition, encode_cursor, micros
from service.compat import run_drain_hooks
from service.db.catalogue import CATALOGUE
from service.load.steps import load_file
from service.settings import Settings, SettingsError
from tests.inloop import app_and_client
from tests.known import Known
from tests.loadkit import row, write
from tests.test_deal_writes import Client, new_deal
from tests.test_health import assert_error


async def feed(client: Any, after: str | None = None, **query: Any) -> dict[str, Any]:
    params = {k: v for k, v in {"after": after, **query}.items() if v is not None}
    response = await client.get("/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def follow(client: Any, after: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Every event from `after` to the end of the feed, and the cursor there."""
    items: list[dict[str, Any]] = []
    while True:
        page = await feed(client, after, limit=7)
        items += page["items"]
        after = page["next_cursor"]
        if not page["items"]:
            return items, after


def refs(items: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(e["type"], e["deal"]["id"], e["deal"]["version"]) for e in items]


async def test_api_writes_append_one_event_each_with_the_deal_as_get_returns_it(
    client: Client, known: Known
) -> None:
    start = await feed(client)
    assert start["items"] == []

    created = await client.post("/deals", json=new_deal(known, deal_id=9001))
    deal = created.json()
    etag = created.headers["etag"]
    same = await client.patch(
        f"/deals/{deal['id']}", json={"room_type": "Suite"}, headers={"If-Match": etag}
    )
    assert same.status_code == 200
    assert same.headers["etag"] == etag
    changed = await client.patch(
        f"/deals/{deal['id']}", json={"price_per_night": "99.00"}, headers={"If-Match": etag}
    )
    relinked = await client.patch(
        f"/deals/{deal['id']}",
        json={"categories": ["family"]},
        headers={"If-Match": changed.headers["etag"]},
    )
    after_update = (await client.get(f"/deals/{deal['id']}")).json()
    deleted = await client.delete(
        f"/deals/{deal['id']}", headers={"If-Match": relinked.headers["etag"]}
    )
    assert deleted.status_code == 204

    items, _ = await follow(client, start["next_cursor"])
    assert refs(items) == [
        ("deal.created", deal["id"], 1),
        ("deal.updated", deal["id"], 2),
        ("deal.updated", deal["id"], 3),
        ("deal.deleted", deal["id"], 3),
    ]
    assert [e["deal"]["deal_id"] for e in items] == [9001] * 4
    assert items[0]["data"] == deal
    assert items[1]["data"] == changed.json()
    assert items[2]["data"] == after_update == relinked.json()
    assert items[3]["data"] is None
    ids = [e["id"] for e in items]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    ats = [datetime.fromisoformat(e["at"]) for e in items]
    assert ats == sorted(ats)
    assert all(a.tzinfo is not None for a in ats)


async def test_a_refused_write_appends_nothing(client: Client, known: Known) -> None:
    deal = known.deals[0]
    stale = await client.patch(
        f"/deals/{deal.id}", json={"room_type": "X"}, headers={"If-Match": '"99"'}
    )
    assert stale.status_code == 412
    taken = await client.post("/deals", json=new_deal(known, hotel_id=10**9))
    assert taken.status_code == 404
    assert (await feed(client))["items"] == []


async def test_a_loads_events_hold_the_deal_as_get_returns_it(
    client: Client, database_url: str, tmp_path: Path
) -> None:
    first = write(
        tmp_path / "a.csv",
        [
            row(1),
            row(2, created_at="2026-01-15T10:00:00.123456+01:00", categories=""),
            row(3, price_per_night="100", discount_percent="0"),
        ],
    )
    await load_file(database_url, first)
    again = write(
        tmp_path / "b.csv",
        [
            row(1),  # unchanged: no event
            row(
                2, created_at="2026-01-15T10:00:00.123456+01:00", categories="spa,Beach"
            ),  # categories only
            row(3, price_per_night="80.10"),
            row(4),
        ],
    )
    await load_file(database_url, again)

    items, _ = await follow(client)
    by_upstream = [(e["type"], e["deal"]["deal_id"], e["deal"]["version"]) for e in items]
    assert by_upstream == [
        ("deal.created", 1, 1),
        ("deal.created", 2, 1),
        ("deal.created", 3, 1),
        ("deal.updated", 2, 2),
        ("deal.updated", 3, 2),
        ("deal.created", 4, 1),
    ]
    for event in items:
        current = (await client.get(f"/deals/{event['deal']['id']}")).json()
        if current["version"] == event["deal"]["version"]:
            assert event["data"] == current
    # the text stored by SQL is the text the API encodes, byte for byte
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetch("SELECT deal, data::text FROM events ORDER BY id")
    finally:
        await conn.close()
    for deal, data in stored:
        got = (await client.get(f"/deals/{deal}")).json()
        if got["version"] == msgspec.json.decode(data)["version"]:
            assert msgspec.json.decode(data) == got
    created_at = {e["deal"]["deal_id"]: e["data"]["created_at"] for e in items}
    assert created_at[1] == "2026-01-15T09:00:00Z"
    assert created_at[2] == "2026-01-15T09:00:00.123456Z"


async def test_after_absent_or_empty_starts_at_the_oldest_and_a_bad_cursor_is_422(
    client: Client, known: Known
) -> None:
    await client.post("/deals", json=new_deal(known))
    assert len((await feed(client))["items"]) == 1
    assert len((await feed(client, ""))["items"]) == 1
    response = await client.get("/events", params={"after": "not-a-cursor"})
    assert response.status_code == 422
    assert_error(response.json(), "VALIDATION_ERROR")
    assert response.json()["error"]["details"][0]["field"] == "after"
    for query in ({"wait": "31"}, {"limit": "0"}, {"limit": "1001"}):
        assert (await client.get("/events", params=query)).status_code == 422


def test_events_retention_reads_a_duration_or_seconds() -> None:
    assert Settings.from_env({"EVENTS_RETENTION": "PT12H"}).events_retention == timedelta(hours=12)
    assert Settings.from_env({"EVENTS_RETENTION": "90"}).events_retention == timedelta(seconds=90)
    assert Settings().events_retention == timedelta(days=7)
    for bad, says in (("0", "longer than zero"), ("week", "ISO8601 duration")):
        with pytest.raises(SettingsError, match=says):
            Settings.from_env({"EVENTS_RETENTION": bad})


async def test_a_cursor_older_than_the_retention_is_410(client: Client, known: Known) -> None:
    old = datetime.now(UTC) - timedelta(days=7, minutes=1)
    cursor = encode_cursor(FeedPosition(last_id=0, at_us=micros(old)))
    response = await client.get("/events", params={"after": cursor})
    assert response.status_code == 410
    assert_error(response.json(), "CURSOR_EXPIRED")
    fresh = encode_cursor(FeedPosition(last_id=0, at_us=micros(old + timedelta(minutes=2))))
    assert (await client.get("/events", params={"after": fresh})).status_code == 200


@pytest.mark.read_only
async def test_an_empty_page_moves_the_cursor_date_so_a_quiet_feed_never_expires(
    settings: Settings,
) -> None:
    quick = msgspec.structs.replace(settings, events_retention=timedelta(minutes=6))
    async with app_and_client(quick) as (_app, client):
        old = datetime.now(UTC) - timedelta(minutes=5, seconds=30)
        cursor = encode_cursor(FeedPosition(last_id=0, at_us=micros(old)))
        page = await feed(client, cursor)
        assert page["items"] == []
        assert page["next_cursor"] != cursor  # dated now, less the clock margin
        assert (
            await client.get("/events", params={"after": page["next_cursor"]})
        ).status_code == 200


async def test_writes_delete_expired_events_and_the_feed_hides_them(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    await conn.execute(
        "INSERT INTO events (type, deal, version, at) "
        "SELECT 'deal.deleted', n, 1, now() - interval '8 days' FROM generate_series(1, 150) n"
    )
    assert (await feed(client))["items"] == []  # older than the retention: not handed out
    await client.post("/deals", json=new_deal(known))
    assert await conn.fetchval("SELECT count(*) FROM events") == 51  # 100 went with the write
    await client.post("/deals", json=new_deal(known))
    assert await conn.fetchval("SELECT count(*) FROM events") == 2
    assert len((await feed(client))["items"]) == 2


async def test_wait_answers_at_the_commit_of_the_next_event(
    settings: Settings, known: Known
) -> None:
    async with app_and_client(settings) as (app, client):
        start = (await feed(client))["next_cursor"]
        began = time.monotonic()
        empty = await feed(client, start, wait=1)
        assert empty["items"] == []
        assert time.monotonic() - began >= 0.9

        async def write_later() -> None:
            await asyncio.sleep(0.5)
            await client.post("/deals", json=new_deal(known))

        began = time.monotonic()
        writer = asyncio.create_task(write_later())
        page = await feed(client, start, wait=20)
        took = time.monotonic() - began
        await writer
        assert [e["type"] for e in page["items"]] == ["deal.created"]
        assert 0.4 < took < 5
        # every waiter shares the worker's one LISTEN connection
        waiters = [
            asyncio.create_task(feed(client, page["next_cursor"], wait=20)) for _ in range(5)
        ]
        await asyncio.sleep(0.3)
        await client.post("/deals", json=new_deal(known))
        pages = await asyncio.gather(*waiters)
        assert all(len(p["items"]) == 1 for p in pages)
        listeners = await app.state.db.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deals-api-events'"
        )
        assert listeners == 1

        # SIGTERM's drain ends every wait at once, and later ones do not wait
        waiting = asyncio.create_task(feed(client, pages[0]["next_cursor"], wait=20))
        await asyncio.sleep(0.3)
        began = time.monotonic()
        run_drain_hooks()
        assert (await waiting)["items"] == []
        assert (await feed(client, pages[0]["next_cursor"], wait=20))["items"] == []
        assert time.monotonic() - began < 2


INSERT_EVENT_SQL = CATALOGUE["insert_deal_event"].sql


async def test_a_writer_that_began_first_and_commits_last_is_not_skipped(
    settings: Settings, known: Known, database_url: str
) -> None:
    """T1 writes a deal first (its xid and row come first) but commits last; T2, an API
    write, commits in between. A follower sees T2 then T1, each once."""
    async with app_and_client(settings) as (_app, client):
        start = (await feed(client))["next_cursor"]
        slow = await asyncpg.connect(database_url)
        try:
            tx = slow.transaction()
            await tx.start()
            first = known.deals[0].id
            version = await slow.fetchval(
                "UPDATE deals SET room_type = 'Slow', version = version + 1 WHERE id = $1 "
                "RETURNING version",
                first,
            )
            quick = await client.post("/deals", json=new_deal(known))  # commits meanwhile
            assert quick.status_code == 201
            seen = await feed(client, start)
            assert refs(seen["items"]) == [("deal.created", quick.json()["id"], 1)]

            # T1 appends its event: it now holds the order lock to its commit, so a
            # third writer's event waits, and the feed hands out nothing past T1's
            await slow.execute(INSERT_EVENT_SQL, "deal.updated", first, None, version, None)
            third = asyncio.create_task(client.post("/deals", json=new_deal(known)))
            await asyncio.sleep(0.5)
            assert not third.done()
            assert (await feed(client, seen["next_cursor"]))["items"] == []
            await tx.commit()
            made = (await third).json()
        finally:
            await slow.close()
        rest, _ = await follow(client, seen["next_cursor"])
        assert refs(rest) == [
            ("deal.updated", first, version),
            ("deal.created", made["id"], 1),
        ]
        everything, _ = await follow(client, start)
        assert len(everything) == 3 == len({e["id"] for e in everything})


async def test_many_writers_and_a_load_one_follower_sees_every_change_once_in_order(
    settings: Settings, known: Known, database_url: str, tmp_path: Path
) -> None:
    busy = msgspec.structs.replace(settings, pool_max_size=12)
    async with app_and_client(busy) as (_app, client):
        start = (await feed(client))["next_cursor"]
        followed: list[dict[str, Any]] = []
        done = asyncio.Event()

        async def follower() -> None:
            after = start
            while True:
                page = await feed(client, after, wait=2, limit=13)
                followed.extend(page["items"])
                after = page["next_cursor"]
                if done.is_set() and not page["items"]:
                    return

        async def writer(n: int) -> list[tuple[int, int]]:
            written = []
            made = await client.post("/deals", json=new_deal(known, deal_id=100_000 + n))
            deal = made.json()
            written.append((deal["id"], 1))
            etag = made.headers["etag"]
            for step in range(4):
                got = await client.patch(
                    f"/deals/{deal['id']}",
                    json={"price_per_night": f"{100 + step}.{n % 100:02d}"},
                    headers={"If-Match": etag},
                )
                assert got.status_code == 200, got.text
                etag = got.headers["etag"]
                written.append((deal["id"], got.json()["version"]))
            return written

        async def shared(n: int) -> int:
            """Writers racing on the same known deals (retrying on 412)."""
            target = known.deals[n % 3].id
            wins = 0
            for _ in range(3):
                current = await client.get(f"/deals/{target}")
                got = await client.patch(
                    f"/deals/{target}",
                    json={"room_type": f"Room {n}-{time.monotonic_ns()}"},
                    headers={"If-Match": current.headers["etag"]},
                )
                wins += got.status_code == 200
            return wins

        # the load also changes a deal the shared writers race on (upstream id 1000)
        path = write(tmp_path / "load.csv", [*(row(n) for n in range(1, 401)), row(1000)])
        following = asyncio.create_task(follower())
        results = await asyncio.gather(
            *(writer(n) for n in range(12)),
            *(shared(n) for n in range(6)),
            load_file(database_url, path),
        )
        done.set()
        await asyncio.wait_for(following, 30)

    chunks = cast(list[list[tuple[int, int]]], results[:12])
    written = [pair for chunk in chunks for pair in chunk]
    shared_wins = sum(cast(list[int], results[12:18]))
    ids = [e["id"] for e in followed]
    assert len(ids) == len(set(ids)), "an event was handed out twice"
    assert ids == sorted(ids)
    assert len(followed) == len(written) + shared_wins + 401
    seen = {(e["deal"]["id"], e["deal"]["version"]) for e in followed}
    assert set(written) <= seen
    per_deal: dict[int, list[int]] = {}
    for event in followed:
        per_deal.setdefault(event["deal"]["id"], []).append(event["deal"]["version"])
    for versions in per_deal.values():
        assert versions == sorted(versions)
        assert len(versions) == len(set(versions))
    for deal in known.deals[:3]:
        versions = per_deal.get(deal.id, [])
        assert versions == list(range(2, 2 + len(versions)))  # seeded at version 1
    assert (
        sum(e["deal"]["deal_id"] is not None and e["deal"]["deal_id"] <= 400 for e in followed)
        == 400
    )


async def test_a_lost_listener_connection_is_opened_again(settings: Settings, known: Known) -> None:
    async with app_and_client(settings) as (app, client):
        start = (await feed(client, wait=1))["next_cursor"]  # listening from here
        pool = app.state.db.pool
        ended = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'deals-api-events'"
        )
        assert ended == 1
        for _ in range(50):  # asyncpg notices the loss
            if not app.state.db.listener.listening:
                break
            await asyncio.sleep(0.1)

        async def write_later() -> None:
            await asyncio.sleep(0.5)
            await client.post("/deals", json=new_deal(known))

        writer = asyncio.create_task(write_later())
        began = time.monotonic()
        page = await feed(client, start, wait=20)
        await writer
        assert [e["type"] for e in page["items"]] == ["deal.created"]
        assert time.monotonic() - began < 5


def test_the_openapi_document_states_the_feed() -> None:
    from tests.test_fuzz import app_schema

    operation = app_schema()["paths"]["/events"]["get"]
    assert operation["operationId"] == "listEvents"
    assert {"200", "410", "422"} <= set(operation["responses"])
    wait = next(p for p in operation["parameters"] if p["name"] == "wait")
    assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (0, 30)
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/EventPage"}
