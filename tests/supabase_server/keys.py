"""Keys for the test server: JWTs like Supabase's legacy keys (HS256) and the newer opaque keys.

A legacy key is a JWT whose payload names its role (`service_role`, `anon`, `authenticated`);
the servers verify its signature with the project's JWT secret. The newer keys are opaque strings
(`sb_secret_...`, `sb_publishable_...`) that the platform maps to the service_role and anon roles.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

DEFAULT_SECRET = "charfix-test-secret"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(secret: str, signing_input: str) -> str:
    return _b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())


def make_service_key(role: str = "service_role", secret: str = DEFAULT_SECRET,
                     ref: str = "localtest") -> str:
    """A JWT like Supabase's legacy ``service_role`` key (iss supabase, far expiry); `role` makes the
    anon or authenticated key instead, `secret` one signed for another project."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps({"iss": "supabase", "ref": ref, "role": role, "iat": 1700000000,
                               "exp": 4102444800}, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_sign(secret, f'{header}.{payload}')}"


def make_opaque_key(kind: str = "secret", secret: str = DEFAULT_SECRET) -> str:
    """A newer API key, `sb_secret_...` or `sb_publishable_...`, derived from the project's secret so
    that a server started with that secret knows it."""
    if kind not in ("secret", "publishable"):
        raise ValueError("kind is 'secret' or 'publishable'")
    return f"sb_{kind}_" + _sign(secret, f"opaque:{kind}")[:32]


class BadToken(Exception):
    """A token the servers refuse; `storage` and `rest` are the two servers' messages for it."""

    def __init__(self, storage: str, rest: str) -> None:
        super().__init__(storage)
        self.storage = storage
        self.rest = rest


def role_of(token: str, secret: str) -> str:
    """The role a token carries after the servers verify it (raises BadToken when they refuse it).
    Messages: jose's, as Storage shows them, and PostgREST 12's."""
    if token == make_opaque_key("secret", secret):
        return "service_role"
    if token == make_opaque_key("publishable", secret):
        return "anon"
    parts = token.split(".")
    if len(parts) != 3:
        raise BadToken("Invalid Compact JWS", f"Expected 3 parts in JWT; got {len(parts)}")
    if not hmac.compare_digest(_sign(secret, f"{parts[0]}.{parts[1]}"), parts[2]):
        raise BadToken("signature verification failed", "JWSError JWSInvalidSignature")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise BadToken("Invalid Compact JWS", "JWSError (CompactDecodeError Invalid number of parts)") from None
    role = payload.get("role") if isinstance(payload, dict) else None
    return role if isinstance(role, str) and role else "anon"


def read_key(token: str, secret: str = "charfix-test-secret") -> dict | None:
    """The claims of a key signed with `secret` (HS256), or None when it is not one."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(expected), signature):
            return None
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None
