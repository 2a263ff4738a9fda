-- Reads of deals. Every deal row comes with its hotel (joined) and its
-- category names (a correlated ARRAY over the deal_categories primary key),
-- so a page is one statement whatever its size.
--
-- The list queries share the filters $1-$6:
--   $1 city (hotels_city_folded_idx; how it matches: below), $2 min_stars,
--   $3 price_min, $4 price_max (deals_price_id_idx), $5 category name,
--   $6 is_available; NULL means "no filter". These queries are planned with
--   their values on every run (`-- plan: custom`, service/db/catalogue.py), so
--   an absent filter folds away and a present one can use its index.
-- One query per sort, so each is served by its own index; the keyset
-- condition (after the cursor's row) and OFFSET are both NULL/0 when unused.
-- Each query stays whole so that it pastes into psql as it is; the deal
-- row's columns and the filters are therefore repeated, and
-- tests/test_sql_shapes.py holds every copy identical to get_deal's columns
-- and the filters above.
-- The category filter in a page is a per-row probe of deal_categories_pkey,
-- so a page stops after LIMIT rows instead of hashing every match first.
--
-- The city filter compares lower(upper(normalize(x, NFC) COLLATE "pg_c_utf8"))
-- of the hotel's city and of $1, so it answers the same on every server
-- whatever its default locale (the embedded one's is C, whose lower() folds
-- ASCII only) or ICU build. normalize(, NFC) first: a decomposed "mu\u0308nchen"
-- (u + combining diaeresis) or "I\u0307stanbul" becomes the precomposed form
-- before its case is mapped. pg_c_utf8 maps case by Unicode's simple (one
-- code point to one) mappings, the same on every 17+ server; upper() then
-- lower() folds the letters that have two lower cases onto one:
--   İstanbul, İSTANBUL, ISTANBUL, istanbul, ıstanbul all become "istanbul":
--     simple lower(İ U+0130) is plain i (full mapping, pg_unicode_fast, gives
--     i + U+0307, which would not match "istanbul"), and upper(ı U+0131) is I,
--     so Turkish and non-Turkish spellings meet (Diyarbakır = DIYARBAKIR =
--     DİYARBAKIR = diyarbakir); the cost is that ı and i are not told apart.
--   Final sigma: Κως, ΚΩΣ, κωσ all become "κωσ" (ς -> Σ -> σ); with lower()
--     alone "Κως" stayed "κως" and missed "ΚΩΣ".
--   ß stays ß: Straße = STRAẞE = straße, but not STRASSE/strasse (ß -> ss is
--     a full mapping; casefold() of PG 18's pg_unicode_fast does it, at the
--     price of İ above and of PostgreSQL 18 on every server).
--   Accents are kept: Sao Paulo does not match São Paulo.
-- Migration 0007 indexes this expression; the query must spell it the same.

-- name: get_deal :one
-- GET /deals/{id}: one deal with its hotel and category names; deals_pkey.
-- plan: generic (one primary-key probe whatever the id)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE d.id = $1::bigint

-- name: find_deal_by_upstream_id :one
-- GET /deals?deal_id=N: the deal with this upstream id, when it also passes
-- the filters $1-$6; deals_deal_id_key. A page of zero or one item.
-- plan: generic (one deals_deal_id_key probe; the filters only test that row)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($5::text IS NULL OR lower($5::text) = ANY (ARRAY(
        SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
        WHERE dc.deal_id = d.id)))
  AND ($6::bool IS NULL OR d.is_available = $6::bool)
  AND d.deal_id = $7::bigint

-- name: list_deals_by_id :many
-- GET /deals (default sort): a page by id, offset or keyset after $7; deals_pkey.
-- Also EXPLAINed with $8 (limit) NULL for count=estimated.
-- plan: custom (absent filters fold away, a given one picks its index; LIMIT $n)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($5::text IS NULL OR lower($5::text) = ANY (ARRAY(
        SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
        WHERE dc.deal_id = d.id)))
  AND ($6::bool IS NULL OR d.is_available = $6::bool)
  AND ($7::bigint IS NULL OR d.id > $7::bigint)
