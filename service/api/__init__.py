"""The HTTP API: the app factory, one controller per resource, parameters, bodies,
responses and the one error table. It reaches PostgreSQL only through service.db."""
