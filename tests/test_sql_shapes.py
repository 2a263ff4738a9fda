"""The deal queries say the same thing the same way, and a query runs only as its kind.

sql/deals.sql keeps each list query whole, so that an SRE can paste any one of
them into psql; the price is that the deal row's columns and the filters
$1-$6 stand in several queries. These tests hold those copies identical, so a
change to one that forgets the others fails the build.
"""

from __future__ import annotations

import re

import pytest

from service.db import catalogue
from service.db.catalogue import CATALOGUE, CatalogueError, Exec, ExecRows, Many, One, Value

LISTS = [
    "list_deals_by_id",
    "list_deals_by_price",
    "list_deals_by_price_desc",
    "list_deals_by_created_at",
    "list_deals_by_created_at_desc",
    "find_deal_by_upstream_id",
]
FILTERS = [  # $1-$6 in every list query, in this order
    r'($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))'
    r' = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))',
    r"($2::int IS NULL OR h.star_rating >= $2::int)",
    r"($3::numeric IS NULL OR d.price_per_night >= $3::numeric)",
    r"($4::numeric IS NULL OR d.price_per_night <= $4::numeric)",
    r"($6::bool IS NULL OR d.is_available = $6::bool)",
]


def fold(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def statement(name: str) -> str:
    """The query's SQL without its header line and name tag, white space folded."""
    return fold(CATALOGUE[name].sql.split("\n", 1)[1].replace(f" /* {name} */", ""))


def columns(name: str) -> str:
    """What the query selects, from SELECT up to its own WHERE (the one that starts a line)."""
    sql = CATALOGUE[name].sql.split("\n", 1)[1].replace(f" /* {name} */", "")
    return fold(sql[: sql.index("\nWHERE ")].removeprefix("("))  # a UNION's first branch


def test_every_deal_row_query_selects_the_same_columns_and_joins() -> None:
    expected = columns("get_deal")
    assert expected.startswith("SELECT d.id, d.deal_id, h.id AS hotel_id,")
    for name in LISTS:
        assert columns(name) == expected, name


@pytest.mark.parametrize("name", [*LISTS, "count_deals", "count_deals_in_category"])
def test_every_deal_list_and_count_applies_the_same_filters(name: str) -> None:
    sql = CATALOGUE[name].sql
    where = fold(sql[sql.index("\nWHERE ") :])
    for condition in FILTERS:
        assert condition in where, (name, condition)


def test_list_queries_share_the_category_filter() -> None:
    filters = {
        re.search(r"AND \(\$5::text IS NULL OR .*?\)\)\)", statement(name))[0]  # type: ignore[index]
        for name in LISTS
    }
    assert len(filters) == 1, filters


@pytest.mark.parametrize(
    ("helper", "kind"),
    [(One, "one"), (Many, "many"), (Value, "val"), (Exec, "exec"), (ExecRows, "execrows")],
)
def test_a_query_runs_only_through_the_helper_of_its_kind(
    helper: type[catalogue.One | catalogue.Many], kind: str
) -> None:
    same = next(q for q in CATALOGUE.values() if q.kind == kind)
    assert helper(same.name).query is same
    other = next(q for q in CATALOGUE.values() if q.kind != kind)
    with pytest.raises(CatalogueError) as caught:
        helper(other.name)
    assert str(caught.value) == (
        f"query {other.name} is declared :{other.kind} ({other.file}:{other.line}) "
        f"but is called as :{kind}"
    )


def test_every_kind_has_its_helper() -> None:
    kinds = {helper.kind for helper in (One, Many, Value, Exec, ExecRows)}
    assert kinds == set(catalogue.KINDS)
    assert {query.kind for query in CATALOGUE.values()} <= kinds


# A filter shape's own query (`-- plan: generic`), chosen by service/db/deals.py.
SHAPES = [
    "list_all_deals_by_id",
    "list_all_deals_by_price",
    "list_all_deals_by_price_desc",
    "list_all_deals_by_created_at",
    "list_all_deals_by_created_at_desc",
    "list_deals_in_city_by_id",
    "list_deals_in_price_range_by_id",
    "list_deals_in_category_by_id",
]
CITY_MATCH = (
    'lower(upper(normalize({alias}.city, NFC) COLLATE "pg_c_utf8"))'
    ' = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8"))'
)


def test_shape_queries_select_the_deal_row_columns() -> None:
    expected = columns("get_deal")
    for name in SHAPES:
        assert columns(name) == expected, name
        assert CATALOGUE[name].plan == "generic", name


@pytest.mark.parametrize(
    ("name", "alias"),
    [("list_deals_in_city_by_id", "ch"), ("list_deals_in_city_by_id_json", "ch")],
)
def test_city_shapes_match_the_city_as_the_index_does(name: str, alias: str) -> None:
    assert CITY_MATCH.format(alias=alias) in statement(name)
    assert f"(($2::int IS NULL OR {alias}.star_rating >= $2::int)" not in statement(name)
    assert f"($2::int IS NULL OR {alias}.star_rating >= $2::int)" in statement(name)


JSON_PAGES = [
    "list_all_deals_by_id_json",
    "list_deals_in_city_by_id_json",
    "list_deals_in_price_range_by_id_json",
]


def json_columns(name: str) -> str:
    """What a JSON page query encodes per deal: from its row_to_json to its own WHERE."""
    sql = statement(name)
    return sql[sql.index("string_agg(row_to_json(p)") : sql.index(" WHERE d.")]


def test_json_pages_encode_the_same_deal_columns() -> None:
    """The deal's JSON is spelt the same in every query that builds it (its bytes are
    held to the Structs' by tests/test_deal_json.py), and from the same joins."""
    expected = json_columns(JSON_PAGES[0])
    assert "FROM deals d JOIN hotels h ON h.id = d.hotel_id CROSS JOIN LATERAL" in expected
    for name in JSON_PAGES:
        assert json_columns(name) == expected, name
        assert CATALOGUE[name].plan == "generic", name


def test_the_price_range_pages_total_is_count_deals_in_price_range() -> None:
    """list_deals_in_price_range_by_id_json's total is count_deals_in_price_range's
    expression (deal_price_totals' whole units and the two partial ones), word for word."""

    def bare(sql: str) -> str:  # no comments, no space inside parentheses
        sql = fold(re.sub(r"--[^\n]*", "", sql))
        return re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", sql))

    name = "count_deals_in_price_range"
    count = bare(CATALOGUE[name].sql.split("\n", 1)[1].replace(f" /* {name} */", ""))
    assert count.startswith("SELECT ((SELECT coalesce(sum(t.deal_count), 0) FROM deal_price_totals")
    page = bare(CATALOGUE["list_deals_in_price_range_by_id_json"].sql)
    total = page[page.index("THEN ((") + len("THEN ") : page.index(" END AS total,")]
    assert f"SELECT {total}" == count
