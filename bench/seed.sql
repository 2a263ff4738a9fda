-- Benchmark data, built set-based in SQL: run on a migrated, empty database
-- after `SET bench.rows = '50000'` (bench/common.py's loaded_database does).
-- Deterministic: every value derives from the series number through
-- hashint8extended(n, salt), so every run builds the same rows.
--
-- 150 hotels over 25 cities in 10 countries (6 per city, stars 1-5),
-- the 5 categories, bench.rows deals (deal_id = id = n) at prices 30.00 to
-- 900.00 with consistent discounts, ~1.6 category links per deal (10% none).

SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
-- A bulk load of rows consistent by construction: skip the per-row foreign
-- key triggers (as pg_restore --disable-triggers does) and build the plain
-- indexes once at the end instead of row by row; 1M deals then seed in ~10 s.
SET session_replication_role = replica;
CREATE TEMP TABLE bench_indexes ON COMMIT DROP AS
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
WHERE i.indrelid IN ('deals'::regclass, 'deal_categories'::regclass)
  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid);
DO $$
DECLARE index_name text;
BEGIN
    FOR index_name IN SELECT name FROM bench_indexes LOOP
        EXECUTE format('DROP INDEX %s', index_name);
    END LOOP;
END $$;

-- A salted hash of n, 0 to 2^31-1: each salt gives an independent draw.
CREATE FUNCTION pg_temp.draw(n bigint, salt bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashint8extended(n, salt) & 2147483647;

INSERT INTO hotels (id, name, city, country, phone, star_rating) OVERRIDING SYSTEM VALUE
SELECT i + 1,
       (ARRAY['Grand', 'Royal', 'Park', 'Central', 'Plaza', 'Harbour'])[i / 25 + 1] || ' ' || c.city,
       c.city, c.country,
       c.code || '-' || lpad((i + 1)::text, 6, '0'),
       1 + (i / 25 + i % 25) % 5
FROM generate_series(0, 149) AS i
JOIN (VALUES (0, 'Paris', 'France', '+33'), (1, 'Lyon', 'France', '+33'),
             (2, 'Nice', 'France', '+33'), (3, 'Berlin', 'Germany', '+49'),
             (4, 'Munich', 'Germany', '+49'), (5, 'Hamburg', 'Germany', '+49'),
             (6, 'Rome', 'Italy', '+39'), (7, 'Milan', 'Italy', '+39'),
             (8, 'Venice', 'Italy', '+39'), (9, 'Madrid', 'Spain', '+34'),
             (10, 'Barcelona', 'Spain', '+34'), (11, 'Seville', 'Spain', '+34'),
             (12, 'Lisbon', 'Portugal', '+351'), (13, 'Porto', 'Portugal', '+351'),
             (14, 'London', 'United Kingdom', '+44'), (15, 'Edinburgh', 'United Kingdom', '+44'),
             (16, 'Amsterdam', 'Netherlands', '+31'), (17, 'Rotterdam', 'Netherlands', '+31'),
             (18, 'Vienna', 'Austria', '+43'), (19, 'Salzburg', 'Austria', '+43'),
             (20, 'Prague', 'Czechia', '+420'), (21, 'Brno', 'Czechia', '+420'),
             (22, 'Athens', 'Greece', '+30'), (23, 'Thessaloniki', 'Greece', '+30'),
             (24, 'New York', 'United States', '+1'))
     AS c (n, city, country, code) ON c.n = i % 25;

INSERT INTO categories (id, name) OVERRIDING SYSTEM VALUE
VALUES (1, 'budget'), (2, 'business'), (3, 'family'), (4, 'luxury'), (5, 'romantic');

INSERT INTO deals (id, deal_id, hotel_id, room_type, price_per_night, original_price,
                   discount_percent, checkin_date, checkout_date, is_available, created_at)
OVERRIDING SYSTEM VALUE
SELECT n, n, 1 + pg_temp.draw(n, 1) % 150,
       (ARRAY['Standard', 'Deluxe', 'Suite', 'Family Room'])[1 + pg_temp.draw(n, 2) % 4],
       p.price, p.original,
       round((p.original - p.price) * 100 / p.original, 2),
       date '2025-01-01' + (pg_temp.draw(n, 4) % 365)::int,
       date '2025-01-01' + (pg_temp.draw(n, 4) % 365)::int + 1 + (pg_temp.draw(n, 5) % 14)::int,
       pg_temp.draw(n, 6) % 10 < 8,
       timestamptz '2024-07-01 00:00:00+00' + make_interval(secs => pg_temp.draw(n, 7) % 31536000)
FROM generate_series(1, current_setting('bench.rows')::bigint) AS n
CROSS JOIN LATERAL (
    SELECT 30.00 + (pg_temp.draw(n, 3) % 87001) / 100.0 AS price,
           (pg_temp.draw(n, 8) % 61)::numeric AS off  -- 0 to 60 percent off
) AS q
CROSS JOIN LATERAL (
    SELECT q.price::numeric(10, 2) AS price,
           round(q.price * 100 / (100 - q.off), 2)::numeric(10, 2) AS original
) AS p;

-- 0 links for 10% of deals, 1 for 35%, 2 for 40%, 3 for 15%: 1.6 on average.
INSERT INTO deal_categories (deal_id, category_id)
SELECT n, 1 + (pg_temp.draw(n, 9) + j) % 5
FROM generate_series(1, current_setting('bench.rows')::bigint) AS n
CROSS JOIN LATERAL generate_series(
    1,
    CASE WHEN pg_temp.draw(n, 10) % 20 < 2 THEN 0
         WHEN pg_temp.draw(n, 10) % 20 < 9 THEN 1
         WHEN pg_temp.draw(n, 10) % 20 < 17 THEN 2
         ELSE 3 END
) AS j;

SELECT setval(pg_get_serial_sequence('hotels', 'id'), (SELECT max(id) FROM hotels));
SELECT setval(pg_get_serial_sequence('categories', 'id'), (SELECT max(id) FROM categories));
SELECT setval(pg_get_serial_sequence('deals', 'id'), (SELECT coalesce(max(id), 1) FROM deals));

DO $$
DECLARE index_definition text;
BEGIN
    FOR index_definition IN SELECT definition FROM bench_indexes LOOP
        EXECUTE index_definition;
    END LOOP;
END $$;
RESET session_replication_role;
