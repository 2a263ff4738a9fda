-- Writes of deals: POST, PATCH and DELETE /deals. Each request runs them in
-- one transaction. The optimistic-locking check and the write are one
-- statement (UPDATE/DELETE ... WHERE id = $1 AND version = $n).

-- name: insert_deal :one
-- POST /deals: a new deal at version 1. A missing hotel fails on the
-- foreign key (deals_hotel_id_fkey), reported as a 404.
INSERT INTO deals (deal_id, hotel_id, room_type, price_per_night, original_price,
                   discount_percent, checkin_date, checkout_date, is_available)
VALUES ($1::bigint, $2::bigint, $3::text, $4::numeric, $5::numeric,
        $6::numeric, $7::date, $8::date, $9::bool)
RETURNING id, version

-- name: update_deal :one
-- PATCH /deals/{id}: NULL leaves a column as it is. Matches only when the
-- version checks pass ($2 from If-Match, $3 from the body), the merged dates
-- are in order and some column really changes; no row back means absent,
-- stale, bad dates, or nothing to change (deal_version_and_dates tells which).
UPDATE deals
SET hotel_id         = COALESCE($4::bigint, hotel_id),
    room_type        = COALESCE($5::text, room_type),
    price_per_night  = COALESCE($6::numeric, price_per_night),
    original_price   = COALESCE($7::numeric, original_price),
    discount_percent = COALESCE($8::numeric, discount_percent),
    checkin_date     = COALESCE($9::date, checkin_date),
    checkout_date    = COALESCE($10::date, checkout_date),
    is_available     = COALESCE($11::bool, is_available),
    version          = version + 1
WHERE id = $1::bigint
  AND ($2::int IS NULL OR version = $2::int)
  AND ($3::int IS NULL OR version = $3::int)
  AND COALESCE($10::date, checkout_date) > COALESCE($9::date, checkin_date)
  AND (hotel_id, room_type, price_per_night, original_price, discount_percent,
       checkin_date, checkout_date, is_available)
      IS DISTINCT FROM
      (COALESCE($4::bigint, hotel_id), COALESCE($5::text, room_type),
       COALESCE($6::numeric, price_per_night), COALESCE($7::numeric, original_price),
       COALESCE($8::numeric, discount_percent), COALESCE($9::date, checkin_date),
       COALESCE($10::date, checkout_date), COALESCE($11::bool, is_available))
RETURNING id, version

-- name: bump_deal_version :one
-- PATCH /deals/{id} that changed only the deal's categories: the version
-- still moves, so that the ETag tells the change.
UPDATE deals
SET version = version + 1
WHERE id = $1::bigint
RETURNING version

-- name: deal_version_and_dates :one
-- Why an UPDATE or DELETE matched nothing: absent, stale version, or dates.
SELECT version, checkin_date, checkout_date
FROM deals
WHERE id = $1::bigint

-- name: replace_deal_categories :val
-- Make the deal's links exactly the named categories ($2, known names):
-- drops the others and adds the missing ones in one statement; the number
-- of links dropped and added (0: the deal had exactly these already).
WITH wanted AS (
    SELECT id FROM categories WHERE name = ANY ($2::text[])
), dropped AS (
    DELETE FROM deal_categories
    WHERE deal_id = $1::bigint
      AND category_id NOT IN (SELECT id FROM wanted)
    RETURNING category_id
), added AS (
    INSERT INTO deal_categories (deal_id, category_id)
    SELECT $1::bigint, id
    FROM wanted
    ON CONFLICT (deal_id, category_id) DO NOTHING
    RETURNING category_id
)
SELECT (SELECT count(*) FROM dropped) + (SELECT count(*) FROM added)

-- name: delete_deal :one
-- DELETE /deals/{id}: the links go with it (ON DELETE CASCADE). $2 is the
-- If-Match version, NULL when absent. Its ids and version go to the event.
DELETE FROM deals
WHERE id = $1::bigint
  AND ($2::int IS NULL OR version = $2::int)
RETURNING id, deal_id, version
