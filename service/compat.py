"""Work-arounds for the frameworks, each naming the upstream issue it works around.

Everything here should go when the upstream fix is released and adopted:
grep for this module's names to find the call sites.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from types import FrameType

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation import schema as litestar_schema
from litestar._openapi.schema_generation.constrained_fields import (
    create_numerical_constrained_field_schema,
)
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIResponse,
    Operation,
    Reference,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import KwargDefinition
from litestar.routes import HTTPRoute
from uvicorn import Server
from uvicorn.supervisors import multiprocess


def operations(app: Litestar) -> Iterator[Operation]:
    """Every operation of the app's OpenAPI document, whatever its method."""
    for item in (app.openapi_schema.paths or {}).values():
        for operation in (
            item.get, item.put, item.post, item.delete, item.options, item.head, item.patch,
            item.trace,
        ):  # fmt: skip
            if operation is not None:
                yield operation


def finish_openapi_when_built(app: Litestar, finish: Callable[[Litestar], None]) -> None:
    """Run `finish(app)` on the app's OpenAPI document once Litestar has built it, on first
    use (the first GET /docs/openapi.json, or app.openapi_schema), not at start-up.

    Litestar 2 builds its document lazily, inside its private OpenAPIPlugin, and has no
    hook that runs once it is built (no upstream issue found; Litestar 3 lets an app
    describe its own errors, which is most of what `finish` adds). Reading
    app.openapi_schema in create_app to finish it built the document for every app: about
    half of create_app's time (28 of 54 ms), paid by every worker at start-up and by every
    app a test builds, though few of them ever serve it.

    The plugin instance is the one Litestar's /docs handlers already hold, so its class is
    swapped for a subclass (same slots) whose provide_openapi finishes the new document
    before it is returned. `finish` may read app.openapi_schema: it is built by then.
    """
    plugin = app.plugins.get(OpenAPIPlugin)
    built_by: Callable[[OpenAPIPlugin], OpenAPI] = OpenAPIPlugin.provide_openapi

    def provide_openapi(self: OpenAPIPlugin) -> OpenAPI:
        if self._openapi is not None:
            return self._openapi
        document = built_by(self)
        try:
            finish(self.app)
        except BaseException:
            self._openapi = None  # never served half finished: the next use tries again
            raise
        return document

    plugin.__class__ = type(
        "FinishedOpenAPIPlugin",
        (OpenAPIPlugin,),
        {"__slots__": (), "provide_openapi": provide_openapi},
    )


_litestar_numeric_schema = create_numerical_constrained_field_schema


def _numeric_schema_with_exact_bounds(
    field_type: type[int] | type[float] | type[Decimal], kwarg_definition: KwargDefinition
) -> Schema:
    schema = _litestar_numeric_schema(field_type, kwarg_definition)
    if issubclass(field_type, int):
        for bound, keyword in (
            ("le", "maximum"),
            ("lt", "exclusive_maximum"),
            ("ge", "minimum"),
            ("gt", "exclusive_minimum"),
            ("multiple_of", "multiple_of"),
        ):
            value = getattr(kwarg_definition, bound)
            if isinstance(value, int):
                setattr(schema, keyword, value)
    return schema


def keep_integer_bounds_exact() -> None:
    """Write the bounds of an integer parameter as the integers they are.

    Litestar 2.25 (litestar/_openapi/schema_generation/constrained_fields.py,
    create_numerical_constrained_field_schema) documents a constrained int
    whose annotation is a plain `int` (not `int | None`, whose bounds are
    copied as given) with `float(le)`, `float(ge)`, `float(lt)`, `float(gt)`
    and `float(multiple_of)`: `le=2**63 - 1` became `"maximum":
    9.223372036854776e+18`, which is 2**63 (past bigint, and a float where
    OpenAPI generators expect an integer), and `ge=1` became `1.0`. The
    wrapper keeps Litestar's schema and puts the int bounds back; the module
    attribute is replaced because SchemaCreator.for_constrained_field looks
    the function up there on each call. Call it before the schema is built.
    """
    litestar_schema.create_numerical_constrained_field_schema = (  # type: ignore[attr-defined]
        _numeric_schema_with_exact_bounds
    )


