"""What `doctor` asks the tables: over Postgres the live columns, the privileges and the helpful
indexes; over Supabase's REST API the columns of the OpenAPI description and whether a write would
be allowed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from charfix.errors import BackendError
from charfix.repository.base import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

if TYPE_CHECKING:
    from charfix.http import Caller

NO_ROW = "00000000-0000-0000-0000-000000000000"

PORTRAIT_INDEX = (
    "create index concurrently if not exists charfix_jobs_portrait on jobs (created_at, id) "
    "where metadata->>'destination' = 'character_portrait' or metadata->>'source' = 'character_portrait';"
)
# The app's portrait_count trigger counts a character's rows in user_library on every portrait row
# inserted or moved (docs/domain.md section 6); without an index on character_id each count reads the
# whole table, so a repair's insert slows as the library grows (docs/performance.md).
LIBRARY_CHARACTER_INDEX = (
    "create index concurrently if not exists charfix_user_library_character on user_library (character_id);"
)
NO_LIST_INDEX = "none that list-stuck can use (it still works, more slowly)"
# (check name, table, the column it needs, whether an index definition serves, the statement, why)
SUGGESTED = (
    ("index on jobs", "jobs", None, lambda defs: any("character_portrait" in d for d in defs), PORTRAIT_INDEX,
     NO_LIST_INDEX),
    ("index on workspace_assets", "workspace_assets", None, lambda defs: any("(job_id" in d for d in defs),
     "create index concurrently if not exists charfix_workspace_assets_job on workspace_assets (job_id);",
     NO_LIST_INDEX),
    ("index on user_library", "user_library", None, lambda defs: any("(user_id" in d for d in defs),
     "create index concurrently if not exists charfix_user_library_user on user_library (user_id);", NO_LIST_INDEX),
    ("index on characters", "characters", None, lambda defs: any("(user_id" in d for d in defs),
     "create index concurrently if not exists charfix_characters_user on characters (user_id);", NO_LIST_INDEX),
    ("index on user_library.character_id", "user_library", "character_id",
     lambda defs: any("(character_id" in d for d in defs), LIBRARY_CHARACTER_INDEX,
     "none: the app's portrait_count trigger reads every library row for each portrait row a repair inserts"),
)
WRITES = {"jobs": "UPDATE", "user_library": "INSERT, UPDATE", "characters": "UPDATE", "workspace_assets": None}


@dataclass
class DatabaseReport:
    columns: dict[str, set[str]]
    privileges: dict[str, dict[str, bool]]
    indexes: dict[str, list[str]]


def inspect_database(url: str, *, connect_timeout: int = 10) -> DatabaseReport:
    try:
        with psycopg.connect(url, connect_timeout=connect_timeout, autocommit=True) as conn:
            return DatabaseReport(_columns(conn), _privileges(conn), _indexes(conn))
    except psycopg.ProgrammingError as exc:
        raise BackendError("the database URL is not a valid connection string") from exc
    except psycopg.Error as exc:
        raise BackendError(f"cannot inspect the database: {str(exc).strip().splitlines()[0]}") from exc


def _columns(conn) -> dict[str, set[str]]:
    rows = conn.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'public' and table_name = any(%s)", (list(REQUIRED_COLUMNS),)).fetchall()
    live: dict[str, set[str]] = {}
    for table, column in rows:
        live.setdefault(table, set()).add(column)
    return live


def _privileges(conn) -> dict[str, dict[str, bool]]:
    found = {}
    for table in REQUIRED_COLUMNS:
        exists = conn.execute("select to_regclass(%s) is not null", (f"public.{table}",)).fetchone()[0]
        if not exists:
            continue
        found[table] = {
            privilege: conn.execute("select has_table_privilege(%s, %s)", (f"public.{table}", privilege)).fetchone()[0]
            for privilege in ("SELECT", "INSERT", "UPDATE")
        }
    return found


def _indexes(conn) -> dict[str, list[str]]:
    rows = conn.execute("select tablename, indexdef from pg_indexes where schemaname = 'public' and tablename = any(%s)",
                        (list(REQUIRED_COLUMNS),)).fetchall()
    found: dict[str, list[str]] = {}
    for table, definition in rows:
        found.setdefault(table, []).append(definition)
    return found


def missing_columns(live: dict[str, set[str]]) -> dict[str, list[str]]:
    return {t: [c for c in cols if c not in live.get(t, set())] for t, cols in REQUIRED_COLUMNS.items()
            if any(c not in live.get(t, set()) for c in cols)}


def optional_present(live: dict[str, set[str]], table: str) -> dict[str, bool]:
    return {c: c in live.get(table, set()) for c in OPTIONAL_COLUMNS[table]}


def rest_columns(caller: Caller) -> dict[str, set[str]]:
    from charfix.repository.supabase import openapi_columns

    return openapi_columns(caller.supabase, caller)


def check_rest_write(caller: Caller, table: str) -> None:
    """A PATCH that matches no row: accepted, or refused with the API's words; nothing changes either way."""
    supabase = caller.supabase
    url = f"{supabase.url}/rest/v1/{table}?id=eq.{NO_ROW}"
    headers = {**supabase.auth_headers(), "Prefer": "return=minimal", "Content-Type": "application/json"}
    response = caller.send(f"table {table}", lambda: supabase.http.patch(url, json={"id": NO_ROW}, headers=headers))
    if not response.is_success:
        raise caller.fail(f"write permission on {table}", response)
