"""Live catalog lookups and PostgREST-shaped errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import psycopg


class PgrstError(Exception):
    """An error rendered as PostgREST's ``{code, details, hint, message}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: object = None,
        hint: object = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = headers or {}

    def body(self) -> bytes:
        return json.dumps(
            {
                "code": self.code,
                "details": self.details,
                "hint": self.hint,
                "message": self.message,
            }
        ).encode()


def pg_status(sqlstate: str, message: str) -> int:
    """HTTP status for a Postgres SQLSTATE, as PostgREST's ``mapSQLtoHTTP``."""
    c = sqlstate or ""
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "53400": 500,
        "57P01": 503,
        "P0001": 400,
        "42P01": 404,
        "42P17": 500,
        "42501": 403,
    }
    if c in exact:
        return exact[c]
    if c == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if c == "42883":
        return 404
    prefixes = {
        "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403,
        "2D": 500, "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503,
        "54": 500, "55": 500, "57": 500, "58": 500, "F0": 500, "HV": 500,
        "P0": 500, "XX": 500,
    }
    return prefixes.get(c[:2], 400)


def from_pg_error(exc: psycopg.Error) -> PgrstError:
    if not exc.sqlstate:  # could not connect / connection lost: PostgREST's PGRST000
        return PgrstError(503, "PGRST000", "Database connection error. Retrying the connection.", str(exc))
    diag = exc.diag
    message = diag.message_primary or str(exc)
    code = exc.sqlstate or "XX000"
    return PgrstError(
        pg_status(code, message), code, message, diag.message_detail, diag.message_hint
    )


@dataclass
class Column:
    name: str
    type: str  # format_type(atttypid, NULL), e.g. "timestamp with time zone", "text[]"
    nullable: bool
    default: str | None
    max_length: int | None = None
    description: str | None = None


@dataclass
class Table:
    schema: str
    name: str
    kind: str
    columns: dict[str, Column] = field(default_factory=dict)
    pk: list[str] = field(default_factory=list)
    description: str | None = None


_TABLES_SQL = """
SELECT c.oid, c.relname, c.relkind, obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND (%(name)s::text IS NULL OR c.relname = %(name)s::text)
ORDER BY c.relname
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, NULL), NOT a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid),
       information_schema._pg_char_max_length(a.atttypid, a.atttypmod),
       col_description(a.attrelid, a.attnum)
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_PK_SQL = """
SELECT i.indrelid, a.attname
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indisprimary AND i.indrelid = ANY(%(oids)s)
ORDER BY i.indrelid, array_position(i.indkey::int2[], a.attnum)
"""


def load_tables(conn: psycopg.Connection, schema: str, name: str | None = None) -> dict[str, Table]:
    """Tables/views of ``schema`` (or only ``name``), with columns and primary keys."""
    rows = conn.execute(_TABLES_SQL, {"schema": schema, "name": name}).fetchall()
    by_oid: dict[int, Table] = {}
    for oid, relname, relkind, desc in rows:
        by_oid[oid] = Table(schema, relname, relkind, description=desc)
    if not by_oid:
        return {}
    oids = list(by_oid)
    for relid, att, typ, nullable, default, maxlen, desc in conn.execute(
        _COLUMNS_SQL, {"oids": oids}
    ):
        by_oid[relid].columns[att] = Column(att, typ, nullable, default, maxlen, desc)
    for relid, att in conn.execute(_PK_SQL, {"oids": oids}):
        by_oid[relid].pk.append(att)
    return {t.name: t for t in by_oid.values()}


def get_table(conn: psycopg.Connection, schema: str, name: str) -> Table:
    tables = load_tables(conn, schema, name)
    if name not in tables:
        raise PgrstError(
            404,
            "PGRST205",
            f"Could not find the table '{schema}.{name}' in the schema cache",
        )
    return tables[name]
