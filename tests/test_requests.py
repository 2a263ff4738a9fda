"""Every answer carries a request id; every error body has details and that id;
a query string the operation does not define is refused, not ignored."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.client import assert_invalid
from tests.known import Known

Client = AsyncTestClient[Litestar]

pytestmark = pytest.mark.read_only
GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_a_usable_request_id_is_echoed(client: Client) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "abc-123_XYZ.~!"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "abc-123_XYZ.~!"


@pytest.mark.parametrize("sent", [None, b"", b"has space", "é".encode(), b"x" * 129])
async def test_an_unusable_request_id_is_replaced(client: Client, sent: bytes | None) -> None:
    headers = {} if sent is None else {b"X-Request-ID": sent}
    response = await client.get("/health/live", headers=headers)
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


async def test_each_request_gets_its_own_id(client: Client) -> None:
    ids = {(await client.get("/health/live")).headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


async def test_traceparent_is_passed_through(client: Client) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await client.get("/health/live", headers={"traceparent": traceparent})
    assert response.headers["traceparent"] == traceparent
    assert "traceparent" not in (await client.get("/health/live")).headers


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "NOT_FOUND"),
        ("PUT", "/deals", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/deals", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("GET", "/deals/0", 422, "VALIDATION_ERROR"),
    ],
)
async def test_every_error_body_has_details_and_the_request_id(
    client: Client, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(
        method, path, headers={"X-Request-ID": "err-1", "Content-Type": "text/plain"}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert sorted(error) == ["code", "details", "message", "request_id"]
    assert (error["code"], error["request_id"]) == (code, "err-1")
    assert isinstance(error["details"], list)
    assert response.headers["X-Request-ID"] == "err-1"


async def test_413_has_details_and_the_request_id(client: Client) -> None:
    response = await client.post(
        "/deals",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json", "X-Request-ID": "big-1"},
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["code"], error["details"], error["request_id"]) == (
        "PAYLOAD_TOO_LARGE",
        [],
        "big-1",
    )


@pytest.mark.parametrize(
    ("path", "unknown", "takes"),
    [
        (
            "/deals?ctiy=Paris",
            ["ctiy"],
            "category, city, count, cursor, deal_id, is_available, limit, min_stars, "
            "price_max, price_min, skip, sort",
        ),
        (
            "/deals/stats?city=Paris",
            ["city"],
            "category, is_available, min_stars, price_max, price_min",
        ),
        ("/categories?x=1&a=2", ["a", "x"], "no query parameters"),
        ("/deals/1?limit=5", ["limit"], "no query parameters"),
        ("/deals/1?if_none_match=1", ["if_none_match"], "no query parameters"),
        ("/hotels?name=Grand", ["name"], "city, count, limit, skip"),
    ],
)
async def test_an_unknown_query_parameter_is_refused(
    client: Client, path: str, unknown: list[str], takes: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "UNKNOWN_PARAMETER"
    plural = "s" if len(unknown) > 1 else ""
    assert error["message"] == (
        f"unknown query parameter{plural}: {', '.join(unknown)}; this operation takes {takes}"
    )
    assert error["details"] == [
        {"field": name, "source": "query", "message": "not a parameter of this operation"}
        for name in unknown
    ]


async def test_a_parameter_sent_twice_is_refused(client: Client, known: Known) -> None:
    response = await client.get("/deals?city=Paris&city=Nice")
    message = "send each query parameter once: city came more than once"
    assert_invalid(response, message, "city", "query", "sent more than once")


async def test_pattern_messages_speak_of_the_field(client: Client) -> None:
    response = await client.get("/deals?price_min=12.345")
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "field": "price_min",
            "source": "query",
            "message": "must be a decimal such as 129.99: up to 8 digits, at most 2 decimal places",
        }
    ]
