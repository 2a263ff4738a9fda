-- The CSV loader (`deals load`, service/load.py), in the order a load runs them.
-- One transaction: the file is COPYed into TEMP work tables (ON COMMIT DROP,
-- private to the session, no WAL), checked there set-based, then written to
-- the real tables with INSERT ... SELECT. Readers are never blocked: no
-- LOCK TABLE, no TRUNCATE; loads serialize on an advisory lock. The one
-- exception is a first load into an empty deals table (may_defer_indexes):
-- it drops the secondary indexes and builds them after the data, and readers
-- of the empty table wait for its commit.

-- name: configure_load :exec
-- Transaction-local settings: offset-less created_at means UTC, dates print as
-- YYYY-MM-DD, no timeouts for a long load; $1 is work_mem for its hashes and sorts.
SELECT set_config('timezone', 'UTC', true),
       set_config('datestyle', 'ISO, YMD', true),
       set_config('statement_timeout', '0', true),
       set_config('lock_timeout', '0', true),
       set_config('idle_in_transaction_session_timeout', '0', true),
       set_config('work_mem', $1::text, true)

-- name: try_load_lock :val
-- One load at a time per database; true when taken. Released at commit or rollback.
-- pg_locks shows it as an advisory lock with objid hashtext('deals.load').
SELECT pg_try_advisory_xact_lock(hashtext('deals.load'))

-- name: wait_load_lock :exec
-- Wait for the load that holds the advisory lock to end.
SELECT pg_advisory_xact_lock(hashtext('deals.load'))

-- name: set_lock_timeout :exec
-- POST /deals/import: how long this transaction waits for a lock ($1, e.g.
-- '30000ms'; '0' for ever): the import waits for another load only that long.
SELECT set_config('lock_timeout', $1::text, true)

-- name: deals_exist :val
-- `deals load --if-empty`: is there any deal yet? One index or heap page.
SELECT EXISTS (SELECT 1 FROM deals)

-- name: create_load_staging :exec
-- The file as COPY reads it: every column text, record = the data record's
-- ordinal (1 = the first record after the header), not its physical line.
CREATE TEMP TABLE load_staging (
    record            bigint GENERATED ALWAYS AS IDENTITY,
    deal_id           text,
    hotel_name        text,
    hotel_city        text,
    hotel_country     text,
    hotel_phone       text,
    hotel_star_rating text,
    room_type         text,
    price_per_night   text,
    original_price    text,
    discount_percent  text,
    checkin_date      text,
    checkout_date     text,
    is_available      text,
    categories        text,
    created_at        text
) ON COMMIT DROP

-- name: create_load_errors :exec
-- Bad values: one row per (record, column) that breaks a rule; ord orders the
-- problems of one record.
CREATE TEMP TABLE load_errors (
    record bigint NOT NULL,
    ord    integer NOT NULL,
    col    text NOT NULL,
    value  text,
    reason text NOT NULL
) ON COMMIT DROP

-- name: create_load_rows :exec
-- Every record, typed and trimmed: a value that does not parse is NULL, and ok
-- says whether the record keeps every rule. Once the bad records are rejected
-- (drop_rejected_rows), only good ones remain, with no NULL but categories.
CREATE TEMP TABLE load_rows (
    record            bigint NOT NULL,
    ok                boolean NOT NULL,
    deal_id           bigint,
    hotel_name        text,
    hotel_city        text,
    hotel_country     text,
    hotel_phone       text,
    hotel_star_rating smallint,
    room_type         text,
    price_per_night   numeric(10, 2),
    original_price    numeric(10, 2),
    discount_percent  numeric(5, 2),
    checkin_date      date,
    checkout_date     date,
    is_available      boolean,
    categories        text,
    created_at        timestamptz
) ON COMMIT DROP

-- name: create_load_hotels :exec
-- One hotel per phone: the values of its latest record.
CREATE TEMP TABLE load_hotels (
    phone        text PRIMARY KEY,
    name         text NOT NULL,
    city         text NOT NULL,
    country      text NOT NULL,
    star_rating  smallint NOT NULL,
    record       bigint NOT NULL,  -- the record whose values won
    first_record bigint NOT NULL,  -- where the phone first appears
    disagree     boolean NOT NULL  -- its records disagree on name, city, country or stars
) ON COMMIT DROP

-- name: create_load_links :exec
-- The (deal, category name) pairs of the good records, each once.
CREATE TEMP TABLE load_links (
    deal_id  bigint NOT NULL,
    category text NOT NULL
) ON COMMIT DROP

-- name: create_load_category_sets :exec
-- Each distinct categories text of the file, split once (insert_load_links):
-- its names trimmed, lower-cased, each once, in the order of their first
-- occurrence; the links and the events' category lists are made from it.
CREATE TEMP TABLE load_category_sets (
    categories text NOT NULL,
    names      text[] NOT NULL
) ON COMMIT DROP

-- name: create_load_changed :exec
-- Existing deals whose set of categories the file changes.
CREATE TEMP TABLE load_changed (
    deal_id bigint PRIMARY KEY
) ON COMMIT DROP

