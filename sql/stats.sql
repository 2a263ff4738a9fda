-- Aggregates over deals.

-- name: deal_stats_by_city :many
-- GET /deals/stats: per city, the average price and the number of deals.
-- avg_price is round(avg, 2) (half away from zero); most deals first, then city.
-- Filters, NULL for none: $1 min_stars, $2 price_min, $3 price_max, $4 category, $5 is_available.
SELECT h.city,
       round(avg(d.price_per_night), 2) AS avg_price,
       count(*) AS deal_count
FROM deals d
JOIN hotels h ON h.id = d.hotel_id
LEFT JOIN deal_categories dc
       ON dc.deal_id = d.id
      AND dc.category_id = (SELECT c.id FROM categories c WHERE c.name = lower($4::text))
WHERE ($1::int IS NULL OR h.star_rating >= $1::int)
  AND ($2::numeric IS NULL OR d.price_per_night >= $2::numeric)
  AND ($3::numeric IS NULL OR d.price_per_night <= $3::numeric)
  AND ($4::text IS NULL OR dc.deal_id IS NOT NULL)
  AND ($5::bool IS NULL OR d.is_available = $5::bool)
GROUP BY h.city
ORDER BY deal_count DESC, h.city
