"""Request bodies of the deal writes: Structs, a parse that names every failing field,
and their OpenAPI documentation.

msgspec stops at the first error of a Struct, but a 422 must name each
failing field, so the body is decoded once into plain JSON values and each
field is converted to its constrained type on its own; cross-field rules
come after. Malformed JSON is a 400; the rest is a 422. Litestar sees no
`data` parameter, so json_body documents the body from the same Struct, inline,
so that the schema and the validation never drift.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody

from service.api.errors import BadRequest, Unprocessable, UnsupportedMediaType, humane
from service.db.deal_writes import DEAL_COLUMNS
from service.types import (
    PERCENT_PATTERN,
    PRICE_PATTERN,
    CategoryNames,
    Day,
    Id,
    Money,
    Percent,
    RoomType,
    UpstreamId,
    Version,
    normalize_categories,
    percent_problem,
    price_problem,
)


class DealCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /deals. Money and percent as JSON strings ("129.99")."""

    hotel_id: Id
    room_type: RoomType
    price_per_night: Money
    original_price: Money
    discount_percent: Percent
    checkin_date: Day
    checkout_date: Day
    is_available: bool = True
    categories: CategoryNames = msgspec.field(default_factory=list)
    deal_id: UpstreamId | None = None

    def columns(self) -> dict[str, Any]:
        """The deal's own columns, as insert_deal takes them."""
        return {name: getattr(self, name) for name in DEAL_COLUMNS}


class DealPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PATCH /deals/{id}: only the fields sent change; `version` guards against lost updates."""

    hotel_id: Id | msgspec.UnsetType = msgspec.UNSET
    room_type: RoomType | msgspec.UnsetType = msgspec.UNSET
    price_per_night: Money | msgspec.UnsetType = msgspec.UNSET
    original_price: Money | msgspec.UnsetType = msgspec.UNSET
    discount_percent: Percent | msgspec.UnsetType = msgspec.UNSET
    checkin_date: Day | msgspec.UnsetType = msgspec.UNSET
    checkout_date: Day | msgspec.UnsetType = msgspec.UNSET
    is_available: bool | msgspec.UnsetType = msgspec.UNSET
    categories: CategoryNames | msgspec.UnsetType = msgspec.UNSET
    version: Version | msgspec.UnsetType = msgspec.UNSET

    def changes_something(self) -> bool:
        return any(
            getattr(self, name) is not msgspec.UNSET
            for name in self.__struct_fields__
            if name != "version"
        )

    def columns(self) -> dict[str, Any]:
        """The deal's own columns this patch sends, as update_deal takes them."""
        return {
            name: getattr(self, name)
            for name in DEAL_COLUMNS
            if getattr(self, name) is not msgspec.UNSET
        }

    def column(self, name: str) -> Any:
        """The value sent for a column, None when not sent."""
        value = getattr(self, name)
        return None if value is msgspec.UNSET else value

    def sent_version(self) -> int | None:
        return None if isinstance(self.version, msgspec.UnsetType) else self.version


S = TypeVar("S", DealCreate, DealPatch)

_DECODER = msgspec.json.Decoder(float_hook=Decimal)  # JSON numbers stay exact
_INTEGRAL_MAX = Decimal(2**64)  # past every integer field's range; a bigger one stays refused
_DECIMAL_RULES = {
    "price_per_night": price_problem,
    "original_price": price_problem,
    "discount_percent": percent_problem,
}
# The plain form of each (service/types.py), and an example for the messages.
_DECIMAL_FORMS = {
    "price_per_night": (re.compile(PRICE_PATTERN), "129.99"),
    "original_price": (re.compile(PRICE_PATTERN), "129.99"),
    "discount_percent": (re.compile(PERCENT_PATTERN), "15.5"),
}


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise Unprocessable(
                f"the field {key!r} appears twice; send each field once",
                details=[_problem(key, "appears more than once")],
            )
        seen[key] = value
    return seen


