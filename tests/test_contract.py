"""The served OpenAPI document is a contract a client can be built from.

It validates as OpenAPI 3.1, declares every response header with a schema,
writes integers as integers and documents every error with the one body;
a client generated from it by openapi-python-client (into a temporary
folder, offline) works against a live server.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from openapi_spec_validator import OpenAPIV31SpecValidator

from service.types import BIGINT_MAX
from tests.known import Known
from tests.serving import serving_clone

Client = AsyncTestClient[Litestar]
ERROR_BODY = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture
async def document(client: Client) -> Any:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: Any) -> Iterator[tuple[str, str, Any]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def resolved(document: Any, response: Any) -> Any:
    if "$ref" in response:
        name = response["$ref"].removeprefix("#/components/responses/")
        return document["components"]["responses"][name]
    return response


def walk(value: Any) -> Iterator[Any]:
    yield value
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        for child in children:
            yield from walk(child)


@pytest.mark.read_only
async def test_the_served_document_is_valid_openapi_3_1(document: Any) -> None:
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


@pytest.mark.read_only
async def test_every_response_header_has_a_schema(document: Any) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            for name, header in resolved(document, response).get("headers", {}).items():
                assert "schema" in header, (path, method, status, name)


@pytest.mark.read_only
async def test_deal_reads_and_writes_declare_etag_and_location(document: Any) -> None:
    deals, one = document["paths"]["/deals"], document["paths"]["/deals/{id}"]
    etag = one["get"]["responses"]["200"]["headers"]["ETag"]
    assert etag["required"] is True
    assert etag["schema"]["type"] == "string"
    assert one["patch"]["responses"]["200"]["headers"]["ETag"] == etag
    created = deals["post"]["responses"]["201"]["headers"]
    assert created["ETag"] == etag
    assert created["Location"]["schema"]["type"] == "string"
    assert created["Location"]["required"] is True


@pytest.mark.read_only
async def test_every_503_declares_retry_after(document: Any) -> None:
    found = 0
    for _path, _method, operation in operations(document):
        if "503" in operation["responses"]:
            header = operation["responses"]["503"]["headers"]["Retry-After"]
            assert header["schema"] == {"type": "integer", "minimum": 0, "examples": [1]}
            found += 1
    assert found >= 8


@pytest.mark.read_only
async def test_integers_are_integers(document: Any) -> None:
    floats = [v for v in walk(document) if isinstance(v, float)]
    assert floats == []
    deal_id = next(
        p["schema"]
        for p in document["paths"]["/deals/{id}"]["get"]["parameters"]
        if p["in"] == "path"
    )
    assert (deal_id["minimum"], deal_id["maximum"]) == (1, BIGINT_MAX)
    assert json.dumps(BIGINT_MAX) in json.dumps(deal_id)


@pytest.mark.read_only
async def test_no_text_parameter_is_nullable(document: Any) -> None:
    nullable = set()
    for _path, _method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if "oneOf" in parameter["schema"]:
                nullable.add(parameter["name"])
            else:
                assert parameter["schema"]["type"] in ("string", "integer", "boolean")
    # msgspec reads ?min_stars=null as no filter, so the int and bool ones keep their null.
    assert nullable == {"min_stars", "is_available", "deal_id"}
    if_match = next(
        p for p in document["paths"]["/deals/{id}"]["patch"]["parameters"] if p["in"] == "header"
    )
    assert (if_match["name"], if_match["required"], if_match["schema"]["type"]) == (
        "If-Match", False, "string",
    )  # fmt: skip


@pytest.mark.read_only
async def test_every_error_is_documented_with_the_one_body(document: Any) -> None:
    shared = document["components"]["responses"]
    assert sorted(shared) == ["InternalError", "MethodNotAllowed", "UnknownRoute"]
    for response in shared.values():
        assert response["content"]["application/json"]["schema"] == ERROR_BODY
    assert shared["MethodNotAllowed"]["headers"]["Allow"]["schema"] == {
        "type": "string", "examples": ["GET, OPTIONS, POST"],
    }  # fmt: skip
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert responses["500"] == {"$ref": "#/components/responses/InternalError"}, (path, method)
        for status, response in responses.items():
            if int(status) >= 400 and "$ref" not in response:
                assert response["content"]["application/json"]["schema"] == ERROR_BODY


@pytest.mark.read_only
async def test_the_shared_errors_answer_as_documented(client: Client) -> None:
    unknown = await client.get("/no/such/route")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"
    wrong = await client.put("/deals")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert sorted(wrong.headers["allow"].split(", ")) == ["GET", "HEAD", "OPTIONS", "POST"]


# --- a generated client against a live server ------------------------------

CLIENT_PACKAGE = "deals_contract_client"
OPERATIONS = {
    "deals": [
        "create_deal", "delete_deal", "get_deal", "get_deal_stats", "import_deals", "list_deals",
        "update_deal",
    ],
    "hotels": ["get_hotel", "list_hotels"],
    "categories": ["list_categories"],
    "health": ["get_health", "get_liveness", "get_readiness"],
}  # fmt: skip


@pytest.fixture(scope="module")
def live(
    admin_url: str, seeded_template: tuple[str, Known], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, database URL) of `deals serve` on a database holding tests/known.py's rows."""
    log = tmp_path_factory.mktemp("contract") / "server.log"
    with serving_clone(admin_url, seeded_template[0], log, LOG_LEVEL="warning") as (server, url):
        yield server.base, url


