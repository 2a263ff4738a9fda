"""OpenAPI request bodies for handlers that read and validate their raw body themselves.

The write handlers decode bodies field by field (service/deal_requests.py), so
Litestar sees no `data` parameter; this documents the body from the same
msgspec Struct, inline, so that the schema and the validation never drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody


def inline_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The Struct's JSON schema with no $ref (its fields are plain types)."""
    _refs, components = msgspec.json.schema_components([struct])
    schema: dict[str, Any] = components[struct.__name__]
    assert "$ref" not in json.dumps(schema), f"{struct.__name__} must not nest Structs"
    return schema


def json_body(struct: type[msgspec.Struct], description: str) -> type[Operation]:
    """An Operation class whose request body is `struct` as application/json."""
    schema: Any = inline_schema(struct)

    @dataclass
    class WithJsonBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=schema)},
                description=description,
                required=True,
            )

    WithJsonBody.__name__ = f"{struct.__name__}Operation"
    return WithJsonBody
