"""Access control: bearer JWTs with scopes, and the static token of /metrics.

With AUTH_JWT_SECRET (HS256) or AUTH_JWT_PUBLIC_KEY (a PEM public key:
RS256 for an RSA key, ES256 for a P-256 key) set, every request except
/health* and /docs* needs `Authorization: Bearer <JWT>`. The algorithm
accepted is the one the key is for, never the one the token's header names:
an HS256 token signed with the bytes of an RS256 public key (key confusion)
or an `alg: none` token is refused. `exp` is required; `nbf` and `iat` are
checked when present; all three allow AUTH_JWT_LEEWAY_SECONDS of clock skew;
`aud` is checked when AUTH_JWT_AUDIENCE is set.

The scope an operation needs follows from its method and path
(required_scope, which the OpenAPI document is declared from too):
deals:read for GET/HEAD/OPTIONS, deals:write for POST/PATCH/PUT/DELETE,
deals:import for POST /deals/import. A route added later needs a scope
unless it is under /health or /docs: closed by default.

The check is a Litestar middleware: it runs after routing (an unknown path
is a 404 whatever the token) and before the handler, its body and any
database work. Failures are ApiErrors in the one error shape: 401
UNAUTHENTICATED with `WWW-Authenticate: Bearer` (error="invalid_token" and a
description when a token was sent, RFC 6750 3.1), 403 FORBIDDEN with
error="insufficient_scope" and the scope needed. No token, secret or
claim is ever written to a log line or an answer.

The same middleware counts the request against RATE_LIMIT
(service/api/ratelimit.py), after the check so that the client is the
token's subject; a refused request counts against the peer address.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from litestar import Litestar
from litestar.openapi.spec import Components, OpenAPIResponse, Reference, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import ApiError, Forbidden, TooManyRequests, Unauthenticated
from service.api.openapi import ERROR_BODY
from service.api.ratelimit import Limiter, LocalCounter, Rate, RedisCounter
from service.api.request_id import header
from service.settings import Settings, SettingsError

# PyJWT (with cryptography) and redis are imported where they are used, with AUTH_JWT_* and
# REDIS_URL set: about 100 ms of every start-up of a service that uses neither.
if TYPE_CHECKING:
    from redis.asyncio import Redis

READ: Final = "deals:read"
WRITE: Final = "deals:write"
IMPORT: Final = "deals:import"
METRICS: Final = "metrics"  # not a JWT scope: METRICS_TOKEN
SCOPES: Final = (READ, WRITE, IMPORT)

OPEN_PREFIXES: Final = ("/health", "/docs")
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_TOKEN_BYTES: Final = 4096  # far above any token of ours; refused before decoding
MAX_KEPT: Final = 4096  # verified tokens remembered per worker (Verifier)
REALM: Final = 'Bearer realm="deals"'
SCHEME_NAME: Final = "bearerAuth"


def rate_limited(path: str) -> bool:
    """Whether RATE_LIMIT counts requests to this path: probes and scrapes are not clients."""
    return not (path == "/metrics" or path == "/health" or path.startswith("/health/"))


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs; None for the open paths, METRICS for /metrics."""
    for prefix in OPEN_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return None
    if path == "/metrics":
        return METRICS
    if path == "/deals/import":
        return IMPORT
    return READ if method.upper() in READ_METHODS else WRITE


# --- the token ----------------------------------------------------------------------


