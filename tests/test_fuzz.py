"""The OpenAPI schema, fuzzed with schemathesis against a real server and database.

Every operation gets generated requests, valid and invalid, and every check
schemathesis has runs on every answer, positive_data_acceptance included:
what the schema allows, the API accepts. The database holds tests/known.py's
rows, so that writes reach it and cursors have pages.

A few rules of the contract cannot be stated in JSON Schema: they relate two
fields, a field and the stored data, or a header and the stored version.
Each is listed in RULES below; a schema-valid request that breaks one must
get exactly that rule's error (status, and the field or code named), and is
held to every other check. A generated cursor is replaced by one the service
made for the same request: a cursor is opaque, and a forged one is refused
by design (tests/test_cursor.py).
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config._checks import (
    NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
    NegativeDataRejectionConfig,
)

from service.api.app import create_app
from service.api.versions import IF_MATCH_PATTERN
from service.settings import Settings
from service.types import INT_MAX, normalize_categories
from tests.known import Known
from tests.serving import serving_clone


@pytest.fixture(scope="module")
def server_url(
    admin_url: str, seeded_template: tuple[str, Known], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with serving_clone(admin_url, seeded_template[0], log, LOG_LEVEL="warning") as (server, _):
        yield server.base


def app_schema() -> dict[str, Any]:
    """The schema the app serves at /docs/openapi.json (building it needs no database)."""
    app = create_app(Settings(database_url="postgresql://unused@127.0.0.1:1/unused"))
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# --- the rules a schema cannot state ----------------------------------------

Expected = tuple[int, str]  # status, and the field the 422 names or the error code
Rule = Callable[[schemathesis.Case[Any], str], Expected | None]


def body_of(case: schemathesis.Case[Any]) -> dict[str, Any]:
    body: Any = case.body
    return body if isinstance(body, dict) else {}


def _price_order(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """GET /deals and /deals/stats: price_min above price_max is a 422 naming price_min."""
    low, high = case.query.get("price_min"), case.query.get("price_max")
    if isinstance(low, str) and isinstance(high, str) and Decimal(low) > Decimal(high):
        return 422, "price_min"
    return None


def _skip_with_cursor(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """GET /deals: skip cannot be combined with cursor, a 422 naming skip."""
    cursor, skip = case.query.get("cursor"), case.query.get("skip")
    if case.path == "/deals" and cursor is not None and skip is not None and int(skip) != 0:
        return 422, "skip"
    return None


def _known_categories(base: str) -> set[str]:
    return {category["name"] for category in get_json(f"{base}/categories")[1]}


def _unknown_categories(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """POST and PATCH: category names the service does not know are a 422 naming categories."""
    body = body_of(case)
    names = body.get("categories")
    if isinstance(names, list) and set(normalize_categories(names)) - _known_categories(base):
        return 422, "categories"
    return None


def _stored(case: schemathesis.Case[Any], base: str) -> Any:
    status, deal = get_json(f"{base}/deals/{case.path_parameters['id']}")
    return deal if status == 200 else None


def _dates_in_order(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """POST and PATCH: checkout_date after checkin_date, a PATCH judged on the stored deal."""
    body = body_of(case)
    checkin, checkout = body.get("checkin_date"), body.get("checkout_date")
    if case.method == "PATCH" and (checkin is None) != (checkout is None):
        stored = _stored(case, base)
        if stored is None:
            return None
        checkin = checkin or stored["checkin_date"]
        checkout = checkout or stored["checkout_date"]
    if checkin is not None and checkout is not None and checkout <= checkin:
        return 422, "checkout_date"  # ISO dates compare as text
    return None


def _patch_changes_something(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """PATCH: a body with no field besides version changes nothing, a 422 naming the body."""
    body = body_of(case)
    if case.method == "PATCH" and not set(body) - {"version"}:
        return 422, "$"
    return None


def _if_match_form(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """If-Match outside its documented pattern is a 422.

    schemathesis's coverage phase sends some values of a well-known header
    (If-Match: 0) as schema-valid without reading its pattern.
    """
    header = case.headers.get("If-Match") if case.headers else None
    if header is not None and not re.fullmatch(IF_MATCH_PATTERN, header):
        return 422, "VALIDATION_ERROR"
    return None


def _if_match_holds(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """PATCH and DELETE: an If-Match that is not the deal's current ETag is a 412, as HTTP says."""
    header = case.headers.get("If-Match") if case.headers else None
    if case.method not in ("PATCH", "DELETE") or header is None or header.strip() == "*":
        return None
    tag = header.strip()
    if tag.startswith("W/") or not tag.strip('"').isdigit() or len(tag) > 12:
        return 412, "PRECONDITION_FAILED"
    if int(tag.strip('"')) > INT_MAX:
        return 412, "PRECONDITION_FAILED"
    stored = _stored(case, base)
    if stored is not None and int(tag.strip('"')) != stored["version"]:
        return 412, "PRECONDITION_FAILED"
    return None