-- name: create_load_existing :exec
-- The file's deals that the database has already: upstream deal_id -> deals.id.
CREATE TEMP TABLE load_existing (
    deal_id bigint NOT NULL,  -- unique (the file's are), no index: every join with it hashes
    id      bigint NOT NULL
) ON COMMIT DROP

-- name: create_load_new_deals :exec
-- The deals this load inserted, with their version (for the events).
CREATE TEMP TABLE load_new_deals (
    deal_id bigint NOT NULL,
    id      bigint NOT NULL,
    version bigint NOT NULL
) ON COMMIT DROP

-- name: create_load_updated_deals :exec
-- The deals this load updated (their events are deal.updated), with their new version.
CREATE TEMP TABLE load_updated_deals (
    deal_id bigint NOT NULL,
    id      bigint NOT NULL,
    version bigint NOT NULL
) ON COMMIT DROP

-- name: create_load_events :exec
-- The load's events for the change feed, built before they are appended, and
-- written in deals.id order (build_load_events): insert_load_events copies them
-- in that order without sorting them again.
CREATE TEMP TABLE load_events (
    type    text NOT NULL,
    deal    bigint NOT NULL,
    deal_id bigint,
    version bigint NOT NULL,
    data    jsonb NOT NULL
) ON COMMIT DROP

-- name: create_cast_values :exec
-- The load's first try at typing load_staging (read by insert_typed_rows, in a
-- savepoint): each value cast straight away, parsed once. A value that does
-- not parse raises instead of becoming NULL; the loader then rolls back to the
-- savepoint and types with create_tested_values, which finds every bad value.
-- A value that parses is typed as create_tested_values types it. The date and
-- timestamp shapes are still tested first (a date type reads more forms than
-- the spec's YYYY-MM-DD). A TEMP view: it goes with load_staging.
CREATE TEMP VIEW load_values AS
SELECT s.record,
       s.deal_id::bigint AS deal_id,
       btrim(s.hotel_name) AS hotel_name,
       btrim(s.hotel_city) AS hotel_city,
       btrim(s.hotel_country) AS hotel_country,
       btrim(s.hotel_phone) AS hotel_phone,
       s.hotel_star_rating::smallint AS hotel_star_rating,
       btrim(s.room_type) AS room_type,
       s.price_per_night::numeric AS price_per_night,
       s.original_price::numeric AS original_price,
       s.discount_percent::numeric AS discount_percent,
       CASE WHEN (s.checkin_date LIKE '____-__-__' OR btrim(s.checkin_date) LIKE '____-__-__')
           THEN s.checkin_date::date END AS checkin_date,
       CASE WHEN (s.checkout_date LIKE '____-__-__' OR btrim(s.checkout_date) LIKE '____-__-__')
           THEN s.checkout_date::date END AS checkout_date,
       s.is_available AS is_available_text,  -- its spellings: insert_typed_rows
       s.categories,
       CASE WHEN (s.created_at LIKE '____-__-__%' OR btrim(s.created_at) LIKE '____-__-__%')
           THEN s.created_at::timestamptz END AS created_at
FROM load_staging AS s

-- name: create_tested_values :exec
-- The typing of load_staging when a value does not parse (create_cast_values
-- raised): each value tested with pg_input_is_valid, cast only when it parses,
-- NULL otherwise.
CREATE TEMP VIEW load_values AS
SELECT s.record,
       CASE WHEN pg_input_is_valid(s.deal_id, 'bigint') THEN s.deal_id::bigint END AS deal_id,
       btrim(s.hotel_name) AS hotel_name,
       btrim(s.hotel_city) AS hotel_city,
       btrim(s.hotel_country) AS hotel_country,
       btrim(s.hotel_phone) AS hotel_phone,
       CASE WHEN pg_input_is_valid(s.hotel_star_rating, 'smallint')
           THEN s.hotel_star_rating::smallint END AS hotel_star_rating,
       btrim(s.room_type) AS room_type,
       CASE WHEN pg_input_is_valid(s.price_per_night, 'numeric')
           THEN s.price_per_night::numeric END AS price_per_night,
       CASE WHEN pg_input_is_valid(s.original_price, 'numeric')
           THEN s.original_price::numeric END AS original_price,
       CASE WHEN pg_input_is_valid(s.discount_percent, 'numeric')
           THEN s.discount_percent::numeric END AS discount_percent,
       CASE WHEN (s.checkin_date LIKE '____-__-__' OR btrim(s.checkin_date) LIKE '____-__-__')
                 AND pg_input_is_valid(s.checkin_date, 'date')
           THEN s.checkin_date::date END AS checkin_date,
       CASE WHEN (s.checkout_date LIKE '____-__-__' OR btrim(s.checkout_date) LIKE '____-__-__')
                 AND pg_input_is_valid(s.checkout_date, 'date')
           THEN s.checkout_date::date END AS checkout_date,
       s.is_available AS is_available_text,  -- its spellings: insert_typed_rows
       s.categories,
       CASE WHEN (s.created_at LIKE '____-__-__%' OR btrim(s.created_at) LIKE '____-__-__%')
                 AND pg_input_is_valid(s.created_at, 'timestamptz')
           THEN s.created_at::timestamptz END AS created_at
FROM load_staging AS s

-- name: insert_typed_rows :execrows
-- Every record of load_staging, typed in one pass (load_values: cast, or
-- tested then cast), and ok is every rule of the spec tested on the typed
-- values. The rules with their reasons are in find_bad_values, which looks
-- only at the records whose ok is false; a record it finds nothing wrong with
-- fails the load (count_unexplained_rows), so the two can never disagree
-- silently. Prices stay unrounded until ok is known: a third decimal is a bad
-- value, not a rounding.
INSERT INTO load_rows (
    record, ok, deal_id, hotel_name, hotel_city, hotel_country, hotel_phone, hotel_star_rating,
    room_type, price_per_night, original_price, discount_percent, checkin_date, checkout_date,
    is_available, categories, created_at
)
SELECT t.record, t.ok, t.deal_id, t.hotel_name, t.hotel_city, t.hotel_country, t.hotel_phone,
       t.hotel_star_rating, t.room_type,
       CASE WHEN t.ok THEN t.price_per_night::numeric(10, 2) END,
       CASE WHEN t.ok THEN t.original_price::numeric(10, 2) END,
       CASE WHEN t.ok THEN t.discount_percent::numeric(5, 2) END,
       t.checkin_date, t.checkout_date, t.is_available, t.categories, t.created_at
FROM (
    SELECT v.*,
           coalesce(
               v.deal_id > 0
               AND v.hotel_name <> '' AND v.hotel_city <> '' AND v.hotel_country <> ''
               AND v.hotel_phone <> '' AND v.room_type <> ''
               AND v.hotel_star_rating BETWEEN 1 AND 5
               AND v.price_per_night > 0 AND v.price_per_night < 100000000
               AND min_scale(v.price_per_night) <= 2
               AND v.original_price > 0 AND v.original_price < 100000000
               AND min_scale(v.original_price) <= 2
               AND v.discount_percent BETWEEN 0 AND 100  -- false for NaN
               AND v.checkout_date > v.checkin_date
               AND v.is_available IS NOT NULL
               AND v.created_at IS NOT NULL,
               false) AS ok
    FROM (
        SELECT l.*,
               CASE lower(btrim(l.is_available_text))
                   WHEN 'true' THEN true WHEN 't' THEN true WHEN '1' THEN true WHEN 'yes' THEN true
                   WHEN 'false' THEN false WHEN 'f' THEN false WHEN '0' THEN false WHEN 'no' THEN false
               END AS is_available
        FROM load_values AS l
        OFFSET 0  -- a fence: each value is parsed once, not once per use above
    ) AS v
    OFFSET 0  -- the same for ok
) AS t

-- name: find_bad_values :execrows
-- Every per-value rule of the spec, with its reason, over the records that
-- insert_typed_rows found not ok (none, on a clean file): each of a record's
-- values, with the kind of rule its column follows, yields a reason or NULL;
-- ord numbers a record's reasons in column order.
INSERT INTO load_errors (record, ord, col, value, reason)
SELECT b.record,
       row_number() OVER (PARTITION BY b.record ORDER BY c.pos),
       c.col,
       c.value,
       p.reason
FROM (
    SELECT s.*
    FROM load_rows AS r
    JOIN load_staging AS s ON s.record = r.record
    WHERE NOT r.ok
    OFFSET 0  -- a fence: the problems are worked out for these records only
) AS b
CROSS JOIN LATERAL (VALUES
    (1, 'deal_id', b.deal_id, 'id'),
    (2, 'hotel_name', b.hotel_name, 'text'),
    (3, 'hotel_city', b.hotel_city, 'text'),
    (4, 'hotel_country', b.hotel_country, 'text'),
    (5, 'hotel_phone', b.hotel_phone, 'text'),
    (6, 'hotel_star_rating', b.hotel_star_rating, 'stars'),
    (7, 'room_type', b.room_type, 'text'),
    (8, 'price_per_night', b.price_per_night, 'money'),
    (9, 'original_price', b.original_price, 'money'),
    (10, 'discount_percent', b.discount_percent, 'percent'),
    (11, 'checkin_date', b.checkin_date, 'date'),
    (12, 'checkout_date', b.checkout_date, 'checkout'),
    (13, 'is_available', b.is_available, 'boolean'),
    (14, 'created_at', b.created_at, 'timestamp')
) AS c(pos, col, value, kind)
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN c.value IS NULL OR btrim(c.value) = '' THEN 'is empty'
        WHEN c.kind = 'id' THEN CASE
            WHEN NOT pg_input_is_valid(c.value, 'bigint') THEN 'is not an integer'
            WHEN c.value::bigint <= 0 THEN 'must be greater than 0'
        END
        WHEN c.kind = 'stars' THEN CASE
            WHEN NOT pg_input_is_valid(c.value, 'smallint') THEN 'is not an integer'
            WHEN c.value::smallint NOT BETWEEN 1 AND 5 THEN 'must be from 1 to 5'
        END
        WHEN c.kind IN ('money', 'percent')
             AND (NOT pg_input_is_valid(c.value, 'numeric') OR c.value::numeric = 'NaN')
            THEN 'is not a decimal number'
        WHEN c.kind = 'money' THEN CASE
            WHEN c.value::numeric <= 0 THEN 'must be greater than 0'
            WHEN min_scale(c.value::numeric) > 2 THEN 'has more than 2 decimal places'
            WHEN NOT pg_input_is_valid(c.value, 'numeric(10,2)')
                THEN 'is too large (at most 99999999.99)'
        END
        WHEN c.kind = 'percent' THEN CASE
            WHEN c.value::numeric NOT BETWEEN 0 AND 100 THEN 'must be from 0 to 100'
        END
        WHEN c.kind IN ('date', 'checkout') THEN CASE
            WHEN (c.value NOT LIKE '____-__-__' AND btrim(c.value) NOT LIKE '____-__-__')
                 OR NOT pg_input_is_valid(c.value, 'date')
                THEN 'is not a date in YYYY-MM-DD form'
            WHEN c.kind = 'checkout'
                 AND (b.checkin_date LIKE '____-__-__' OR btrim(b.checkin_date) LIKE '____-__-__')
                 AND pg_input_is_valid(b.checkin_date, 'date')
                 AND c.value::date <= b.checkin_date::date
                THEN 'must be later than checkin_date'
        END
        WHEN c.kind = 'boolean'
             AND lower(btrim(c.value)) NOT IN ('true', 'false', 't', 'f', '1', '0', 'yes', 'no')
            THEN 'is not one of true/false, t/f, 1/0, yes/no'
        WHEN c.kind = 'timestamp'
             AND ((c.value NOT LIKE '____-__-__%' AND btrim(c.value) NOT LIKE '____-__-__%')
                  OR NOT pg_input_is_valid(c.value, 'timestamptz'))
            THEN 'is not an ISO 8601 timestamp'
    END AS reason
) AS p
WHERE p.reason IS NOT NULL

