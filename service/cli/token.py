"""`deals token`: an HS256 token signed with AUTH_JWT_SECRET, for development and load tests.

PyJWT and service.api.auth (Litestar, redis) are imported only when the
command runs: building the `deals` parser must stay cheap for `deals load`,
whose 50,000-row goal counts process start.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import TYPE_CHECKING

from service.cli.common import say

if TYPE_CHECKING:
    from service.settings import Settings

SCOPES_HELP = "deals:read, deals:write, deals:import"  # service.api.auth.SCOPES (tested)


def mint(secret: str, scopes: list[str], *, ttl: int, sub: str, aud: str | None, now: float) -> str:
    """An HS256 JWT with these scopes, valid from now for ttl seconds."""
    import jwt

    claims: dict[str, object] = {
        "sub": sub,
        "scope": " ".join(scopes),
        "iat": int(now),
        "exp": int(now) + ttl,
        "jti": uuid.uuid4().hex,
    }
    if aud is not None:
        claims["aud"] = aud
    return jwt.encode(claims, secret, algorithm="HS256")


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from service.api.auth import SCOPES

    if settings.auth_jwt_secret is None:
        say("error: AUTH_JWT_SECRET is not set: deals token signs with it (HS256)")
        return 2
    scopes = args.scope.split()
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if not scopes or unknown:
        say(f"error: --scope takes {', '.join(SCOPES)} (space-separated), not {args.scope!r}")
        return 2
    if args.ttl < 1:
        say("error: --ttl must be >= 1 second")
        return 2
    aud = args.aud if args.aud is not None else settings.auth_jwt_audience
    print(
        mint(settings.auth_jwt_secret, scopes, ttl=args.ttl, sub=args.sub, aud=aud, now=time.time())
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "token",
        help="print an HS256 bearer token signed with AUTH_JWT_SECRET (development, load tests)",
    )
    parser.add_argument(
        "--scope",
        required=True,
        help=f'space-separated scopes, e.g. "deals:read deals:write" (of {SCOPES_HELP})',
    )
    parser.add_argument("--ttl", type=int, default=3600, help="seconds it stays valid (3600)")
    parser.add_argument("--sub", default="deals-cli", help="the subject (default deals-cli)")
    parser.add_argument("--aud", help="the audience (default AUTH_JWT_AUDIENCE when set)")
    parser.set_defaults(handler=cmd_token)
