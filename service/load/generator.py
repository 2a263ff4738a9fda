"""A realistic synthetic deals CSV, the same bytes for the same seed.

Every row satisfies every rule of shared/spec/deals-csv.md, so a generated
file always loads without rejects. Some hotels were re-rated during the
export window: their older rows carry the old star rating, as upstream
exports do, so the loader's latest-row-wins rule has work to do.
Pure standard library and a few tables precomputed per run: a million rows
take seconds.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from service.load.source import COLUMNS

CATEGORIES = ("luxury", "budget", "family", "business", "romantic")

# country -> (calling code, UTC offset of the exporting office, cities with a price factor)
COUNTRIES: dict[str, tuple[str, str, tuple[tuple[str, float], ...]]] = {
    "France": ("+33", "+01:00", (("Paris", 1.5), ("Nice", 1.2), ("Lyon", 0.9))),
    "Italy": ("+39", "+01:00", (("Rome", 1.3), ("Milan", 1.2), ("Venice", 1.6), ("Florence", 1.2))),
    "Spain": (
        "+34",
        "+01:00",
        (("Barcelona", 1.2), ("Madrid", 1.0), ("Seville", 0.8), ("Valencia", 0.8)),
    ),
    "United Kingdom": ("+44", "+00:00", (("London", 1.6), ("Edinburgh", 1.1))),
    "Germany": ("+49", "+01:00", (("Berlin", 1.0), ("Munich", 1.1))),
    "United States": (
        "+1",
        "-05:00",
        (("New York", 1.7), ("San Francisco", 1.5), ("Miami", 1.2)),
    ),
    "Japan": ("+81", "+09:00", (("Tokyo", 1.4), ("Kyoto", 1.2))),
    "Portugal": ("+351", "+00:00", (("Lisbon", 0.9), ("Porto", 0.8))),
    "Netherlands": ("+31", "+01:00", (("Amsterdam", 1.4),)),
    "Greece": ("+30", "+02:00", (("Athens", 0.9), ("Santorini", 1.5))),
}
# (city, country, calling code, offset, price factor): 25 cities in 10 countries
CITIES = tuple(
    (city, country, code, offset, factor)
    for country, (code, offset, cities) in COUNTRIES.items()
    for city, factor in cities
)
PREFIXES = (
    "Grand",
    "Royal",
    "Park",
    "Plaza",
    "Harbour",
    "Old Town",
    "Riverside",
    "Central",
    "Garden",
    'The "Blue"',
)
KINDS = ("Hotel", "Inn", "Suites", "Resort", "Residence", "Lodge")
ROOMS = (
    ("Standard", 1.0),
    ("Superior", 1.2),
    ("Deluxe", 1.5),
    ("Suite", 2.2),
    ("Family Room", 1.4),
    ("Single", 0.8),
    ("Twin", 1.0),
)
STAR_WEIGHTS = (1, 2, 4, 4, 2)  # 1..5 stars
BASE_PRICE = (0.0, 45.0, 70.0, 110.0, 180.0, 320.0)  # by star rating
# how many categories a deal has: 0..3, mean 1.6
CATEGORY_COUNT_WEIGHTS = (10, 35, 40, 15)
NIGHTS = (1, 1, 2, 2, 2, 3, 3, 4, 5, 7, 7, 10, 14)
FIRST_CHECKIN = dt.date(2026, 1, 1)
CHECKIN_DAYS = 365
BOOKING_WINDOW_DAYS = 120
# Times count seconds from FIRST_CHECKIN - BOOKING_WINDOW_DAYS; re-rated hotels changed mid-year.
RERATED_AT = (BOOKING_WINDOW_DAYS + CHECKIN_DAYS // 2) * 86400


@dataclass(frozen=True, slots=True)
class Hotel:
    name: str
    city: str
    country: str
    phone: str
    stars: int
    old_stars: int  # the rating of rows created before RERATED_AT; == stars when never re-rated
    offset: str
    price_factor: float


def make_hotels(count: int, rng: random.Random) -> list[Hotel]:
    hotels = []
    for h in range(count):
        city, country, code, offset, factor = CITIES[h % len(CITIES)]
        k = h // len(CITIES)  # the k-th hotel of this city
        # 7 is prime to the 60 combinations: the hotels of one city get distinct names
        combo = (7 * k + 3 * (h % len(CITIES))) % (len(PREFIXES) * len(KINDS))
        name = f"{PREFIXES[combo % len(PREFIXES)]} {KINDS[combo // len(PREFIXES)]}"
        if k >= len(PREFIXES) * len(KINDS):
            name += f" {k // (len(PREFIXES) * len(KINDS)) + 1}"
        # about one name in eight carries a comma, which the CSV must quote
        name = f"{name}, {city}" if h % 8 == 3 else f"{name} {city}"
        stars = rng.choices(range(1, 6), weights=STAR_WEIGHTS)[0]
        rerated = h % 25 == 7
        old_stars = max(1, stars - 1) if rerated and stars > 1 else stars
        hotels.append(
            Hotel(
                name=name,
                city=city,
                country=country,
                phone=f"{code} {100 + h % 900} {h:06d}",
                stars=stars,
                old_stars=old_stars,
                offset=offset,
                price_factor=factor,
            )
        )
    return hotels


def quote(field: str) -> str:
    """RFC 4180: quote a field holding a comma, quote or line break; double its quotes."""
    if any(c in field for c in ',"\r\n'):
        return '"' + field.replace('"', '""') + '"'
    return field


def lines(count: int, hotel_count: int, seed: int, first_id: int = 1) -> Iterator[str]:
    """The data lines, in COLUMNS order, each ending in LF; formatted by hand for speed."""
    rng = random.Random(seed)  # noqa: S311 (synthetic data, not secrets)
    hotels = make_hotels(hotel_count, rng)
    # the hotel's four text columns, quoted once
    prefix = {
        id(h): ",".join(quote(f) for f in (h.name, h.city, h.country, h.phone)) for h in hotels
    }
    days = [
        (FIRST_CHECKIN + dt.timedelta(days=d - BOOKING_WINDOW_DAYS)).isoformat()
        for d in range(BOOKING_WINDOW_DAYS + CHECKIN_DAYS + max(NIGHTS) + 1)
    ]
    combos: list[list[str]] = [[] for _ in CATEGORY_COUNT_WEIGHTS]
    for mask in range(1 << len(CATEGORIES)):
        chosen = [c for i, c in enumerate(CATEGORIES) if mask >> i & 1]
        if len(chosen) < len(combos):
            combos[len(chosen)].append(quote(",".join(chosen)))
    # popular hotels get more deals (weights 1..4); pools make each draw one random()
    hotel_pool = [hotel for h, hotel in enumerate(hotels) for _ in range(1 + (h * 7919) % 4)]
    count_pool = [n for n, weight in enumerate(CATEGORY_COUNT_WEIGHTS) for _ in range(weight)]
    clocks = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]
    random_ = rng.random
    for i in range(count):
        # the first hotel_count rows visit every hotel once, so each hotel appears
        hotel = hotels[i] if i < hotel_count else hotel_pool[int(random_() * len(hotel_pool))]
        room, room_factor = ROOMS[int(random_() * len(ROOMS))]
        checkin = BOOKING_WINDOW_DAYS + int(random_() * CHECKIN_DAYS)
        nights = NIGHTS[int(random_() * len(NIGHTS))]
        booked = checkin - 1 - int(random_() * BOOKING_WINDOW_DAYS)
        clock = int(random_() * 86400)
        stars = hotel.stars if booked * 86400 + clock >= RERATED_AT else hotel.old_stars
        original = round(
            BASE_PRICE[stars] * hotel.price_factor * room_factor * (0.8 + random_() * 0.45), 2
        )
        discount = 0.0 if random_() < 0.2 else round(5 + random_() * 55, 1)
        price = max(0.01, round(original * (100 - discount) / 100, 2))
        # one row in five has no offset, meaning UTC
        offset = hotel.offset if i % 5 else ""
        group = combos[count_pool[int(random_() * len(count_pool))]]
        available = "true" if random_() < 0.85 else "false"
        yield (
            f"{first_id + i},{prefix[id(hotel)]},{stars},{room},{price:.2f},{original:.2f},"
            f"{discount:g},{days[checkin]},{days[checkin + nights]},{available},"
            f"{group[int(random_() * len(group))]},{days[booked]}T{clocks[clock]}{offset}\n"
        )


def write(out: IO[str], count: int, hotel_count: int, seed: int, first_id: int = 1) -> None:
    out.write(",".join(COLUMNS) + "\n")
    batch: list[str] = []
    for line in lines(count, hotel_count, seed, first_id):
        batch.append(line)
        if len(batch) == 10_000:
            out.write("".join(batch))
            batch.clear()
    out.write("".join(batch))


def generate(
    path: Path | None, count: int = 50_000, hotel_count: int = 150, seed: int = 1, first_id: int = 1
) -> None:
    """Write the file (stdout when path is None); the same arguments give the same bytes."""
    if path is None:
        write(sys.stdout, count, hotel_count, seed, first_id)
        return
    with path.open("w", encoding="utf-8", newline="", buffering=1 << 20) as out:
        write(out, count, hotel_count, seed, first_id)
