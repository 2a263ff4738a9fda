-- depends: 0001_create_hotels
-- Deals as the upstream export has them; categories stay the export's
-- comma-separated text for now (normalized by 0003).
CREATE TABLE deals (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deal_id          bigint UNIQUE CHECK (deal_id > 0),
    hotel_id         bigint NOT NULL REFERENCES hotels (id),
    room_type        text NOT NULL CHECK (btrim(room_type) <> ''),
    price_per_night  numeric(10, 2) NOT NULL CHECK (price_per_night > 0),
    original_price   numeric(10, 2) NOT NULL CHECK (original_price > 0),
    discount_percent numeric(5, 2) NOT NULL CHECK (discount_percent BETWEEN 0 AND 100),
    checkin_date     date NOT NULL,
    checkout_date    date NOT NULL,
    is_available     boolean NOT NULL DEFAULT true,
    categories       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deals_checkout_after_checkin CHECK (checkout_date > checkin_date)
);

CREATE INDEX deals_hotel_id_idx ON deals (hotel_id);
