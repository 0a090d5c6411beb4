"""`doctor`'s checks over Supabase's HTTP APIs: the key, the tables and columns through the OpenAPI
description, write permission through a write that matches no row. The client comes from the
bootstrap, and every request goes through the adapters' modules (no HTTP here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charfix.config import Settings
from charfix.doctor.checks import Checks, table_checks
from charfix.errors import CharfixError

if TYPE_CHECKING:
    from charfix.http import Supabase

WRITTEN = ("jobs", "user_library", "characters")


def check_key(checks: Checks, settings: Settings, key: str) -> None:
    from charfix.http import PUBLISHABLE_PREFIX, SECRET_PREFIX, key_role

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


def connect(checks: Checks, url: str, key: str) -> Supabase | None:
    from charfix.backends.bootstrap import open_supabase

    try:
        return open_supabase(url, key)
    except CharfixError as exc:
        checks.add("Supabase project", "fail", exc.message, "check SUPABASE_URL (https://<project>.supabase.co)")
        return None


def check_rest_tables(checks: Checks, supabase: Supabase) -> None:
    from charfix.http import Caller
    from charfix.repository.inspection import check_rest_write, rest_columns

    caller = Caller(supabase, "Supabase REST")
    try:
        live = rest_columns(caller)
    except CharfixError as exc:
        checks.add("Supabase REST", "fail", exc.message, "check SUPABASE_URL and the key")
        return
    checks.add("Supabase REST", "ok", "the API answers and describes its tables")
    table_checks(checks, live)
    for table in WRITTEN:
        if table in live:
            try:
                check_rest_write(caller, table)
            except CharfixError as exc:
                checks.add(f"write permission on {table}", "fail", exc.message, "use the service role key")
            else:
                checks.add(f"write permission on {table}", "ok", "an update that matches no row was accepted")
    checks.add("indexes", "warn", "not visible over the REST API",
               "run `charfix doctor` with SUPABASE_DB_URL set to see the index advice")
