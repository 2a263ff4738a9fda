"""HTTP around the handlers: HEAD, gzip, CORS, the Link of a cursor page, the docs' assets.

http_layer wraps the whole app, before routing (app.asgi_handler), because
Litestar routes HEAD only to handlers declared for it and answers 405 before
any app middleware runs. Each request passes through it once:

- HEAD is served as GET with the body dropped, so status and headers
  (Content-Length and Content-Encoding included) are those of GET, for every
  route, /docs included. The OpenAPI document lists no HEAD operations.
  An Allow header that lists GET (405 answers, OPTIONS) also lists HEAD.
- gzip: Litestar's CompressionMiddleware (GZIP below) compresses bodies of
  1 KiB or more. It only looks for the substring "gzip" in Accept-Encoding,
  so the header is first reduced to what RFC 9110 12.5.3 allows: `gzip` when
  gzip, x-gzip or `*` has a q above 0, else nothing (so `gzip;q=0` gets
  identity). Every response says `Vary: Accept-Encoding`.
- CORS (off unless CORS_ORIGINS is set) is configured as a Litestar
  CORSConfig but applied here: Litestar 2.25's CORSMiddleware gives
  Access-Control-Allow-Methods/-Headers/-Expose-Headers to any origin on
  simple requests, answers a preflight from an unlisted origin with a
  text/plain 400, and replaces Vary (dropping Accept-Encoding). Here a
  preflight (OPTIONS with Origin and Access-Control-Request-Method) from a
  listed origin gets 204 and the Access-Control-* headers; any other
  request from a listed origin gets Access-Control-Allow-Origin and
  -Expose-Headers; an unlisted origin gets no Access-Control-* header and
  its preflight goes on to the app like any OPTIONS. `Vary: Origin` is on
  every response while CORS is on, so a cache never hands one origin's
  answer to another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from litestar import Controller, Request, get
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.response import File
from litestar.types import ASGIApp, Message, Receive, Send
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from service.api.errors import NotFound
from service.api.request_id import header

GZIP: Final = CompressionConfig(backend="gzip", minimum_size=1024)

# --- CORS ---------------------------------------------------------------------------

CORS_METHODS: Final = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST"]
CORS_ALLOW_HEADERS: Final = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "X-Read-Consistency",
    "X-Request-ID",
]
CORS_EXPOSE_HEADERS: Final = [
    "ETag",
    "Link",
    "Location",
    "Retry-After",
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "WWW-Authenticate",
]
CORS_MAX_AGE: Final = 600


def cors_config(origins: Sequence[str]) -> CORSConfig | None:
    """The CORS of these origins (from CORS_ORIGINS); None, CORS off, when there are none."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=list(CORS_METHODS),  # type: ignore[arg-type]
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        allow_credentials=False,  # tokens travel in Authorization, not in cookies
        max_age=CORS_MAX_AGE,
    )


def _preflight_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ", ".join(CORS_METHODS).encode()),
        (b"access-control-allow-headers", ", ".join(CORS_ALLOW_HEADERS).encode()),
        (b"access-control-max-age", str(CORS_MAX_AGE).encode()),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]


# --- Accept-Encoding ----------------------------------------------------------------

_CODING = re.compile(r"^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:;\s*q\s*=\s*([0-9.]+)\s*)?$")


@lru_cache(maxsize=256)
def accepts_gzip(accept_encoding: str) -> bool:
    """Whether this Accept-Encoding allows gzip (RFC 9110 12.5.3): gzip or x-gzip
    with q > 0, or, when neither is named, `*` with q > 0. A part that does not
    parse is ignored."""
    named: float | None = None
    star: float | None = None
    for part in accept_encoding.split(","):
        match = _CODING.match(part)
        if match is None:
            continue
        coding = match[1].lower()
        try:
            q = float(match[2]) if match[2] is not None else 1.0
        except ValueError:
            continue
        if coding in ("gzip", "x-gzip"):
            named = max(named or 0.0, q)
        elif coding == "*":
            star = q
    if named is not None:
        return named > 0
    return star is not None and star > 0


# --- the layer ----------------------------------------------------------------------


def _with_vary(headers: MutableScopeHeaders, token: str) -> None:
    present = [v.strip() for v in ",".join(headers.getall("vary", [])).split(",") if v.strip()]
    if not {"*", token.lower()} & {v.lower() for v in present}:
        headers["vary"] = ", ".join([*present, token])


