"""`deals generate`: deterministic, the spec's 15 columns, and every row valid."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from service.cli.main import main
from service.load import generator as generate
from service.load.source import COLUMNS

# The header line of shared/spec/deals-csv.md, as the spec writes it.
SPEC_HEADER = (
    "deal_id,hotel_name,hotel_city,hotel_country,hotel_phone,hotel_star_rating,room_type,"
    "price_per_night,original_price,discount_percent,checkin_date,checkout_date,is_available,"
    "categories,created_at"
)
SPEC_COLUMNS = SPEC_HEADER.split(",")


def text(rows: int, hotels: int = 150, seed: int = 1, first_id: int = 1) -> str:
    out = io.StringIO()
    generate.write(out, rows, hotels, seed, first_id)
    return out.getvalue()


@pytest.fixture(scope="module")
def records() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text(20_000))))


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert text(2_000, seed=7) == text(2_000, seed=7)
    assert text(2_000, seed=7) != text(2_000, seed=8)


def test_header_is_the_spec_columns_in_order() -> None:
    assert text(0).splitlines() == [",".join(SPEC_COLUMNS)]
    assert list(COLUMNS) == SPEC_COLUMNS


def test_shape(records: list[dict[str, str]]) -> None:
    assert len(records) == 20_000
    assert len({r["hotel_phone"] for r in records}) == 150
    assert len({(r["hotel_name"], r["hotel_city"], r["hotel_country"]) for r in records}) == 150
    assert len({r["hotel_city"] for r in records}) == 25
    assert len({r["hotel_country"] for r in records}) == 10
    assert [int(r["deal_id"]) for r in records] == list(range(1, 20_001))


def test_categories_average_about_1_6(records: list[dict[str, str]]) -> None:
    counts = Counter(len([c for c in r["categories"].split(",") if c]) for r in records)
    names = {c for r in records for c in r["categories"].split(",") if c}
    assert names == {"luxury", "budget", "family", "business", "romantic"}
    assert counts[0] > 0  # some deals have none
    assert 1.5 < sum(k * n for k, n in counts.items()) / len(records) < 1.7


def test_every_row_satisfies_the_spec(records: list[dict[str, str]]) -> None:
    for r in records:
        assert int(r["deal_id"]) > 0
        for column in ("hotel_name", "hotel_city", "hotel_country", "hotel_phone", "room_type"):
            assert r[column].strip(), column
        assert 1 <= int(r["hotel_star_rating"]) <= 5
        for column in ("price_per_night", "original_price"):
            price = Decimal(r[column])
            assert price > 0
            assert -price.as_tuple().exponent <= 2  # type: ignore[operator]
        assert 0 <= Decimal(r["discount_percent"]) <= 100
        checkin = dt.date.fromisoformat(r["checkin_date"])
        assert dt.date.fromisoformat(r["checkout_date"]) > checkin
        assert r["is_available"] in {"true", "false"}
        assert dt.datetime.fromisoformat(r["created_at"])


def test_quoting_round_trips(records: list[dict[str, str]]) -> None:
    names = {r["hotel_name"] for r in records}
    assert any("," in n for n in names)
    assert any('"' in n for n in names)


def test_some_hotels_disagree_across_rows(records: list[dict[str, str]]) -> None:
    stars: dict[str, set[str]] = {}
    for r in records:
        stars.setdefault(r["hotel_phone"], set()).add(r["hotel_star_rating"])
    assert 0 < sum(len(s) > 1 for s in stars.values()) < 150


def test_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deals.csv"
    argv = ["generate", "--rows", "300", "--hotels", "20", "--seed", "3", "--first-id", "1001"]
    assert main([*argv, "-o", str(path)]) == 0
    assert path.read_text() == text(300, hotels=20, seed=3, first_id=1001)
    assert main(argv) == 0
    assert capsys.readouterr().out == path.read_text()


def test_cli_refuses_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--hotels", "0"]) == 2
    assert "--hotels" in capsys.readouterr().err
