DROP INDEX deals_created_at_id_idx;
DROP INDEX deals_price_id_idx;
DROP INDEX hotels_star_rating_idx;
DROP INDEX hotels_lower_city_idx;
