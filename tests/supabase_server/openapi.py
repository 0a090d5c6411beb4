"""Swagger 2.0 description served at GET /rest/v1/, like PostgREST's root endpoint.

Definitions follow PostgREST's ``Response/OpenAPI.hs``: one definition per
table/view with ``properties`` (``format`` = Postgres type name, ``type`` =
Swagger type, no ``type`` for json/jsonb, ``items`` for arrays, ``default``,
``maxLength``, ``description`` with the ``<pk/>`` note) and ``required`` =
the NOT NULL columns. Read live from the catalog on every request.
"""

from __future__ import annotations

import json

import psycopg

from .catalog import Column, Table, load_tables

_TYPES = {
    "character varying": "string", "character": "string", "text": "string",
    "boolean": "boolean", "smallint": "integer", "integer": "integer",
    "bigint": "integer", "numeric": "number", "real": "number",
    "double precision": "number", "json": None, "jsonb": None,
}
_FORMATS = {"smallint": "int32", "integer": "int32", "bigint": "int64"}


def swagger_type(pg_type: str) -> str | None:
    if pg_type in _TYPES:
        return _TYPES[pg_type]
    return "array" if pg_type.endswith("[]") else "string"


def _default(col: Column):
    if col.default is None:
        return None
    if swagger_type(col.type) == "string":
        d = col.default
        suffix = "::" + col.type
        if d.endswith(suffix):
            d = d[: -len(suffix)].strip("'")
        return d
    try:
        return json.loads(col.default)
    except ValueError:
        return None


def _property(table: Table, col: Column) -> dict:
    prop: dict = {}
    default = _default(col)
    if default is not None:
        prop["default"] = default
    notes = ["Note:"]
    if col.name in table.pk:
        notes.append("This is a Primary Key.<pk/>")
    if len(notes) > 1:
        prop["description"] = ((col.description + "\n\n") if col.description else "") + "\n".join(notes)
    elif col.description:
        prop["description"] = col.description
    prop["format"] = _FORMATS.get(col.type, col.type)
    if col.max_length is not None:
        prop["maxLength"] = col.max_length
    typ = swagger_type(col.type)
    if typ is not None:
        prop["type"] = typ
    if typ == "array":
        inner = swagger_type(col.type[:-2])
        prop["items"] = {"type": inner} if inner else {}
    return prop


def build_openapi(conn: psycopg.Connection, schema: str, host: str) -> dict:
    tables = load_tables(conn, schema)
    definitions = {}
    paths: dict = {"/": {"get": {"produces": ["application/openapi+json", "application/json"],
                                 "responses": {"200": {"description": "OK"}},
                                 "summary": "OpenAPI description (this document)",
                                 "tags": ["Introspection"]}}}
    for name, t in tables.items():
        d: dict = {}
        if t.description:
            d["description"] = t.description
        d["properties"] = {c.name: _property(t, c) for c in t.columns.values()}
        required = [c.name for c in t.columns.values() if not c.nullable]
        if required:
            d["required"] = required
        d["type"] = "object"
        definitions[name] = d
        ref = {"$ref": f"#/definitions/{name}"}
        ok = {"200": {"description": "OK", "schema": {"items": ref, "type": "array"}},
              "206": {"description": "Partial Content"}}
        ops = {"get": {"tags": [name], "responses": ok}}
        if t.kind in ("r", "p", "f", "v"):
            ops["post"] = {"tags": [name], "responses": {"201": {"description": "Created"}}}
            ops["patch"] = {"tags": [name], "responses": {"204": {"description": "No Content"}}}
            ops["delete"] = {"tags": [name], "responses": {"204": {"description": "No Content"}}}
        paths[f"/{name}"] = ops
    return {
        "swagger": "2.0",
        "info": {"description": "", "title": "standard public schema", "version": "12.2.0 (supabase test server)"},
        "host": host,
        "basePath": "/",
        "schemes": ["http"],
        "consumes": ["application/json", "application/vnd.pgrst.object+json;nulls=stripped",
                     "application/vnd.pgrst.object+json", "text/csv"],
        "produces": ["application/json", "application/vnd.pgrst.object+json;nulls=stripped",
                     "application/vnd.pgrst.object+json", "text/csv"],
        "paths": paths,
        "definitions": definitions,
    }