def _without_null(schema: Schema) -> Schema:
    """`schema` with its `null` alternative merged away."""
    if isinstance(schema.type, list) and OpenAPIType.NULL in schema.type:
        kept = [t for t in schema.type if t != OpenAPIType.NULL]
        schema.type = kept[0] if len(kept) == 1 else kept
    alternatives = schema.one_of or schema.any_of
    if not alternatives:
        return schema
    others = [
        alt
        for alt in alternatives
        if not (isinstance(alt, Schema) and alt.type == OpenAPIType.NULL)
    ]
    if len(others) != 1 or len(others) == len(alternatives) or not isinstance(others[0], Schema):
        return schema
    schema.one_of = schema.any_of = None
    for field in dataclasses.fields(others[0]):
        value = getattr(others[0], field.name)
        if value is not None and getattr(schema, field.name) is None:
            setattr(schema, field.name, value)
    return schema


def string_parameters_are_never_null(app: Litestar) -> None:
    """Document an optional text parameter as a string, not as `oneOf: [string, null]`.

    Litestar 2.25 documents a parameter annotated `str | None` (query or
    header) with the schema of the annotation, null included, so If-Match
    read as "a string or null". No request can send that null: Litestar
    converts the text of a parameter with msgspec, which keeps `null` as the
    string "null" for `str | None` (If-Match: null is a malformed entity tag,
    a 422), and leaving the parameter out is how a client says none, which
    `required: false` already states. The constraints beside the oneOf
    (pattern, maxLength, ...) stay. `int | None` and `bool | None`
    parameters keep their null: msgspec does turn the text "null" into None
    for them, so `?min_stars=null` means no filter, as documented.
    """
    for operation in operations(app):
        for parameter in operation.parameters or []:
            schema = getattr(parameter, "schema", None)
            if isinstance(schema, Schema) and any(
                isinstance(alt, Schema) and alt.type == OpenAPIType.STRING
                for alt in schema.one_of or ()
            ):
                _without_null(schema)


def fill_header_schemas(app: Litestar, headers: Mapping[str, OpenAPIHeader]) -> None:
    """Give each documented response header its schema, by name.

    Litestar 2.25 (litestar/_openapi/responses.py, set_success_response_headers)
    derives a response header's schema only from `type(value)` of its
    ResponseHeader, which has no schema field: a `documentation_only` header,
    whose value differs per response (ETag, Location), is written with
    neither schema nor content, which OpenAPI 3.1 forbids (validators refuse
    the document). The header declared in `headers` under that name lends
    its schema, and its description where the handler gave none.
    """
    for operation in operations(app):
        for response in (operation.responses or {}).values():
            if not isinstance(response, OpenAPIResponse):
                continue
            for name, header in (response.headers or {}).items():
                if not isinstance(header, OpenAPIHeader) or header.schema is not None:
                    continue
                known = headers.get(name)
                if known is None:
                    raise ValueError(f"no schema for the response header {name}")
                header.schema = known.schema
                header.description = header.description or known.description


def add_response_headers(app: Litestar, status: str, headers: Mapping[str, OpenAPIHeader]) -> None:
    """Declare `headers` on every response with this status.

    Litestar 2.25's ResponseSpec (the `responses=` of a handler) has no
    headers, so an error response cannot declare one (Retry-After on 503).
    """
    for operation in operations(app):
        response = (operation.responses or {}).get(status)
        if isinstance(response, OpenAPIResponse):
            response.headers = {**(response.headers or {}), **headers}


