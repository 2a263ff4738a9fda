"""One frozen settings object, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    pool_min_size: int = 2
    pool_max_size: int = 10
    pool_acquire_timeout: float = 2.0
    pool_max_waiters: int = 1000
    statement_timeout_ms: int = 5000
    log_level: str = "info"
    stats_cache_seconds: float = 0.0
    max_body_bytes: int = 65536
    shutdown_drain_seconds: float = 1.0
    data_dir: Path = Path(".data")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        fields: dict[str, object] = {}
        for var, (name, kind) in ENV_VARS.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                fields[name] = kind(raw)
            except ValueError as exc:
                raise SettingsError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
        settings = cls(**fields)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if self.pool_min_size < 0 or self.pool_max_size < 1:
            raise SettingsError("POOL_MIN_SIZE must be >= 0 and POOL_MAX_SIZE >= 1")
        if self.pool_min_size > self.pool_max_size:
            raise SettingsError("POOL_MIN_SIZE must not exceed POOL_MAX_SIZE")
        if self.pool_acquire_timeout <= 0 or self.statement_timeout_ms < 0:
            raise SettingsError("POOL_ACQUIRE_TIMEOUT must be > 0, STATEMENT_TIMEOUT_MS >= 0")
        if self.log_level.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise SettingsError(f"LOG_LEVEL={self.log_level!r} is not a log level")

    def with_database(self, url: str) -> Settings:
        return msgspec.structs.replace(self, database_url=url)


# Environment variable -> (settings field, parser). The README's table mirrors this.
ENV_VARS: dict[str, tuple[str, type]] = {
    "DATABASE_URL": ("database_url", str),
    "API_HOST": ("host", str),
    "API_PORT": ("port", int),
    "API_WORKERS": ("workers", int),
    "POOL_MIN_SIZE": ("pool_min_size", int),
    "POOL_MAX_SIZE": ("pool_max_size", int),
    "POOL_ACQUIRE_TIMEOUT": ("pool_acquire_timeout", float),
    "POOL_MAX_WAITERS": ("pool_max_waiters", int),
    "STATEMENT_TIMEOUT_MS": ("statement_timeout_ms", int),
    "LOG_LEVEL": ("log_level", str),
    "STATS_CACHE_SECONDS": ("stats_cache_seconds", float),
    "MAX_BODY_BYTES": ("max_body_bytes", int),
    "SHUTDOWN_DRAIN_SECONDS": ("shutdown_drain_seconds", float),
    "DEALS_DATA_DIR": ("data_dir", Path),
}


def redact_url(url: str) -> str:
    """The URL with its password replaced, safe for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[1]}"))