-- name: count_unexplained_rows :val
-- Records insert_typed_rows found not ok but find_bad_values gave no reason:
-- always 0, unless the two disagree on a rule; the load then fails instead of
-- dropping a row without a word.
SELECT count(*)
FROM load_rows AS r
WHERE NOT r.ok
  AND NOT EXISTS (SELECT 1 FROM load_errors AS e WHERE e.record = r.record)

-- name: find_duplicate_deal_ids :execrows
-- deal_id must be unique in the file: every record that shares one is bad, good
-- or not. One hash aggregate over every record whose deal_id is an integer; the
-- join back is skipped when none repeat.
WITH shared AS (
    SELECT deal_id, count(*) AS n
    FROM load_rows
    WHERE deal_id IS NOT NULL
    GROUP BY deal_id
    HAVING count(*) > 1
)
INSERT INTO load_errors (record, ord, col, value, reason)
SELECT r.record, 0, 'deal_id', r.deal_id::text, format('appears %s times in the file', d.n)
FROM shared AS d
JOIN load_rows AS r ON r.deal_id = d.deal_id

-- name: drop_rejected_rows :execrows
-- The records with a problem leave load_rows: what remains is loaded.
DELETE FROM load_rows AS r
USING load_errors AS e
WHERE e.record = r.record