ORDER BY d.id
LIMIT $8::int OFFSET $9::bigint

-- name: list_all_deals_by_id :many
-- GET /deals with no filter (default sort): a page by id after $1 (0: from the
-- start); deals_pkey in order, the same plan whatever the values.
-- plan: generic (no filter to fold; a generic plan is costed for LIMIT 10%: same plan)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE d.id > $1::bigint
ORDER BY d.id
LIMIT $2::int OFFSET $3::bigint

-- name: list_all_deals_by_price :many
-- GET /deals?sort=price: cheapest first, after ($1, $2); (0, 0) from the start, no filter;
-- deals_price_id_idx forwards, the same plan whatever the values.
-- plan: generic (no filter to fold; a generic plan is costed for LIMIT 10%: same plan)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE (d.price_per_night, d.id) > ($1::numeric, $2::bigint)
ORDER BY d.price_per_night, d.id
LIMIT $3::int OFFSET $4::bigint

-- name: list_all_deals_by_price_desc :many
-- GET /deals?sort=-price: dearest first, before ($1, $2); ('Infinity', 0) from the start, no filter;
-- deals_price_id_idx backwards, the same plan whatever the values.
-- plan: generic (no filter to fold; a generic plan is costed for LIMIT 10%: same plan)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE (d.price_per_night, d.id) < ($1::numeric, $2::bigint)
ORDER BY d.price_per_night DESC, d.id DESC
LIMIT $3::int OFFSET $4::bigint

-- name: list_all_deals_by_created_at :many
-- GET /deals?sort=created_at: oldest first, after ($1, $2); ('-infinity', 0) from the start, no filter;
-- deals_created_at_id_idx forwards, the same plan whatever the values.
-- plan: generic (no filter to fold; a generic plan is costed for LIMIT 10%: same plan)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE (d.created_at, d.id) > ($1::timestamptz, $2::bigint)
ORDER BY d.created_at, d.id
LIMIT $3::int OFFSET $4::bigint

-- name: list_all_deals_by_created_at_desc :many
-- GET /deals?sort=-created_at: newest first, before ($1, $2); ('infinity', 0) from the start, no filter;
-- deals_created_at_id_idx backwards, the same plan whatever the values.
-- plan: generic (no filter to fold; a generic plan is costed for LIMIT 10%: same plan)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE (d.created_at, d.id) < ($1::timestamptz, $2::bigint)
ORDER BY d.created_at DESC, d.id DESC
LIMIT $3::int OFFSET $4::bigint

-- name: list_deals_in_city_by_id :many
-- GET /deals?city=X[&min_stars=N] by id: for each hotel of the city, its first
-- limit+skip deals after $3 by id (deals_hotel_id_id_idx), then the page of those.
-- plan: generic (hotels x (limit + skip) index entries, for a big city or a rare one)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE d.id = ANY (ARRAY(
        SELECT p.id
        FROM hotels ch
        CROSS JOIN LATERAL (
            SELECT cd.id FROM deals cd
            WHERE cd.hotel_id = ch.id AND cd.id > $3::bigint
            ORDER BY cd.id
            LIMIT $4::int + $5::bigint) p
        WHERE lower(upper(normalize(ch.city, NFC) COLLATE "pg_c_utf8"))
              = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8"))
          AND ($2::int IS NULL OR ch.star_rating >= $2::int)
        ORDER BY p.id
        LIMIT $4::int OFFSET $5::bigint))
ORDER BY d.id

