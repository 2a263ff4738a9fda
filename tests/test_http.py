"""HTTP around the handlers: gzip, HEAD, If-None-Match, CORS, the docs' own assets, Link."""

from __future__ import annotations

import gzip
import re
import socket
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.api.http import SWAGGER_UI, accepts_gzip
from service.settings import Settings
from tests.known import Known
from tests.serving import serving

Client = AsyncTestClient[Litestar]
IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}


async def more_deals(conn: asyncpg.Connection[asyncpg.Record], copies: int) -> int:
    """Copies of every known deal with their categories; the number of deals after."""
    await conn.execute(
        """
        WITH copied AS (
            INSERT INTO deals (hotel_id, room_type, price_per_night, original_price,
                               discount_percent, checkin_date, checkout_date, is_available,
                               created_at)
            SELECT hotel_id, room_type, price_per_night, original_price, discount_percent,
                   checkin_date, checkout_date, is_available, created_at
            FROM deals CROSS JOIN generate_series(1, $1::int)
            RETURNING id, room_type
        )
        SELECT count(*) FROM copied
        """,
        copies,
    )
    count: int = await conn.fetchval("SELECT count(*) FROM deals")
    return count


SERVER_TIMING = re.compile(r"db;dur=\d+\.\d, app;dur=\d+\.\d")


async def raw(client: Client, method: str, url: str, **headers: str) -> tuple[Any, bytes]:
    """The response and its body as sent, before httpx undoes any Content-Encoding."""
    async with client.stream(method, url, headers=headers) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, body


# --- gzip ---------------------------------------------------------------------------


async def test_a_100_item_page_is_gzipped_when_asked(
    client: Client, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    assert await more_deals(conn, 4) == 150
    plain, plain_body = await raw(client, "GET", "/deals?limit=100", **IDENTITY)
    zipped, zipped_body = await raw(client, "GET", "/deals?limit=100", **GZIP)
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    assert int(plain.headers["content-length"]) == len(plain_body)
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) == len(zipped_body)
    assert gzip.decompress(zipped_body) == plain_body
    assert len(msgspec.json.decode(plain_body)["items"]) == 100
    assert len(zipped_body) * 5 < len(plain_body)


