"""The in-process test client of the app, and its most used call."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]


async def get_ok(client: Client, path: str, **params: Any) -> Any:
    """GET that must answer 200: its JSON."""
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The exact JSON of an error answer with no details."""
    return {"error": {"code": code, "message": message, "details": [], "request_id": request_id}}


def assert_invalid(response: Any, message: str, field: str, source: str, detail: str) -> None:
    """A 422 VALIDATION_ERROR with exactly this message and this one detail."""
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == message
    assert error["details"] == [{"field": field, "source": source, "message": detail}]
