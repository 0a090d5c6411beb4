"""Turn parsed PostgREST requests into psycopg ``sql.Composed`` queries.

Identifiers are checked against the live catalog and quoted with
``sql.Identifier``; every value goes through a named query parameter. Values
are passed as Python ``str`` which psycopg sends with the *unknown* type, so
Postgres coerces them to the column's type exactly as it does PostgREST's
``unknown`` literals (``'abc'`` against a uuid column fails with 22P02).
"""

from __future__ import annotations

import re

from psycopg import sql

from .catalog import PgrstError, Table
from .pgfilter import pg_array_literal
from .pgparse import Field, Filter, LogicTree, OrderTerm, SelectItem

OPS = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
    "like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*",
    "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>",
    "nxr": "&<", "nxl": "&>", "adj": "-|-", "isdistinct": "IS DISTINCT FROM",
}
FTS = {
    "fts": "to_tsquery", "plfts": "plainto_tsquery",
    "phfts": "phraseto_tsquery", "wfts": "websearch_to_tsquery",
}
IS_SQL = {
    "null": "IS NULL", "not_null": "IS NOT NULL", "true": "IS TRUE",
    "false": "IS FALSE", "unknown": "IS UNKNOWN",
}
_CAST_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*$")


class Q:
    """Collects named parameters while building a query."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.params: dict[str, object] = {}
        self.visible = True  # False: row-level security hides every row from this caller

    def param(self, value: object, cast: str | None = None) -> sql.Composable:
        name = f"p{len(self.params)}"
        self.params[name] = value
        ph = sql.Placeholder(name)
        if cast:
            return sql.SQL("{}::{}").format(ph, sql.SQL(cast))
        return ph

    @property
    def qualified(self) -> sql.Composable:
        return sql.Identifier(self.table.schema, self.table.name)

    def check_column(self, name: str) -> None:
        if name not in self.table.columns:
            raise PgrstError(
                400, "42703", f"column {self.table.name}.{name} does not exist"
            )

    def col(self, fld: Field) -> sql.Composable:
        self.check_column(fld.name)
        expr: sql.Composable = sql.Identifier(self.table.name, fld.name)
        for arrow, key, is_idx in fld.path:
            operand = self.param(int(key), "int") if is_idx else self.param(key, "text")
            expr = sql.SQL("({} {} {})").format(expr, sql.SQL(arrow), operand)
        return expr

    # -- select ---------------------------------------------------------
    def select_list(self, items: list[SelectItem]) -> sql.Composable:
        parts = []
        for it in items:
            if it.star:
                parts.append(sql.SQL("{}.*").format(sql.Identifier(self.table.name)))
                continue
            expr = self.col(it.field)
            if it.cast:
                if not _CAST_RE.match(it.cast):
                    raise PgrstError(400, "42704", f'type "{it.cast}" does not exist')
                expr = sql.SQL("CAST({} AS {})").format(expr, sql.SQL(it.cast))
            name = it.alias or it.field.out_name
            parts.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(name)))
        return sql.SQL(", ").join(parts)

    # -- where ----------------------------------------------------------
    def filter(self, f: Filter) -> sql.Composable:
        lhs = self.col(f.field)
        if f.op == "in":
            expr = sql.SQL("{} = ANY({})").format(lhs, self.param(pg_array_literal(f.value)))
        elif f.op == "is":
            expr = sql.SQL("{} {}").format(lhs, sql.SQL(IS_SQL[f.value]))
        elif f.op in FTS:
            q = self.param(f.value)
            if f.lang:
                q = sql.SQL("{}, {}").format(self.param(f.lang, "regconfig"), q)
            expr = sql.SQL("{} @@ {}({})").format(lhs, sql.SQL(FTS[f.op]), q)
        else:
            value = f.value
            if f.op in ("like", "ilike"):
                value = value.replace("*", "%")
            op = sql.SQL(OPS[f.op])
            if f.quant:
                expr = sql.SQL("{} {} {}({})").format(
                    lhs, op, sql.SQL(f.quant.upper()), self.param(value)
                )
            else:
                expr = sql.SQL("{} {} {}").format(lhs, op, self.param(value))
        if f.negate:
            expr = sql.SQL("NOT ({})").format(expr)
        return expr

    def logic(self, t: LogicTree) -> sql.Composable:
        parts = [
            self.logic(c) if isinstance(c, LogicTree) else self.filter(c)
            for c in t.children
        ]
        joined = sql.SQL(" AND " if t.op == "and" else " OR ").join(parts)
        expr = sql.SQL("({})").format(joined)
        if t.negate:
            expr = sql.SQL("NOT {}").format(expr)
        return expr

    def where(self, filters: list[Filter], trees: list[LogicTree]) -> sql.Composable:
        conds = [self.filter(f) for f in filters] + [self.logic(t) for t in trees]
        if not self.visible:
            conds.insert(0, sql.SQL("FALSE"))
        if not conds:
            return sql.SQL("TRUE")
        return sql.SQL(" AND ").join(sql.SQL("({})").format(c) for c in conds)

    def order_by(self, terms: list[OrderTerm]) -> sql.Composable:
        if not terms:
            return sql.SQL("")
        parts = []
        for t in terms:
            piece = self.col(t.field)
            if t.direction:
                piece = sql.SQL("{} {}").format(piece, sql.SQL(t.direction.upper()))
            if t.nulls:
                piece = sql.SQL("{} NULLS {}").format(piece, sql.SQL(t.nulls.upper()))
            parts.append(piece)
        return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(parts)

    def limit_offset(self, limit: int | None, offset: int) -> sql.Composable:
        out = sql.SQL("")
        if limit is not None:
            out += sql.SQL(" LIMIT {}").format(self.param(limit))
        if offset:
            out += sql.SQL(" OFFSET {}").format(self.param(offset))
        return out

    def wrap_json(self, source: sql.Composable, select: sql.Composable, strip_nulls: bool) -> sql.Composable:
        """``SELECT json_agg text, first element text, row count`` over a source."""
        row = sql.SQL("json_strip_nulls(row_to_json(_pgrst_t))") if strip_nulls else sql.SQL("_pgrst_t")
        return sql.SQL(
            "SELECT coalesce(json_agg({row}), '[]')::text, (json_agg({row}) -> 0)::text, "
            "count(*) FROM (SELECT {sel} FROM {src}) _pgrst_t"
        ).format(row=row, sel=select, src=source)
