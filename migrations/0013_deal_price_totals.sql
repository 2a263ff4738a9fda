-- depends: 0012_drop_deals_hotel_id_idx
-- The exact total of GET /deals?price_min=A&price_max=B counted every deal in
-- the range (deals_price_id_idx, index-only): 2,880 index entries for 100-150
-- at 50,000 deals, 57,430 at a million, and the plain query counts the same.
-- deal_price_totals keeps the number of deals per whole unit of price
-- (price_floor = floor(price_per_night): 100 holds 100.00 to 100.99), in step
-- with every write, so a range's count is the sum of the units it covers
-- whole (one row each: 50 for 100-150) plus the index entries of the two
-- partial units at its ends (sql/deals.sql, count_deals_in_price_range).
-- The units are bounded by the prices there are (870 at the seeded data's
-- 30.03-899.99), not by the number of deals.
--
-- Maintained as deal_totals (0010) is: statement-level triggers with
-- transition tables add one row per unit a statement changed (set-based,
-- whatever the statement: API writes, the loader's INSERT ... SELECT and
-- UPDATE); each statement folds the committed rows of the units it touches
-- into its own (DELETE ... SKIP LOCKED, then one INSERT), so the table stays
-- near one row per unit, and no writer waits for another here. A unit may
-- have several rows: the answer is their sum, exact at every snapshot.
--
-- ENABLE ALWAYS: the triggers fire under session_replication_role = replica
-- too, which the loader sets to skip the per-row foreign-key triggers.
--
-- The backfill runs in this transaction: CREATE TRIGGER holds SHARE ROW
-- EXCLUSIVE on deals until commit, so writes to deals wait for it (reads do
-- not); nothing is counted twice or missed. It reads every deal once (about
-- 0.3 s a million deals), hence statement_timeout 10min.
--
-- Rules (CONTRIBUTING.md, "Adding a migration"); `make lint` runs squawk on this file.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '10min';

CREATE TABLE deal_price_totals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    price_floor numeric NOT NULL,  -- floor(price_per_night) of the deals counted
    deal_count  bigint NOT NULL    -- may be negative in one row: the unit's sum is what counts
);
-- A range's whole units, in order, index-only; and the fold's lookup by unit.
CREATE INDEX deal_price_totals_price_floor_idx ON deal_price_totals (price_floor) INCLUDE (deal_count);

-- One statement's change of deals, set-based: the count per unit of its
-- transition tables (new rows added, old rows taken away), units that did not
-- change left out (an update that keeps the price in its unit); then the
-- unit's committed rows, those no other transaction holds, folded in:
-- deleted and summed into the one new row.
CREATE FUNCTION deal_price_totals_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    floors numeric[];
    counts bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(c.price_floor), array_agg(c.deal_count)
        INTO floors, counts
        FROM (
            SELECT floor(n.price_per_night) AS price_floor, count(*) AS deal_count
            FROM new_rows AS n
            GROUP BY 1
        ) AS c;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(c.price_floor), array_agg(c.deal_count)
        INTO floors, counts
        FROM (
            SELECT floor(o.price_per_night) AS price_floor, -count(*) AS deal_count
            FROM old_rows AS o
            GROUP BY 1
        ) AS c;
    ELSE
        SELECT array_agg(c.price_floor), array_agg(c.deal_count)
        INTO floors, counts
        FROM (
            SELECT x.price_floor, sum(x.n)::bigint AS deal_count
            FROM (
                SELECT floor(n.price_per_night) AS price_floor, 1 AS n
                FROM new_rows AS n
                UNION ALL
                SELECT floor(o.price_per_night) AS price_floor, -1 AS n
                FROM old_rows AS o
            ) AS x
            GROUP BY x.price_floor
            HAVING sum(x.n) <> 0
        ) AS c;
    END IF;
    IF floors IS NULL THEN
        RETURN NULL;
    END IF;
    WITH delta AS (
        SELECT d.price_floor, d.deal_count
        FROM unnest(floors, counts) AS d (price_floor, deal_count)
    ), folded AS (
        DELETE FROM deal_price_totals AS t
        WHERE t.id IN (
            SELECT f.id
            FROM deal_price_totals AS f
            JOIN delta AS d ON d.price_floor = f.price_floor
            FOR UPDATE OF f SKIP LOCKED
        )
        RETURNING t.price_floor, t.deal_count
    )
    INSERT INTO deal_price_totals (price_floor, deal_count)
    SELECT a.price_floor, sum(a.deal_count)
    FROM (
        SELECT delta.price_floor, delta.deal_count FROM delta
        UNION ALL
        SELECT folded.price_floor, folded.deal_count FROM folded
    ) AS a
    GROUP BY a.price_floor
    HAVING sum(a.deal_count) <> 0
    ORDER BY a.price_floor;
    RETURN NULL;
END
$$;

-- TRUNCATE deals (nothing in the service does it) empties the totals too.
CREATE FUNCTION deal_price_totals_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deal_price_totals;
    RETURN NULL;
END
$$;

CREATE TRIGGER deal_price_totals_insert AFTER INSERT ON deals
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_price_totals_apply();
CREATE TRIGGER deal_price_totals_update AFTER UPDATE ON deals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_price_totals_apply();
CREATE TRIGGER deal_price_totals_delete AFTER DELETE ON deals
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_price_totals_apply();
CREATE TRIGGER deal_price_totals_truncate AFTER TRUNCATE ON deals
    FOR EACH STATEMENT EXECUTE FUNCTION deal_price_totals_clear();
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_price_totals_insert;
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_price_totals_update;
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_price_totals_delete;
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_price_totals_truncate;

-- The backfill: every deal there is, under the triggers' lock (no write in between).
INSERT INTO deal_price_totals (price_floor, deal_count)
SELECT floor(d.price_per_night), count(*)
FROM deals AS d
GROUP BY 1
ORDER BY 1;