-- name: resolve_hotels :one
-- One hotel per phone: the values of its record with the latest created_at, the
-- highest record breaking a tie, name, city and country in NFC (normalized once per
-- phone, not per record). Two hash passes over load_rows, no big sort.
-- Returns the phones, and those whose records disagree on the hotel's values.
WITH resolved AS (
    INSERT INTO load_hotels (phone, name, city, country, star_rating, record, first_record, disagree)
    SELECT DISTINCT ON (r.hotel_phone)
           r.hotel_phone, normalize(r.hotel_name, NFC), normalize(r.hotel_city, NFC),
           normalize(r.hotel_country, NFC), r.hotel_star_rating,
           r.record, g.first_record, g.disagree
    FROM load_rows AS r
    JOIN (
        SELECT hotel_phone,
               max(created_at) AS latest,
               min(record) AS first_record,
               min(hotel_name COLLATE "C") <> max(hotel_name COLLATE "C")
                   OR min(hotel_city COLLATE "C") <> max(hotel_city COLLATE "C")
                   OR min(hotel_country COLLATE "C") <> max(hotel_country COLLATE "C")
                   OR min(hotel_star_rating) <> max(hotel_star_rating) AS disagree
        FROM load_rows
        GROUP BY hotel_phone
    ) AS g ON g.hotel_phone = r.hotel_phone AND g.latest = r.created_at
    ORDER BY r.hotel_phone, r.record DESC
    RETURNING disagree
)
SELECT count(*) AS phones, count(*) FILTER (WHERE disagree) AS disagreeing
FROM resolved