def add_response_everywhere(
    app: Litestar, status: str, response: OpenAPIResponse | Reference
) -> None:
    """Document `response` under `status` on every operation that does not already.

    Litestar 2.25 takes `responses=` per handler only (no app, router or
    controller layer), and a 500 can follow any request.
    """
    for operation in operations(app):
        if operation.responses is not None:
            operation.responses.setdefault(status, response)


def drop_litestar_error_docs(app: Litestar) -> None:
    """Remove the 400 Litestar documents for its own ValidationException shape.

    Litestar 2.x adds that 400 to every operation (litestar/_openapi/responses.py,
    no switch to turn it off; Litestar 3 lets the app describe its own errors).

    handle_exception answers every ValidationException with a 422 in the one
    error shape, which handlers document with error_responses(422, ...); a
    handler that can really answer 400 documents it the same way, which
    replaces Litestar's entry before this runs.
    """
    for operation in operations(app):
        responses = operation.responses
        response = responses.get("400") if responses else None
        if responses and isinstance(response, OpenAPIResponse) and response.content:
            schema = next(iter(response.content.values())).schema
            if isinstance(schema, Schema) and schema.description == "Validation Exception":
                del responses["400"]


def fix_options_allow(app: Litestar) -> None:
    """Make every automatic OPTIONS answer list all of its path's methods.

    litestar-org/litestar#4169 (fixed in Litestar 3, still in 2.x): Litestar
    2.25 builds the OPTIONS handler while registering a path's first handler,
    and its Allow header keeps reading that first route object, so a path with
    GET and POST answered `Allow: OPTIONS, POST`. Point each OPTIONS handler at
    the finished route.
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            continue
        handler, _model = route.route_handler_map["OPTIONS"]
        for cell in getattr(handler.fn, "__closure__", None) or ():
            stale = cell.cell_contents
            if isinstance(stale, HTTPRoute) and stale is not route:
                stale.methods = route.methods


DRAINING = threading.Event()  # set in a worker once it is shutting down
# Called on the worker's loop when the drain begins: long waits (GET /events?wait)
# answer then, rather than be cut off by the graceful shutdown's timeout.
DRAIN_HOOKS: list[Callable[[], None]] = []


def run_drain_hooks() -> None:
    for hook in list(DRAIN_HOOKS):
        hook()


class DrainingServer(Server):
    """A uvicorn server that drains keep-alive connections before it stops.

    uvicorn's shutdown closes every idle keep-alive connection at once, with no
    drain period (gunicorn added one: benoitc/gunicorn#2313); a client that sent
    its next request at that moment gets a reset. On the first SIGTERM this one
    stops accepting, lets serve.drain_middleware answer with `Connection: close`
    for drain_seconds, then shuts down as uvicorn does.
    """

    drain_seconds = 1.0

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not DRAINING.is_set() and hasattr(self, "_loop"):
            self._loop.call_soon_threadsafe(run_drain_hooks)
        if DRAINING.is_set() or self.drain_seconds <= 0 or not hasattr(self, "_loop"):
            super().handle_exit(sig, frame)
            return
        DRAINING.set()
        self._loop.call_soon_threadsafe(self._drain, sig, frame)

    def _drain(self, sig: int, frame: FrameType | None) -> None:
        # Before start-up has bound its sockets there is no `servers` yet: nothing to close,
        # and the stop below must still be scheduled (a SIGTERM then would otherwise hang).
        for server in getattr(self, "servers", ()):
            server.close()  # stop accepting; connections already open carry on
        self._loop.call_later(self.drain_seconds, super().handle_exit, sig, frame)


class DrainingProcess(multiprocess.Process):
    """A uvicorn worker process that runs a DrainingServer."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


def drain_uvicorn_workers() -> None:
    """Make `--workers N` run a DrainingServer in each worker.

    Kludex/uvicorn#1091 (closed unmerged): uvicorn has no setting for the Server
    class; its supervisor builds each worker from the module global
    multiprocess.Process. The replacement is a module-level class, so the
    spawned worker unpickles it by name.
    """
    multiprocess.Process = DrainingProcess  # type: ignore[misc]
