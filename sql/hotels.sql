-- Reads of hotels: a small table, so a page is one statement.

-- name: get_hotel :one
-- GET /hotels/{id}: one hotel; hotels_pkey.
-- plan: generic (one primary-key probe whatever the id)
SELECT h.id, h.name, h.city, h.country, h.phone, h.star_rating
FROM hotels h
WHERE h.id = $1::bigint

-- name: list_hotels :many
-- GET /hotels: a page of hotels by id, optionally in one city; hotels_pkey.
-- The city matches case- and normalization-insensitively through
-- hotels_city_folded_idx, as the deal lists do (sql/deals.sql says how).
-- Also EXPLAINed with $2 (limit) NULL for count=estimated.
-- plan: custom (an absent city folds away, a given one uses its index; LIMIT $n)
SELECT h.id, h.name, h.city, h.country, h.phone, h.star_rating
FROM hotels h
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
ORDER BY h.id
LIMIT $2::int OFFSET $3::bigint

-- name: count_hotels :val
-- GET /hotels?count=exact: how many hotels match; hotels_city_folded_idx.
-- plan: custom (an absent city folds away, a given one uses its index)
SELECT count(*)
FROM hotels h
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))

-- name: list_all_hotels :many
-- GET /hotels with no city: a page of hotels by id; hotels_pkey.
-- plan: generic (no filter to fold: the same plan for every page)
SELECT h.id, h.name, h.city, h.country, h.phone, h.star_rating
FROM hotels h
ORDER BY h.id
LIMIT $1::int OFFSET $2::bigint

-- name: count_all_hotels :val
-- GET /hotels?count=exact with no city: every hotel.
-- plan: generic (no parameter: planned once per connection)
SELECT count(*)
FROM hotels h

-- name: list_all_hotels_counted :many
-- GET /hotels?count=exact with no city: list_all_hotels' page, each row with
-- count_all_hotels' answer (an InitPlan: counted once per statement), so page
-- and total are one statement and one snapshot: a round trip less. An empty
-- page carries no total: the caller counts then (0 when skip is 0). Measured
-- (bench_sql): faster than count(*) OVER (), which keeps every hotel in a tuplestore.
-- plan: generic (no filter to fold: the same plan for every page)
SELECT h.id, h.name, h.city, h.country, h.phone, h.star_rating,
       (SELECT count(*) FROM hotels a) AS total
FROM hotels h
ORDER BY h.id
LIMIT $1::int OFFSET $2::bigint