def reason(exc: Exception) -> str:
    """What the client is told for a refused token; never the library's own text, which may
    quote the token."""
    import jwt

    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the {exc.claim} claim"  # a name from our own list
    reasons: list[tuple[type[Exception], str]] = [
        (jwt.ExpiredSignatureError, "the token has expired"),
        (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
        (jwt.InvalidAudienceError, "the token is for another audience"),
        (jwt.InvalidSignatureError, "the token's signature does not verify"),
        (jwt.InvalidAlgorithmError, "the token is not signed with the accepted algorithm"),
        (jwt.DecodeError, "the token is not a well-formed JWT"),
    ]
    for kind, text in reasons:
        if isinstance(exc, kind):
            return text
    return "the token is not valid"


def invalid_token(description: str) -> Unauthenticated:
    return Unauthenticated(
        description,
        headers={
            "WWW-Authenticate": f'{REALM}, error="invalid_token", error_description="{description}"'
        },
    )


def no_token(message: str) -> Unauthenticated:
    return Unauthenticated(message, headers={"WWW-Authenticate": REALM})


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for, and what it may do."""

    sub: str | None
    scopes: frozenset[str]


@dataclass(frozen=True)
class Verifier:
    """Verifies tokens, and remembers the ones that passed until they expire.

    PyJWT takes 100-200 us to verify an HS256 token (2.15 checks the base64
    alphabet a character at a time), a cost every request of a client would
    pay again for the same token. A token that verified is kept, by its exact
    text, with the window in which its time claims hold (nbf/iat to exp, with
    the leeway); within it the token's principal is taken from memory, out of
    it the token is verified again, and refused as PyJWT says. Only the time
    claims change their verdict with time; the signature, audience and scope
    of the same text do not. Refused tokens are never kept.
    """

    key: Any  # the HS256 secret (bytes) or a public key object
    algorithm: str
    audience: str | None
    leeway: int
    clock: Callable[[], float] = time.time
    cache: dict[str, tuple[Principal, float, float]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def principal(self, token: str) -> Principal:
        """The token's principal, or an Unauthenticated naming what is wrong."""
        if len(token) > MAX_TOKEN_BYTES:
            raise invalid_token(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        now = self.clock()
        kept = self.cache.get(token)
        if kept is not None:
            principal, valid_from, valid_until = kept
            if valid_from <= now < valid_until:
                return principal
            del self.cache[token]
        import jwt  # here, not at start-up (see the imports)

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],  # the key's, never the header's
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise invalid_token(reason(exc)) from None
        except (ValueError, TypeError):  # a malformed part PyJWT does not wrap
            raise invalid_token("the token is not a well-formed JWT") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise invalid_token("the scope claim must be a space-separated string")
        sub = claims.get("sub")
        principal = Principal(
            sub=sub if isinstance(sub, str) else None, scopes=frozenset(scope.split())
        )
        # PyJWT's own rules: exp <= now - leeway is expired; nbf or iat > now + leeway not yet.
        starts = max(float(claims.get("nbf", -math.inf)), float(claims.get("iat", -math.inf)))
        if len(self.cache) >= MAX_KEPT:
            del self.cache[next(iter(self.cache))]  # the oldest kept
        self.cache[token] = (principal, starts - self.leeway, float(claims["exp"]) + self.leeway)
        return principal


def load_public_key(path: Path) -> tuple[Any, str]:
    """The key of a PEM file and the one algorithm it verifies; SettingsError otherwise."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SettingsError(
            f"AUTH_JWT_PUBLIC_KEY={path}: cannot read it ({exc.strerror})"
        ) from None
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise SettingsError(f"AUTH_JWT_PUBLIC_KEY={path} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SettingsError(
                f"AUTH_JWT_PUBLIC_KEY={path} is a {key.key_size}-bit RSA key: "
                "RS256 needs 2048 bits or more"
            )
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise SettingsError(
        f"AUTH_JWT_PUBLIC_KEY={path} is neither an RSA key (RS256) nor a P-256 key (ES256)"
    )


def verifier(settings: Settings) -> Verifier | None:
    """The token check these settings ask for; None when the API is open."""
    if settings.auth_jwt_secret is not None:
        key: Any = settings.auth_jwt_secret.encode()
        algorithm = "HS256"
    elif settings.auth_jwt_public_key is not None:
        key, algorithm = load_public_key(settings.auth_jwt_public_key)
    else:
        return None
    return Verifier(key, algorithm, settings.auth_jwt_audience, settings.auth_jwt_leeway_seconds)


def bearer(scope: Scope) -> str:
    """The bearer token of a request's Authorization header; Unauthenticated without one."""
    value = header(scope, b"authorization")
    if value is None:
        raise no_token("this request needs a bearer token: Authorization: Bearer <token>")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise no_token("Authorization must use the Bearer scheme")
    token = token.strip()
    if not token:
        raise invalid_token("the bearer token is empty")
    return token


# --- the middleware -----------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What a request must show (a JWT, and for /metrics METRICS_TOKEN) and how often it may
    come (RATE_LIMIT, service/api/ratelimit.py)."""

    verifier: Verifier | None
    metrics_token: bytes | None
    limiter: Limiter | None = None

    @classmethod
    def of(cls, settings: Settings, redis: Redis | None = None) -> Access:
        token = settings.metrics_token
        limiter = None
        if settings.rate_limit is not None:
            counter = RedisCounter(redis) if redis is not None else LocalCounter()
            limiter = Limiter(Rate.parse(settings.rate_limit), counter)
        return cls(verifier(settings), token.encode() if token is not None else None, limiter)

    @property
    def needed(self) -> bool:
        return (
            self.verifier is not None or self.metrics_token is not None or self.limiter is not None
        )

    def check(self, scope: Any, needed: str | None) -> Principal | None:
        """The request's principal (None when none is needed); raises the 401 or 403."""
        if needed is None:
            return None
        if needed == METRICS:
            if self.metrics_token is not None:
                token = bearer(scope).encode("latin-1")
                if not hmac.compare_digest(token, self.metrics_token):
                    raise invalid_token("the token is not the metrics token")
            return None
        if self.verifier is None:
            return None
        principal = self.verifier.principal(bearer(scope))
        if needed not in principal.scopes:
            raise Forbidden(
                f"the token lacks the scope {needed}",
                details=[{"scope": needed}],
                headers={
                    "WWW-Authenticate": f'{REALM}, error="insufficient_scope", '
                    f'error_description="the token lacks the scope {needed}", scope="{needed}"'
                },
            )
        return principal

    async def limit(
        self, scope: Any, needed: str | None, principal: Principal | None
    ) -> dict[str, str]:
        """The RateLimit-* headers of this request; raises the 429 when it is over."""
        if self.limiter is None or not rate_limited(scope["path"]):
            return {}
        if principal is not None and principal.sub is not None:
            client = f"sub:{principal.sub}"
        else:
            peer = scope.get("client")
            client = f"addr:{peer[0] if peer else 'unknown'}"
        verdict = await self.limiter.hit(client)
        if verdict is None:
            return {}
        if not verdict.allowed:
            raise TooManyRequests(
                f"over the rate limit of {self.limiter.rate.limit} requests in "
                f"{self.limiter.rate.window} s; retry in {verdict.reset} s",
                headers=verdict.headers(),
            )
        return verdict.headers()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar middleware (after routing, before the handler): the check of every request."""

        async def checked(scope: Any, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            needed = required_scope(scope["method"], scope["path"])
            try:
                principal = self.check(scope, needed)
            except ApiError as refused:  # counted too, against the peer address
                refused.headers.update(await self.limit(scope, needed, None))
                raise
            headers = await self.limit(scope, needed, principal)
            if principal is not None:
                scope.setdefault("state", {})["principal"] = principal
            if not headers:
                await app(scope, receive, send)
                return
            encoded = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), *encoded]}
                await send(message)

            await app(scope, receive, send_with_headers)

        return checked


def access_middleware(
    settings: Settings, redis: Redis | None = None
) -> list[Callable[[ASGIApp], ASGIApp]]:
    """The app's access middleware for these settings: none when nothing is required."""
    access = Access.of(settings, redis)
    return [access.middleware] if access.needed else []


# --- the OpenAPI document -----------------------------------------------------------


def declare_security(app: Litestar) -> None:
    """The bearer scheme in the document, and each operation's scope (or `security: []`)."""
    document = app.openapi_schema
    components = document.components
    if not isinstance(components, Components):
        components = document.components = Components()
    components.security_schemes = {
        **(components.security_schemes or {}),
        SCHEME_NAME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description=f"A JWT whose scope claim holds {', '.join(SCOPES)} as it needs.",
        ),
    }
    components.responses = {
        **(components.responses or {}),
        "Unauthenticated": OpenAPIResponse(
            description=(
                "401 UNAUTHENTICATED: no bearer token, or one that is not valid; "
                "WWW-Authenticate says which (RFC 6750)."
            ),
            content=dict(ERROR_BODY),
        ),
        "Forbidden": OpenAPIResponse(
            description="403 FORBIDDEN: the token lacks the scope the operation needs.",
            content=dict(ERROR_BODY),
        ),
    }
    for path, item in (document.paths or {}).items():
        for method in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            needed = required_scope(method, path)
            if needed is None or needed == METRICS:
                operation.security = []
                continue
            operation.security = [{SCHEME_NAME: [needed]}]
            if operation.responses is not None:
                operation.responses.setdefault(
                    "401", Reference(ref="#/components/responses/Unauthenticated")
                )
                operation.responses.setdefault(
                    "403", Reference(ref="#/components/responses/Forbidden")
                )
