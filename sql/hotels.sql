-- Reads of hotels: a small table, so a page is one statement.

-- name: get_hotel :one
-- GET /hotels/{id}: one hotel; hotels_pkey.
SELECT h.id, h.name, h.city, h.country, h.phone, h.star_rating
FROM hotels h
WHERE h.id = $1::bigint

-- name: list_hotels :many
-- GET /hotels: a page of hotels by id, optionally in one city; hotels_pkey.
-- The city is matched case-insensitively through hotels_lower_city_idx.
-- Also EXPLAINed with $2 (limit) NULL for count=estimated.
SELECT h.id, h.name, h.city, h.country, h.phone, h.star_rating
FROM hotels h
WHERE ($1::text IS NULL OR lower(h.city) = lower($1::text))
ORDER BY h.id
LIMIT $2::int OFFSET $3::bigint

-- name: count_hotels :val
-- GET /hotels?count=exact: how many hotels match; hotels_lower_city_idx.
SELECT count(*)
FROM hotels h
WHERE ($1::text IS NULL OR lower(h.city) = lower($1::text))
