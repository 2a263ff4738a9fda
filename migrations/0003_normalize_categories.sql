-- depends: 0002_create_deals
-- Data migration: the comma-separated categories text becomes a categories
-- table and a deal_categories link table. Names are trimmed, lower-cased
-- and deduplicated; empty items are ignored. The text column is dropped.
CREATE TABLE categories (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (name = lower(btrim(name)) AND name <> ''),
    CONSTRAINT categories_name_key UNIQUE (name)
);

CREATE TABLE deal_categories (
    deal_id     bigint NOT NULL REFERENCES deals (id) ON DELETE CASCADE,
    category_id bigint NOT NULL REFERENCES categories (id),
    PRIMARY KEY (deal_id, category_id)
);

CREATE INDEX deal_categories_category_id_idx ON deal_categories (category_id);

INSERT INTO categories (name)
SELECT DISTINCT lower(btrim(item))
FROM deals d
CROSS JOIN LATERAL unnest(string_to_array(d.categories, ',')) AS item
WHERE btrim(item) <> ''
ORDER BY 1;

INSERT INTO deal_categories (deal_id, category_id)
SELECT DISTINCT d.id, c.id
FROM deals d
CROSS JOIN LATERAL unnest(string_to_array(d.categories, ',')) AS item
JOIN categories c ON c.name = lower(btrim(item));

ALTER TABLE deals DROP COLUMN categories;
