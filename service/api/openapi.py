"""The finishing of the served OpenAPI document: what the handlers cannot declare in Litestar 2.

create_app has finish_openapi run when Litestar first builds the document
(service.compat.finish_openapi_when_built), before it is first served. Every
response header gets a schema (ETag, Location, Retry-After), every operation
documents the 500 of an unexpected failure, and the errors no operation owns
(an unknown route's 404, a method a path does not have: 405) are documented
under components.responses. Every error has the one body, ErrorResponse. The
Litestar work-arounds themselves are in service/compat.py.
"""

from __future__ import annotations

from collections.abc import Callable

from litestar import Litestar
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

from service.api.versions import ETAG_PATTERN
from service.compat import (
    add_response_everywhere,
    add_response_headers,
    drop_litestar_error_docs,
    fill_header_schemas,
    string_parameters_are_never_null,
)

ETAG = OpenAPIHeader(
    description='The deal\'s version, quoted ("3"): send it as If-Match to change the deal.',
    required=True,
    schema=Schema(type=OpenAPIType.STRING, pattern=ETAG_PATTERN, examples=['"3"']),
)
LOCATION = OpenAPIHeader(
    description="The new deal's path, /deals/{id}.",
    required=True,
    schema=Schema(type=OpenAPIType.STRING, pattern=r"^/deals/[1-9][0-9]*$", examples=["/deals/42"]),
)
LINK = OpenAPIHeader(
    description='The next cursor page: </deals?...&cursor=...>; rel="next".',
    required=False,
    schema=Schema(type=OpenAPIType.STRING, examples=['</deals?cursor=AbC&limit=20>; rel="next"']),
)
RETRY_AFTER = OpenAPIHeader(
    description="Seconds to wait before trying again.",
    required=True,
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0, examples=[1]),
)
ALLOW = OpenAPIHeader(
    description="The methods the path has, comma-separated.",
    required=True,
    schema=Schema(type=OpenAPIType.STRING, examples=["GET, OPTIONS, POST"]),
)

ERROR_BODY = {
    "application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/ErrorResponse"))
}
# Errors that no single operation owns; each one has the ErrorResponse body.
SHARED_ERRORS = {
    "InternalError": OpenAPIResponse(
        description=(
            "An unexpected failure (code INTERNAL_ERROR); the detail is in the service's "
            "log, never in the answer."
        ),
        content=ERROR_BODY,
    ),
    "UnknownRoute": OpenAPIResponse(
        description="404 NOT_FOUND for a path the API does not have.",
        content=ERROR_BODY,
    ),
    "MethodNotAllowed": OpenAPIResponse(
        description="405 METHOD_NOT_ALLOWED for a method a path does not have.",
        headers={"Allow": ALLOW},
        content=ERROR_BODY,
    ),
}


def finish_openapi(app: Litestar) -> None:
    """Complete app.openapi_schema in place (the served /docs/openapi.json)."""
    document = app.openapi_schema
    drop_litestar_error_docs(app)
    string_parameters_are_never_null(app)
    fill_header_schemas(app, {"ETag": ETAG, "Location": LOCATION, "Link": LINK})
    add_response_headers(app, "503", {"Retry-After": RETRY_AFTER})
    add_response_headers(app, "304", {"ETag": ETAG})
    document.components.responses = {**(document.components.responses or {}), **SHARED_ERRORS}
    add_response_everywhere(app, "500", Reference(ref="#/components/responses/InternalError"))


RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": OpenAPIHeader(
        description="Requests a client may make in the current window (RATE_LIMIT).",
        schema=Schema(type=OpenAPIType.INTEGER, minimum=1, examples=[200]),
    ),
    "RateLimit-Remaining": OpenAPIHeader(
        description="Requests left to the client in the current window.",
        schema=Schema(type=OpenAPIType.INTEGER, minimum=0, examples=[199]),
    ),
    "RateLimit-Reset": OpenAPIHeader(
        description="Seconds until the window ends.",
        schema=Schema(type=OpenAPIType.INTEGER, minimum=0, examples=[1]),
    ),
}
TOO_MANY_REQUESTS = OpenAPIResponse(
    description="429 TOO_MANY_REQUESTS: over RATE_LIMIT; retry after Retry-After seconds.",
    headers={"Retry-After": RETRY_AFTER, **RATE_LIMIT_HEADERS},
    content=ERROR_BODY,
)


def declare_rate_limit(app: Litestar, counted: Callable[[str], bool]) -> None:
    """With RATE_LIMIT set: the 429 and the RateLimit-* headers of every counted operation."""
    document = app.openapi_schema
    document.components.responses = {
        **(document.components.responses or {}),
        "TooManyRequests": TOO_MANY_REQUESTS,
    }
    for path, item in (document.paths or {}).items():
        if not counted(path):
            continue
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None or operation.responses is None:
                continue
            for response in operation.responses.values():
                if isinstance(response, OpenAPIResponse):
                    response.headers = {**(response.headers or {}), **RATE_LIMIT_HEADERS}
            operation.responses.setdefault(
                "429", Reference(ref="#/components/responses/TooManyRequests")
            )
