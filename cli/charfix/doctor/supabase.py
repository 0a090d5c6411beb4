"""`doctor`'s checks over Supabase's HTTP APIs: the project answers, the tables and columns through
the OpenAPI description, write permission through a write that matches no row, the two buckets."""

from __future__ import annotations

from charfix.config import Settings
from charfix.doctor.checks import Checks, table_checks
from charfix.errors import CharfixError
from charfix.backends.http import error_fields
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET

NO_ROW = "00000000-0000-0000-0000-000000000000"
WRITTEN = ("jobs", "user_library", "characters")


def check_supabase(checks: Checks, settings: Settings, *, tables: bool, storage: bool) -> None:
    from charfix.backends.http import PUBLISHABLE_PREFIX, SECRET_PREFIX, Caller, connect, key_role

    try:
        supabase = connect(settings.supabase_url, settings.service_role_key)
    except CharfixError as exc:
        checks.add("Supabase project", "fail", exc.message, "check SUPABASE_URL (https://<project>.supabase.co)")
        return
    key = settings.service_role_key
    role = key_role(key)
    if key.startswith(SECRET_PREFIX):
        checks.add("Supabase key", "ok", "a secret key (sb_secret_…), which bypasses row-level security")
    elif key.startswith(PUBLISHABLE_PREFIX):
        checks.add("Supabase key", "fail", "a publishable key (sb_publishable_…): row-level security hides the "
                   "jobs and objects from it", "use the service_role key or an sb_secret_ key (Project settings > API keys)")
    elif role != "service_role":
        checks.add("Supabase key", "fail", f"the key's role is {role or 'unknown'}, not service_role",
                   "use the service role key (Project settings > API); row-level security hides other users' rows")
    else:
        checks.add("Supabase key", "ok", "service_role (from " + settings.origins.get("service_role_key", "?") + ")")
    caller = Caller(supabase, "Supabase")
    try:
        if tables:
            _tables(checks, supabase, caller)
        if storage:
            _buckets(checks, supabase, caller)
    finally:
        supabase.close()


def _tables(checks: Checks, supabase, caller) -> None:
    from charfix.repository.supabase import openapi_columns

    try:
        live = openapi_columns(supabase, caller)
    except CharfixError as exc:
        checks.add("Supabase REST", "fail", exc.message, "check SUPABASE_URL and the key")
        return
    checks.add("Supabase REST", "ok", "the API answers and describes its tables")
    table_checks(checks, live)
    for table in WRITTEN:
        if table in live:
            _may_write(checks, supabase, caller, table)
    checks.add("indexes", "warn", "not visible over the REST API",
               "run `charfix doctor` with SUPABASE_DB_URL set to see the index advice")


def _may_write(checks: Checks, supabase, caller, table: str) -> None:
    """A PATCH that matches no row: allowed or refused, and nothing changes either way."""
    url = f"{supabase.url}/rest/v1/{table}?id=eq.{NO_ROW}"
    headers = {**supabase.auth_headers(), "Prefer": "return=minimal", "Content-Type": "application/json"}
    _probe(checks, caller, f"table {table}", f"write permission on {table}",
           lambda: supabase.http.patch(url, json={"id": NO_ROW}, headers=headers),
           ok="an update that matches no row was accepted", fix="use the service role key")


def _buckets(checks: Checks, supabase, caller) -> None:
    for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
        url = f"{supabase.url}/storage/v1/bucket/{bucket}"
        _probe(checks, caller, f"bucket {bucket}", f"bucket {bucket}",
               lambda url=url: supabase.http.get(url, headers=supabase.auth_headers()),
               ok="found in Supabase Storage",
               fix="check that SUPABASE_URL is the app's project and the key its service role key")


def _probe(checks: Checks, caller, what: str, name: str, request, *, ok: str, fix: str) -> None:
    """One request, one line: ok on success, otherwise the HTTP status with the refusal's code and
    message from the body (Storage refuses with HTTP 400 and the real status in the body)."""
    try:
        response = caller.send(what, request)
    except CharfixError as exc:
        checks.add(name, "fail", exc.message)
        return
    if response.is_success:
        checks.add(name, "ok", ok)
        return
    code, message = error_fields(response)
    status = _body_status(response)
    detail = f"HTTP {response.status_code}" + (f" {code}" if code else "") + (f" (status {status})" if status else "")
    checks.add(name, "fail", detail + (f": {message}" if message else ""), fix)


def _body_status(response) -> str | None:
    """The real status Storage puts in its body (`statusCode`), when it differs from the HTTP one."""
    try:
        status = response.json().get("statusCode")
    except (ValueError, AttributeError):
        return None
    return str(status) if status is not None and str(status) != str(response.status_code) else None
