"""The served OpenAPI document is a contract a client can be built from.

It validates as OpenAPI 3.1, declares every response header with a schema,
writes integers as integers and documents every error with the one body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from openapi_spec_validator import OpenAPIV31SpecValidator

from service.types import BIGINT_MAX

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


async def test_the_served_document_is_valid_openapi_3_1(document: Any) -> None:
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


async def test_every_response_header_has_a_schema(document: Any) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            for name, header in resolved(document, response).get("headers", {}).items():
                assert "schema" in header, (path, method, status, name)


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


async def test_every_503_declares_retry_after(document: Any) -> None:
    found = 0
    for _path, _method, operation in operations(document):
        if "503" in operation["responses"]:
            header = operation["responses"]["503"]["headers"]["Retry-After"]
            assert header["schema"] == {"type": "integer", "minimum": 0, "examples": [1]}
            found += 1
    assert found >= 8


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


async def test_no_text_parameter_is_nullable(document: Any) -> None:
    nullable = set()
    for _path, _method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if "oneOf" in parameter["schema"]:
                nullable.add(parameter["name"])
            else:
                assert parameter["schema"]["type"] in ("string", "integer", "boolean")
    # msgspec reads ?min_stars=null as no filter, so those two keep their null.
    assert nullable == {"min_stars", "is_available"}
    if_match = next(
        p for p in document["paths"]["/deals/{id}"]["patch"]["parameters"] if p["in"] == "header"
    )
    assert (if_match["name"], if_match["required"], if_match["schema"]["type"]) == (
        "If-Match", False, "string",
    )  # fmt: skip


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


async def test_the_shared_errors_answer_as_documented(client: Client) -> None:
    unknown = await client.get("/no/such/route")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"
    wrong = await client.put("/deals")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert sorted(wrong.headers["allow"].split(", ")) == ["GET", "OPTIONS", "POST"]
