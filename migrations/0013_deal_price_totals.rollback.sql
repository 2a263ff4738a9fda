-- Undo 0013_deal_price_totals exactly: the triggers, their functions and
-- deal_price_totals go; the exact total of a price range counts the range's
-- index entries again (a release that reads deal_price_totals must be gone first).
-- The same rules as the forward file: it runs on the live database too.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

DROP TRIGGER deal_price_totals_truncate ON deals;
DROP TRIGGER deal_price_totals_delete ON deals;
DROP TRIGGER deal_price_totals_update ON deals;
DROP TRIGGER deal_price_totals_insert ON deals;
-- squawk-ignore ban-drop-function
DROP FUNCTION deal_price_totals_clear();
-- squawk-ignore ban-drop-function
DROP FUNCTION deal_price_totals_apply();
-- squawk-ignore ban-drop-table
DROP TABLE deal_price_totals;
