"""Work-arounds for the frameworks, each naming the upstream issue it works around.

Everything here should go when the upstream fix is released and adopted:
grep for this module's names to find the call sites.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import FrameType

from litestar import Litestar
from litestar.openapi.spec import OpenAPIResponse, Schema
from litestar.routes import HTTPRoute
from uvicorn import Server
from uvicorn.supervisors import multiprocess


def drop_litestar_error_docs(app: Litestar) -> None:
    """Remove the 400 Litestar documents for its own ValidationException shape.

    Litestar 2.x adds that 400 to every operation (litestar/_openapi/responses.py,
    no switch to turn it off; Litestar 3 lets the app describe its own errors).

    handle_exception answers every ValidationException with a 422 in the one
    error shape, which handlers document with error_responses(422, ...); a
    handler that can really answer 400 documents it the same way, which
    replaces Litestar's entry before this runs.
    """
    for item in (app.openapi_schema.paths or {}).values():
        for operation in (item.get, item.put, item.post, item.patch, item.delete):
            responses = operation.responses if operation is not None else None
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
        if DRAINING.is_set() or self.drain_seconds <= 0 or not hasattr(self, "_loop"):
            super().handle_exit(sig, frame)
            return
        DRAINING.set()
        self._loop.call_soon_threadsafe(self._drain, sig, frame)

    def _drain(self, sig: int, frame: FrameType | None) -> None:
        for server in self.servers:
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