-- name: list_all_deals_by_id_json :one
-- GET /deals with no filter, an offset page by id: list_all_deals_by_id's page
-- (after $1, LIMIT $2 OFFSET $3) as the JSON of its items, built here so that the
-- API passes the text on instead of decoding rows into objects and encoding them
-- again; and, when $4, the exact total from deal_totals (count_deals_from_totals
-- with no filter), in the same round trip. items is each deal as GET /deals/{id}
-- encodes it (key order, money as strings, created_at in UTC with a Z and
-- microseconds only when it has some), comma-separated: tests/test_deal_json.py
-- holds it byte for byte to the Structs' encoding. The time's colons are spelt
-- \x3a: pgbench (bench/bench_sql.py) takes :MI in a string for a variable.
-- plan: generic (no filter to fold; deals_pkey in order whatever the values)
SELECT CASE WHEN $4::bool THEN (SELECT coalesce(sum(t.deal_count), 0)::bigint
                                FROM deal_totals t) END AS total,
       (SELECT coalesce(string_agg(row_to_json(p)::text, ',' ORDER BY p.id), '')
        FROM (SELECT d.id, d.deal_id, hotel,
                     d.room_type, d.price_per_night::text AS price_per_night,
                     d.original_price::text AS original_price,
                     d.discount_percent::text AS discount_percent,
                     d.checkin_date, d.checkout_date, d.is_available,
                     ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
                           WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
                     to_char(d.created_at AT TIME ZONE 'UTC',
                             CASE WHEN date_trunc('second', d.created_at) = d.created_at
                                  THEN E'YYYY-MM-DD"T"HH24\x3aMI\x3aSS"Z"'
                                  ELSE E'YYYY-MM-DD"T"HH24\x3aMI\x3aSS.US"Z"' END) AS created_at,
                     d.version
              FROM deals d
              JOIN hotels h ON h.id = d.hotel_id
              CROSS JOIN LATERAL (SELECT h.id, h.name, h.city, h.country, h.phone,
                                         h.star_rating) hotel
              WHERE d.id > $1::bigint
              ORDER BY d.id
              LIMIT $2::int OFFSET $3::bigint) p) AS items

-- name: list_deals_in_city_by_id_json :one
-- GET /deals?city=X[&min_stars=N], an offset page by id: list_deals_in_city_by_id's
-- page ($1 city, $2 min_stars, after $3, LIMIT $4 OFFSET $5) as the JSON of its
-- items (as list_all_deals_by_id_json builds it) and, when $6, the exact total
-- from deal_totals (count_deals_from_totals for the city), in one round trip.
-- plan: generic (hotels x (limit + skip) index entries, for a big city or a rare one)
SELECT CASE WHEN $6::bool THEN (
         SELECT coalesce(sum(t.deal_count), 0)::bigint
         FROM deal_totals t
         JOIN hotels ch ON ch.id = t.hotel_id
         WHERE lower(upper(normalize(ch.city, NFC) COLLATE "pg_c_utf8"))
               = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8"))
           AND ($2::int IS NULL OR ch.star_rating >= $2::int)) END AS total,
       (SELECT coalesce(string_agg(row_to_json(p)::text, ',' ORDER BY p.id), '')
        FROM (SELECT d.id, d.deal_id, hotel,
                     d.room_type, d.price_per_night::text AS price_per_night,
                     d.original_price::text AS original_price,
                     d.discount_percent::text AS discount_percent,
                     d.checkin_date, d.checkout_date, d.is_available,
                     ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
                           WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
                     to_char(d.created_at AT TIME ZONE 'UTC',
                             CASE WHEN date_trunc('second', d.created_at) = d.created_at
                                  THEN E'YYYY-MM-DD"T"HH24\x3aMI\x3aSS"Z"'
                                  ELSE E'YYYY-MM-DD"T"HH24\x3aMI\x3aSS.US"Z"' END) AS created_at,
                     d.version
              FROM deals d
              JOIN hotels h ON h.id = d.hotel_id
              CROSS JOIN LATERAL (SELECT h.id, h.name, h.city, h.country, h.phone,
                                         h.star_rating) hotel
              WHERE d.id = ANY (ARRAY(
                      SELECT pc.id
                      FROM hotels ch
                      CROSS JOIN LATERAL (
                          SELECT cd.id FROM deals cd
                          WHERE cd.hotel_id = ch.id AND cd.id > $3::bigint
                          ORDER BY cd.id
                          LIMIT $4::int + $5::bigint) pc
                      WHERE lower(upper(normalize(ch.city, NFC) COLLATE "pg_c_utf8"))
                            = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8"))
                        AND ($2::int IS NULL OR ch.star_rating >= $2::int)
                      ORDER BY pc.id
                      LIMIT $4::int OFFSET $5::bigint))) p) AS items

