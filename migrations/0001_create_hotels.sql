-- Hotels, identified upstream by their phone number.
CREATE TABLE hotels (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text     NOT NULL CHECK (btrim(name) <> ''),
    city        text     NOT NULL CHECK (btrim(city) <> ''),
    country     text     NOT NULL CHECK (btrim(country) <> ''),
    phone       text     NOT NULL CHECK (btrim(phone) <> ''),
    star_rating smallint NOT NULL CHECK (star_rating BETWEEN 1 AND 5),
    CONSTRAINT hotels_phone_key UNIQUE (phone),
    CONSTRAINT hotels_name_city_country_key UNIQUE (name, city, country)
);
