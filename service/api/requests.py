"""What every request gets before its handler runs: an id, and a check of its query string.

X-Request-ID is taken from the request when it is 1 to 128 visible ASCII
characters, else generated; it is echoed on every response (a before-send
hook of the app, so unknown routes get it too) and written into every error
body. A W3C traceparent header is passed through to the response unchanged.

A query parameter that the operation does not define, or a single-valued
one sent twice, is a 422: `?ctiy=paris` must not answer with every deal.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.params import HeaderParameter, ParameterKwarg
from litestar.types import Message, Scope

from service.api.errors import Unprocessable
from service.api.metrics import CURRENT
from service.api.request_id import header, request_id

REQUEST_ID = "x-request-id"
TRACEPARENT = "traceparent"
PATH_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")


_ECHOED = frozenset({REQUEST_ID.encode(), TRACEPARENT.encode()})


async def echo_request_headers(message: Message, scope: Scope) -> None:
    """A before-send hook: X-Request-ID (and traceparent, when sent) and Server-Timing on
    every response, and the status for the access line."""
    if message["type"] != "http.response.start":
        return
    headers = message.get("headers")
    if type(headers) is not list:
        headers = message["headers"] = list(headers or ())
    elif any(key.lower() in _ECHOED for key, _ in headers):  # set by the handler: replaced
        headers[:] = [(key, value) for key, value in headers if key.lower() not in _ECHOED]
    headers.append((b"x-request-id", request_id(scope).encode("latin-1")))
    traceparent = header(scope, b"traceparent")
    if traceparent is not None:
        headers.append((b"traceparent", traceparent.encode("latin-1")))
    measures = CURRENT.get()  # set by Measured (service/api/metrics.py) for each request
    if measures is not None:  # no handler sets Server-Timing: appended, not replaced
        headers.append(measures.server_timing(message["status"]))


@cache
def query_parameters(handler: HTTPRouteHandler) -> frozenset[str]:
    """The query parameters an operation defines (path and header parameters apart)."""
    in_path = {name for path in handler.paths for name in PATH_PARAMETER.findall(path)}
    names = set()
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if not isinstance(kwarg, ParameterKwarg) or isinstance(kwarg, HeaderParameter):
            continue
        if name in in_path:
            continue
        if kwarg.header is None and kwarg.cookie is None:
            names.add(kwarg.query or name)
    return frozenset(names)


async def reject_unknown_parameters(request: Request[Any, Any, Any]) -> None:
    """A before-request hook: 422 UNKNOWN_PARAMETER, or 422 for a parameter sent twice."""
    if not request.scope["query_string"]:  # no parameter: nothing to refuse
        return
    known = query_parameters(request.route_handler)
    params = request.query_params
    unknown = sorted(name for name in params if name not in known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no query parameters"
        raise Unprocessable(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: "
            f"{', '.join(unknown)}; this operation takes {takes}",
            code="UNKNOWN_PARAMETER",
            details=[
                {"field": name, "source": "query", "message": "not a parameter of this operation"}
                for name in unknown
            ],
        )
    repeated = sorted(name for name in params if len(params.getall(name)) > 1)
    if repeated:
        raise Unprocessable(
            f"send each query parameter once: {', '.join(repeated)} came more than once",
            details=[
                {"field": name, "source": "query", "message": "sent more than once"}
                for name in repeated
            ],
        )
