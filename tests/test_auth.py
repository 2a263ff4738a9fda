"""Access control: bearer JWTs and their scopes, the metrics token, the document's security."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.app import create_app
from service.api.auth import required_scope
from service.settings import Settings, SettingsError
from tests.known import Known
from tests.serving import serving
from tests.test_deal_writes import new_deal

Client = AsyncTestClient[Litestar]

SECRET = secrets.token_urlsafe(48)
READ, WRITE, IMPORT = "deals:read", "deals:write", "deals:import"


def claims(scope: Any = READ, ttl: float = 300, **extra: Any) -> dict[str, Any]:
    return {"sub": "tester", "scope": scope, "exp": int(time.time() + ttl), **extra}


def hs256(payload: dict[str, Any], key: str | bytes = SECRET) -> str:
    return jwt.encode(payload, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth_settings(database_url: str, **changes: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database_url,
        "pool_min_size": 1,
        "pool_max_size": 4,
        "auth_jwt_secret": SECRET,
    }
    return Settings(**{**base, **changes})


@pytest.fixture
async def guarded(database_url: str, known: Known) -> AsyncIterator[Client]:
    """An app that asks for HS256 tokens signed with SECRET, over the known rows."""
    async with AsyncTestClient(app=create_app(auth_settings(database_url))) as client:
        yield client


def pem_of(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, folder: Path) -> Path:
    path = folder / "public.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def assert_unauthenticated(response: Any, description: str | None) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "UNAUTHENTICATED"
    assert error["request_id"] == response.headers["x-request-id"]
    challenge = response.headers["www-authenticate"]
    if description is None:
        assert challenge == 'Bearer realm="deals"'
    else:
        assert error["message"] == description
        assert challenge == (
            f'Bearer realm="deals", error="invalid_token", error_description="{description}"'
        )


# --- which scope a request needs ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/deals", READ),
        ("HEAD", "/deals/7", READ),
        ("GET", "/deals/stats", READ),
        ("GET", "/hotels/3", READ),
        ("GET", "/categories", READ),
        ("OPTIONS", "/deals", READ),
        ("POST", "/deals", WRITE),
        ("PATCH", "/deals/7", WRITE),
        ("DELETE", "/deals/7", WRITE),
        ("POST", "/deals/import", "deals:import"),
        ("GET", "/health", None),
        ("GET", "/health/ready", None),
        ("GET", "/docs", None),
        ("GET", "/docs/openapi.json", None),
        ("GET", "/metrics", "metrics"),
        ("GET", "/healthz", READ),  # closed by default: only /health and below are open
    ],
)
def test_the_scope_follows_method_and_path(method: str, path: str, scope: str | None) -> None:
    assert required_scope(method, path) == scope


# --- in and out -------------------------------------------------------------------------


@pytest.mark.read_only
async def test_a_read_token_reads_everything(guarded: Client, known: Known) -> None:
    headers = bearer(hs256(claims()))
    deal = known.deals[0].id
    for path in ("/deals", f"/deals/{deal}", "/deals/stats", "/hotels", "/categories"):
        response = await guarded.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
    assert (await guarded.head(f"/deals/{deal}", headers=headers)).status_code == 200


@pytest.mark.read_only
async def test_no_token_is_a_401_with_the_bearer_challenge(guarded: Client, known: Known) -> None:
    for path in ("/deals", f"/deals/{known.deals[0].id}", "/hotels", "/categories"):
        response = await guarded.get(path)
        assert_unauthenticated(response, None)
        assert response.json()["error"]["message"] == (
            "this request needs a bearer token: Authorization: Bearer <token>"
        )


@pytest.mark.read_only
async def test_health_and_docs_stay_open(guarded: Client) -> None:
    for path in ("/health", "/health/live", "/health/ready", "/docs", "/docs/openapi.json"):
        assert (await guarded.get(path)).status_code == 200, path


async def test_a_write_token_writes_and_a_read_token_gets_403(
    guarded: Client, known: Known
) -> None:
    write = bearer(hs256(claims(f"{READ} {WRITE}")))
    created = await guarded.post("/deals", json=new_deal(known), headers=write)
    assert created.status_code == 201, created.text
    location = created.headers["location"]

    read = bearer(hs256(claims(READ)))
    refused = await guarded.delete(location, headers={**read, "If-Match": '"1"'})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["code"], error["message"]) == (
        "FORBIDDEN",
        "the token lacks the scope deals:write",
    )
    assert error["details"] == [{"scope": WRITE}]
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="deals", error="insufficient_scope", '
        'error_description="the token lacks the scope deals:write", scope="deals:write"'
    )
    assert (await guarded.get(location, headers=read)).status_code == 200  # still there

    deleted = await guarded.delete(location, headers={**write, "If-Match": '"1"'})
    assert deleted.status_code == 204


@pytest.mark.read_only
async def test_a_write_only_token_cannot_read(guarded: Client, known: Known) -> None:
    response = await guarded.get("/deals", headers=bearer(hs256(claims(WRITE))))
    assert response.status_code == 403
    assert response.json()["error"]["details"] == [{"scope": READ}]


async def test_the_check_comes_before_any_database_work(tmp_path: Path) -> None:
    """Over a database that does not answer, a refused request is a 401, never a 503."""
    settings = auth_settings("postgresql://deals@127.0.0.1:1/nothing", pool_min_size=0)
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert_unauthenticated(await client.get("/deals"), None)
        response = await client.delete("/deals/1", headers=bearer(hs256(claims(READ))))
        assert response.status_code == 403
        # With the right scope the request goes on, and only then meets the database.
        assert (await client.get("/deals/1", headers=bearer(hs256(claims())))).status_code == 503


@pytest.mark.read_only
async def test_an_unknown_path_is_a_404_whatever_the_token(guarded: Client) -> None:
    assert (await guarded.get("/nothing-here")).status_code == 404


@pytest.mark.read_only
async def test_leeway_allows_a_little_clock_skew(guarded: Client, known: Known) -> None:
    just_expired = hs256(claims(ttl=-10))  # within the default 30 s
    assert (await guarded.get("/categories", headers=bearer(just_expired))).status_code == 200
    long_expired = hs256(claims(ttl=-31))
    assert_unauthenticated(
        await guarded.get("/categories", headers=bearer(long_expired)), "the token has expired"
    )


@pytest.mark.read_only
async def test_the_audience_is_checked_when_set(database_url: str, known: Known) -> None:
    settings = auth_settings(database_url, auth_jwt_audience="deals-api")
    async with AsyncTestClient(app=create_app(settings)) as client:
        good = hs256(claims(aud="deals-api"))
        assert (await client.get("/categories", headers=bearer(good))).status_code == 200
        for token in (hs256(claims(aud="other")), hs256(claims())):
            response = await client.get("/categories", headers=bearer(token))
            assert response.status_code == 401


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
@pytest.mark.read_only
async def test_a_public_key_verifies_its_own_algorithm(
    database_url: str, known: Known, tmp_path: Path, kind: str
) -> None:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    settings = auth_settings(
        database_url, auth_jwt_secret=None, auth_jwt_public_key=pem_of(private, tmp_path)
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        token = jwt.encode(claims(), private, algorithm=kind)
        assert (await client.get("/categories", headers=bearer(token))).status_code == 200
        assert_unauthenticated(await client.get("/categories"), None)


@pytest.mark.read_only
async def test_a_remembered_token_is_still_refused_once_expired(
    database_url: str, known: Known
) -> None:
    """Verified tokens are kept in memory (Verifier.cache), but only until their exp."""
    settings = auth_settings(database_url, auth_jwt_leeway_seconds=0)
    async with AsyncTestClient(app=create_app(settings)) as client:
        token = hs256(claims(exp=int(time.time()) + 2))
        for _ in range(3):
            assert (await client.get("/categories", headers=bearer(token))).status_code == 200
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
        assert_unauthenticated(
            await client.get("/categories", headers=bearer(token)), "the token has expired"
        )


def test_a_token_not_yet_valid_is_not_remembered() -> None:
    from service.api.auth import Verifier

    now = [time.time()]
    verify = Verifier(SECRET.encode(), "HS256", None, 0, clock=lambda: now[0])
    early = hs256(claims(nbf=int(now[0]) + 60))
    with pytest.raises(Exception, match="not valid yet"):
        verify.principal(early)
    assert verify.cache == {}
    token = hs256(claims(iat=int(now[0])))
    assert verify.principal(token).scopes == {READ}
    _principal, valid_from, valid_until = verify.cache[token]
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert (valid_from, valid_until) == (int(now[0]), expires)
    hostile = hs256(claims(), secrets.token_urlsafe(48))
    with pytest.raises(Exception, match="signature"):
        verify.principal(hostile)
    assert list(verify.cache) == [token]


# --- /metrics ---------------------------------------------------------------------------


@pytest.mark.read_only
async def test_metrics_needs_its_token_when_set(database_url: str) -> None:
    metrics_token = secrets.token_urlsafe(24)
    settings = auth_settings(database_url, metrics_token=metrics_token)
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert_unauthenticated(await client.get("/metrics"), None)
        wrong = await client.get("/metrics", headers=bearer(metrics_token + "x"))
        assert_unauthenticated(wrong, "the token is not the metrics token")
        a_jwt = await client.get("/metrics", headers=bearer(hs256(claims())))
        assert a_jwt.status_code == 401
        right = await client.get("/metrics", headers=bearer(metrics_token))
        assert right.status_code == 200


@pytest.mark.read_only
async def test_metrics_token_alone_leaves_the_api_open(database_url: str) -> None:
    metrics_token = secrets.token_urlsafe(24)
    settings = Settings(database_url=database_url, metrics_token=metrics_token)
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/categories")).status_code == 200
        assert (await client.get("/metrics")).status_code == 401


@pytest.mark.read_only
async def test_without_a_key_the_api_and_metrics_are_open(client: Client) -> None:
    assert (await client.get("/categories")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


# --- settings ---------------------------------------------------------------------------


def test_a_secret_and_a_public_key_together_are_an_error(tmp_path: Path) -> None:
    env = {"AUTH_JWT_SECRET": SECRET, "AUTH_JWT_PUBLIC_KEY": str(tmp_path / "k.pem")}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == (
        "AUTH_JWT_SECRET and AUTH_JWT_PUBLIC_KEY are both set: "
        "set one (HS256 with the secret, or RS256/ES256 with the public key)"
    )


def test_a_short_secret_is_refused_without_being_shown() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AUTH_JWT_SECRET": "hunter2"})
    assert str(caught.value) == "AUTH_JWT_SECRET is 7 bytes long: HS256 needs at least 32"


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (None, "AUTH_JWT_PUBLIC_KEY={path}: cannot read it (No such file or directory)"),
        (b"not a key", "AUTH_JWT_PUBLIC_KEY={path} is not a PEM public key"),
    ],
)
def test_a_public_key_that_cannot_be_used_stops_serve(
    tmp_path: Path, pem: bytes | None, message: str
) -> None:
    from service.api.auth import verifier

    path = tmp_path / "key.pem"
    if pem is not None:
        path.write_bytes(pem)
    with pytest.raises(SettingsError) as caught:
        verifier(Settings(auth_jwt_public_key=path))
    assert str(caught.value) == message.format(path=path)


def test_a_small_rsa_key_is_refused(tmp_path: Path) -> None:
    from service.api.auth import verifier

    path = pem_of(rsa.generate_private_key(public_exponent=65537, key_size=1024), tmp_path)  # noqa: S505
    with pytest.raises(SettingsError, match="is a 1024-bit RSA key: RS256 needs 2048 bits"):
        verifier(Settings(auth_jwt_public_key=path))


# --- the OpenAPI document ---------------------------------------------------------------


@pytest.mark.read_only
async def test_the_document_declares_the_scheme_and_each_scope(guarded: Client) -> None:
    document = (await guarded.get("/docs/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT whose scope claim holds deals:read, deals:write, deals:import "
        "as it needs.",
    }
    seen = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "patch", "delete", "put"}:
                continue
            seen.add((method, path))
            if path.startswith("/health"):
                assert operation["security"] == [], path
                assert "401" not in operation["responses"]
            else:
                scope = READ if method == "get" else WRITE
                scope = IMPORT if path == "/deals/import" else scope
                assert operation["security"] == [{"bearerAuth": [scope]}], (method, path)
                assert operation["responses"]["401"] == {
                    "$ref": "#/components/responses/Unauthenticated"
                }
                assert operation["responses"]["403"] == {"$ref": "#/components/responses/Forbidden"}
    assert {("get", "/deals"), ("post", "/deals"), ("delete", "/deals/{id}")} <= seen
    assert ("get", "/health") in seen
    responses = document["components"]["responses"]
    for name in ("Unauthenticated", "Forbidden"):
        body = responses[name]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.mark.read_only
async def test_an_open_api_declares_no_security(client: Client) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    assert "securitySchemes" not in document["components"]
    assert "security" not in document["paths"]["/deals"]["get"]


# --- deals serve ------------------------------------------------------------------------

OPEN_WARNING = (
    "access control is off: neither AUTH_JWT_SECRET nor AUTH_JWT_PUBLIC_KEY is set, "
    "so any client may read and change deals"
)


@pytest.mark.read_only
def test_serve_warns_at_start_up_when_the_api_is_open(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path / "serve.log", LOG_FORMAT="json") as server:
        lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    warnings = [line for line in lines if line["message"] == OPEN_WARNING]
    assert len(warnings) == 1
    assert (warnings[0]["level"], warnings[0]["logger"]) == ("warning", "service.serve")


def test_serve_refuses_a_public_key_it_cannot_use(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env={**os.environ, "AUTH_JWT_PUBLIC_KEY": str(missing)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: AUTH_JWT_PUBLIC_KEY={missing}: cannot read it (No such file or directory)"
    )


# --- deals token ------------------------------------------------------------------------


def deals(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_JWT_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_deals_token_prints_a_token_the_service_accepts(
    guarded: Client, known: Known
) -> None:
    result = deals(
        "token", "--scope", "deals:read deals:write", "--ttl", "120", "--sub", "loadtest",
        AUTH_JWT_SECRET=SECRET,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert decoded["scope"] == "deals:read deals:write"
    assert decoded["sub"] == "loadtest"
    assert decoded["exp"] - decoded["iat"] == 120
    assert "aud" not in decoded
    assert (await guarded.get("/categories", headers=bearer(token))).status_code == 200
    created = await guarded.post("/deals", json=new_deal(known), headers=bearer(token))
    assert created.status_code == 201


def test_deals_token_names_the_audience() -> None:
    result = deals("token", "--scope", "deals:read", "--aud", "deals-api", AUTH_JWT_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    decoded = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="deals-api")
    assert decoded["aud"] == "deals-api"
    assert decoded["exp"] - decoded["iat"] == 3600


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--scope", "deals:read"],
            {},
            "error: AUTH_JWT_SECRET is not set: deals token signs with it (HS256)",
        ),
        (
            ["--scope", "deals:read admin"],
            {"AUTH_JWT_SECRET": SECRET},
            "error: --scope takes deals:read, deals:write, deals:import (space-separated), "
            "not 'deals:read admin'",
        ),
        (
            ["--scope", "deals:read", "--ttl", "0"],
            {"AUTH_JWT_SECRET": SECRET},
            "error: --ttl must be >= 1 second",
        ),
    ],
)
def test_deals_token_refuses_in_one_line(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = deals("token", *args, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == message


# --- hostile tokens ---------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    """alg none: a header, a payload and an empty signature."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def hmac_signed(payload: dict[str, Any], key: bytes) -> str:
    """HS256 by hand, with any bytes as the key (PyJWT refuses a PEM key for HMAC)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


NOT_WELL_FORMED = "the token is not a well-formed JWT"
BAD_SIGNATURE = "the token's signature does not verify"
BAD_ALGORITHM = "the token is not signed with the accepted algorithm"
BAD_SCOPE = "the scope claim must be a space-separated string"


def valid_token() -> str:
    """A read token minted now: good for five minutes from the test that asks for it."""
    return hs256(claims())


def hostile_tokens() -> dict[str, tuple[str | None, str | None]]:
    """name -> (Authorization header or None, the description of the 401; None: no error code).

    Minted when a test runs, not at import: a token made at collection would have
    expired (or its nbf passed) by the time a long suite reaches the test.
    """
    valid = valid_token()
    return {
        "alg none": (f"Bearer {unsigned(claims())}", BAD_ALGORITHM),
        "alg none, no signature dot": (f"Bearer {unsigned(claims())[:-1]}", NOT_WELL_FORMED),
        "expired beyond the leeway": (f"Bearer {hs256(claims(ttl=-120))}", "the token has expired"),
        "nbf in the future": (
            f"Bearer {hs256(claims(nbf=int(time.time()) + 120))}",
            "the token is not valid yet (nbf or iat in the future)",
        ),
        "wrong signature": (f"Bearer {hs256(claims(), secrets.token_urlsafe(48))}", BAD_SIGNATURE),
        "signature of another payload": (
            "Bearer " + ".".join([*valid.split(".")[:2], hs256(claims(WRITE)).split(".")[2]]),
            BAD_SIGNATURE,
        ),
        "truncated signature": (f"Bearer {valid[:-3]}", BAD_SIGNATURE),  # 40 of its 43 characters
        "truncated, bad padding": (f"Bearer {valid[:-2]}", NOT_WELL_FORMED),
        "truncated in the payload": (f"Bearer {valid[: len(valid) // 2]}", NOT_WELL_FORMED),
        "100 kB long": (
            f"Bearer {hs256(claims(pad='x' * 100_000))}",
            "the token is longer than 4096 bytes",
        ),
        "scope a list": (f"Bearer {hs256(claims([READ]))}", BAD_SCOPE),
        "scope a number": (f"Bearer {hs256(claims(7))}", BAD_SCOPE),
        "missing exp": (
            f"Bearer {hs256({'sub': 'tester', 'scope': READ})}",
            "the token lacks the exp claim",
        ),
        "exp not a number": (f"Bearer {hs256(claims(exp='tomorrow'))}", NOT_WELL_FORMED),
        "sub not a string": (f"Bearer {hs256(claims(sub=42))}", "the token is not valid"),
        "payload not an object": (
            f"Bearer {hmac_signed([1, 2], SECRET.encode())}",  # type: ignore[arg-type]
            NOT_WELL_FORMED,
        ),
        "random bytes": (f"Bearer {b64(secrets.token_bytes(64))}", NOT_WELL_FORMED),
        "three dots of junk": ("Bearer a.b.c", NOT_WELL_FORMED),
        "no Authorization header": (None, None),
        "Bearer with nothing": ("Bearer", "the bearer token is empty"),
        "Bearer and spaces": ("Bearer    ", "the bearer token is empty"),
        "Basic": ("Basic dXNlcjpwYXNzd29yZA==", None),
        "a token with no scheme": (valid, None),
    }


HOSTILE_NAMES = sorted(hostile_tokens())


def hostile_headers(name: str) -> dict[str, str]:
    value = hostile_tokens()[name][0]
    return {} if value is None else {"Authorization": value}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.read_only
async def test_a_hostile_token_gets_a_401(guarded: Client, known: Known, name: str) -> None:
    description = hostile_tokens()[name][1]
    for method, path in (("GET", "/deals"), ("DELETE", f"/deals/{known.deals[0].id}")):
        response = await guarded.request(method, path, headers=hostile_headers(name))
        assert_unauthenticated(response, description)
    assert (
        await guarded.get(f"/deals/{known.deals[0].id}", headers=bearer(valid_token()))
    ).status_code == 200


@pytest.mark.read_only
async def test_a_wrong_audience_gets_a_401(database_url: str, known: Known) -> None:
    settings = auth_settings(database_url, auth_jwt_audience="deals-api")
    async with AsyncTestClient(app=create_app(settings)) as client:
        for token in (hs256(claims(aud="billing")), hs256(claims(aud=["billing", "crm"]))):
            response = await client.get("/categories", headers=bearer(token))
            assert_unauthenticated(response, "the token is for another audience")


@pytest.mark.read_only
async def test_a_read_token_cannot_write(guarded: Client, known: Known) -> None:
    read = bearer(hs256(claims(READ)))
    deal = known.deals[0].id
    for method, path, body in (
        ("POST", "/deals", new_deal(known)),
        ("PATCH", f"/deals/{deal}", {"room_type": "Hacked"}),
        ("DELETE", f"/deals/{deal}", None),
    ):
        response = await guarded.request(
            method, path, json=body, headers={**read, "If-Match": '"1"'}
        )
        assert response.status_code == 403, (method, response.text)
        assert response.json()["error"]["code"] == "FORBIDDEN"
    after = (await guarded.get(f"/deals/{deal}", headers=read)).json()
    assert after == known.deals[0].json()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.read_only
async def test_key_confusion_hs256_signed_with_the_public_key_is_refused(
    database_url: str, known: Known, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = pem_of(rsa_key, tmp_path)
    settings = auth_settings(database_url, auth_jwt_secret=None, auth_jwt_public_key=pem)
    async with AsyncTestClient(app=create_app(settings)) as client:
        forged = hmac_signed(claims(f"{READ} {WRITE}"), pem.read_bytes())
        assert_unauthenticated(
            await client.get("/categories", headers=bearer(forged)), BAD_ALGORITHM
        )
        none = unsigned(claims())
        assert_unauthenticated(await client.get("/categories", headers=bearer(none)), BAD_ALGORITHM)
        # An RS256 token signed by another key.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        stranger = jwt.encode(claims(), other, algorithm="RS256")
        assert_unauthenticated(
            await client.get("/categories", headers=bearer(stranger)), BAD_SIGNATURE
        )
        # An ES256 token to an RS256 service: the algorithm is the key's.
        ec_token = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
        assert_unauthenticated(
            await client.get("/categories", headers=bearer(ec_token)), BAD_ALGORITHM
        )
        genuine = jwt.encode(claims(), rsa_key, algorithm="RS256")
        assert (await client.get("/categories", headers=bearer(genuine))).status_code == 200


@pytest.mark.read_only
def test_no_token_or_secret_reaches_the_log(
    database_url: str, known: Known, tmp_path: Path
) -> None:
    """A real server, JSON logs at debug: every hostile token, a valid one and a 403 are sent,
    and none of them, nor the secret, appears anywhere in the log."""
    metrics_token = secrets.token_urlsafe(24)
    valid = valid_token()
    hostile = hostile_tokens()
    sent: list[str] = [valid, metrics_token]
    with serving(
        database_url,
        tmp_path / "serve.log",
        LOG_FORMAT="json",
        LOG_LEVEL="debug",
        AUTH_JWT_SECRET=SECRET,
        METRICS_TOKEN=metrics_token,
    ) as server:
        statuses = {}
        for name in HOSTILE_NAMES:
            value = hostile[name][0]
            headers = {} if value is None else {"Authorization": value}
            request = urllib.request.Request(f"{server.base}/deals", headers=headers)
            statuses[name] = http_status(request)
            if value is not None:
                sent.append(value.removeprefix("Bearer").strip() or value)
        ok = urllib.request.Request(f"{server.base}/deals", headers=bearer(valid))
        assert http_status(ok) == 200
        write = urllib.request.Request(
            f"{server.base}/deals/{known.deals[0].id}", method="DELETE", headers=bearer(valid)
        )
        assert http_status(write) == 403
        scrape = urllib.request.Request(f"{server.base}/metrics", headers=bearer(metrics_token))
        assert http_status(scrape) == 200
        in_query = hs256(claims(sub="query"))  # RFC 6750 2.3: refused, and kept out of the log
        sent.append(in_query)
        assert (
            http_status(urllib.request.Request(f"{server.base}/deals?access_token={in_query}"))
            == 401
        )
    log = server.output()  # once the server has stopped: every line written
    assert set(statuses.values()) <= {401, 431}, statuses  # 431: a header the server refuses
    assert statuses["alg none"] == 401
    assert '"status":401' in log  # the access lines are there
    assert '"path":"/deals?access_token=***"' in log
    assert "Traceback" not in log
    assert SECRET not in log
    for token in sent:
        for piece in {token, *token.split(".")} - {"", "a", "b", "c"}:
            assert piece not in log, piece[:20]


def http_status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
