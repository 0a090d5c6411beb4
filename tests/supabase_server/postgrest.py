"""PostgREST subset: GET/HEAD/POST/PATCH/DELETE on /rest/v1/{table}."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl

import psycopg
from psycopg import sql

from .catalog import PgrstError, from_pg_error, get_table
from .pgfilter import parse_columns, parse_filter, parse_logic, parse_order
from .pgparse import EmbedError, QPError, SelectItem, parse_select
from .sqlbuild import Q

JSON_CT = "application/json; charset=utf-8"
OBJECT_CT = "application/vnd.pgrst.object+json; charset=utf-8"
RESERVED = {"select", "columns", "on_conflict"}
RESERVED_EMBEDDABLE = {"order", "limit", "offset", "and", "or"}


class Response:
    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


def error_response(err: PgrstError) -> Response:
    headers = {"Content-Type": JSON_CT, "Proxy-Status": f"PostgREST; error={err.code}"}
    headers.update(err.headers)
    return Response(err.status, err.body(), headers)


def parse_prefer(values: list[str]) -> dict[str, str]:
    prefs: dict[str, str] = {}
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if "=" in item:
                k, _, val = item.partition("=")
                prefs.setdefault(k.strip(), val.strip())
    return prefs


def parse_accept(accept: str | None) -> tuple[bool, bool]:
    """Return (single_object, strip_nulls); raise PGRST107 for other media types."""
    if not accept:
        return False, False
    offered = []
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        mt = bits[0].lower()
        params = {b.split("=", 1)[0].strip(): b.split("=", 1)[-1].strip() for b in bits[1:] if "=" in b}
        offered.append(mt)
        strip = params.get("nulls") == "stripped"
        if mt in ("application/vnd.pgrst.object+json", "application/vnd.pgrst.object"):
            return True, strip
        if mt in ("application/json", "*/*", "application/*",
                  "application/vnd.pgrst.array+json", "application/vnd.pgrst.array"):
            return False, strip
    raise PgrstError(406, "PGRST107", "None of these media types are available: " + ", ".join(offered))


def _content_range(lower: int, upper: int, total: int | None) -> str:
    rng = f"{lower}-{upper}" if total != 0 and lower <= upper else "*"
    return f"{rng}/{'*' if total is None else total}"


class RequestSpec:
    """Everything parsed out of the query string, validated against the table."""

    def __init__(self, query_string: str) -> None:
        pairs = parse_qsl(query_string, keep_blank_values=True)
        self.select_text = "*"
        self.columns: list[str] | None = None
        self.on_conflict: list[str] | None = None
        self.filters = []
        self.trees = []
        self.order = []
        limit_text = offset_text = None
        order_pairs, logic_pairs, filter_pairs = [], [], []
        for k, v in pairs:
            last = k.split(".")[-1]
            if k == "select":
                self.select_text = v
            elif k == "columns":
                self.columns = parse_columns(v) if v else None
            elif k == "on_conflict":
                self.on_conflict = parse_columns(v, "on_conflict") if v else None
            elif last in RESERVED_EMBEDDABLE:
                if k != last and not (last in ("and", "or") and k in ("not.and", "not.or")):
                    raise PgrstError(
                        400, "PGRST108",
                        f"'{k.split('.')[0]}' is not an embedded resource in this request",
                        hint=f"Verify that '{k.split('.')[0]}' is included in the 'select' query parameter.",
                    )
                if last == "order":
                    order_pairs.append(v)
                elif last == "limit":
                    limit_text = v
                elif last == "offset":
                    offset_text = v
                else:
                    logic_pairs.append((k, v))
            else:
                filter_pairs.append((k, v))
        for v in order_pairs:
            self.order.extend(parse_order(v))
        for k, v in logic_pairs:
            self.trees.append(parse_logic(k, v))
        self.select: list[SelectItem] = parse_select(self.select_text)
        for k, v in filter_pairs:
            self.filters.append(parse_filter(k, v))
        self.limit = _read_int(limit_text)
        self.offset = _read_int(offset_text) or 0
        if self.limit is not None and self.limit < 0:
            raise PgrstError(416, "PGRST103", "Requested range not satisfiable",
                             "Limit should be greater than or equal to zero.")

    def apply_range_header(self, header: str | None) -> None:
        """Intersect the ``Range: a-b`` header with limit/offset (GET only)."""

        if not header:
            return
        m = re.match(r"^([0-9]+)-([0-9]*)$", header.strip())
        if not m:
            return
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else None
        if hi is not None and lo > hi:
            raise PgrstError(416, "PGRST103", "Requested range not satisfiable",
                             "The lower boundary must be lower than or equal to the upper boundary in the Range header.")
        if self.limit == 0:
            return
        q_lo = self.offset
        q_hi = None if self.limit is None else self.offset + self.limit - 1
        new_lo = max(lo, q_lo)
        highs = [h for h in (hi, q_hi) if h is not None]
        new_hi = min(highs) if highs else None
        if new_hi is not None and new_hi < new_lo:  # PostgREST reports this case as NegativeLimit
            raise PgrstError(416, "PGRST103", "Requested range not satisfiable",
                             "Limit should be greater than or equal to zero.")
        self.offset = new_lo
        self.limit = None if new_hi is None else new_hi - new_lo + 1


def _read_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None  # PostgREST's readMaybe: unparsable limit/offset is ignored


class PostgrestHandler:
    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        # Idle connections, reused as PostgREST's pool does: four charfix processes racing send
        # thousands of requests, and a connection per request would dominate the test's time.
        self._idle: list[psycopg.Connection] = []
        self._idle_lock = threading.Lock()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = psycopg.connect(self.dsn, autocommit=False)
        try:
            yield conn
        finally:
            if conn.broken or conn.closed:
                conn.close()
            else:
                conn.rollback()  # whatever the request left open ends here
                with self._idle_lock:
                    self._idle.append(conn)

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def handle(self, method: str, table: str, query_string: str, headers, body: bytes,
               role: str = "service_role") -> Response:
        try:
            return self._handle(method, table, query_string, headers, body, role)
        except PgrstError as err:
            return error_response(err)
        except QPError as err:
            return error_response(PgrstError(400, "PGRST100", err.message, err.details))
        except EmbedError as err:
            return error_response(self._embed_error(err, table))
        except psycopg.Error as err:
            return error_response(from_pg_error(err))

    def _embed_error(self, err: EmbedError, table: str) -> PgrstError:
        if err.kind == "aggregate":
            return PgrstError(400, "PGRST123", "Use of aggregate functions is not allowed")
        if err.kind == "not_embedded":
            return PgrstError(
                400, "PGRST108", f"'{err.name}' is not an embedded resource in this request",
                hint=f"Verify that '{err.name}' is included in the 'select' query parameter.")
        return PgrstError(
            400, "PGRST200",
            f"Could not find a relationship between '{table}' and '{err.name}' in the schema cache",
            f"Searched for a foreign key relationship between '{table}' and '{err.name}' "
            f"in the schema '{self.schema}', but no matches were found.")

    def check_profile(self, method: str, headers) -> None:
        name = "Accept-Profile" if method in ("GET", "HEAD") else "Content-Profile"
        prof = headers.get(name)
        if prof is not None and prof != self.schema:
            raise PgrstError(406, "PGRST106", f"Invalid schema: {prof}",
                             hint=f"Only the following schemas are exposed: {self.schema}")

    def _handle(self, method, table_name, query_string, headers, body, role="service_role") -> Response:
        if method not in ("GET", "HEAD", "POST", "PATCH", "DELETE"):
            raise PgrstError(405, "PGRST117", f"Unsupported HTTP method: {method}")
        self.check_profile(method, headers)
        single, strip_nulls = parse_accept(headers.get("Accept"))
        prefs = parse_prefer(headers.getlist("Prefer") if hasattr(headers, "getlist") else [headers.get("Prefer", "")])
        with self._connection() as conn:
            table = get_table(conn, self.schema, table_name)
            spec = RequestSpec(query_string)
            if method == "GET":
                spec.apply_range_header(headers.get("Range"))
            q = Q(table)
            # The app's tables have row-level security with no policy for anon or authenticated
            # callers on other users' rows: such a key reads and changes zero rows, and inserts fail.
            q.visible = role == "service_role"
            if method == "POST" and not q.visible:
                raise PgrstError(403, "42501",
                                 f'new row violates row-level security policy for table "{table_name}"')
            if method in ("GET", "HEAD"):
                resp = self._read(conn, q, spec, prefs, single, strip_nulls)
                if method == "HEAD":
                    resp.body = b""
                return resp
            payload = self._parse_body(headers, body, method)
            resp = self._write(conn, q, spec, prefs, single, strip_nulls, method, payload)
            conn.commit()
            return resp

    # -- reads ------------------------------------------------------------
    def _read(self, conn, q: Q, spec: RequestSpec, prefs, single, strip_nulls) -> Response:
        where = q.where(spec.filters, spec.trees)
        source = sql.SQL("{} WHERE {}{}{}").format(
            q.qualified, where, q.order_by(spec.order), q.limit_offset(spec.limit, spec.offset))
        query = q.wrap_json(source, q.select_list(spec.select), strip_nulls)
        agg, first, n = conn.execute(query, q.params).fetchone()
        total = None
        if prefs.get("count") in ("exact", "planned", "estimated"):
            cq = Q(q.table)
            cq.visible = q.visible
            total = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                    cq.qualified, cq.where(spec.filters, spec.trees)), cq.params).fetchone()[0]
        lower = spec.offset
        upper = lower + n - 1
        crange = _content_range(lower, upper, total)
        status = 200
        if total is not None:
            if lower > total:
                raise PgrstError(416, "PGRST103", "Requested range not satisfiable",
                                 f"An offset of {lower} was requested, but there are only {total} rows.",
                                 headers={"Content-Range": f"*/{total}"})
            if (1 + upper - lower) < total:
                status = 206
        headers = {"Content-Range": crange}
        if single:
            if n != 1:
                raise PgrstError(406, "PGRST116", "Cannot coerce the result to a single JSON object",
                                 f"The result contains {n} rows")
            headers["Content-Type"] = OBJECT_CT
            return Response(status, first.encode(), headers)
        headers["Content-Type"] = JSON_CT
        return Response(status, agg.encode(), headers)

    # -- writes -----------------------------------------------------------
    def _parse_body(self, headers, body: bytes, method: str):
        if method == "DELETE":
            return None
        ct = (headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ct not in ("application/json", "application/vnd.pgrst.object+json"):
            raise PgrstError(415, "PGRST107", f"None of these media types are available: {ct}")
        try:
            payload = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        if payload is None or not isinstance(payload, (dict, list)):
            raise PgrstError(400, "PGRST102", "Empty or invalid json")
        if method == "PATCH" and not isinstance(payload, dict):
            raise PgrstError(400, "PGRST102", "Empty or invalid json")
        return payload

    def _payload_columns(self, q: Q, spec: RequestSpec, rows: list) -> list[str]:
        if any(not isinstance(r, dict) for r in rows):
            raise PgrstError(400, "PGRST102", "All object keys must match")
        if spec.columns is not None:
            cols = spec.columns
        else:
            keysets = [set(r) for r in rows]
            if keysets and any(k != keysets[0] for k in keysets):
                raise PgrstError(400, "PGRST102", "All object keys must match")
            cols = list(rows[0]) if rows else []
        for c in cols:
            if c not in q.table.columns:
                raise PgrstError(400, "PGRST204",
                                 f"Could not find the '{c}' column of '{q.table.name}' in the schema cache")
        return cols

    def _mutation_where(self, q: Q, spec: RequestSpec, verb: str) -> sql.Composable:
        if not spec.filters and not spec.trees and spec.limit is None:
            raise PgrstError(400, "21000", f"{verb} requires a WHERE clause")
        where = q.where(spec.filters, spec.trees)
        if spec.limit is not None or spec.offset:
            inner = sql.SQL("SELECT ctid FROM {} WHERE {}{}{}").format(
                q.qualified, where, q.order_by(spec.order), q.limit_offset(spec.limit, spec.offset))
            where = sql.SQL("({}) AND {} = ANY(ARRAY({}))").format(
                where, sql.Identifier(q.table.name, "ctid"), inner)
        return where

    def _write(self, conn, q: Q, spec, prefs, single, strip_nulls, method, payload) -> Response:
        t = q.table
        qt = q.qualified
        if method == "POST":
            rows = payload if isinstance(payload, list) else [payload]
            cols = self._payload_columns(q, spec, rows)
            if prefs.get("missing") == "default" and spec.columns is not None:
                return self._insert_missing_default(conn, q, spec, prefs, single, strip_nulls, rows, cols)
            ident_cols = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            conflict = self._on_conflict(q, spec, prefs, cols)
            if cols:
                stmt = sql.SQL(
                    "INSERT INTO {qt} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{qt}, {p}::json) _{conflict} RETURNING {qt}.*"
                ).format(qt=qt, cols=ident_cols, p=q.param(json.dumps(rows)), conflict=conflict)
            else:
                stmt = sql.SQL(
                    "INSERT INTO {qt} SELECT FROM json_array_elements({p}::json) _{conflict} RETURNING {qt}.*"
                ).format(qt=qt, p=q.param(json.dumps(rows)), conflict=conflict)
            status_ok = 201
        elif method == "PATCH":
            cols = self._payload_columns(q, spec, [payload])
            where = self._mutation_where(q, spec, "UPDATE")
            if not cols:
                stmt = sql.SQL("SELECT {qt}.* FROM {qt} WHERE FALSE").format(qt=qt)
            else:
                sets = sql.SQL(", ").join(
                    sql.SQL("{c} = _pgrst_src.{c}").format(c=sql.Identifier(c)) for c in cols)
                stmt = sql.SQL(
                    "UPDATE {qt} SET {sets} FROM (SELECT * FROM json_populate_record(NULL::{qt}, {p}::json)) _pgrst_src "
                    "WHERE {where} RETURNING {qt}.*"
                ).format(qt=qt, sets=sets, p=q.param(json.dumps(payload)), where=where)
            status_ok = 200
        else:
            where = self._mutation_where(q, spec, "DELETE")
            stmt = sql.SQL("DELETE FROM {qt} WHERE {where} RETURNING {qt}.*").format(qt=qt, where=where)
            status_ok = 200
        source = sql.SQL("pgrst_source AS {}").format(sql.Identifier(t.name))
        query = sql.SQL("WITH pgrst_source AS ({stmt}) ").format(stmt=stmt) + q.wrap_json(
            source, q.select_list(spec.select), strip_nulls)
        agg, first, n = conn.execute(query, q.params).fetchone()
        return self._write_response(conn, prefs, single, method, status_ok, agg, first, n)

    def _write_response(self, conn, prefs, single, method, status_ok, agg, first, n) -> Response:
        if single and n != 1:
            conn.rollback()
            raise PgrstError(406, "PGRST116", "Cannot coerce the result to a single JSON object",
                             f"The result contains {n} rows")
        count = n if prefs.get("count") in ("exact", "planned", "estimated") else None
        headers = {"Content-Range": _content_range(1, 0, count) if method != "POST" or count is not None else "*/*"}
        applied = [f"{k}={prefs[k]}" for k in ("return", "count", "resolution", "missing") if k in prefs]
        if applied:
            headers["Preference-Applied"] = ", ".join(applied)
        if prefs.get("return") == "representation":
            headers["Content-Type"] = OBJECT_CT if single else JSON_CT
            return Response(status_ok, (first if single else agg).encode(), headers)
        return Response(201 if method == "POST" else 204, b"", headers)

    def _on_conflict(self, q: Q, spec, prefs, cols) -> sql.Composable:
        res = prefs.get("resolution")
        if res not in ("merge-duplicates", "ignore-duplicates"):
            return sql.SQL("")
        target = spec.on_conflict or q.table.pk
        if not target:
            return sql.SQL("")
        for c in target:
            q.check_column(c)
        tgt = sql.SQL(", ").join(sql.Identifier(c) for c in target)
        if res == "ignore-duplicates" or not cols:
            return sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(tgt)
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols)
        return sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(tgt, sets)

    def _insert_missing_default(self, conn, q, spec, prefs, single, strip_nulls, rows, cols) -> Response:
        """Prefer: missing=default — keys absent from a row take the column default."""
        results = []
        for row in rows:
            rq = Q(q.table)
            present = [c for c in cols if c in row]
            conflict = self._on_conflict(rq, spec, prefs, present)
            if present:
                ident = sql.SQL(", ").join(sql.Identifier(c) for c in present)
                stmt = sql.SQL(
                    "INSERT INTO {qt} ({cols}) SELECT {cols} FROM json_populate_record(NULL::{qt}, {p}::json) _{conflict} RETURNING {qt}.*"
                ).format(qt=rq.qualified, cols=ident, p=rq.param(json.dumps(row)), conflict=conflict)
            else:
                stmt = sql.SQL("INSERT INTO {qt} DEFAULT VALUES{conflict} RETURNING {qt}.*").format(
                    qt=rq.qualified, conflict=conflict)
            source = sql.SQL("pgrst_source AS {}").format(sql.Identifier(q.table.name))
            query = sql.SQL("WITH pgrst_source AS ({}) ").format(stmt) + rq.wrap_json(
                source, rq.select_list(spec.select), strip_nulls)
            agg, _first, _n = conn.execute(query, rq.params).fetchone()
            results.extend(json.loads(agg))
        agg = json.dumps(results, ensure_ascii=False)
        first = json.dumps(results[0], ensure_ascii=False) if results else "null"
        return self._write_response(conn, prefs, single, "POST", 201, agg, first, len(results))
