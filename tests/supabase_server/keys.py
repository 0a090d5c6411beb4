"""JWT-shaped service keys for the test server (signed with HS256)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_service_key(role: str = "service_role", secret: str = "charfix-test-secret",
                     ref: str = "localtest") -> str:
    """A JWT like Supabase's legacy ``service_role`` key (iss supabase, far expiry)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps({"iss": "supabase", "ref": ref, "role": role, "iat": 1700000000,
                               "exp": 4102444800}, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


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