@pytest.mark.parametrize(
    ("accept_encoding", "compressed"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("*;q=0", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("br", False),
        ("deflate", False),
        ("", False),
    ],
)
@pytest.mark.read_only
async def test_gzip_only_when_accept_encoding_allows_it(
    client: Client, known: Known, accept_encoding: str, compressed: bool
) -> None:
    response, body = await raw(
        client, "GET", "/deals?limit=20", **{"Accept-Encoding": accept_encoding}
    )
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == ("gzip" if compressed else None)
    assert response.headers["vary"] == "Accept-Encoding"
    assert (gzip.decompress(body) if compressed else body).startswith(b'{"items":[')


@pytest.mark.read_only
async def test_a_small_answer_is_not_compressed_but_still_varies(client: Client) -> None:
    response, body = await raw(client, "GET", "/health/live", **GZIP)
    assert response.status_code == 200
    assert body == b'{"status":"ok"}'
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize(
    ("header", "allowed"),
    [("gzip", True), ("gzip ; q=0.1", True), ("gzip;q=zero", False), ("x-gzip;q=0", False)],
)
def test_accepts_gzip(header: str, allowed: bool) -> None:
    assert accepts_gzip(header) is allowed


# --- HEAD ---------------------------------------------------------------------------

GET_ROUTES = [
    "/health",
    "/health/live",
    "/health/ready",
    "/docs",
    "/docs/openapi.json",
    "/docs/assets/swagger-ui.css",
    "/deals",
    "/deals?limit=100",
    "/deals?cursor=&limit=5",
    "/deals/{id}",
    "/deals/stats",
    "/hotels",
    "/hotels/{hotel}",
    "/categories",
    # errors too: HEAD is GET without the body
    "/deals/999999",
    "/no/such/route",
    "/deals?ctiy=paris&limit=0",
]


@pytest.mark.parametrize("encoding", [IDENTITY, GZIP], ids=["identity", "gzip"])
@pytest.mark.parametrize("path", GET_ROUTES)
@pytest.mark.read_only
async def test_head_is_get_without_the_body(
    client: Client, known: Known, path: str, encoding: dict[str, str]
) -> None:
    url = path.format(id=known.deals[0].id, hotel=known.deals[0].hotel["id"])
    same_id = {**encoding, "X-Request-ID": "head-1"}
    got, body = await raw(client, "GET", url, **same_id)
    head, head_body = await raw(client, "HEAD", url, **same_id)
    assert head.status_code == got.status_code

    def timeless(headers: Any) -> list[tuple[str, str]]:  # Server-Timing measures each request
        return [(k, v) for k, v in headers.multi_items() if k != "server-timing"]

    assert timeless(head.headers) == timeless(got.headers)
    assert "server-timing" in head.headers
    assert head_body == b""
    assert body
    assert int(head.headers["content-length"]) == len(body)


@pytest.mark.read_only
async def test_head_of_the_docs_page_gives_its_length(client: Client) -> None:
    got, body = await raw(client, "GET", "/docs", **IDENTITY)
    head, _ = await raw(client, "HEAD", "/docs", **IDENTITY)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.headers["content-type"] == "text/html; charset=utf-8"
    assert head.headers["content-length"] == str(len(body))


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/deals", "GET, HEAD, OPTIONS, POST"),
        ("DELETE", "/deals", "GET, HEAD, OPTIONS, POST"),
        ("PUT", "/deals/1", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("POST", "/health", "GET, HEAD, OPTIONS"),
        ("POST", "/deals/stats", "GET, HEAD, OPTIONS"),
        ("DELETE", "/docs", "GET, HEAD, OPTIONS"),
    ],
)
@pytest.mark.read_only
async def test_other_methods_are_405_and_allow_lists_head(
    client: Client, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.read_only
async def test_options_allow_lists_head(client: Client) -> None:
    response = await client.options("/deals")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, HEAD, OPTIONS, POST"


@pytest.mark.read_only
async def test_the_openapi_document_lists_no_head(client: Client) -> None:
    paths = (await client.get("/docs/openapi.json")).json()["paths"]
    assert paths
    assert not [p for p, item in paths.items() if "head" in item]
    assert not [p for p in paths if p.startswith("/docs")]


@pytest.mark.read_only
async def test_head_over_a_real_socket_sends_no_body(database_url: str, tmp_path: Path) -> None:
    """uvicorn sees HEAD (the layer serves GET in a copy of the scope) and sends the
    headers of GET, Content-Length included, and not one byte of body."""

    request = "{} /docs HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    with serving(database_url, tmp_path / "serve.log") as server:
        got = exchange(server.port, request.format("GET"))
        head = exchange(server.port, request.format("HEAD"))
    _, got_body = got.split(b"\r\n\r\n", 1)
    head_head, head_body = head.split(b"\r\n\r\n", 1)
    assert head_body == b""
    assert head_head.startswith(b"HTTP/1.1 200 OK\r\n")
    length = re.search(rb"(?im)^content-length: (\d+)\r?$", head_head)
    assert length is not None
    assert int(length[1]) == len(got_body)
    assert b"content-encoding: gzip" in head_head.lower()
    assert gzip.decompress(got_body).startswith(b"<!DOCTYPE html>")


def exchange(port: int, request: str) -> bytes:
    """Everything a real server sends back for this raw request, until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- If-None-Match ------------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match", ['"1"', 'W/"1"', '"7", "1"', 'W/"7",W/"1"', "*", ' "9" , "1" ']
)
@pytest.mark.read_only
async def test_if_none_match_that_matches_is_304(
    client: Client, known: Known, if_none_match: str
) -> None:
    id = known.deals[0].id
    for method in ("GET", "HEAD"):
        headers = {"If-None-Match": if_none_match, "X-Request-ID": "inm-1"}
        response, body = await raw(client, method, f"/deals/{id}", **headers)
        assert response.status_code == 304
        assert body == b""
        assert SERVER_TIMING.fullmatch(response.headers["server-timing"])
        assert {k: v for k, v in response.headers.items() if k != "server-timing"} == {
            "etag": '"1"',
            "vary": "Accept-Encoding",
            "x-request-id": "inm-1",
        }


@pytest.mark.parametrize("if_none_match", ['"2"', 'W/"11"', '"1', "1", "", 'W/ "1"', '"1" "2"'])
@pytest.mark.read_only
async def test_if_none_match_that_does_not_match_is_200(
    client: Client, known: Known, if_none_match: str
) -> None:
    deal = known.deals[0]
    response = await client.get(f"/deals/{deal.id}", headers={"If-None-Match": if_none_match})
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json() == deal.json()


async def test_if_none_match_after_a_change_is_200_with_the_new_etag(
    client: Client, known: Known
) -> None:
    id = known.deals[0].id
    changed = await client.patch(
        f"/deals/{id}", json={"room_type": "Loft"}, headers={"If-Match": '"1"'}
    )
    assert changed.status_code == 200
    stale = await client.get(f"/deals/{id}", headers={"If-None-Match": '"1"'})
    assert stale.status_code == 200
    assert stale.headers["etag"] == '"2"'
    fresh = await client.get(f"/deals/{id}", headers={"If-None-Match": '"2"'})
    assert fresh.status_code == 304


@pytest.mark.read_only
async def test_if_none_match_star_on_an_absent_deal_is_404(client: Client, known: Known) -> None:
    response = await client.get("/deals/999999", headers={"If-None-Match": "*"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


# --- CORS ---------------------------------------------------------------------------

LISTED = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "PATCH",
    "Access-Control-Request-Headers": "authorization, content-type, if-match",
}


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[Client]:
    with_cors = msgspec.structs.replace(
        settings, cors_origins=(LISTED, "http://localhost:3000", "https://*.example.org")
    )
    async with AsyncTestClient(app=create_app(with_cors)) as test_client:
        yield test_client


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize("origin", [LISTED, "http://localhost:3000", "https://ui.example.org"])
@pytest.mark.read_only
async def test_a_preflight_from_a_listed_origin_gets_what_it_needs(
    cors_client: Client, origin: str
) -> None:
    response = await cors_client.options("/deals/1", headers={"Origin": origin, **PREFLIGHT})
    assert response.status_code == 204
    assert response.content == b""
    assert cors_headers(response) == {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "DELETE, GET, HEAD, OPTIONS, PATCH, POST",
        "access-control-allow-headers": (
            "Authorization, Content-Type, If-Match, If-None-Match, X-Read-Consistency, X-Request-ID"
        ),
        "access-control-max-age": "600",
    }
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    "origin", ["https://evil.example.net", "http://app.example.com", "https://example.org", "null"]
)
@pytest.mark.read_only
async def test_a_preflight_from_an_unlisted_origin_gets_no_cors_header(
    cors_client: Client, origin: str
) -> None:
    response = await cors_client.options("/deals/1", headers={"Origin": origin, **PREFLIGHT})
    assert response.status_code == 204  # the app's own OPTIONS answer
    assert response.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH"
    assert cors_headers(response) == {}
    assert response.headers["vary"] == "Accept-Encoding, Origin"


@pytest.mark.read_only
async def test_a_request_from_a_listed_origin_may_read_the_headers(
    cors_client: Client, known: Known
) -> None:
    id = known.deals[0].id
    response = await cors_client.get(f"/deals/{id}", headers={"Origin": LISTED})
    assert response.status_code == 200
    assert cors_headers(response) == {
        "access-control-allow-origin": LISTED,
        "access-control-expose-headers": (
            "ETag, Link, Location, Retry-After, X-Request-ID, RateLimit-Limit, "
            "RateLimit-Remaining, RateLimit-Reset, WWW-Authenticate"
        ),
    }
    assert response.headers["vary"] == "Accept-Encoding, Origin"
    missing = await cors_client.get("/deals/999999", headers={"Origin": LISTED})
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == LISTED


@pytest.mark.read_only
async def test_a_request_from_an_unlisted_origin_gets_no_cors_header(
    cors_client: Client, known: Known
) -> None:
    response = await cors_client.get("/deals", headers={"Origin": "https://evil.example.net"})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert response.headers["vary"] == "Accept-Encoding, Origin"


@pytest.mark.read_only
async def test_cors_is_off_by_default(client: Client, known: Known) -> None:
    preflight = await client.options("/deals/1", headers={"Origin": LISTED, **PREFLIGHT})
    assert preflight.status_code == 204
    assert cors_headers(preflight) == {}
    response = await client.get("/deals", headers={"Origin": LISTED})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert response.headers["vary"] == "Accept-Encoding"


@pytest.mark.read_only
async def test_cors_origins_from_the_environment(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serving(database_url, log, CORS_ORIGINS=f" {LISTED} ,") as server:
        answer = exchange(
            server.port,
            f"OPTIONS /deals HTTP/1.1\r\nHost: x\r\nOrigin: {LISTED}\r\n"
            "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert f"access-control-allow-origin: {LISTED}\r\n".encode() in answer.lower()


# --- /docs without network ----------------------------------------------------------


class Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if tag in ("script", "link") and found.get(name):
                self.urls.append((tag, str(found[name])))


CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


@pytest.mark.read_only
async def test_the_docs_page_loads_only_its_own_assets(client: Client) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    parser = Assets()
    parser.feed(page.text)
    urls = sorted(url for _tag, url in parser.urls)
    assert urls == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui-standalone-preset.js",
        "/docs/assets/swagger-ui.css",
    ]
    assert "cdn." not in page.text
    assert "unpkg" not in page.text
    for url in urls:
        assert url.startswith("/")
        assert not url.startswith("//")
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"] == CONTENT_TYPES[Path(url).suffix], url
        assert asset.content == (SWAGGER_UI / Path(url).name).read_bytes()


@pytest.mark.read_only
async def test_the_swagger_ui_is_version_5_for_openapi_3_1(client: Client) -> None:
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert SWAGGER_UI.name.startswith("swagger-ui-5.")
    assert (await client.get("/docs/openapi.json")).json()["openapi"].startswith("3.1")


@pytest.mark.parametrize(
    "name", ["index.html", "swagger-initializer.js", "..%2Fswagger-ui.css", "nothing.js"]
)
@pytest.mark.read_only
async def test_only_the_listed_assets_are_served(client: Client, name: str) -> None:
    response = await client.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


# --- Link on cursor pages -----------------------------------------------------------


def next_url(response: Any) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match is not None, link
    return match[1]


@pytest.mark.read_only
async def test_cursor_pages_link_to_the_next_page(client: Client, known: Known) -> None:
    url: str | None = "/deals?city=paris&cursor=&sort=-price&limit=4"
    ids: list[int] = []
    pages = 0
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200
        body = response.json()
        ids += [item["id"] for item in body["items"]]
        pages += 1
        link = next_url(response)
        if body["next_cursor"] is None:
            assert link is None
            break
        assert link == f"/deals?city=paris&cursor={body['next_cursor']}&sort=-price&limit=4"
        url = link
    paris = [d for d in known.deals if d.hotel["city"] == "Paris"]
    assert sorted(ids) == sorted(d.id for d in paris)
    assert len(ids) == len(set(ids))
    assert pages == -(-len(paris) // 4)


@pytest.mark.read_only
async def test_a_cursor_page_without_a_next_page_has_no_link(client: Client, known: Known) -> None:
    response = await client.get("/deals?cursor=&limit=100")
    assert response.status_code == 200
    assert response.json()["next_cursor"] is None
    assert "link" not in response.headers


@pytest.mark.read_only
async def test_offset_pages_have_no_link(client: Client, known: Known) -> None:
    response = await client.get("/deals?limit=2")
    assert response.status_code == 200
    assert response.json()["total"] == len(known.deals)
    assert "link" not in response.headers