-- name: find_hotel_conflicts :many
-- (name, city, country) is unique: where two phones claim one, the claim kept is
-- the one the database already holds, else the phone seen first in the file.
-- The others are returned with the keeper; hotels untouched by the file keep theirs.
WITH claims AS (
    SELECT lh.phone, lh.name, lh.city, lh.country, lh.record, lh.first_record,
           NULL::bigint AS hotel_id,
           EXISTS (
               SELECT 1 FROM hotels AS h
               WHERE h.phone = lh.phone
                 AND (h.name, h.city, h.country) = (lh.name, lh.city, lh.country)
           ) AS holds
    FROM load_hotels AS lh
    UNION ALL
    SELECT h.phone, h.name, h.city, h.country, NULL, NULL, h.id, true
    FROM hotels AS h
    WHERE NOT EXISTS (SELECT 1 FROM load_hotels AS lh WHERE lh.phone = h.phone)
), ranked AS (
    SELECT c.*,
           row_number() OVER w AS rank,
           first_value(c.phone) OVER w AS keeper_phone,
           first_value(c.record) OVER w AS keeper_record,
           first_value(c.hotel_id) OVER w AS keeper_hotel_id
    FROM claims AS c
    WINDOW w AS (PARTITION BY c.name, c.city, c.country
                 ORDER BY c.holds DESC, c.first_record NULLS FIRST, c.phone)
)
SELECT phone, name, city, country, record, keeper_phone, keeper_record, keeper_hotel_id
FROM ranked
WHERE rank > 1
ORDER BY record

-- name: reject_phones :execrows
-- Rejects every record of the given phones ($1) with the matching reason ($2),
-- and drops them from the work tables.
WITH rejected AS (
    DELETE FROM load_rows AS r
    USING unnest($1::text[], $2::text[]) AS x(phone, reason)
    WHERE r.hotel_phone = x.phone
    RETURNING r.record, r.hotel_phone, x.reason
), gone AS (
    DELETE FROM load_hotels AS lh
    WHERE lh.phone = ANY ($1::text[])
)
INSERT INTO load_errors (record, ord, col, value, reason)
SELECT record, 100, 'hotel_phone', hotel_phone, reason
FROM rejected

-- name: update_hotels :execrows
-- Existing hotels (by phone) whose values differ from the file's; same values: no write.
UPDATE hotels AS h
SET name = lh.name, city = lh.city, country = lh.country, star_rating = lh.star_rating
FROM load_hotels AS lh
WHERE h.phone = lh.phone
  AND (h.name, h.city, h.country, h.star_rating)
      IS DISTINCT FROM (lh.name, lh.city, lh.country, lh.star_rating)

-- name: insert_hotels :execrows
-- New phones become hotels, ids in order of first appearance in the file.
INSERT INTO hotels (name, city, country, phone, star_rating)
SELECT lh.name, lh.city, lh.country, lh.phone, lh.star_rating
FROM load_hotels AS lh
WHERE NOT EXISTS (SELECT 1 FROM hotels AS h WHERE h.phone = lh.phone)
ORDER BY lh.first_record
ON CONFLICT (phone) DO NOTHING

-- name: insert_load_links :execrows
-- Splits each good record's categories: trimmed, lower-cased, empty items and
-- repeats ("luxury,Luxury") dropped. An item is kept where array_position finds
-- its first occurrence: no hash aggregate over all the pairs. Each distinct
-- categories text is split once into load_category_sets (a file has a few
-- dozen: 25 in 1,000,000 records of the generator's), then joined to its
-- records by a hash join: splitting every record's text instead cost 8 times
-- as much.
WITH sets AS (
    INSERT INTO load_category_sets (categories, names)
    SELECT s.categories,
           ARRAY(SELECT item.name
                 FROM unnest(s.names) WITH ORDINALITY AS item(name, ord)
                 WHERE item.name <> '' AND array_position(s.names, item.name) = item.ord
                 ORDER BY item.ord)
    FROM (
        SELECT d.categories,
               CASE WHEN strpos(d.categories, ' ') = 0 THEN string_to_array(lower(d.categories), ',')
                    ELSE ARRAY(SELECT btrim(x) FROM unnest(string_to_array(lower(d.categories), ',')) AS x)
               END AS names
        FROM (SELECT DISTINCT categories FROM load_rows WHERE categories <> '') AS d
    ) AS s
    RETURNING categories, names
)
INSERT INTO load_links (deal_id, category)
SELECT r.deal_id, n.name
FROM load_rows AS r
JOIN sets AS s ON s.categories = r.categories
CROSS JOIN LATERAL unnest(s.names) AS n(name)

-- name: insert_categories :execrows
-- Category names the database does not know yet.
INSERT INTO categories (name)
SELECT DISTINCT l.category
FROM load_links AS l
WHERE NOT EXISTS (SELECT 1 FROM categories AS c WHERE c.name = l.category)
ORDER BY 1
ON CONFLICT (name) DO NOTHING

-- name: may_skip_row_triggers :val
-- May this load write deals and links without the per-row foreign-key triggers
-- (3 of every 4 seconds of a large load)? Only when its role may SET
-- session_replication_role (a superuser, or after
-- GRANT SET ON PARAMETER session_replication_role TO <the loader's role>) and no
-- user trigger on the four tables would be skipped along with them (an ENABLE
-- ALWAYS trigger, such as deal_totals' of migration 0010, fires in replica mode too).
SELECT has_parameter_privilege('session_replication_role', 'SET')
   AND NOT EXISTS (
       SELECT 1
       FROM pg_trigger AS t
       WHERE t.tgrelid IN ('hotels'::regclass, 'categories'::regclass,
                           'deals'::regclass, 'deal_categories'::regclass)
         AND NOT t.tgisinternal
         AND t.tgenabled <> 'A'
   )

-- name: lock_referenced_rows :val
-- What the skipped triggers would hold until commit: FOR KEY SHARE on the file's
-- hotels and on the categories (a handful of rows), so that no one deletes one,
-- or changes its key, before this load commits. Returns the rows locked.
WITH hotels_locked AS (
    SELECT h.id
    FROM hotels AS h
    WHERE h.phone IN (SELECT lh.phone FROM load_hotels AS lh)
    FOR KEY SHARE OF h
), categories_locked AS (
    SELECT c.id FROM categories AS c FOR KEY SHARE
)
SELECT (SELECT count(*) FROM hotels_locked) + (SELECT count(*) FROM categories_locked)

-- name: skip_row_triggers :exec
-- Until commit, no ordinary trigger fires in this session: the foreign keys of
-- deals and deal_categories are then kept by the load itself, set-based. Every
-- hotel_id and category_id it writes comes from a join on the locked rows, and
-- every link points at a deal this load inserted or updated (row-locked).
-- CHECK, NOT NULL and unique constraints are still enforced row by row.
SELECT set_config('session_replication_role', 'replica', true)

-- name: may_defer_indexes :val
-- A first load, into an empty deals table, may build the secondary indexes of
-- deals and deal_categories after the data instead of updating them row by
-- row (measured in bench/bench_load.py: a sorted build costs a fraction of the
-- inserts' index maintenance). Only when deals is empty (under the load lock,
-- no other load can fill it) and this role owns both tables (DROP INDEX needs
-- it). The price: DROP INDEX takes ACCESS EXCLUSIVE on the table until
-- commit, so during a first load readers of the (empty) deals wait for it
-- instead of reading nothing; any later load never blocks readers.
SELECT NOT EXISTS (SELECT 1 FROM deals)
   AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'deals'::regclass), 'USAGE')
   AND pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'deal_categories'::regclass),
                   'USAGE')

