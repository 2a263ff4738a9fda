"""X-Read-Consistency: a client that must read its own write asks for the primary.

With read replicas (DATABASE_REPLICA_URLS) a GET reads from a replica, which
may be up to REPLICA_MAX_LAG_SECONDS behind the primary: a deal just written
may not be there yet. `X-Read-Consistency: primary` sends the request's reads
to the primary (service/db/replicas.py, PRIMARY_READS). The header is
documented, and checked, on every GET operation that may read from a replica:
any other value is a 422 naming the header, so a typo never silently reads
stale data. GET /events and /health read the primary whatever it says, and
writes always do: there the header is ignored. Without replicas every read is
on the primary; the header is still checked, so a mistake shows before
replicas are added.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIResponse, Parameter, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Receive, Send

from service.api.errors import ERROR_DESCRIPTIONS, Unprocessable
from service.api.openapi import ERROR_BODY
from service.api.request_id import header
from service.db.replicas import PRIMARY_READS

HEADER = "X-Read-Consistency"
PRIMARY = "primary"
PRIMARY_ONLY = ("/events", "/health")  # paths whose reads are on the primary anyway

PARAMETER = Parameter(
    name=HEADER,
    param_in=ParamType.HEADER,
    required=False,
    description=(
        "`primary`: read from the primary database, to see this client's own writes at "
        "once. Without it the read may be served by a read replica up to "
        "REPLICA_MAX_LAG_SECONDS (default 5) behind. Any other value is a 422."
    ),
    schema=Schema(type=OpenAPIType.STRING, enum=[PRIMARY]),
)


class ReadConsistency:
    """The header's middleware, and its documentation on the operations that read it."""

    def __init__(self) -> None:
        self.paths: frozenset[str] = frozenset()  # route templates, filled by declare()

    def declare(self, app: Litestar) -> None:
        """The paths whose GET may read from a replica: every GET operation the OpenAPI
        document shows, but PRIMARY_ONLY's. Read from the routes, so that the document
        need not be built at start-up (service.compat.finish_openapi_when_built)."""
        self.paths = frozenset(
            route.path_format
            for route in app.routes
            if isinstance(route, HTTPRoute)
            and not route.path_format.startswith(PRIMARY_ONLY)
            and any(
                "GET" in handler.http_methods and handler.resolve_include_in_schema()
                for handler in route.route_handlers
            )
        )

    def document(self, app: Litestar) -> None:
        """Document the header, and the 422 a bad value gets, on those GET operations."""
        for path, item in (app.openapi_schema.paths or {}).items():
            if item.get is None or path not in self.paths:
                continue
            item.get.parameters = [*(item.get.parameters or []), PARAMETER]
            responses = item.get.responses if item.get.responses is not None else {}
            responses.setdefault(
                "422", OpenAPIResponse(description=ERROR_DESCRIPTIONS[422], content=ERROR_BODY)
            )
            item.get.responses = responses

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar middleware (after routing): the header's reads on the primary, or a 422."""

        async def read_consistency(scope: Any, receive: Receive, send: Send) -> None:
            value = header(scope, b"x-read-consistency") if scope["type"] == "http" else None
            if (
                value is None
                or scope["method"] not in ("GET", "HEAD")
                or scope["path_template"] not in self.paths
            ):
                await app(scope, receive, send)
                return
            if value.strip() != PRIMARY:
                raise Unprocessable(
                    f"{HEADER} must be {PRIMARY} (or left out); it is {value.strip()[:40]!r}",
                    details=[{"field": HEADER, "source": "header", "message": "must be primary"}],
                )
            token = PRIMARY_READS.set(True)
            try:
                await app(scope, receive, send)
            finally:
                PRIMARY_READS.reset(token)

        return read_consistency
