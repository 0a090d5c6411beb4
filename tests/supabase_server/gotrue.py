"""Supabase Auth's admin users listing, as GoTrue serves it behind the gateway.

`GET /auth/v1/admin/users?page=N&per_page=M`: users newest first, `{"users": [...], "aud": ...}`,
the total in `X-Total-Count`, the next and last pages in `Link` (GoTrue's addPaginationHeaders).
The gateway accepts the project's anon and service role keys as `apikey`; GoTrue then requires a
Bearer JWT whose role is an admin role (service_role): anon gets 403 `not_admin`, a bad token 403
`bad_jwt`, no token 401 `no_authorization`. Reads `auth.users (id, email, created_at)`.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode

import psycopg

from .keys import read_key
from .postgrest import Response

JSON_CT = "application/json; charset=utf-8"
DEFAULT_PER_PAGE = 50  # GoTrue's defaultPerPage
ADMIN_ROLES = ("service_role", "supabase_admin")


def _error(status: int, error_code: str, msg: str) -> Response:
    return Response(status, json.dumps({"code": status, "error_code": error_code, "msg": msg}).encode(),
                    {"Content-Type": JSON_CT})


class AuthAdminHandler:
    def __init__(self, dsn: str, jwt_secret: str) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret

    def gateway_accepts(self, apikey: str | None) -> bool:
        """The gateway lets through any key of the project (anon or service role)."""
        return apikey is not None and read_key(apikey, self.jwt_secret) is not None

    def handle(self, method: str, path: str, qs: str, headers) -> Response:
        if path.rstrip("/") != "admin/users":
            return _error(404, "not_found", "Not Found")
        if method != "GET":
            return _error(405, "method_not_allowed", "Method Not Allowed")
        denied = self._require_admin(headers.get("Authorization"))
        if denied is not None:
            return denied
        params = parse_qs(qs)
        try:
            page = int(params.get("page", ["1"])[0])
            per_page = int(params.get("per_page", [str(DEFAULT_PER_PAGE)])[0])
            if page < 0 or per_page < 0:
                raise ValueError("must not be negative")
            if per_page == 0:
                raise ValueError("per_page must be greater than 0")
        except ValueError as exc:
            return _error(400, "validation_failed", f"Bad Pagination Parameters: {exc}")
        page = max(page, 1)
        with psycopg.connect(self.dsn) as conn:
            total = conn.execute("select count(*) from auth.users").fetchone()[0]
            rows = conn.execute(
                "select id, email, created_at from auth.users order by created_at desc, id limit %s offset %s",
                (per_page, (page - 1) * per_page),
            ).fetchall()
        users = [_user(*row) for row in rows]
        body = json.dumps({"users": users, "aud": "authenticated"}).encode()
        return Response(200, body, {"Content-Type": JSON_CT, "Link": _link(params, page, per_page, total),
                                    "X-Total-Count": str(total)})

    def _require_admin(self, authorization: str | None) -> Response | None:
        if not authorization:
            return _error(401, "no_authorization", "This endpoint requires a Bearer token")
        scheme, _, token = authorization.partition(" ")
        claims = read_key(token.strip(), self.jwt_secret) if scheme.lower() == "bearer" else None
        if claims is None:
            return _error(403, "bad_jwt", "invalid JWT: unable to parse or verify signature, signature is invalid")
        if claims.get("role") not in ADMIN_ROLES:
            return _error(403, "not_admin", "User not allowed")
        return None


def _user(user_id, email, created_at) -> dict:
    stamp = created_at.isoformat() if created_at is not None else None
    return {"id": str(user_id), "aud": "authenticated", "role": "authenticated", "email": email or "",
            "phone": "", "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
            "identities": [], "created_at": stamp, "updated_at": stamp, "is_anonymous": False}


def _link(params: dict, page: int, per_page: int, total: int) -> str:
    """As GoTrue: rel="next" while pages remain, and always rel="last" (page 0 when there are none)."""
    pages = -(-total // per_page)
    query = {key: values[0] for key, values in params.items()}
    query["per_page"] = str(per_page)
    header = ""
    if pages > page:
        header += f'</admin/users?{urlencode({**query, "page": page + 1})}>; rel="next", '
    return header + f'</admin/users?{urlencode({**query, "page": pages})}>; rel="last"'
