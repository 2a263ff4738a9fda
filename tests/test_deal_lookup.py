"""GET /deals?deal_id=N: the lookup by upstream id is a filter like the others."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.known import Known

Client = AsyncTestClient[Litestar]

pytestmark = pytest.mark.read_only


async def test_the_upstream_id_finds_its_deal_not_the_one_with_that_id(
    client: Client, known: Known
) -> None:
    # a deal whose upstream id differs from its own id: mixing them gives another deal
    deal = next(d for d in known.deals if d.deal_id is not None and d.deal_id != d.id)
    response = await client.get(f"/deals?deal_id={deal.deal_id}")
    assert response.status_code == 200
    assert response.json() == {"items": [deal.json()], "total": 1, "skip": 0, "limit": 20}


async def test_the_other_filters_still_apply(client: Client, known: Known) -> None:
    deal = next(d for d in known.deals if d.deal_id is not None)
    other_city = next(h["city"] for h in known.hotels if h["city"] != deal.hotel["city"])
    hit = await client.get(f"/deals?deal_id={deal.deal_id}&city={deal.hotel['city']}")
    assert [item["id"] for item in hit.json()["items"]] == [deal.id]
    miss = await client.get(f"/deals?deal_id={deal.deal_id}&city={other_city}")
    assert miss.json() == {"items": [], "total": 0, "skip": 0, "limit": 20}


async def test_pages_counts_and_cursors(client: Client, known: Known) -> None:
    deal = next(d for d in known.deals if d.deal_id is not None)
    skipped = await client.get(f"/deals?deal_id={deal.deal_id}&skip=1")
    assert skipped.json() == {"items": [], "total": 1, "skip": 1, "limit": 20}
    uncounted = await client.get(f"/deals?deal_id={deal.deal_id}&count=none")
    assert uncounted.json()["total"] is None
    keyset = await client.get(f"/deals?deal_id={deal.deal_id}&cursor=")
    assert keyset.json() == {"items": [deal.json()], "next_cursor": None}
    absent = await client.get("/deals?deal_id=987654321")
    assert absent.json() == {"items": [], "total": 0, "skip": 0, "limit": 20}


async def test_a_bad_upstream_id_is_a_422(client: Client) -> None:
    for bad in ("0", "-5", "abc", "9223372036854775808"):
        response = await client.get(f"/deals?deal_id={bad}")
        assert response.status_code == 422, bad
        assert response.json()["error"]["details"][0]["field"] == "deal_id"