-- name: drop_secondary_indexes :exec
-- Drops the indexes of deals and deal_categories that no constraint owns (not
-- the primary keys, not deals_deal_id_key, which the load's writes need),
-- keeping each one's definition in the TEMP table load_deferred_indexes for
-- build_deferred_indexes. One DO block: a statement, as every query here is.
DO $$
DECLARE
    idx record;
BEGIN
    CREATE TEMP TABLE load_deferred_indexes ON COMMIT DROP AS
    SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS ddl
    FROM pg_index AS i
    JOIN pg_class AS c ON c.oid = i.indexrelid
    WHERE i.indrelid IN ('deals'::regclass, 'deal_categories'::regclass)
      AND NOT i.indisunique
      AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid);
    FOR idx IN SELECT name FROM load_deferred_indexes ORDER BY name LOOP
        EXECUTE format('DROP INDEX %I', idx.name);
    END LOOP;
END
$$

-- name: build_deferred_indexes :exec
-- After the data: the indexes drop_secondary_indexes dropped, built again from
-- their definitions with the same names, in the load's transaction (one sort
-- each instead of an index insert per row); maintenance_work_mem for the sorts.
DO $$
DECLARE
    idx record;
BEGIN
    PERFORM set_config('maintenance_work_mem', '256MB', true);
    FOR idx IN SELECT ddl FROM load_deferred_indexes ORDER BY name LOOP
        EXECUTE idx.ddl;
    END LOOP;
END
$$

-- name: find_existing_deals :execrows
-- Which of the file's deal_ids the database has; a hash join, or index lookups
-- on deals_deal_id_key when the file is small against a large table.
INSERT INTO load_existing (deal_id, id)
SELECT d.deal_id, d.id
FROM load_rows AS r
JOIN deals AS d ON d.deal_id = r.deal_id

-- name: find_changed_category_sets :execrows
-- Existing deals whose stored categories differ from the file's (a symmetric
-- difference by full join); such a deal counts as changed and gets a new version.
INSERT INTO load_changed (deal_id)
SELECT DISTINCT coalesce(new.deal_id, old.deal_id)
FROM (
    SELECT l.deal_id, c.id AS category_id
    FROM load_links AS l
    JOIN load_existing AS e ON e.deal_id = l.deal_id
    JOIN categories AS c ON c.name = l.category
) AS new
FULL JOIN (
    SELECT e.deal_id, dc.category_id
    FROM load_existing AS e
    JOIN deal_categories AS dc ON dc.deal_id = e.id
) AS old ON old.deal_id = new.deal_id AND old.category_id = new.category_id
WHERE new.deal_id IS NULL OR old.deal_id IS NULL

-- name: update_deals :execrows
-- Existing deals whose values or category set changed: new values, version + 1;
-- their ids and versions go to load_updated_deals for the events.
-- A deal whose row is the same is not touched at all (no new row version, no lock).
WITH updated AS (
    UPDATE deals AS d
    SET hotel_id = h.id,
        room_type = r.room_type,
        price_per_night = r.price_per_night,
        original_price = r.original_price,
        discount_percent = r.discount_percent,
        checkin_date = r.checkin_date,
        checkout_date = r.checkout_date,
        is_available = r.is_available,
        created_at = r.created_at,
        version = d.version + 1
    FROM load_rows AS r
    JOIN load_existing AS e ON e.deal_id = r.deal_id
    JOIN hotels AS h ON h.phone = r.hotel_phone
    WHERE d.id = e.id
      AND ((d.hotel_id, d.room_type, d.price_per_night, d.original_price, d.discount_percent,
            d.checkin_date, d.checkout_date, d.is_available, d.created_at)
           IS DISTINCT FROM
           (h.id, r.room_type, r.price_per_night, r.original_price, r.discount_percent,
            r.checkin_date, r.checkout_date, r.is_available, r.created_at)
           OR EXISTS (SELECT 1 FROM load_changed AS c WHERE c.deal_id = r.deal_id))
    RETURNING d.deal_id, d.id, d.version
)
INSERT INTO load_updated_deals (deal_id, id, version)
SELECT deal_id, id, version FROM updated

