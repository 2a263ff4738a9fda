"""One frozen settings object, read once from the environment.

msgspec converts the environment (renamed to the fields) into Settings and
checks the constraints declared on each field; __post_init__ checks the rules
that join fields. A failure becomes one SettingsError that names the
environment variable, its value and what is wrong with it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_type_hints
from urllib.parse import parse_qs, urlsplit, urlunsplit

import msgspec
from msgspec import inspect as mi


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]
# What DATABASE_URL points at: PostgreSQL itself, or PgBouncer in transaction mode.
Pooler = Literal["none", "pgbouncer"]

DATABASE_URL_PATTERN = "^postgres(ql)?://"
REDIS_URL_PATTERN = "^(rediss?|unix)://"
RATE_PATTERN = "^[1-9][0-9]{0,8}/[smh]$"
# What a pattern asks for, in words: the message when a value does not match it.
PATTERN_MEANING = {
    DATABASE_URL_PATTERN: "must start with postgresql:// or postgres://",
    REDIS_URL_PATTERN: "must start with redis://, rediss:// or unix://",
    RATE_PATTERN: "must be requests per second, minute or hour: 200/s, 1000/m, 5000/h",
}

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
SecondsOrZero = Annotated[float, msgspec.Meta(ge=0)]
DatabaseUrl = Annotated[str, msgspec.Meta(pattern=DATABASE_URL_PATTERN)]
RedisUrl = Annotated[str, msgspec.Meta(pattern=REDIS_URL_PATTERN)]
RateText = Annotated[str, msgspec.Meta(pattern=RATE_PATTERN)]
MIN_SECRET = 32  # bytes of AUTH_JWT_SECRET
# A browser's Origin: scheme://host[:port], no path; `*` in it is a wildcard (CORSConfig's).
ORIGIN = re.compile(r"\*|https?://[^/?#\s,]+")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The field constraints hold for Settings.from_env (msgspec checks them while
    converting); a Settings built directly, as the tests do, is checked only by
    __post_init__."""

    database_url: DatabaseUrl | None = None
    database_pooler: Pooler = "none"
    # PostgreSQL itself, for what needs a session: LISTEN, migrations, a load, the doctor
    database_direct_url: DatabaseUrl | None = None
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    port: Port = 8000
    workers: Positive = 1
    pool_min_size: NonNegative = 2
    pool_max_size: Positive = 10
    pool_acquire_timeout: Seconds = 2.0
    pool_max_waiters: NonNegative = 1000
    statement_timeout_ms: NonNegative = 5000  # 0: no timeout, as in PostgreSQL
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"  # json: every log line one JSON object
    access_log: bool = True  # one line per request
    metrics: bool = True  # GET /metrics and the measures behind it
    idle_in_transaction_timeout_ms: NonNegative = 60_000  # 0: none, as in PostgreSQL
    stats_cache_seconds: SecondsOrZero = 0.0  # 0: no cache
    max_body_bytes: Positive = 65536
    # POST /deals/import: the largest CSV body (256 MiB, ~1.7M rows), and how long an
    # import waits for another load to end before its 503
    import_max_bytes: Positive = 256 * 1024 * 1024
    import_lock_wait_seconds: Seconds = 30.0
    shutdown_drain_seconds: SecondsOrZero = 1.0  # 0: no drain
    data_dir: Path = Path(".data")
    cors_origins: tuple[str, ...] = ()  # none: CORS off
    # GET /events keeps events this long (ISO 8601 duration such as P7D, or seconds)
    events_retention: timedelta = timedelta(days=7)
    # Access control: neither set, the API is open; both set is an error.
    auth_jwt_secret: str | None = None  # HS256
    auth_jwt_public_key: Path | None = None  # a PEM public key: RS256 or ES256
    auth_jwt_audience: str | None = None  # `aud` checked when set
    auth_jwt_leeway_seconds: NonNegative = 30  # clock skew allowed on exp, nbf, iat
    metrics_token: str | None = None  # GET /metrics needs it as a bearer token when set
    rate_limit: RateText | None = None  # per client; none: no limit
    redis_url: RedisUrl | None = None  # the rate limit's counters and the stats cache, shared
    # Read replicas (comma-separated in the environment): GET reads go to a fit one.
    database_replica_urls: tuple[str, ...] = ()
    replica_max_lag_seconds: Seconds = 5.0  # a replica further behind is skipped

    def __post_init__(self) -> None:
        if self.auth_jwt_secret is not None and self.auth_jwt_public_key is not None:
            raise SettingsError(
                "AUTH_JWT_SECRET and AUTH_JWT_PUBLIC_KEY are both set: "
                "set one (HS256 with the secret, or RS256/ES256 with the public key)"
            )
        if self.auth_jwt_secret is not None and len(self.auth_jwt_secret.encode()) < MIN_SECRET:
            # RFC 7518 3.2: an HS256 key at least as long as the hash. The value is never shown.
            raise SettingsError(
                f"AUTH_JWT_SECRET is {len(self.auth_jwt_secret.encode())} bytes long: "
                f"HS256 needs at least {MIN_SECRET}"
            )
        for field in (
            "pool_acquire_timeout",
            "stats_cache_seconds",
            "shutdown_drain_seconds",
            "import_lock_wait_seconds",
            "replica_max_lag_seconds",
        ):
            value = getattr(self, field)
            if not math.isfinite(value):
                raise SettingsError(f"{VAR_OF[field]}={value} must be a finite number")
        if self.events_retention <= timedelta(0):
            raise SettingsError(
                f"EVENTS_RETENTION={self.events_retention} must be longer than zero"
            )
        if self.pool_min_size > self.pool_max_size:
            raise SettingsError(
                f"POOL_MIN_SIZE={self.pool_min_size} must not exceed "
                f"POOL_MAX_SIZE={self.pool_max_size}"
            )
        self._check_replica_urls()
        for origin in self.cors_origins:
            if not ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"CORS_ORIGINS has {origin!r}, which is not an origin: "
                    "scheme://host[:port] with no path (https://app.example.com), or *"
                )

    def _check_replica_urls(self) -> None:
        """Each a PostgreSQL URL (shown without its password), each server once, not the
        primary's URL."""
        seen: set[str] = set()
        for url in self.database_replica_urls:
            if not re.match(DATABASE_URL_PATTERN, url):
                raise SettingsError(
                    f"DATABASE_REPLICA_URLS has {redact_url(url)!r}, which "
                    f"{PATTERN_MEANING[DATABASE_URL_PATTERN]}"
                )
            address = database_address(url)
            if address in seen:
                raise SettingsError(f"DATABASE_REPLICA_URLS lists {address} more than once")
            seen.add(address)
            if url == self.database_url:
                raise SettingsError(
                    "DATABASE_REPLICA_URLS lists DATABASE_URL itself: name the replicas only"
                )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment variables of ENV_VARS; an unset or empty
        variable keeps the default. Raises SettingsError."""
        env = os.environ if env is None else env
        raw = {field: value for var, field in ENV_VARS.items() if (value := env.get(var))}
        fields: dict[str, Any] = dict(raw)
        if "log_level" in raw:
            fields["log_level"] = raw["log_level"].lower()
        if "cors_origins" in raw:  # comma-separated
            origins = raw["cors_origins"].split(",")
            fields["cors_origins"] = [o.strip() for o in origins if o.strip()]
        if "database_replica_urls" in raw:  # comma-separated
            urls = raw["database_replica_urls"].split(",")
            fields["database_replica_urls"] = [u.strip() for u in urls if u.strip()]
        if "log_format" in raw:
            fields["log_format"] = raw["log_format"].lower()
        if "database_pooler" in raw:
            fields["database_pooler"] = raw["database_pooler"].lower()
        try:
            return msgspec.convert(fields, cls, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            raise SettingsError(_explain(exc, raw)) from None

    @property
    def auth_on(self) -> bool:
        """Whether requests need a bearer token (AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY set)."""
        return self.auth_jwt_secret is not None or self.auth_jwt_public_key is not None

    @property
    def direct_url(self) -> str | None:
        """PostgreSQL itself, for work that needs a session of its own (LISTEN, migrations,
        a load, the doctor): DATABASE_DIRECT_URL when set, else DATABASE_URL."""
        return self.database_direct_url or self.database_url

    def with_database(self, url: str) -> Settings:
        return msgspec.structs.replace(self, database_url=url)


# Environment variable -> settings field. The README's table mirrors this.
ENV_VARS: dict[str, str] = {
    "DATABASE_URL": "database_url",
    "DATABASE_POOLER": "database_pooler",
    "DATABASE_DIRECT_URL": "database_direct_url",
    "API_HOST": "host",
    "API_PORT": "port",
    "API_WORKERS": "workers",
    "POOL_MIN_SIZE": "pool_min_size",
    "POOL_MAX_SIZE": "pool_max_size",
    "POOL_ACQUIRE_TIMEOUT": "pool_acquire_timeout",
    "POOL_MAX_WAITERS": "pool_max_waiters",
    "STATEMENT_TIMEOUT_MS": "statement_timeout_ms",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
    "ACCESS_LOG": "access_log",
    "METRICS": "metrics",
    "IDLE_IN_TRANSACTION_TIMEOUT_MS": "idle_in_transaction_timeout_ms",
    "STATS_CACHE_SECONDS": "stats_cache_seconds",
    "MAX_BODY_BYTES": "max_body_bytes",
    "IMPORT_MAX_BYTES": "import_max_bytes",
    "IMPORT_LOCK_WAIT_SECONDS": "import_lock_wait_seconds",
    "SHUTDOWN_DRAIN_SECONDS": "shutdown_drain_seconds",
    "DEALS_DATA_DIR": "data_dir",
    "CORS_ORIGINS": "cors_origins",
    "EVENTS_RETENTION": "events_retention",
    "AUTH_JWT_SECRET": "auth_jwt_secret",
    "AUTH_JWT_PUBLIC_KEY": "auth_jwt_public_key",
    "AUTH_JWT_AUDIENCE": "auth_jwt_audience",
    "AUTH_JWT_LEEWAY_SECONDS": "auth_jwt_leeway_seconds",
    "METRICS_TOKEN": "metrics_token",
    "RATE_LIMIT": "rate_limit",
    "REDIS_URL": "redis_url",
    "DATABASE_REPLICA_URLS": "database_replica_urls",
    "REPLICA_MAX_LAG_SECONDS": "replica_max_lag_seconds",
}
VAR_OF = {field: var for var, field in ENV_VARS.items()}


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


_AT_FIELD = re.compile(r" - at `\$\.(\w+)`$")


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, str]) -> str:
    """msgspec's message, with `$.field` turned back into the environment variable."""
    found = _AT_FIELD.search(str(exc))
    if found is None:  # raised by __post_init__, in our own words
        return str(exc)
    field = found.group(1)
    var, value = VAR_OF[field], raw[field]
    struct = mi.type_info(Settings)
    assert isinstance(struct, mi.StructType)
    info = next(f.type for f in struct.fields if f.name == field)
    if isinstance(info, mi.UnionType):  # `X | None`: the value is not None
        info = next(t for t in info.types if not isinstance(t, mi.NoneType))
    if isinstance(info, mi.IntType | mi.FloatType):
        kind = int if isinstance(info, mi.IntType) else float
        try:
            msgspec.convert(value, kind, strict=False)
        except msgspec.ValidationError:
            return f"{var}={value!r} is not a valid {kind.__name__}"
        return f"{var}={value} {_bounds(info)}"
    if isinstance(info, mi.BoolType):
        return f"{var}={value!r} is not a boolean: use true or false"
    if isinstance(info, mi.LiteralType):  # in the order declared, not msgspec's sorted one
        allowed = get_args(get_type_hints(Settings)[field])
        return f"{var}={value!r} is not one of {', '.join(map(str, allowed))}"
    if isinstance(info, mi.StrType) and info.pattern in PATTERN_MEANING:
        secret = ("database_url", "database_direct_url", "redis_url")
        shown = redact_url(value) if field in secret else value
        return f"{var}={shown!r} {PATTERN_MEANING[info.pattern]}"
    return f"{var}={value!r}: {_AT_FIELD.sub('', str(exc))}"


def _bounds(info: mi.IntType | mi.FloatType) -> str:
    if info.ge is not None and info.le is not None:
        return f"must be between {info.ge} and {info.le}"
    if info.gt is not None:
        return f"must be > {info.gt:g}"
    if info.ge is not None:
        return f"must be >= {info.ge:g}"
    return "is out of range"


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*):.*@")


def redact_url(url: str) -> str:
    """The URL with its password replaced, safe for logs and messages.

    A URL that urllib cannot split (a bracket left open, a '/' in the password)
    still has everything between `user:` and the last '@' hidden.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
    if password is None or "@" not in parts.netloc:
        return _USERINFO.sub(r"\1:***@", url)
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[1]}"))


def database_address(url: str) -> str:
    """host:port of a PostgreSQL URL (a unix socket's folder as host), never its credentials:
    a replica's name in /health/ready, the metrics and the logs."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a URL urllib cannot split: its part after the last '@'
        return url.rsplit("@", 1)[-1].split("/", 1)[0] or "localhost"
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return f"{host or query.get('host') or 'localhost'}:{port or query.get('port') or 5432}"
