"""Settings.from_env: every variable, every constraint, and the exact message of each failure."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from service.settings import ENV_VARS, Settings, SettingsError, redact_url
from tests import ROOT

# variable, its field, the field's default, a value set in the environment, what it reads as
EVERY: list[tuple[str, str, object, str, object]] = [
    (
        "DATABASE_URL",
        "database_url",
        None,
        "postgres://u:p@db:5433/deals",
        "postgres://u:p@db:5433/deals",
    ),
    ("API_HOST", "host", "127.0.0.1", "10.0.0.7", "10.0.0.7"),
    ("API_PORT", "port", 8000, "65535", 65535),
    ("API_WORKERS", "workers", 1, "4", 4),
    ("POOL_MIN_SIZE", "pool_min_size", 2, "0", 0),
    ("POOL_MAX_SIZE", "pool_max_size", 10, "1", 1),
    ("POOL_ACQUIRE_TIMEOUT", "pool_acquire_timeout", 2.0, "0.25", 0.25),
    ("POOL_MAX_WAITERS", "pool_max_waiters", 1000, "0", 0),
    ("STATEMENT_TIMEOUT_MS", "statement_timeout_ms", 5000, "0", 0),
    ("LOG_LEVEL", "log_level", "info", "WARNING", "warning"),
    ("STATS_CACHE_SECONDS", "stats_cache_seconds", 0.0, "30", 30.0),
    ("MAX_BODY_BYTES", "max_body_bytes", 65536, "1", 1),
    ("SHUTDOWN_DRAIN_SECONDS", "shutdown_drain_seconds", 1.0, "0", 0.0),
    ("DEALS_DATA_DIR", "data_dir", Path(".data"), "/var/lib/deals", Path("/var/lib/deals")),
    (
        "CORS_ORIGINS",
        "cors_origins",
        (),
        "https://app.example.com, http://localhost:3000,",
        ("https://app.example.com", "http://localhost:3000"),
    ),
    (
        "AUTH_JWT_PUBLIC_KEY",
        "auth_jwt_public_key",
        None,
        "/etc/deals/jwt.pem",
        Path("/etc/deals/jwt.pem"),
    ),
    ("AUTH_JWT_AUDIENCE", "auth_jwt_audience", None, "deals-api", "deals-api"),
    ("AUTH_JWT_LEEWAY_SECONDS", "auth_jwt_leeway_seconds", 30, "0", 0),
    ("METRICS_TOKEN", "metrics_token", None, "scrape-me", "scrape-me"),
    ("RATE_LIMIT", "rate_limit", None, "200/s", "200/s"),
    ("REDIS_URL", "redis_url", None, "redis://cache:6379/0", "redis://cache:6379/0"),
    (
        "DATABASE_REPLICA_URLS",
        "database_replica_urls",
        (),
        "postgres://u:p@replica1/deals, postgresql://u@replica2:5433/deals,",
        ("postgres://u:p@replica1/deals", "postgresql://u@replica2:5433/deals"),
    ),
    ("REPLICA_MAX_LAG_SECONDS", "replica_max_lag_seconds", 5.0, "0.5", 0.5),
]


def test_defaults_when_nothing_is_set() -> None:
    assert Settings.from_env({}) == Settings()
    defaults: dict[str, Any] = {field: default for _, field, default, _, _ in EVERY}
    assert Settings() == Settings(**defaults)


def test_an_empty_variable_keeps_the_default() -> None:
    assert Settings.from_env(dict.fromkeys(ENV_VARS, "")) == Settings()


def test_every_variable_is_read() -> None:
    env = {var: raw for var, _, _, raw, _ in EVERY}
    fields: dict[str, Any] = {field: value for _, field, _, _, value in EVERY}
    assert {ENV_VARS[var] for var in env} == set(fields)
    assert Settings.from_env(env) == Settings(**fields)


def test_the_secret_is_read() -> None:
    secret = "x" * 32
    assert Settings.from_env({"AUTH_JWT_SECRET": secret}).auth_jwt_secret == secret
    assert Settings.from_env({"AUTH_JWT_SECRET": secret}).auth_on


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("API_PORT", "9000")
    monkeypatch.setenv("POOL_MIN_SIZE", "3")
    assert Settings.from_env() == Settings(port=9000, pool_min_size=3)


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "critical", "Info"])
def test_log_levels_in_any_case(level: str) -> None:
    assert Settings.from_env({"LOG_LEVEL": level}).log_level == level.lower()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # NAME=value and the rule it breaks; a value that is not a number at all is quoted
        *(
            ({var: value}, f"{var}={repr(value) if rule.startswith('is not') else value} {rule}")
            for var, value, rule in [
                ("API_PORT", "abc", "is not a valid int"),
                ("API_PORT", "1.5", "is not a valid int"),
                ("API_PORT", " 80", "is not a valid int"),
                ("API_WORKERS", "two", "is not a valid int"),
                ("POOL_MIN_SIZE", "x", "is not a valid int"),
                ("POOL_MAX_SIZE", "ten", "is not a valid int"),
                ("POOL_MAX_WAITERS", "many", "is not a valid int"),
                ("STATEMENT_TIMEOUT_MS", "5s", "is not a valid int"),
                ("MAX_BODY_BYTES", "64k", "is not a valid int"),
                ("AUTH_JWT_LEEWAY_SECONDS", "30s", "is not a valid int"),
                ("POOL_ACQUIRE_TIMEOUT", "2s", "is not a valid float"),
                ("STATS_CACHE_SECONDS", "a", "is not a valid float"),
                ("SHUTDOWN_DRAIN_SECONDS", "-", "is not a valid float"),
                ("POOL_ACQUIRE_TIMEOUT", "1e400", "is not a valid float"),
                # out of range, or not finite
                ("AUTH_JWT_LEEWAY_SECONDS", "-1", "must be >= 0"),
                ("API_PORT", "0", "must be between 1 and 65535"),
                ("API_PORT", "65536", "must be between 1 and 65535"),
                ("API_PORT", "-1", "must be between 1 and 65535"),
                ("API_WORKERS", "0", "must be >= 1"),
                ("POOL_MIN_SIZE", "-1", "must be >= 0"),
                ("POOL_MAX_SIZE", "0", "must be >= 1"),
                ("POOL_MAX_WAITERS", "-5", "must be >= 0"),
                ("STATEMENT_TIMEOUT_MS", "-1", "must be >= 0"),
                ("MAX_BODY_BYTES", "0", "must be >= 1"),
                ("POOL_ACQUIRE_TIMEOUT", "0", "must be > 0"),
                ("POOL_ACQUIRE_TIMEOUT", "-0.5", "must be > 0"),
                ("POOL_ACQUIRE_TIMEOUT", "nan", "must be > 0"),
                ("STATS_CACHE_SECONDS", "-1", "must be >= 0"),
                ("SHUTDOWN_DRAIN_SECONDS", "-0.1", "must be >= 0"),
                ("POOL_ACQUIRE_TIMEOUT", "inf", "must be a finite number"),
                ("STATS_CACHE_SECONDS", "inf", "must be a finite number"),
                ("SHUTDOWN_DRAIN_SECONDS", "inf", "must be a finite number"),
                ("REPLICA_MAX_LAG_SECONDS", "0", "must be > 0"),
                ("REPLICA_MAX_LAG_SECONDS", "inf", "must be a finite number"),
            ]
        ),
        # one of a set
        (
            {"LOG_LEVEL": "Verbose"},
            "LOG_LEVEL='Verbose' is not one of debug, info, warning, error, critical",
        ),
        # a pattern; the password never shows
        (
            {"DATABASE_URL": "mysql://app:s3cret@db/deals"},
            "DATABASE_URL='mysql://app:***@db/deals' must start with postgresql:// or postgres://",
        ),
        (
            {"DATABASE_URL": "localhost:5432/deals"},
            "DATABASE_URL='localhost:5432/deals' must start with postgresql:// or postgres://",
        ),
        (
            {"DATABASE_REPLICA_URLS": "postgresql://r1/deals,mysql://app:s3cret@r2/deals"},
            "DATABASE_REPLICA_URLS has 'mysql://app:***@r2/deals', which must start with "
            "postgresql:// or postgres://",
        ),
        # across fields
        (
            {"DATABASE_REPLICA_URLS": "postgresql://a:x@r1/deals,postgres://b:y@r1:5432/other"},
            "DATABASE_REPLICA_URLS lists r1:5432 more than once",
        ),
        (
            {
                "DATABASE_URL": "postgresql://db/deals",
                "DATABASE_REPLICA_URLS": "postgresql://db/deals",
            },
            "DATABASE_REPLICA_URLS lists DATABASE_URL itself: name the replicas only",
        ),
        (
            {"POOL_MIN_SIZE": "5", "POOL_MAX_SIZE": "2"},
            "POOL_MIN_SIZE=5 must not exceed POOL_MAX_SIZE=2",
        ),
        ({"POOL_MIN_SIZE": "11"}, "POOL_MIN_SIZE=11 must not exceed POOL_MAX_SIZE=10"),
        ({"POOL_MAX_SIZE": "1"}, "POOL_MIN_SIZE=2 must not exceed POOL_MAX_SIZE=1"),
        # an origin has no path, not even a trailing slash
        (
            {"CORS_ORIGINS": "https://app.example.com/"},
            "CORS_ORIGINS has 'https://app.example.com/', which is not an origin: "
            "scheme://host[:port] with no path (https://app.example.com), or *",
        ),
        (
            {"CORS_ORIGINS": "http://localhost:3000,app.example.com"},
            "CORS_ORIGINS has 'app.example.com', which is not an origin: "
            "scheme://host[:port] with no path (https://app.example.com), or *",
        ),
    ],
)
def test_a_bad_value_is_named_with_what_is_wrong(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_the_first_bad_variable_is_reported_and_the_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^API_PORT='x' is not a valid int$"):
        Settings.from_env({"API_PORT": "x", "POOL_MIN_SIZE": "99"})


def test_the_cross_field_rule_holds_for_a_directly_built_settings() -> None:
    with pytest.raises(SettingsError, match=r"^POOL_MIN_SIZE=3 must not exceed POOL_MAX_SIZE=1$"):
        Settings(pool_min_size=3, pool_max_size=1)
    with pytest.raises(SettingsError, match=r"^POOL_ACQUIRE_TIMEOUT=inf must be a finite number$"):
        Settings(pool_acquire_timeout=float("inf"))


def test_settings_are_frozen_and_with_database_replaces_the_url() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert settings.with_database("postgresql://h/d").database_url == "postgresql://h/d"
    assert settings.with_database("postgresql://h/d").port == settings.port


def readme_table() -> dict[str, str]:
    """variable -> the default column of the README's settings table."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", (ROOT / "README.md").read_text(), re.M)
    return {var: default.strip() for var, default in rows}


