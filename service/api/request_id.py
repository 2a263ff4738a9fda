"""The request's id, kept in its scope: the client's X-Request-ID when usable, else a new one."""

from __future__ import annotations

import os
import re
from typing import Any

from litestar.types import Scope

VALID_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # 1 to 128 visible ASCII characters


def header(scope: Scope | Any, name: bytes) -> str | None:
    """The first value of a request header (`name` in lower case), or None."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def new_id() -> str:
    """A new request id: 32 hex digits of 128 random bits (a microsecond less than uuid4)."""
    return os.urandom(16).hex()


def request_id(scope: Scope) -> str:
    """The request's id: the client's X-Request-ID when it is usable, else a new one."""
    state: dict[str, Any] = scope.setdefault("state", {})
    found: str | None = state.get("request_id")
    if found is None:
        sent = header(scope, b"x-request-id")
        found = sent if sent is not None and VALID_REQUEST_ID.fullmatch(sent) else new_id()
        state["request_id"] = found
    return found
