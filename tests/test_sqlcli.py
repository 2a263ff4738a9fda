"""`deals sql list` and `deals sql explain`, run in-process against the test database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from service.cli.main import main
from service.cli.sql import convert
from service.db import catalogue as sqlcat


def test_list_prints_every_query(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "WHERE", "WHAT"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(sqlcat.CATALOGUE)
    for query in sqlcat.CATALOGUE.values():
        kind, where = rows[query.name].split()[1:3]
        assert (kind, where) == (query.kind, f"{query.file}:{query.line}")
        assert rows[query.name].rstrip().endswith(query.summary)
    assert rows["get_deal"].split()[1:3] == ["one", "deals.sql:41"]


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


@pytest.mark.read_only
def test_explain_prints_the_plan(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "explain", "get_deal", "--param", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-- get_deal :one (deals.sql:41)\n")
    assert "Index Scan using deals_pkey on deals d" in out
    assert "actual time" in out  # ANALYZE
    assert "Execution Time" in out


@pytest.mark.read_only
def test_explain_binds_typed_params_and_null(
    db_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    params = ["Paris", "3", "null", "150.50", "LUXURY", "true", "2025-05-01T10:00:00", "7"]
    args = [arg for value in [*params, "20", "0"] for arg in ("--param", value)]
    assert main(["sql", "explain", "list_deals_by_created_at", *args]) == 0
    out = capsys.readouterr().out
    assert "= 'paris'::text COLLATE pg_c_utf8" in out  # $1 folded once, at planning
    assert "Execution Time" in out


@pytest.mark.read_only
def test_explain_wrong_arity_and_values(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "explain", "get_deal"]) == 2
    assert "get_deal takes 1 parameter(s) ($1 int8), 0 given" in capsys.readouterr().err
    assert main(["sql", "explain", "get_deal", "--param", "one"]) == 2
    assert "get_deal takes $1 int8" in capsys.readouterr().err
    assert main(["sql", "explain", "no_such_query"]) == 2
    assert "no query named no_such_query" in capsys.readouterr().err


def test_convert_by_type() -> None:
    assert convert("null", "int8") is None
    assert convert("NULL", "text") is None
    assert convert("42", "int4") == 42
    assert convert("99.99", "numeric") == Decimal("99.99")
    assert convert("yes", "bool") is True
    assert convert("f", "bool") is False
    assert convert("2025-06-01", "date") == date(2025, 6, 1)
    assert convert("2025-06-01T10:00:00", "timestamptz") == datetime(2025, 6, 1, 10, tzinfo=UTC)
    assert convert("a, b", "text[]") == ["a", "b"]
    assert convert("1,2", "int8[]") == [1, 2]
    assert convert("Paris", "text") == "Paris"
    with pytest.raises(ValueError, match="not a number"):
        convert("x", "numeric")
    with pytest.raises(ValueError, match="not a boolean"):
        convert("maybe", "bool")