-- name: insert_deals :execrows
-- The file's new deal_ids, hotel_id from a join on phone; their ids go to
-- load_new_deals for the links and the events. A plain INSERT (no ON CONFLICT): a deal_id
-- created meanwhile by someone else fails the load on deals_deal_id_key.
WITH inserted AS (
    INSERT INTO deals (
        deal_id, hotel_id, room_type, price_per_night, original_price, discount_percent,
        checkin_date, checkout_date, is_available, created_at
    )
    SELECT r.deal_id, h.id, r.room_type, r.price_per_night, r.original_price, r.discount_percent,
           r.checkin_date, r.checkout_date, r.is_available, r.created_at
    FROM load_rows AS r
    JOIN hotels AS h ON h.phone = r.hotel_phone
    WHERE NOT EXISTS (SELECT 1 FROM load_existing AS e WHERE e.deal_id = r.deal_id)
    RETURNING deal_id, id, version
)
INSERT INTO load_new_deals (deal_id, id, version)
SELECT deal_id, id, version FROM inserted

-- name: delete_stale_links :execrows
-- Links of changed deals to categories the file no longer lists for them.
DELETE FROM deal_categories AS dc
USING load_changed AS ch
JOIN load_existing AS e ON e.deal_id = ch.deal_id
WHERE dc.deal_id = e.id
  AND NOT EXISTS (
      SELECT 1
      FROM load_links AS l
      JOIN categories AS c ON c.name = l.category
      WHERE l.deal_id = ch.deal_id AND c.id = dc.category_id
  )

-- name: insert_new_links :execrows
-- Links of the deals this load inserted: nothing can clash, so a plain INSERT.
INSERT INTO deal_categories (deal_id, category_id)
SELECT n.id, c.id
FROM load_links AS l
JOIN load_new_deals AS n ON n.deal_id = l.deal_id
JOIN categories AS c ON c.name = l.category

-- name: insert_changed_links :execrows
-- Links that changed deals gain; the ones they keep are skipped (arbiter:
-- deal_categories_pkey). A changed deal deleted by someone else since
-- find_existing_deals gets no links: its update found no row either.
INSERT INTO deal_categories (deal_id, category_id)
SELECT e.id, c.id
FROM load_links AS l
JOIN load_changed AS ch ON ch.deal_id = l.deal_id
JOIN load_existing AS e ON e.deal_id = l.deal_id
JOIN deals AS d ON d.id = e.id  -- not one deleted meanwhile (the update skipped it)
JOIN categories AS c ON c.name = l.category
ON CONFLICT DO NOTHING

-- name: build_load_events :execrows
-- The change feed's events of this load, built before the order lock is
-- taken: one per deal it inserted (deal.created) or updated (deal.updated),
-- set-based, in deals.id order. data is the deal as GET /deals/{id} encodes it
-- (service/db/rows.py): money as strings ("129.99"), dates YYYY-MM-DD,
-- created_at ISO 8601 in UTC with Z and microseconds only when there are
-- some, category names sorted as get_deal sorts them.
-- A changed deal holds its file record's values (insert_deals and update_deals
-- wrote them from load_rows) and the file's set of categories (the links were
-- made to match it), so nothing is read back from deals or deal_categories.
-- JSON building is most of the cost (PostgreSQL looks up each value's type
-- per row), so what repeats is built once, in two small objects computed
-- before the first row (InitPlans): each hotel's JSON by phone (a few hundred
-- hotels), each categories text's sorted array (load_category_sets, a few
-- dozen; '' for none); a row looks its two up by key and adds to_jsonb of its
-- already-text values. Dates and created_at are printed by their text output
-- (configure_load: DateStyle ISO, timezone UTC), the fraction of a second
-- padded to six digits as the API prints it. The rows are sorted by id before
-- the JSON is built (the OFFSET 0 fence), narrow (no JSON in the sort: at
-- 1,000,000 rows it then fits in work_mem), and written in that order: the
-- lookups are expressions of each sorted row, no join that could reorder it.
WITH changed AS (
    SELECT n.id, n.deal_id, n.version, 'deal.created' AS type FROM load_new_deals AS n
    UNION ALL
    SELECT u.id, u.deal_id, u.version, 'deal.updated' FROM load_updated_deals AS u
), ordered AS (
    SELECT c.type, c.id, c.deal_id, c.version, r.hotel_phone, r.room_type,
           r.price_per_night, r.original_price, r.discount_percent,
           r.checkin_date, r.checkout_date, r.is_available,
           coalesce(r.categories, '') AS categories,
           (r.created_at AT TIME ZONE 'UTC')::text AS created_at
    FROM changed AS c
    JOIN load_rows AS r ON r.deal_id = c.deal_id
    ORDER BY c.id
    OFFSET 0
)
INSERT INTO load_events (type, deal, deal_id, version, data)
SELECT o.type, o.id, o.deal_id, o.version, to_jsonb(deal)
FROM ordered AS o
CROSS JOIN LATERAL (
    SELECT o.id,
           o.deal_id,
           (SELECT jsonb_object_agg(
                       h.phone,
                       jsonb_build_object(
                           'id', h.id, 'name', h.name, 'city', h.city, 'country', h.country,
                           'phone', h.phone, 'star_rating', h.star_rating))
            FROM hotels AS h
            WHERE h.phone IN (SELECT lh.phone FROM load_hotels AS lh)) -> o.hotel_phone AS hotel,
           o.room_type,
           o.price_per_night::text AS price_per_night,
           o.original_price::text AS original_price,
           o.discount_percent::text AS discount_percent,
           o.checkin_date::text AS checkin_date,
           o.checkout_date::text AS checkout_date,
           o.is_available,
           (SELECT jsonb_build_object('', '[]'::jsonb) || coalesce(jsonb_object_agg(
                       s.categories,
                       to_jsonb(ARRAY(SELECT DISTINCT x.name FROM unnest(s.names) AS x(name)
                                      ORDER BY 1))), '{}')
            FROM load_category_sets AS s) -> o.categories AS categories,
           replace(CASE WHEN strpos(o.created_at, '.') = 0 THEN o.created_at
                        ELSE rpad(o.created_at, strpos(o.created_at, '.') + 6, '0') END,
                   ' ', 'T') || 'Z' AS created_at,
           o.version
) AS deal

