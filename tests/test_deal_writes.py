"""POST, PATCH and DELETE /deals against a real database with known rows."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.settings import Settings
from tests.known import Known
from tests.test_health import assert_error

Client = AsyncTestClient[Litestar]


def new_deal(known: Known, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hotel_id": known.hotels[2]["id"],
        "room_type": "Suite",
        "price_per_night": "120.50",
        "original_price": "150.00",
        "discount_percent": "19.67",
        "checkin_date": "2027-03-01",
        "checkout_date": "2027-03-04",
        "categories": ["Romantic", "luxury", "luxury"],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


async def snapshot(conn: asyncpg.Connection[asyncpg.Record], deal_id: int) -> tuple[Any, ...]:
    row = await conn.fetchrow("SELECT * FROM deals WHERE id = $1", deal_id)
    links = await conn.fetch(
        "SELECT category_id FROM deal_categories WHERE deal_id = $1 ORDER BY 1", deal_id
    )
    return (dict(row) if row else None, [r[0] for r in links])


def fields_named(response: Any) -> list[str]:
    return [d["field"] for d in response.json()["error"]["details"]]


# --- POST -----------------------------------------------------------------


async def test_create_returns_201_location_etag_and_the_deal_as_get(
    client: Client, known: Known
) -> None:
    response = await client.post("/deals", json=new_deal(known))
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/deals/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["hotel"] == known.hotels[2]
    assert body["categories"] == ["luxury", "romantic"]
    assert body["deal_id"] is None
    assert body["version"] == 1
    assert (body["price_per_night"], body["discount_percent"]) == ("120.50", "19.67")
    fetched = await client.get(response.headers["location"])
    assert fetched.json() == body


async def test_create_defaults_and_upstream_id(client: Client, known: Known) -> None:
    body = new_deal(known, categories=..., deal_id=777)
    response = await client.post("/deals", json=body)
    assert response.status_code == 201
    assert response.json()["is_available"] is True
    assert response.json()["categories"] == []
    assert response.json()["deal_id"] == 777


RULES = [
    ("price_per_night", "0", "must be greater than 0"),
    ("price_per_night", "-5.00", "must be greater than 0"),
    ("price_per_night", "10.005", "must have at most 2 decimal places"),
    ("price_per_night", "100000000.00", "must be at most 99999999.99"),
    ("price_per_night", "NaN", "must be a finite number"),
    ("price_per_night", "Infinity", "must be a finite number"),
    ("original_price", "0.00", "must be greater than 0"),
    ("discount_percent", "100.01", "must be at most 100"),
    ("discount_percent", "-1", "must be at least 0"),
    # Money is a JSON string in one plain form, as the schema says and answers use.
    ("price_per_night", 129.99, 'must be a JSON string such as "129.99"'),
    ("original_price", 150, 'must be a JSON string such as "129.99"'),
    ("discount_percent", 15.5, 'must be a JSON string such as "15.5"'),
    ("price_per_night", True, 'must be a JSON string such as "129.99"'),
    ("price_per_night", "12,50", "must be a decimal number written as a JSON string such as"),
    ("price_per_night", "1e2", "must be written as plain digits, without sign, exponent"),
    ("original_price", "007.50", "must be written as plain digits"),
    ("discount_percent", "+5", "must be written as plain digits"),
    ("price_per_night", " 99.00", "must be written as plain digits"),
    ("room_type", "   ", "must not be blank"),
    ("room_type", "", "Expected `str` of length >= 1"),
    ("hotel_id", 0, "Expected `int` >= 1"),
    ("hotel_id", "7", "Expected `int`, got `str`"),
    ("checkin_date", "2027-02-30", "Invalid RFC3339 encoded date"),
    ("checkout_date", "2027-03-01", "must be after checkin_date"),
    ("is_available", "yes", "Expected `bool`, got `str`"),
    ("categories", "luxury", "Expected `array`, got `str`"),
]


@pytest.mark.parametrize(("field", "value", "message"), RULES)
@pytest.mark.read_only
async def test_create_rejects_each_rule_naming_the_field(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record], field: str,
    value: Any, message: str,
) -> None:  # fmt: skip
    response = await client.post("/deals", json=new_deal(known, **{field: value}))
    assert response.status_code == 422
    assert_error(response.json(), "VALIDATION_ERROR")
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == [field]
    assert details[0]["message"].startswith(message)
    assert await conn.fetchval("SELECT count(*) FROM deals") == len(known.deals)


async def test_an_integer_field_takes_a_number_with_no_fraction(
    client: Client, known: Known
) -> None:
    # JSON Schema's integer, which the OpenAPI schema uses, includes 7.0.
    body = new_deal(known, deal_id=7.0, hotel_id=float(known.hotels[2]["id"]))
    response = await client.post("/deals", json=body)
    assert response.status_code == 201
    assert (response.json()["deal_id"], response.json()["hotel"]["id"]) == (
        7,
        known.hotels[2]["id"],
    )
    refused = await client.post("/deals", json=new_deal(known, hotel_id=2.5, deal_id=1e30))
    assert sorted(fields_named(refused)) == ["deal_id", "hotel_id"]


@pytest.mark.read_only
async def test_create_names_every_failing_field_at_once(client: Client, known: Known) -> None:
    body = new_deal(known, price_per_night="0", discount_percent="101", hotel_id=..., extra=1)
    response = await client.post("/deals", json=body)
    assert response.status_code == 422
    assert sorted(fields_named(response)) == [
        "discount_percent", "extra", "hotel_id", "price_per_night",
    ]  # fmt: skip


@pytest.mark.read_only
async def test_create_unknown_categories_name_unknown_and_known(
    client: Client, known: Known
) -> None:
    response = await client.post("/deals", json=new_deal(known, categories=["spa", "luxury"]))
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["unknown"] == ["spa"]
    assert detail["known"] == ["budget", "business", "family", "luxury", "romantic"]


async def test_create_with_missing_hotel_is_404_naming_it(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    response = await client.post("/deals", json=new_deal(known, hotel_id=999999))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "hotel 999999 does not exist"
    assert await conn.fetchval("SELECT count(*) FROM deals") == len(known.deals)


async def test_create_with_taken_deal_id_is_409(client: Client, known: Known) -> None:
    response = await client.post("/deals", json=new_deal(known, deal_id=1000))
    assert response.status_code == 409
    assert_error(response.json(), "CONFLICT")


@pytest.mark.read_only
async def test_malformed_json_is_400(client: Client, known: Known) -> None:
    response = await client.post(
        "/deals", content=b'{"hotel_id": 1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_error(response.json(), "MALFORMED_JSON")


@pytest.mark.parametrize("size", [40_000, 65_536, 65_538])
@pytest.mark.read_only
async def test_deep_json_is_400_under_the_limit_and_413_over_it(
    client: Client, known: Known, settings: Settings, size: int
) -> None:
    # 40 kB, exactly the 64 kB limit, and just over it: never a 500.
    assert settings.max_body_bytes == 65_536
    body = b"[" * (size // 2) + b"]" * (size // 2)
    response = await client.post(
        "/deals", content=body, headers={"content-type": "application/json"}
    )
    if size <= settings.max_body_bytes:
        assert response.status_code == 400, response.text
        assert_error(response.json(), "MALFORMED_JSON")
        assert response.json()["error"]["message"] == "the JSON is nested too deeply"
    else:
        assert response.status_code == 413, response.text
        assert_error(response.json(), "PAYLOAD_TOO_LARGE")


@pytest.mark.read_only
async def test_non_object_json_is_422(client: Client, known: Known) -> None:
    response = await client.post("/deals", json=[1, 2])
    assert response.status_code == 422
    assert fields_named(response) == ["$"]


@pytest.mark.read_only
async def test_wrong_content_type_is_415(client: Client, known: Known) -> None:
    response = await client.post(
        "/deals", content=b"hotel_id=1", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert_error(response.json(), "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.read_only
async def test_body_over_the_limit_is_413(client: Client, known: Known) -> None:
    huge = new_deal(known, room_type="x" * 70_000)
    response = await client.post("/deals", json=huge)
    assert response.status_code == 413
    assert_error(response.json(), "PAYLOAD_TOO_LARGE")


# --- PATCH ----------------------------------------------------------------

IF_MATCH_1 = {"If-Match": '"1"'}


async def test_patch_changes_only_the_fields_sent(client: Client, known: Known) -> None:
    deal = known.deals[3]
    before = (await client.get(f"/deals/{deal.id}")).json()
    response = await client.patch(
        f"/deals/{deal.id}", json={"price_per_night": "88.80", "version": before["version"]}
    )
    assert response.status_code == 200
    after = response.json()
    assert after["price_per_night"] == "88.80"
    assert after["version"] == before["version"] + 1
    assert response.headers["etag"] == f'"{after["version"]}"'
    unchanged = {k: v for k, v in after.items() if k not in ("price_per_night", "version")}
    assert unchanged == {k: v for k, v in before.items() if k not in ("price_per_night", "version")}


@pytest.mark.read_only
async def test_patch_refuses_money_as_a_json_number(client: Client, known: Known) -> None:
    deal = known.deals[3]
    response = await client.patch(
        f"/deals/{deal.id}", json={"price_per_night": 88.8, "discount_percent": "5"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "price_per_night", "message": 'must be a JSON string such as "129.99"'}
    ]
    assert (await client.get(f"/deals/{deal.id}")).json()["version"] == 1


async def test_patch_replaces_categories_in_the_same_transaction(
    client: Client, known: Known
) -> None:
    deal = known.deals[3]  # business, luxury, romantic
    response = await client.patch(
        f"/deals/{deal.id}", json={"categories": ["Family", "budget"], "version": 1}
    )
    assert response.json()["categories"] == ["budget", "family"]
    cleared = await client.patch(f"/deals/{deal.id}", json={"categories": [], "version": 2})
    assert cleared.json()["categories"] == []
    assert cleared.json()["version"] == 3


async def test_patch_judges_dates_on_the_stored_deal_merged_with_the_patch(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    deal = known.deals[0]  # 2025-06-01 to 2025-06-03
    before = await snapshot(conn, deal.id)
    response = await client.patch(
        f"/deals/{deal.id}", json={"checkout_date": "2025-06-01", "version": 1}
    )
    assert response.status_code == 422
    assert fields_named(response) == ["checkout_date"]
    assert await snapshot(conn, deal.id) == before
    moved = await client.patch(
        f"/deals/{deal.id}", json={"checkin_date": "2025-06-02", "version": 1}
    )
    assert moved.status_code == 200


async def test_patch_with_stale_body_version_is_409_with_current_version(
    client: Client, known: Known
) -> None:
    deal = known.deals[5]
    first = await client.patch(f"/deals/{deal.id}", json={"room_type": "A", "version": 1})
    assert first.status_code == 200
    stale = await client.patch(f"/deals/{deal.id}", json={"room_type": "B", "version": 1})
    assert stale.status_code == 409
    assert_error(stale.json(), "VERSION_CONFLICT")
    assert stale.json()["error"]["details"] == [{"current_version": 2}]
    assert (await client.get(f"/deals/{deal.id}")).json()["room_type"] == "A"


async def test_if_match_on_patch_and_delete(client: Client, known: Known) -> None:
    deal = known.deals[6]
    etag = (await client.get(f"/deals/{deal.id}")).headers["etag"]
    ok = await client.patch(
        f"/deals/{deal.id}", json={"room_type": "C"}, headers={"If-Match": etag}
    )
    assert ok.status_code == 200
    stale = await client.patch(
        f"/deals/{deal.id}", json={"room_type": "D"}, headers={"If-Match": etag}
    )
    assert stale.status_code == 412
    assert_error(stale.json(), "PRECONDITION_FAILED")
    weak = await client.delete(f"/deals/{deal.id}", headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 412
    gone = await client.delete(f"/deals/{deal.id}", headers={"If-Match": etag})
    assert gone.status_code == 412
    deleted = await client.delete(f"/deals/{deal.id}", headers={"If-Match": '"2"'})
    assert deleted.status_code == 204


@pytest.mark.read_only
async def test_empty_patch_is_422(client: Client, known: Known) -> None:
    response = await client.patch(f"/deals/{known.deals[0].id}", json={"version": 1})
    assert response.status_code == 422


@pytest.mark.read_only
async def test_patch_unknown_field_is_422(client: Client, known: Known) -> None:
    response = await client.patch(f"/deals/{known.deals[0].id}", json={"deal_id": 5})
    assert response.status_code == 422
    assert fields_named(response) == ["deal_id"]


async def test_absent_deal_is_404_on_patch_and_delete(client: Client, known: Known) -> None:
    patched = await client.patch("/deals/999999", json={"room_type": "X", "version": 1})
    assert patched.status_code == 404
    assert patched.json()["error"]["message"] == "deal 999999 does not exist"
    deleted = await client.delete("/deals/999999", headers={"If-Match": '"1"'})
    assert deleted.status_code == 404


async def test_failed_patch_changes_nothing(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    deal = known.deals[3]
    before = await snapshot(conn, deal.id)
    # Categories pass, then the foreign key fails: the whole transaction rolls back.
    response = await client.patch(
        f"/deals/{deal.id}", json={"categories": ["budget"], "hotel_id": 999999, "version": 1}
    )
    assert response.status_code == 404
    unknown = await client.patch(f"/deals/{deal.id}", json={"categories": ["nope"], "version": 1})
    assert unknown.status_code == 422
    assert await snapshot(conn, deal.id) == before


# --- DELETE ---------------------------------------------------------------


async def test_delete_removes_the_deal_from_every_read(client: Client, known: Known) -> None:
    deal = known.deals[1]
    stats_before = {r["city"]: r["deal_count"] for r in (await client.get("/deals/stats")).json()}
    assert (await client.delete(f"/deals/{deal.id}", headers=IF_MATCH_1)).status_code == 204
    assert (await client.get(f"/deals/{deal.id}")).status_code == 404
    listed = (await client.get("/deals", params={"limit": 100})).json()
    assert deal.id not in [d["id"] for d in listed["items"]]
    assert listed["total"] == len(known.deals) - 1
    stats_after = {r["city"]: r["deal_count"] for r in (await client.get("/deals/stats")).json()}
    city = deal.hotel["city"]
    assert stats_after[city] == stats_before[city] - 1
    assert (await client.delete(f"/deals/{deal.id}", headers=IF_MATCH_1)).status_code == 404


# --- the database's own safety net ----------------------------------------


async def test_check_violation_that_reaches_the_database_maps_to_422(
    conn: asyncpg.Connection[asyncpg.Record], known: Known
) -> None:
    from service.api.errors import translate

    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute("UPDATE deals SET price_per_night = 0 WHERE id = $1", known.deals[0].id)
    error = translate(caught.value)
    assert (error.status_code, error.code) == (422, "CONSTRAINT_VIOLATION")
    with pytest.raises(asyncpg.UniqueViolationError) as dup:
        await conn.execute("UPDATE deals SET deal_id = 1001 WHERE deal_id = 1000")
    assert translate(dup.value).status_code == 409


@pytest.mark.read_only
async def test_malformed_if_match_is_422(client: Client, known: Known) -> None:
    response = await client.delete(f"/deals/{known.deals[0].id}", headers={"If-Match": "3"})
    assert response.status_code == 422
    assert (await client.get(f"/deals/{known.deals[0].id}")).status_code == 200


@pytest.mark.read_only
async def test_options_lists_every_method_of_a_path(client: Client) -> None:
    expected = {
        "/deals": "GET, HEAD, OPTIONS, POST",
        "/deals/1": "DELETE, GET, HEAD, OPTIONS, PATCH",
        "/health": "GET, HEAD, OPTIONS",
    }
    for path, allow in expected.items():
        response = await client.options(path)
        assert (response.status_code, response.headers["allow"]) == (204, allow)


# --- preconditions, no-op patches, one 422 --------------------------------


async def test_a_write_without_precondition_is_428_and_changes_nothing(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    deal = known.deals[2]
    before = await snapshot(conn, deal.id)
    patched = await client.patch(f"/deals/{deal.id}", json={"room_type": "Blind"})
    deleted = await client.delete(f"/deals/{deal.id}")
    for response in (patched, deleted):
        assert response.status_code == 428
        error = response.json()["error"]
        assert error["code"] == "PRECONDITION_REQUIRED"
        assert error["details"] == [
            {"field": "If-Match", "source": "header", "message": "is required"}
        ]
    assert await snapshot(conn, deal.id) == before
    # If-Match: * is a precondition too: "whatever version is current"
    starred = await client.patch(
        f"/deals/{deal.id}", json={"room_type": "Any"}, headers={"If-Match": "*"}
    )
    assert (starred.status_code, starred.json()["version"]) == (200, 2)


async def test_a_patch_that_changes_nothing_keeps_the_version(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    deal = known.deals[3]  # business, luxury, romantic
    before = await snapshot(conn, deal.id)
    same = {
        "room_type": deal.room_type,
        "price_per_night": str(deal.price_per_night),
        "categories": ["romantic", "Business", "luxury"],
        "version": 1,
    }
    response = await client.patch(f"/deals/{deal.id}", json=same)
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert response.headers["etag"] == '"1"'
    assert await snapshot(conn, deal.id) == before
    xmin = await conn.fetchval("SELECT xmin::text FROM deals WHERE id = $1", deal.id)
    again = await client.patch(f"/deals/{deal.id}", json=same, headers=IF_MATCH_1)
    assert again.json()["version"] == 1
    # nothing was written: the row is the same tuple
    assert await conn.fetchval("SELECT xmin::text FROM deals WHERE id = $1", deal.id) == xmin
    stale = await client.patch(f"/deals/{deal.id}", json={**same, "version": 7})
    assert stale.status_code == 409  # the version is still checked


async def test_changing_only_categories_raises_the_version(client: Client, known: Known) -> None:
    deal = known.deals[3]
    response = await client.patch(
        f"/deals/{deal.id}", json={"categories": ["budget"], "version": 1}
    )
    assert (response.json()["categories"], response.json()["version"]) == (["budget"], 2)


@pytest.mark.read_only
async def test_unknown_categories_come_in_the_same_422_as_the_other_fields(
    client: Client, known: Known
) -> None:
    body = new_deal(known, price_per_night="0", categories=["spa", "luxury", "golf"])
    response = await client.post("/deals", json=body)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == ["price_per_night", "categories"]
    assert details[1] == {
        "field": "categories",
        "message": "unknown names: golf, spa; known: budget, business, family, luxury, romantic",
        "unknown": ["golf", "spa"],
        "known": ["budget", "business", "family", "luxury", "romantic"],
    }
    patch = await client.patch(
        f"/deals/{known.deals[0].id}", json={"room_type": " ", "categories": ["spa"], "version": 1}
    )
    assert [d["field"] for d in patch.json()["error"]["details"]] == ["room_type", "categories"]
