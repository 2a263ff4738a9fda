-- depends: 0004_deals_version
-- Indexes the list filters and keyset pagination rely on.
-- city filter: lower(h.city) = lower($1)
CREATE INDEX hotels_lower_city_idx ON hotels (lower(city));
-- min_stars filter
CREATE INDEX hotels_star_rating_idx ON hotels (star_rating);
-- price range filter and keyset pages sorted by price (id breaks ties)
CREATE INDEX deals_price_id_idx ON deals (price_per_night, id);
-- keyset pages sorted by created_at (id breaks ties)
CREATE INDEX deals_created_at_id_idx ON deals (created_at, id);
