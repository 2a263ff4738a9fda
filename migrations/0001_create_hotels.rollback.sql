DROP TABLE hotels;
