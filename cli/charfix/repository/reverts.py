"""The writes of `charfix undo`, over Postgres and over REST: put columns back, delete a row, each only
while the row still holds exactly what the undone run wrote (a conditional write, as repairs are), and
only on a row of the given owner (docs/audit.md, "Undo")."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol
from uuid import UUID

# The columns undo may compare or write, and their types: nothing else is ever touched.
COLUMN_TYPES: dict[str, dict[str, str]] = {
    "jobs": {"status": "text", "completed_at": "timestamptz", "error_message": "text", "metadata": "jsonb"},
    "characters": {"image_url": "text", "reference_image_url": "text", "seed_locked": "integer"},
    "user_library": {
        "storage_path": "text", "tags": "text[]", "content_category": "text", "roleplay_metadata": "jsonb",
        "character_id": "uuid", "output_type": "text", "generation_metadata": "jsonb", "file_size_bytes": "bigint",
        "mime_type": "text", "asset_type": "text",
    },
}


class Reverter(Protocol):
    def restore(self, table: str, row_id: UUID, owner: UUID, *, expected: dict[str, Any],
                values: dict[str, Any]) -> bool:
        """Set `values` where the row is the owner's and holds `expected`; False when it matched nothing."""
        ...

    def holds(self, table: str, row_id: UUID, owner: UUID | None, values: dict[str, Any]) -> bool:
        """Whether the row exists, is the owner's (any owner: None) and holds `values`."""
        ...

    def delete(self, table: str, row_id: UUID, owner: UUID, *, expected: dict[str, Any]) -> bool:
        """Delete the row where it is the owner's and holds `expected`; False when it matched nothing."""
        ...

    def exists(self, table: str, row_id: UUID) -> bool: ...


def checked(table: str, columns: Iterable[str]) -> None:
    known = COLUMN_TYPES.get(table, {})
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"undo does not write {table}.{', '.join(unknown)}")


class PostgresReverter:
    def __init__(self, repository: Any):
        self.repository = repository

    def restore(self, table: str, row_id: UUID, owner: UUID, *, expected: dict[str, Any],
                values: dict[str, Any]) -> bool:
        from psycopg import sql

        checked(table, [*expected, *values])
        sets = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), _param(table, c, f"v_{c}"))
                                  for c in values)
        where, params = _where(table, row_id, owner, expected)
        statement = sql.SQL("update {} set {} where {} returning id").format(sql.Identifier(table), sets, where)
        params.update({f"v_{c}": _value(table, c, v) for c, v in values.items()})
        return self._any(statement, params)

    def holds(self, table: str, row_id: UUID, owner: UUID | None, values: dict[str, Any]) -> bool:
        from psycopg import sql

        checked(table, values)
        where, params = _where(table, row_id, owner, values)
        return self._any(sql.SQL("select id from {} where {}").format(sql.Identifier(table), where), params)

    def delete(self, table: str, row_id: UUID, owner: UUID, *, expected: dict[str, Any]) -> bool:
        from psycopg import sql

        checked(table, expected)
        where, params = _where(table, row_id, owner, expected)
        return self._any(sql.SQL("delete from {} where {} returning id").format(sql.Identifier(table), where), params)

    def exists(self, table: str, row_id: UUID) -> bool:
        from psycopg import sql

        checked(table, [])
        return self._any(sql.SQL("select id from {} where id = %(id)s").format(sql.Identifier(table)), {"id": row_id})

    def _any(self, statement: Any, params: dict[str, Any]) -> bool:
        repo = self.repository
        with repo._errors():
            repo.queries += 1
            return repo.conn.execute(statement, params).fetchone() is not None


def _param(table: str, column: str, name: str) -> Any:
    from psycopg import sql

    return sql.SQL("{}::{}").format(sql.Placeholder(name), sql.SQL(COLUMN_TYPES[table][column]))


def _where(table: str, row_id: UUID, owner: UUID | None, expected: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from psycopg import sql

    terms: list[Any] = [sql.SQL("id = %(id)s")]
    if owner is not None:
        terms.append(sql.SQL("user_id = %(owner)s"))
    params: dict[str, Any] = {"id": row_id, "owner": owner}
    for column, value in expected.items():
        terms.append(sql.SQL("{} is not distinct from {}").format(sql.Identifier(column),
                                                                   _param(table, column, f"e_{column}")))
        params[f"e_{column}"] = _value(table, column, value)
    return sql.SQL(" and ").join(terms), params


def _value(table: str, column: str, value: Any) -> Any:
    if value is None:
        return None
    kind = COLUMN_TYPES[table][column]
    if kind == "jsonb":
        from psycopg.types.json import Jsonb

        return Jsonb(value)
    if kind == "text[]":
        return [str(v) for v in value] if isinstance(value, list) else value
    if kind in ("integer", "bigint"):
        return value if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return str(value)


class SupabaseReverter:
    """Over REST: every write is a PATCH or DELETE whose filters are the condition."""

    def __init__(self, repository: Any):
        self.repository = repository

    def restore(self, table: str, row_id: UUID, owner: UUID, *, expected: dict[str, Any],
                values: dict[str, Any]) -> bool:
        checked(table, [*expected, *values])
        return bool(self.repository._patch(table, values, _filters(table, row_id, owner, expected)))

    def holds(self, table: str, row_id: UUID, owner: UUID | None, values: dict[str, Any]) -> bool:
        checked(table, values)
        builder = self.repository._table(table).select("id")
        for column, operator, value in _filters(table, row_id, owner, values):
            builder.filter(column, operator, value)
        return bool(self.repository._json(table, builder))

    def delete(self, table: str, row_id: UUID, owner: UUID, *, expected: dict[str, Any]) -> bool:
        import httpx

        checked(table, expected)
        repo = self.repository

        def send() -> httpx.Response:
            builder = repo._table(table).delete()
            for column, operator, value in _filters(table, row_id, owner, expected):
                builder.filter(column, operator, value)
            response: httpx.Response = builder.request.send(httpx.Headers())
            return response

        # A conditional DELETE is safe to repeat: once applied, the repeat matches nothing.
        return bool(repo._check(f"table {table}", repo.caller.send(f"table {table}", send)))

    def exists(self, table: str, row_id: UUID) -> bool:
        checked(table, [])
        builder = self.repository._table(table).select("id").filter("id", "eq", str(row_id))
        return bool(self.repository._json(table, builder))


def _filters(table: str, row_id: UUID, owner: UUID | None, expected: dict[str, Any]) -> list[tuple[str, str, str]]:
    from charfix.http import array_literal

    found = [("id", "eq", str(row_id))] + ([("user_id", "eq", str(owner))] if owner is not None else [])
    for column, value in expected.items():
        kind = COLUMN_TYPES[table][column]
        if value is None:
            found.append((column, "is", "null"))
        elif kind == "jsonb":
            found.append((column, "eq", json.dumps(value, ensure_ascii=False, separators=(",", ":"))))
        elif kind == "text[]":
            found.append((column, "eq", array_literal([str(v) for v in value])))
        else:
            found.append((column, "eq", str(value)))
    return found


def reverter_for(repository: Any) -> Reverter:
    return PostgresReverter(repository) if repository.connection() is not None else SupabaseReverter(repository)