-- name: list_deals_in_price_range_by_id :many
-- GET /deals?price_min=A&price_max=B by id, no other filter: a page by id after
-- $3 of the deals priced $1 to $2 (a missing bound is 0 or 10^8: every price).
-- Which plan is best depends on how many deals the range holds: at a million
-- deals a custom plan walks deals_pkey for a range of 50 cents or wider, and
-- reads deals_price_id_idx then sorts for a few cents (1.4 ms where the walk
-- takes 60-300 ms). So the query holds both, and one generic plan runs the
-- one the data asks for; a one-time filter (an InitPlan) runs only one branch:
-- * walk, when one of the next 100 deals after $3 by id is in range (or fewer
--   than 100 are left): deals_pkey in order, each price tested, until the page
--   is full (a range that holds 1% of the deals: about 100 deals a row);
-- * range, else: the range's entries of deals_price_id_idx (index-only) after
--   $3, the first limit+skip by id (`r.id + 0`: not deals_pkey's order), then
--   their rows by id.
-- plan: generic (one plan for both cases: a one-time filter picks the branch)
(SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE d.price_per_night >= $1::numeric
  AND d.price_per_night <= $2::numeric
  AND d.id > $3::bigint
  AND (EXISTS (SELECT FROM (SELECT s.price_per_night FROM deals s WHERE s.id > $3::bigint
                         ORDER BY s.id LIMIT 100) s
              WHERE s.price_per_night >= $1::numeric AND s.price_per_night <= $2::numeric)
       OR NOT EXISTS (SELECT FROM deals e WHERE e.id > $3::bigint ORDER BY e.id OFFSET 99))
ORDER BY d.id
LIMIT $4::int OFFSET $5::bigint)
UNION ALL
(SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE d.id = ANY (ARRAY(
        SELECT r.id
        FROM deals r
        WHERE r.price_per_night >= $1::numeric
          AND r.price_per_night <= $2::numeric
          AND r.id > $3::bigint
        ORDER BY r.id + 0
        LIMIT $4::int + $5::bigint))
  AND NOT (EXISTS (SELECT FROM (SELECT s.price_per_night FROM deals s WHERE s.id > $3::bigint
                         ORDER BY s.id LIMIT 100) s
              WHERE s.price_per_night >= $1::numeric AND s.price_per_night <= $2::numeric)
       OR NOT EXISTS (SELECT FROM deals e WHERE e.id > $3::bigint ORDER BY e.id OFFSET 99))
ORDER BY d.id
LIMIT $4::int OFFSET $5::bigint)
ORDER BY id

-- name: list_deals_in_price_range_by_id_json :one
-- GET /deals?price_min=A&price_max=B, an offset page by id: list_deals_in_price_range_by_id's
-- page ($1 to $2, after $3, LIMIT $4 OFFSET $5) as the JSON of its items (as
-- list_all_deals_by_id_json builds it) and, when $6, the exact total
-- (count_deals_in_price_range), in one round trip. The page's ids come from
-- the same two branches under the same one-time filter (walk deals_pkey when
-- one of the next 100 deals is in range or fewer than 100 are left, else the
-- range's entries of deals_price_id_idx); then their rows, as JSON. The walk
-- selects ids only, for which the planner would rather read the whole range's
-- entries (index-only) and sort them: its prices are tested as `+ 0`, which no
-- index serves, so that it walks.
-- plan: generic (one plan for both cases: a one-time filter picks the branch)
SELECT CASE WHEN $6::bool THEN (  -- count_deals_in_price_range
         (SELECT coalesce(sum(t.deal_count), 0)
          FROM deal_price_totals t
          WHERE t.price_floor >= ceil($1::numeric)
            AND t.price_floor < greatest(ceil($1::numeric), floor($2::numeric)))
         + (SELECT count(*)
            FROM deals lo
            WHERE lo.price_per_night >= $1::numeric
              AND lo.price_per_night <= $2::numeric
              AND lo.price_per_night < ceil($1::numeric))
         + (SELECT count(*)
            FROM deals hi
            WHERE hi.price_per_night >= $1::numeric
              AND hi.price_per_night <= $2::numeric
              AND hi.price_per_night >= greatest(ceil($1::numeric), floor($2::numeric)))
       )::bigint END AS total,
       (SELECT coalesce(string_agg(row_to_json(p)::text, ',' ORDER BY p.id), '')
        FROM (SELECT d.id, d.deal_id, hotel,
                     d.room_type, d.price_per_night::text AS price_per_night,
                     d.original_price::text AS original_price,
                     d.discount_percent::text AS discount_percent,
                     d.checkin_date, d.checkout_date, d.is_available,
                     ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
                           WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
                     to_char(d.created_at AT TIME ZONE 'UTC',
                             CASE WHEN date_trunc('second', d.created_at) = d.created_at
                                  THEN E'YYYY-MM-DD"T"HH24\x3aMI\x3aSS"Z"'
                                  ELSE E'YYYY-MM-DD"T"HH24\x3aMI\x3aSS.US"Z"' END) AS created_at,
                     d.version
              FROM deals d
              JOIN hotels h ON h.id = d.hotel_id
              CROSS JOIN LATERAL (SELECT h.id, h.name, h.city, h.country, h.phone,
                                         h.star_rating) hotel
              WHERE d.id = ANY (ARRAY(
                      (SELECT w.id
                       FROM deals w
                       WHERE w.price_per_night + 0 >= $1::numeric  -- `+ 0`: walk deals_pkey
                         AND w.price_per_night + 0 <= $2::numeric  -- not the range's entries
                         AND w.id > $3::bigint
                         AND (EXISTS (SELECT FROM (SELECT s.price_per_night FROM deals s
                                                   WHERE s.id > $3::bigint
                                                   ORDER BY s.id LIMIT 100) s
                                      WHERE s.price_per_night >= $1::numeric
                                        AND s.price_per_night <= $2::numeric)
                              OR NOT EXISTS (SELECT FROM deals e WHERE e.id > $3::bigint
                                             ORDER BY e.id OFFSET 99))
                       ORDER BY w.id
                       LIMIT $4::int OFFSET $5::bigint)
                      UNION ALL
                      (SELECT f.id
                       FROM (SELECT r.id
                             FROM deals r
                             WHERE r.price_per_night >= $1::numeric
                               AND r.price_per_night <= $2::numeric
                               AND r.id > $3::bigint
                             ORDER BY r.id + 0
                             LIMIT $4::int + $5::bigint) f
                       WHERE NOT (EXISTS (SELECT FROM (SELECT s.price_per_night FROM deals s
                                                       WHERE s.id > $3::bigint
                                                       ORDER BY s.id LIMIT 100) s
                                          WHERE s.price_per_night >= $1::numeric
                                            AND s.price_per_night <= $2::numeric)
                                  OR NOT EXISTS (SELECT FROM deals e WHERE e.id > $3::bigint
                                                 ORDER BY e.id OFFSET 99))
                       ORDER BY f.id
                       LIMIT $4::int OFFSET $5::bigint)))) p) AS items

-- name: list_deals_in_category_by_id :many
-- GET /deals?category=X by id, no other filter: a page by id after $2 of the
-- deals linked to category $1; deals_pkey in order, a deal_categories_pkey
-- probe per deal (index-only: the deal's category ids), until the page is full,
-- as list_deals_by_id's plan for a category is. An ARRAY() is never turned into
-- a join: as an EXISTS it became a merge join that read deal_categories_pkey
-- from its first deal, whatever $2. A category that does not exist reads no
-- deal (a one-time filter); a rare one walks far, as the general query does.
-- plan: generic (a probe per deal whatever the category: the same plan for every page)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE (SELECT c.id FROM categories c WHERE c.name = lower($1::text)) = ANY (ARRAY(
        SELECT dc.category_id FROM deal_categories dc WHERE dc.deal_id = d.id))
  AND (SELECT c.id FROM categories c WHERE c.name = lower($1::text)) IS NOT NULL
  AND d.id > $2::bigint
ORDER BY d.id
LIMIT $3::int OFFSET $4::bigint

-- name: list_deals_by_price :many
-- GET /deals?sort=price: cheapest first, id breaks ties; keyset after ($7, $8).
-- Served by deals_price_id_idx (price_per_night, id), forwards.
-- plan: custom (absent filters fold away, a given one picks its index; LIMIT $n)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($5::text IS NULL OR lower($5::text) = ANY (ARRAY(
        SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
        WHERE dc.deal_id = d.id)))
  AND ($6::bool IS NULL OR d.is_available = $6::bool)
  AND ($8::bigint IS NULL OR (d.price_per_night, d.id) > ($7::numeric, $8::bigint))
ORDER BY d.price_per_night, d.id
LIMIT $9::int OFFSET $10::bigint

-- name: list_deals_by_price_desc :many
-- GET /deals?sort=-price: dearest first, id breaks ties; keyset before ($7, $8).
-- Served by deals_price_id_idx (price_per_night, id), backwards.
-- plan: custom (absent filters fold away, a given one picks its index; LIMIT $n)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($5::text IS NULL OR lower($5::text) = ANY (ARRAY(
        SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
        WHERE dc.deal_id = d.id)))
  AND ($6::bool IS NULL OR d.is_available = $6::bool)
  AND ($8::bigint IS NULL OR (d.price_per_night, d.id) < ($7::numeric, $8::bigint))
ORDER BY d.price_per_night DESC, d.id DESC
LIMIT $9::int OFFSET $10::bigint

-- name: list_deals_by_created_at :many
-- GET /deals?sort=created_at: oldest first, id breaks ties; keyset after ($7, $8).
-- Served by deals_created_at_id_idx (created_at, id), forwards.
-- plan: custom (absent filters fold away, a given one picks its index; LIMIT $n)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($5::text IS NULL OR lower($5::text) = ANY (ARRAY(
        SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
        WHERE dc.deal_id = d.id)))
  AND ($6::bool IS NULL OR d.is_available = $6::bool)
  AND ($8::bigint IS NULL OR (d.created_at, d.id) > ($7::timestamptz, $8::bigint))
ORDER BY d.created_at, d.id
LIMIT $9::int OFFSET $10::bigint

-- name: list_deals_by_created_at_desc :many
-- GET /deals?sort=-created_at: newest first, id breaks ties; keyset before ($7, $8).
-- Served by deals_created_at_id_idx (created_at, id), backwards.
-- plan: custom (absent filters fold away, a given one picks its index; LIMIT $n)
SELECT d.id, d.deal_id,
       h.id AS hotel_id, h.name AS hotel_name, h.city AS hotel_city,
       h.country AS hotel_country, h.phone AS hotel_phone, h.star_rating AS hotel_star_rating,
       d.room_type, d.price_per_night, d.original_price, d.discount_percent,
       d.checkin_date, d.checkout_date, d.is_available,
       ARRAY(SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
             WHERE dc.deal_id = d.id ORDER BY c.name) AS categories,
       d.created_at, d.version
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($5::text IS NULL OR lower($5::text) = ANY (ARRAY(
        SELECT c.name FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
        WHERE dc.deal_id = d.id)))
  AND ($6::bool IS NULL OR d.is_available = $6::bool)
  AND ($8::bigint IS NULL OR (d.created_at, d.id) < ($7::timestamptz, $8::bigint))
ORDER BY d.created_at DESC, d.id DESC
LIMIT $9::int OFFSET $10::bigint

-- name: count_deals :val
-- GET /deals?count=exact: how many deals match the filters $1-$6.
-- LEFT JOIN: with no hotel filter the planner drops the join (hotel_id is a
-- NOT NULL foreign key); EXISTS lets it hash the category's deals once.
-- plan: custom (absent filters fold away, a given one picks its index)
SELECT count(*)
FROM deals d
LEFT JOIN hotels h ON h.id = d.hotel_id
WHERE ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($5::text IS NULL OR EXISTS (
        SELECT FROM deal_categories dc JOIN categories c ON c.id = dc.category_id
        WHERE dc.deal_id = d.id AND c.name = lower($5::text)))
  AND ($6::bool IS NULL OR d.is_available = $6::bool)

-- name: count_deals_in_category :val
-- count_deals when $5 (category) is given: a hash join over the category's links
-- (deal_categories_category_id_idx); count_deals' EXISTS probes every deal once
-- the category's deals outgrow work_mem (2.1 s at a million deals, this 0.4 s).
-- plan: custom (absent filters fold away, a given one picks its index)
SELECT count(*)
FROM deal_categories dc
JOIN deals d ON d.id = dc.deal_id
LEFT JOIN hotels h ON h.id = d.hotel_id
WHERE dc.category_id = (SELECT c.id FROM categories c WHERE c.name = lower($5::text))
  AND ($1::text IS NULL OR lower(upper(normalize(h.city, NFC) COLLATE "pg_c_utf8"))
                           = lower(upper(normalize($1::text, NFC) COLLATE "pg_c_utf8")))
  AND ($2::int IS NULL OR h.star_rating >= $2::int)
  AND ($3::numeric IS NULL OR d.price_per_night >= $3::numeric)
  AND ($4::numeric IS NULL OR d.price_per_night <= $4::numeric)
  AND ($6::bool IS NULL OR d.is_available = $6::bool)

-- name: count_deals_in_price_range :val
-- GET /deals?price_min=A&price_max=B&count=exact, no other filter: how many deals
-- are priced $1 to $2 (a missing bound is 0 or 10^8: every price). The whole
-- units of price the range covers, ceil($1) up to floor($2) (100-150: the 50
-- units 100.00-100.99 to 149.00-149.99), are summed from deal_price_totals
-- (migration 0013, in step with every write); the deals of the two partial
-- units at its ends, $1 up to ceil($1) and floor($2) up to $2 (150.00 here),
-- are counted in deals_price_id_idx (index-only). So a range reads about one
-- row per unit of its width instead of one index entry per deal in it.
-- plan: generic (three index range scans whose bounds come from the values)
SELECT ((SELECT coalesce(sum(t.deal_count), 0)
         FROM deal_price_totals t
         WHERE t.price_floor >= ceil($1::numeric)
           AND t.price_floor < greatest(ceil($1::numeric), floor($2::numeric)))
        + (SELECT count(*)  -- below the first whole unit
           FROM deals lo
           WHERE lo.price_per_night >= $1::numeric
             AND lo.price_per_night <= $2::numeric
             AND lo.price_per_night < ceil($1::numeric))
        + (SELECT count(*)  -- from the end of the last whole unit
           FROM deals hi
           WHERE hi.price_per_night >= $1::numeric
             AND hi.price_per_night <= $2::numeric
             AND hi.price_per_night >= greatest(ceil($1::numeric), floor($2::numeric)))
       )::bigint

-- name: count_category_deals :val
-- GET /deals?category=X&count=exact, no other filter: the category's links alone
-- (deal_categories_category_id_idx, index-only); every link's deal exists (foreign key).
-- A join, not `category_id = (SELECT ...)`: with that InitPlan the planner sent two
-- parallel workers over the index (12 ms instead of 17 at 1M deals for one client, but
-- three processes' CPU), which under concurrent requests served 0.82x the plain query.
-- plan: generic (the category's index entries whatever the category: same plan for all)
SELECT count(*)
FROM deal_categories dc
JOIN categories c ON c.id = dc.category_id
WHERE c.name = lower($1::text)

-- name: estimate_all_deals :val
-- GET /deals?count=estimated with no filter: the planner's estimate of every
-- deal, the number EXPLAIN of the page query gives, computed as the planner
-- computes it (pg_class.reltuples per relpages, as of the last VACUUM or
-- ANALYZE, times the table's current pages) without planning a query: one
-- pg_class row and the table's size. NULL where the planner estimates
-- otherwise (never analyzed, or no page at the last count): EXPLAIN then.
-- plan: generic (no parameter: planned once per connection)
SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0
            THEN round(c.reltuples::float8 / c.relpages
                       * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
       END
FROM pg_class c
WHERE c.oid = 'deals'::regclass