-- name: drop_work_tables :exec
-- Before the feed's order lock is taken: every work table but load_events goes
-- now, not at the commit, so that the commit, which the lock spans, drops
-- only that one. CASCADE takes load_values, the TEMP view over load_staging.
DROP TABLE load_staging, load_errors, load_rows, load_hotels, load_links, load_category_sets,
    load_changed, load_existing, load_new_deals, load_updated_deals CASCADE

-- name: insert_load_events :execrows
-- The load's events into the feed, in deals.id order: its last write. Takes
-- the 'deals.events' lock, held to commit, and notifies, as
-- insert_deal_event does (sql/events.sql says why), once, in an InitPlan
-- before the first row; only a copy of load_events runs under the lock, in the
-- order build_load_events wrote it: a seq scan of a TEMP table is never
-- parallel nor synchronized, so it returns the rows of its one INSERT in the
-- order written (no sort under the lock).
INSERT INTO events (type, deal, deal_id, version, at, data)
SELECT e.type, e.deal, e.deal_id, e.version, clock_timestamp(), e.data
FROM load_events AS e
WHERE (
    SELECT true
    FROM (
        SELECT pg_advisory_xact_lock(hashtext('deals.events')) AS locked,
               pg_notify('deals_events', '') AS notified
    ) AS ordered
)

-- name: count_rejected :val
-- Records with at least one problem.
SELECT count(DISTINCT record) FROM load_errors

-- name: first_problems :many
-- The first $1 problems in file order, for the report.
SELECT record, col, value, reason
FROM load_errors
ORDER BY record, ord
LIMIT $1::bigint

-- name: count_problems :val
-- All problems, for the report's total.
SELECT count(*) FROM load_errors

-- name: rejected_records :many
-- Every bad record with its reasons, in file order, for the rejects file (read
-- through a cursor: memory stays flat however many there are).
SELECT record, string_agg(col || ' ' || reason, '; ' ORDER BY ord, col) AS reasons
FROM load_errors
GROUP BY record
ORDER BY record

-- name: first_rejected_records :many
-- The first $1 rejected records with their reasons, in file order, for the
-- answer of POST /deals/import?mode=skip-bad-rows.
SELECT record, string_agg(col || ' ' || reason, '; ' ORDER BY ord, col) AS reasons
FROM load_errors
GROUP BY record
ORDER BY record
LIMIT $1::bigint

-- name: flush_load_statistics :exec
-- After commit: the load's row counts reach pg_stat_user_tables now rather than
-- up to a second later, so the ANALYZE that follows does not leave them counted
-- as changes since the last analyze (which the doctor's bloat check would flag).
SELECT pg_stat_force_next_flush()

-- name: vacuum_analyze_hotels :exec
-- After commit (VACUUM refuses a transaction), for each table the load changed
-- (none when a reload changed nothing): the visibility map set for the pages it
-- wrote, so index-only scans skip the heap, and fresh planner statistics.
VACUUM (ANALYZE) hotels

-- name: vacuum_analyze_deals :exec
-- As vacuum_analyze_hotels, for deals. SHARE UPDATE EXCLUSIVE: blocks neither
-- reads nor writes.
VACUUM (ANALYZE) deals

-- name: vacuum_analyze_categories :exec
-- As vacuum_analyze_hotels, for categories.
VACUUM (ANALYZE) categories

-- name: vacuum_analyze_deal_categories :exec
-- As vacuum_analyze_hotels, for deal_categories (links added or removed).
VACUUM (ANALYZE) deal_categories
