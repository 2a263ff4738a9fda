-- Aggregates over deals.
--
-- deal_totals (migration 0010) holds, per (hotel_id, is_available), the
-- number of deals and the sum of their prices; statement-level triggers on
-- deals keep it in step with every write in the writer's own transaction, so
-- it is exact at every snapshot (no refresh, no lag): a key's total is the sum
-- of its rows. It answers the shapes that filter only by hotel (city,
-- min_stars) and is_available; a price range or a category needs each deal,
-- so those shapes keep the live queries over deals (service/api/stats.py and
-- service/api/deals.py choose).

-- name: deal_stats_by_city :many
-- GET /deals/stats with a price range or a category: per city, average price and count.
-- avg_price is round(avg, 2) (half away from zero); most deals first, then city.
-- Filters, NULL for none: $1 min_stars, $2 price_min, $3 price_max, $4 category, $5 is_available.
SELECT h.city,
       round(avg(d.price_per_night), 2) AS avg_price,
       count(*) AS deal_count
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
LEFT JOIN deal_categories dc
       ON dc.deal_id = d.id
      AND dc.category_id = (SELECT c.id FROM categories c WHERE c.name = lower($4::text))
WHERE ($1::int IS NULL OR h.star_rating >= $1::int)
  AND ($2::numeric IS NULL OR d.price_per_night >= $2::numeric)
  AND ($3::numeric IS NULL OR d.price_per_night <= $3::numeric)
  AND ($4::text IS NULL OR dc.deal_id IS NOT NULL)
  AND ($5::bool IS NULL OR d.is_available = $5::bool)
GROUP BY h.city
ORDER BY deal_count DESC, h.city

-- name: deal_stats_in_price_range :many
-- GET /deals/stats?price_min=A&price_max=B, no other filter: deal_stats_by_city's
-- answer for the deals priced $1 to $2 (a missing bound is 0 or 10^8: every
-- price). A query of its own, not deal_stats_by_city with its other filters
-- NULL: that one is planned afresh at every call (custom, so that its absent
-- filters fold away), 1.5 ms of planning for 7 ms of work at 50,000 deals
-- (0.71-0.80x the plain query under pgbench); this one is planned once.
-- plan: generic (a bitmap scan of the range's index entries, whatever its width: every deal of 1M in 323 ms, custom 404)
SELECT h.city,
       round(avg(d.price_per_night), 2) AS avg_price,
       count(*) AS deal_count
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE d.price_per_night >= $1::numeric
  AND d.price_per_night <= $2::numeric
GROUP BY h.city
ORDER BY deal_count DESC, h.city

-- name: deal_stats_from_totals :many
-- GET /deals/stats filtered by at most $1 min_stars and $2 is_available: deal_stats_by_city's
-- answer from deal_totals (a row or a few per hotel) joined to hotels; avg(x) is sum(x)/count,
-- the same numeric division, so the same rounding. Cities left with no deal are left out.
-- plan: any (a few rows per hotel: every plan is cheap, so no plan switch for it)
SELECT h.city,
       round(sum(t.price_sum) / sum(t.deal_count), 2) AS avg_price,
       sum(t.deal_count)::bigint AS deal_count
FROM deal_totals t
JOIN hotels h ON h.id = t.hotel_id
WHERE ($1::int IS NULL OR h.star_rating >= $1::int)
  AND ($2::bool IS NULL OR t.is_available = $2::bool)
GROUP BY h.city
HAVING sum(t.deal_count) > 0
ORDER BY deal_count DESC, h.city

-- name: count_deals_from_totals :val
-- GET /deals?count=exact filtered by at most $1 city, $2 min_stars and $3 is_available:
-- count_deals' answer from deal_totals. With no city or min_stars the planner drops
-- the join (LEFT JOIN on hotels' primary key) and sums deal_totals alone.
-- plan: any (a few rows per hotel: every plan is cheap, so no plan switch for it)
SELECT coalesce(sum(t.deal_count), 0)::bigint
FROM deal_totals t
LEFT JOIN hotels h ON h.id = t.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::bool IS NULL OR t.is_available = $3::bool)
