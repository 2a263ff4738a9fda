-- Rebuild the comma-separated text from the links (names in alphabetical
-- order), then drop the normalized tables.
ALTER TABLE deals ADD COLUMN categories text NOT NULL DEFAULT '';

UPDATE deals d
SET categories = l.names
FROM (
    SELECT dc.deal_id, string_agg(c.name, ',' ORDER BY c.name) AS names
    FROM deal_categories dc
    JOIN categories c ON c.id = dc.category_id
    GROUP BY dc.deal_id
) AS l
WHERE l.deal_id = d.id;

DROP TABLE deal_categories;
DROP TABLE categories;
