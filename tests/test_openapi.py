"""The OpenAPI schema documents every read parameter, response and error."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.params import MAX_LIMIT

Client = AsyncTestClient[Litestar]

# Every test here only reads: they share one seeded (or empty) read-only database.
pytestmark = pytest.mark.read_only

LIST_PARAMS = ["city", "min_stars", "price_min", "price_max", "category", "is_available"]
CONSISTENCY = "X-Read-Consistency"  # every GET that may read from a replica
PARAMS = {
    "/deals": [*LIST_PARAMS, "deal_id", "sort", "skip", "limit", "count", "cursor", CONSISTENCY],
    "/deals/stats": [
        "min_stars",
        "price_min",
        "price_max",
        "category",
        "is_available",
        CONSISTENCY,
    ],
    "/deals/{id}": ["id", "If-None-Match", CONSISTENCY],
    "/hotels": ["city", "skip", "limit", "count", CONSISTENCY],
    "/hotels/{id}": ["id", CONSISTENCY],
    "/categories": [CONSISTENCY],
}
ERRORS = {
    "/deals": ["422", "503", "504"],
    "/deals/stats": ["422", "503", "504"],
    "/deals/{id}": ["404", "422", "503", "504"],
    "/hotels": ["422", "503", "504"],
    "/hotels/{id}": ["404", "422", "503", "504"],
    "/categories": ["422", "503", "504"],  # 422: a bad X-Read-Consistency
}


@pytest.fixture
async def schema(client: Client) -> Any:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("path", sorted(PARAMS))
async def test_every_parameter_and_error_is_documented(schema: Any, path: str) -> None:
    operation = schema["paths"][path]["get"]
    parameters = {p["name"]: p for p in operation.get("parameters", [])}
    assert sorted(parameters) == sorted(PARAMS[path])
    for parameter in parameters.values():
        assert parameter["description"], parameter["name"]
    not_modified = ["304"] if path == "/deals/{id}" else []  # If-None-Match
    assert sorted(operation["responses"]) == sorted(["200", "500", *not_modified, *ERRORS[path]])
    for status in ERRORS[path]:
        content = operation["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert operation["responses"]["500"] == {"$ref": "#/components/responses/InternalError"}
    assert operation["description"]


async def test_constraints_are_in_the_schema(schema: Any) -> None:
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/deals"]["get"]["parameters"]}
    assert parameters["limit"]["maximum"] == MAX_LIMIT
    assert parameters["limit"]["default"] == 20
    assert parameters["skip"]["minimum"] == 0
    assert parameters["sort"]["enum"] == ["id", "price", "-price", "created_at", "-created_at"]
    assert parameters["count"]["enum"] == ["exact", "estimated", "none"]
    assert parameters["min_stars"]["maximum"] == 5


async def test_money_is_documented_as_strings(schema: Any) -> None:
    deal = schema["components"]["schemas"]["Deal"]["properties"]
    for name in ("price_per_night", "original_price", "discount_percent"):
        assert deal[name]["type"] == "string"
        assert "JSON string" in deal[name]["description"]
    stats = schema["components"]["schemas"]["CityStats"]["properties"]
    assert stats["avg_price"]["type"] == "string"
    pages = schema["paths"]["/deals"]["get"]["responses"]["200"]["content"]["application/json"]
    assert pages["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/DealPage"},
        {"$ref": "#/components/schemas/DealCursorPage"},
    ]