@pytest.fixture(scope="module")
def api(live: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package openapi-python-client generates from the served document, imported."""
    base, _ = live
    folder = tmp_path_factory.mktemp("generated")
    with urllib.request.urlopen(f"{base}/docs/openapi.json", timeout=10) as response:
        (folder / "openapi.json").write_bytes(response.read())
    # the generator knows no text/csv: POST /deals/import's CSV body becomes a File to send
    config = {"post_hooks": [], "content_type_overrides": {"text/csv": "application/octet-stream"}}
    (folder / "config.json").write_text(json.dumps(config))
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [
            generator, "generate", "--path", folder / "openapi.json",
            "--output-path", folder / CLIENT_PACKAGE, "--meta", "none",
            "--config", folder / "config.json",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(CLIENT_PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for module in [m for m in sys.modules if m.partition(".")[0] == CLIENT_PACKAGE]:
            del sys.modules[module]


def operation(api: ModuleType, tag: str, name: str) -> Any:
    return importlib.import_module(f"{api.__name__}.api.{tag}.{name}")


def test_generated_operations_read_well(api: ModuleType) -> None:
    for tag, names in OPERATIONS.items():
        folder = Path(api.__file__ or "").parent / "api" / tag
        assert sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") == names
        for name in names:
            assert callable(operation(api, tag, name).sync_detailed)


def test_a_deal_round_trip_through_the_generated_client(
    api: ModuleType, live: tuple[str, str]
) -> None:
    models = importlib.import_module(f"{api.__name__}.models")
    client = api.Client(base_url=live[0], raise_on_unexpected_status=True)
    hotels = operation(api, "hotels", "list_hotels").sync(client=client, city="Berlin")
    hotel = hotels.items[0]

    body = models.CreateDealDealCreate(
        hotel_id=hotel.id,
        room_type="Suite",
        price_per_night="120.50",
        original_price="150.00",
        discount_percent="19.67",
        checkin_date=date(2027, 3, 1),
        checkout_date=date(2027, 3, 4),
        categories=["Luxury"],
    )
    created = operation(api, "deals", "create_deal").sync_detailed(client=client, body=body)
    assert created.status_code == 201
    deal = created.parsed
    assert isinstance(deal, models.Deal)
    assert created.headers["location"] == f"/deals/{deal.id}"
    assert created.headers["etag"] == '"1"'
    assert (deal.hotel.id, deal.price_per_night, deal.categories) == (
        hotel.id,
        "120.50",
        ["luxury"],
    )

    get_deal = operation(api, "deals", "get_deal")
    read = get_deal.sync_detailed(deal.id, client=client)
    assert (read.status_code, read.headers["etag"]) == (200, '"1"')
    assert read.parsed.to_dict() == deal.to_dict()

    update_deal = operation(api, "deals", "update_deal")
    first = update_deal.sync_detailed(
        deal.id, client=client, body=models.UpdateDealDealPatch(room_type="Deluxe", version=1)
    )
    assert (first.status_code, first.parsed.version, first.headers["etag"]) == (200, 2, '"2"')
    stale = update_deal.sync_detailed(
        deal.id, client=client, body=models.UpdateDealDealPatch(room_type="Standard", version=1)
    )
    assert stale.status_code == 409
    assert isinstance(stale.parsed, models.ErrorResponse)
    assert stale.parsed.error.code == "VERSION_CONFLICT"
    current = update_deal.sync_detailed(
        deal.id, client=client, body=models.UpdateDealDealPatch(room_type="Standard", version=2)
    )
    assert (current.status_code, current.parsed.room_type, current.parsed.version) == (
        200, "Standard", 3,
    )  # fmt: skip

    delete_deal = operation(api, "deals", "delete_deal")
    deleted = delete_deal.sync_detailed(deal.id, client=client, if_match=current.headers["etag"])
    assert deleted.status_code == 204
    gone = get_deal.sync_detailed(deal.id, client=client)
    assert gone.status_code == 404
    assert gone.parsed.error.code == "NOT_FOUND"


async def test_a_cursor_walk_through_the_generated_client(
    api: ModuleType, live: tuple[str, str]
) -> None:
    models = importlib.import_module(f"{api.__name__}.models")
    client = api.Client(base_url=live[0], raise_on_unexpected_status=True)
    list_deals = operation(api, "deals", "list_deals")
    filters = {"city": "paris", "price_min": "90", "is_available": True}
    seen: list[int] = []
    cursor: str | None = ""
    pages = 0
    while cursor is not None:
        page = list_deals.sync(
            client=client, cursor=cursor, limit=2, sort=models.ListDealsSort.VALUE_2, **filters
        )
        assert isinstance(page, models.DealCursorPage)
        seen.extend(deal.id for deal in page.items)
        cursor = page.next_cursor
        pages += 1
    conn = await asyncpg.connect(live[1])
    try:
        expected = await conn.fetch(
            "SELECT d.id FROM deals d JOIN hotels h ON h.id = d.hotel_id "
            "WHERE lower(h.city) = 'paris' AND d.price_per_night >= 90 AND d.is_available "
            "ORDER BY d.price_per_night DESC, d.id DESC"
        )
    finally:
        await conn.close()
    assert seen == [row["id"] for row in expected]
    assert len(seen) >= 4
    assert pages == (len(seen) + 1) // 2  # the last page says next_cursor null


def test_with_a_rate_limit_the_document_declares_the_429_and_its_headers() -> None:
    from service.api.app import create_app
    from service.settings import Settings

    settings = Settings(database_url="postgresql://unused@127.0.0.1:1/unused", rate_limit="5/s")
    document: Any = create_app(settings).openapi_schema.to_schema()
    OpenAPIV31SpecValidator(document).validate()
    too_many = document["components"]["responses"]["TooManyRequests"]
    assert sorted(too_many["headers"]) == [
        "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After",
    ]  # fmt: skip
    for path, method, operation in operations(document):
        counted = not path.startswith("/health")
        assert ("429" in operation["responses"]) is counted, (method, path)
        ok = operation["responses"].get("200", {})
        assert ("RateLimit-Remaining" in ok.get("headers", {})) is (counted and bool(ok)), path
