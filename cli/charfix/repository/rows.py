"""Turning rows into models without letting one row stop the scan (docs/reliability.md, "Poisoned rows").

App users write these rows: a jsonb value may be nested a thousand levels deep or hold a number of
5,000 digits, a timestamp may be `infinity`, an array may hold a NULL. Each adapter hands its raw
rows here; a value that cannot be read becomes None (or its column's default) and the column is
named in the model's `unreadable`, so the diagnosis gives that job `unreadable_data` and the scan
goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, UTC
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
TABLES = {"Job": "jobs", "WorkspaceAsset": "workspace_assets", "Character": "characters", "LibraryItem": "user_library"}

MAX_JSON_DEPTH = 64  # the app's metadata is a few levels deep; deeper values are not read
MAX_JSON_BYTES = 1_000_000  # per value: a page of 2,000 jobs then stays within a couple of GB at worst
MAX_INT_DIGITS = 4_000  # Python refuses int() of more than 4,300 digits; such numbers stay text
# A job whose created_at cannot be read sorts after every other (Postgres orders infinity last).
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def db_time(at: datetime) -> datetime | str:
    """A time read from a row, as a statement parameter: END_OF_TIME stands for Postgres' infinity."""
    return "infinity" if at == END_OF_TIME else at


class Unreadable:
    """A value an adapter could not read; `why` says what was wrong with it."""

    __slots__ = ("why",)

    def __init__(self, why: str):
        self.why = why

    def __repr__(self) -> str:
        return f"Unreadable({self.why!r})"


def load_json(data: str | bytes | bytearray | memoryview | None) -> Any:
    """A JSON document, or Unreadable when it is too large, too deep or malformed. Never raises."""
    if data is None:
        return None
    if isinstance(data, memoryview):
        data = bytes(data)
    if len(data) > MAX_JSON_BYTES:
        return Unreadable(f"larger than {MAX_JSON_BYTES:,} bytes")
    try:
        value = json.loads(data, parse_int=_int)
    except RecursionError:
        return Unreadable(f"nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError as exc:
        return Unreadable(f"not valid JSON ({str(exc).splitlines()[0][:80]})")
    if _deeper_than(value, MAX_JSON_DEPTH):
        return Unreadable(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _int(text: str) -> int | str:
    return int(text) if len(text) <= MAX_INT_DIGITS else text


def _deeper_than(value: Any, limit: int) -> bool:
    """Without recursion: the check must not itself overflow the stack it protects."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def read_rows(model: type[M], rows: Iterable[dict[str, Any]]) -> list[M]:
    """Models for `rows`; a row whose id or owner cannot be read is left out (it can belong to no job)."""
    table = TABLES.get(model.__name__, model.__name__)
    found = []
    for row in rows:
        item = read_row(model, row, table)
        if item is not None:
            found.append(item)
    return found


def read_row(model: type[M], row: dict[str, Any], table: str) -> M | None:
    """The row as a model; each column that cannot be read is named in `unreadable` as
    `table.column: why` and holds NULL (or its default) instead."""
    bad = {k: v.why for k, v in row.items() if isinstance(v, Unreadable)}
    if not bad:
        try:
            return model.model_validate(row)
        except (ValidationError, ValueError, TypeError, RecursionError) as exc:
            bad = _failing_columns(exc, row)
    marks: dict[str, Any] = {"unreadable": tuple(sorted(f"{table}.{column}: {why}" for column, why in bad.items()))}
    if "created_at" in bad and table == "jobs":
        marks["created_at"] = END_OF_TIME
    # First as NULL (created_at then reads as long ago, models.Record), else the field's default.
    for fixed in ({**row, **dict.fromkeys(bad), **marks}, {**{k: v for k, v in row.items() if k not in bad}, **marks}):
        try:
            return model.model_validate(fixed)
        except (ValidationError, ValueError, TypeError, RecursionError):
            continue
    return None


def _failing_columns(exc: Exception, row: dict[str, Any]) -> dict[str, str]:
    if isinstance(exc, ValidationError):
        found: dict[str, str] = {}
        for error in exc.errors():
            column = str(error["loc"][0]) if error.get("loc") else None
            if column in row and column not in found:
                where = "".join(f"[{part}]" for part in error["loc"][1:])
                found[column] = f"{error['msg'].lower()}{' at ' + where if where else ''}"[:120]
        if found:
            return found
    # Nothing names a column (a recursion deep inside a value): every structured value is suspect.
    return {k: "could not be read" for k, v in row.items() if isinstance(v, dict | list)}