def _precondition_required(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """PATCH with neither If-Match nor a body version, DELETE without If-Match: 428."""
    header = case.headers.get("If-Match") if case.headers else None
    if case.method not in ("PATCH", "DELETE") or header is not None:
        return None
    if case.method == "PATCH" and body_of(case).get("version") is not None:
        return None
    return 428, "PRECONDITION_REQUIRED"


def _no_nul_in_text(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """Text with U+0000 is a 422 INVALID_VALUE: PostgreSQL text cannot hold it."""
    texts = [v for v in case.query.values() if isinstance(v, str)]
    body = body_of(case)
    texts += [v for v in body.values() if isinstance(v, str)]
    names = body.get("categories")
    texts += [v for v in names if isinstance(v, str)] if isinstance(names, list) else []
    if any("\x00" in text for text in texts):
        return 422, "INVALID_VALUE"
    return None


def _a_deals_csv(case: schemathesis.Case[Any], base: str) -> Expected | None:
    """POST /deals/import: the schema says text/csv, a string; only a deals CSV (its header
    names every column of shared/spec/deals-csv.md) loads, anything else is MALFORMED_FILE."""
    if case.method == "POST" and case.path == "/deals/import":
        return 422, "MALFORMED_FILE"
    return None


RULES: list[Rule] = [
    _price_order,
    _skip_with_cursor,
    _patch_changes_something,
    _dates_in_order,
    _unknown_categories,
    _if_match_form,
    _if_match_holds,
    _precondition_required,
    _no_nul_in_text,
    _a_deals_csv,
]


def with_a_real_cursor(case: schemathesis.Case[Any], base: str) -> None:
    """Put in the cursor the service gives for this request's sort and filters."""
    cursor = case.query.get("cursor")
    if case.path != "/deals" or case.method != "GET" or not isinstance(cursor, str) or not cursor:
        return
    first = {k: v for k, v in case.query.items() if k not in ("cursor", "skip", "limit")}
    query = urllib.parse.urlencode({**first, "cursor": "", "limit": 1}, doseq=True)
    status, page = get_json(f"{base}/deals?{query}")
    case.query["cursor"] = (page.get("next_cursor") or "") if status == 200 else cursor


def with_a_real_after(case: schemathesis.Case[Any], base: str) -> None:
    """GET /events: a cursor the service made in `after`, and a wait of at most a second.

    The schema allows waits up to 30 s, which an empty feed spends in full: capped here,
    so that the fuzz stays fast; tests/test_events.py tests the waiting itself.
    """
    if case.path != "/events" or case.method != "GET":
        return
    wait = case.query.get("wait")
    if isinstance(wait, int | str) and str(wait).isdigit() and int(wait) > 1:
        case.query["wait"] = 1
    after = case.query.get("after")
    if isinstance(after, str) and after:
        status, page = get_json(f"{base}/events?limit=1")
        case.query["after"] = page["next_cursor"] if status == 200 else after


def named(body: Any, expected: Expected) -> bool:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    fields = [d.get("field") for d in error.get("details") or [] if isinstance(d, dict)]
    return expected[1] in (error.get("code"), *fields)


schema = schemathesis.openapi.from_dict(app_schema())
# Valid and invalid requests alike: an invalid one must get a clear 4xx, never a 5xx.
schema.config.generation.update(modes=list(schemathesis.GenerationMode), database="none")
# An invalid PATCH or DELETE whose If-Match names no version of ours is refused with the
# 412 of its precondition (checked first): a refusal, which the default list lacks.
schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
    expected_statuses=[*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "412"]
)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any], server_url: str) -> None:
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive:
        with_a_real_cursor(case, server_url)
        with_a_real_after(case, server_url)
    broken = [e for rule in RULES if (e := rule(case, server_url)) is not None] if positive else []
    if not broken:
        case.call_and_validate(base_url=server_url)
        return
    response = case.call_and_validate(
        base_url=server_url, excluded_checks=[positive_data_acceptance]
    )
    body = response.json()
    assert any(
        response.status_code == status and named(body, (status, what)) for status, what in broken
    ), (broken, response.status_code, body, case.query)


def test_served_schema_is_the_one_fuzzed(server_url: str) -> None:
    with urllib.request.urlopen(f"{server_url}/docs/openapi.json", timeout=10) as response:
        assert json.load(response) == json.loads(json.dumps(app_schema()))