def test_the_readme_table_names_every_variable_with_its_default() -> None:
    table = readme_table()
    assert sorted(table) == sorted(ENV_VARS)
    assert table.pop("DATABASE_URL").startswith("unset")
    assert Settings().database_url is None
    assert table.pop("CORS_ORIGINS").startswith("unset")
    assert Settings().cors_origins == ()
    assert table.pop("DATABASE_REPLICA_URLS").startswith("unset")
    assert Settings().database_replica_urls == ()
    unset = ("AUTH_JWT_SECRET", "AUTH_JWT_PUBLIC_KEY", "AUTH_JWT_AUDIENCE", "METRICS_TOKEN")
    for var in (*unset, "RATE_LIMIT", "REDIS_URL", "DATABASE_DIRECT_URL"):
        assert table.pop(var).startswith("unset"), var
        assert getattr(Settings(), ENV_VARS[var]) is None
    for var, default in table.items():
        assert re.fullmatch(r"`[^`]+`", default), var
        assert Settings.from_env({var: default.strip("`")}) == Settings(), var


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:se/cret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:secret@[::1/db", "postgresql://u:***@[::1/db"),
        ("postgresql://u:secret@h:notaport/db", "postgresql://u:***@h:notaport/db"),
        (
            "postgresql://postgres@/db?host=/tmp/s&port=5432",
            "postgresql://postgres@/db?host=/tmp/s&port=5432",
        ),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