def _with_head(allow: str) -> str:
    methods = {m.strip().upper() for m in allow.split(",") if m.strip()}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _request_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's headers with Accept-Encoding reduced to `gzip` or nothing; the same
    list when it has no Accept-Encoding or only `gzip` already (most clients, every bench)."""
    found = [value for key, value in headers if key.lower() == b"accept-encoding"]
    if not found or found == [b"gzip"]:
        return headers
    out = [(k, v) for k, v in headers if k.lower() != b"accept-encoding"]
    if accepts_gzip(found[0].decode("latin-1")):
        out.append((b"accept-encoding", b"gzip"))
    return out


# The response headers the layer may have to merge with; any other passes as it is.
_MERGED: Final = frozenset({b"vary", b"allow"})
_VARY_ACCEPT_ENCODING: Final = (b"vary", b"Accept-Encoding")


def http_layer(app: ASGIApp, cors: CORSConfig | None) -> ASGIApp:
    """The ASGI app that serves `app` with HEAD, gzip negotiation and CORS (module docstring)."""

    async def layer(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        method = scope["method"]
        origin = header(scope, b"origin") if cors is not None else None
        allowed = cors is not None and origin is not None and cors.is_origin_allowed(origin)
        if (
            allowed
            and method == "OPTIONS"
            and header(scope, b"access-control-request-method") is not None
        ):
            assert origin is not None
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": _preflight_headers(origin),
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return

        headers = _request_headers(scope["headers"])
        head = method == "HEAD"
        inner: Any = scope
        if head or headers is not scope["headers"]:
            # A new scope: the server keeps its own, which must still say HEAD.
            inner = {**scope, "headers": headers, "method": "GET" if head else method}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = message.get("headers")
                if (
                    cors is None
                    and type(raw) is list
                    and not any(key.lower() in _MERGED for key, _ in raw)
                ):
                    raw.append(_VARY_ACCEPT_ENCODING)  # the usual answer: nothing to merge
                else:
                    out = MutableScopeHeaders.from_message(message)
                    _with_vary(out, "Accept-Encoding")
                    if "allow" in out:
                        out["allow"] = _with_head(out["allow"])
                    if cors is not None:
                        _with_vary(out, "Origin")
                        if allowed:
                            assert origin is not None
                            out["access-control-allow-origin"] = origin
                            out["access-control-expose-headers"] = ", ".join(CORS_EXPOSE_HEADERS)
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await app(inner, receive, send_wrapper)

    return layer


# --- the Link of a cursor page ------------------------------------------------------


def next_link(request: Request[Any, Any, Any], next_cursor: str) -> str:
    """`Link: </deals?...&cursor=NEXT>; rel="next"`: the request's own path and query
    string, every other parameter kept byte for byte and in place, cursor set to
    next_cursor.

    The URL is relative (path and query): RFC 8288 resolves it against the
    request's URL, which stays right behind a proxy that rewrites the host.
    next_cursor is URL-safe base64 and needs no escaping.
    """
    query = request.scope.get("query_string", b"").decode("latin-1")
    parts = [part for part in query.split("&") if part]
    at = next((i for i, part in enumerate(parts) if part.split("=", 1)[0] == "cursor"), None)
    if at is None:
        parts.append(f"cursor={next_cursor}")
    else:
        parts[at] = f"cursor={next_cursor}"
    return f'<{request.url.path}?{"&".join(parts)}>; rel="next"'


# --- the docs' assets ---------------------------------------------------------------

SWAGGER_UI: Final = Path(swagger_ui_path)
DOCS_ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
ASSETS_PATH: Final = "/docs/assets"


def local_swagger_ui(path: str) -> SwaggerRenderPlugin:
    """Litestar's Swagger UI page, its scripts, style and icon taken from ASSETS_PATH
    instead of a CDN."""
    return SwaggerRenderPlugin(
        path=path,
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )


class DocsAssetsController(Controller):
    """Swagger UI's files (swagger-ui-bundle-v2, the swagger-ui-dist release), served
    by the service so that /docs needs no network."""

    path = ASSETS_PATH
    include_in_schema = False

    @get("/{name:str}", include_in_schema=False)
    async def asset(self, name: FromPath[str]) -> File:
        media_type = DOCS_ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset {name}")
        return File(SWAGGER_UI / name, media_type=media_type, content_disposition_type="inline")