def decode_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN, no lone surrogates (msgspec), no duplicate keys."""
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON object", code="MALFORMED_JSON")
    try:
        value = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="MALFORMED_JSON") from exc
    except RecursionError as exc:
        raise BadRequest("the JSON is nested too deeply", code="MALFORMED_JSON") from exc
    # msgspec keeps the last of repeated keys; two values for one field are
    # ambiguous (I-JSON forbids them), so they are refused. Bodies are small.
    json.loads(body, object_pairs_hook=_no_duplicate_keys)
    return value


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _integral(value: Any) -> Any:
    """A JSON number with no fraction as an int: JSON Schema's integer includes 1.0."""
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and abs(value) <= _INTEGRAL_MAX
        and value == value.to_integral_value()
    ):
        return int(value)
    return value


def _decimal_problem(name: str, raw: Any) -> str | None:
    """Why a money or percent value breaks its rule or its form, or None.

    A JSON number is refused, not rounded or trusted: the schema says string,
    and only a string keeps "129.90" exact through every client's JSON.
    """
    form, example = _DECIMAL_FORMS[name]
    if not isinstance(raw, str):
        return f'must be a JSON string such as "{example}"'
    try:
        value = msgspec.convert(raw, type=Decimal)
    except msgspec.ValidationError:
        return f'must be a decimal number written as a JSON string such as "{example}"'
    reason = _DECIMAL_RULES[name](value)
    if reason is None and not form.fullmatch(raw):
        reason = (
            f"must be written as plain digits, without sign, exponent or leading zeros, "
            f'with at most 2 decimal places, such as "{example}"'
        )
    return reason


def names_categories(raw: Any) -> bool:
    """Whether a decoded body names categories, which parse must then know to judge."""
    return isinstance(raw, dict) and isinstance(raw.get("categories"), list)


def parse(raw: Any, struct: type[S], *, known_categories: Sequence[str] | None = None) -> S:
    """The request Struct from a decoded body, or a 422 naming every failing field.

    Unknown category names are judged against known_categories in the same
    422 as the other fields (the caller reads them when names_categories(raw)).
    """
    if not isinstance(raw, dict):
        raise Unprocessable(
            "the body must be a JSON object", details=[_problem("$", "expected an object")]
        )
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    problems: list[dict[str, Any]] = [
        _problem(name, "unknown field") for name in raw if name not in fields
    ]
    values: dict[str, Any] = {}
    for name, info in fields.items():
        if name not in raw:
            if info.required:
                problems.append(_problem(name, "is required"))
            continue
        if name in _DECIMAL_FORMS:
            reason = _decimal_problem(name, raw[name])
            if reason:
                problems.append(_problem(name, reason))
                continue
        try:
            values[name] = msgspec.convert(_integral(raw[name]), type=info.type)
        except msgspec.ValidationError as exc:
            problems.append(_problem(name, humane(str(exc).split(" - at ", 1)[0])))
            continue
        if name == "room_type" and isinstance(values[name], str):
            values[name] = values[name].strip()
        if name == "categories" and isinstance(values[name], list):
            values[name] = normalize_categories(values[name])
            if known_categories is not None:
                unknown = [n for n in values[name] if n not in known_categories]
                if unknown:
                    problems.append(
                        {
                            "field": "categories",
                            "message": f"unknown names: {', '.join(unknown)}; "
                            f"known: {', '.join(known_categories)}",
                            "unknown": unknown,
                            "known": list(known_categories),
                        }
                    )
    checkin, checkout = values.get("checkin_date"), values.get("checkout_date")
    if checkin is not None and checkout is not None and checkout <= checkin:
        problems.append(_problem("checkout_date", "must be after checkin_date"))
    if problems:
        raise Unprocessable(f"{len(problems)} field(s) failed validation", details=problems)
    return struct(**values)


async def read_json_body(request: Request[Any, Any, Any]) -> bytes:
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {media_type or 'nothing'}"
        )
    return await request.body()


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
