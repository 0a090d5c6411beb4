"""The repository over Supabase's REST API (PostgREST, through supabase-py), for those who hold the
project URL and the service role key but no database password.

Reads are batched as in the Postgres adapter: a page of jobs is one request, then one request each
for the page's assets, library rows and characters, with `in.(...)` filters. Two things cost more
than over SQL, both bounded and documented in docs/backends.md:
- PostgREST cannot normalize names, so `characters_for` fetches every character of the page's users
  and matches normalized names in Python;
- a URL has a length limit, so long `in` lists are split into requests of at most `url_budget`
  characters (the 25 demo jobs fit in one; a page of 2,000 jobs needs several).
There are no transactions over REST: every write is conditional on the row as read (filters in the
PATCH, `Prefer: return=representation`, ChangedError when no row comes back).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

from charfix.errors import BackendError, ChangedError
from charfix.diagnosis.facts import PREFIX_LENGTH, normalized_name
from charfix.http import Caller, OutcomeUnknown, Supabase, array_literal, in_list, quoted
from charfix.diagnosis import portrait
from charfix.diagnosis.portrait import LibraryUpgrade, NewLibraryItem
from charfix.models import PORTRAIT, Character, Job, LibraryItem, WorkspaceAsset
from charfix.repository.base import (
    EARLIEST, OPEN_STATUSES, REQUIRED_COLUMNS, Backlog, JobQuery, Page, Schema, UserDirectory,
)
from charfix.repository.rows import END_OF_TIME, load_json, read_rows

URL_BUDGET = 12_000  # encoded characters of filter values per request; gateways refuse URLs of ~16 KB
ROW_LIMIT = 1000  # rows asked per response (Supabase's default max_rows)
UUID_LAYOUT = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
# jsonb columns are asked for as text and parsed one value at a time (repository/rows.py): a value
# nested 1,000 deep or holding a 5,000-digit number then costs its own row, not the whole response.
JSON_COLUMNS = frozenset({"metadata", "roleplay_metadata", "generation_metadata"})


class SupabaseRepository:
    transactional = False  # each request commits on its own

    def __init__(self, supabase: Supabase, *, url_budget: int = URL_BUDGET):
        self.supabase = supabase
        self.caller = Caller(supabase, "Supabase REST")
        self.url_budget = url_budget
        self.schema = Schema.from_columns(self._live_columns())

    @property
    def queries(self) -> int:
        """HTTP requests sent, retries included."""
        return self.caller.count

    def close(self) -> None:
        self.supabase.close()

    def users(self) -> UserDirectory:
        from charfix.repository.auth_users import AdminApiUsers

        return AdminApiUsers(Caller(self.supabase, "Supabase Auth"))

    def location(self) -> str:
        return f"{self.supabase.url}/rest/v1"

    # -- reads ---------------------------------------------------------------------------------

    def portrait_jobs(self, query: JobQuery, *, after: Page | None, limit: int) -> list[Job]:
        jobs: list[Job] = []
        while True:
            batch = self._job_page(query, after=after, limit=limit - len(jobs))
            jobs += batch
            # A project's max_rows may cap a response below `limit`; ask once more rather than end
            # the scan early. Costs one request at the end of a scan, none on full pages.
            if not batch or len(jobs) >= limit:
                return jobs
            after = Page(created_at=batch[-1].created_at, id=batch[-1].id)

    def _job_page(self, query: JobQuery, *, after: Page | None, limit: int) -> list[Job]:
        builder = self._select("jobs")
        builder.filter("created_at", "gte", _stamp(query.since))
        builder.or_(f"metadata->>destination.eq.{quoted(PORTRAIT)},metadata->>source.eq.{quoted(PORTRAIT)}")
        if query.user_id is not None:
            builder.filter("user_id", "eq", str(query.user_id))
        if after is not None:
            at = quoted(_stamp(after.created_at))
            builder.request.params = builder.request.params.add(
                "and", f"(or(created_at.gt.{at},and(created_at.eq.{at},id.gt.{quoted(after.id)})))")
        builder.order("created_at").order("id").limit(limit)
        return read_rows(Job, self._json("jobs", builder))

    def open_before(self, query: JobQuery) -> Backlog:
        # One request: PostgREST counts the matches (Prefer: count=exact) and returns the oldest.
        builder = self._select("jobs", "created_at", count=True)
        builder.filter("status", "in", in_list(OPEN_STATUSES)).filter("created_at", "lt", _stamp(query.since))
        builder.filter("created_at", "gte", EARLIEST.isoformat())
        builder.or_(f"metadata->>destination.eq.{quoted(PORTRAIT)},metadata->>source.eq.{quoted(PORTRAIT)}")
        if query.user_id is not None:
            builder.filter("user_id", "eq", str(query.user_id))
        builder.order("created_at").limit(1)
        response = self._get("jobs", builder)
        rows = response.json()
        return Backlog(count=_total(response) or len(rows), oldest=_finite_time(rows[0]["created_at"]) if rows else None)

    def jobs_by_id(self, ids: Sequence[UUID]) -> list[Job]:
        rows = self._read_chunked("jobs", [("id", i) for i in dict.fromkeys(ids)], _in_filter)
        return sorted(read_rows(Job, rows), key=lambda j: (j.created_at, j.id))

    def jobs_naming(self, names: Sequence[tuple[UUID, str]], *, since: datetime, until: datetime) -> list[Job]:
        if not names:
            return []
        # Names go into the filter here (exact match, as in SQL), quoted by PostgREST's rules.
        users = in_list(sorted({str(u) for u, _ in names}))
        portrait = f"or(metadata->>destination.eq.{quoted(PORTRAIT)},metadata->>source.eq.{quoted(PORTRAIT)})"

        def configure(builder, chunk):
            listed = in_list(sorted({n for _, n in chunk}))
            builder.filter("user_id", "in", users).filter("created_at", "gte", _stamp(since))
            builder.filter("created_at", "lte", _stamp(until))
            builder.request.params = builder.request.params.add(
                "and", f"({portrait},or(metadata->>character_name.in.{listed},metadata->>characterName.in.{listed}))")

        # A name too long for any URL is not put in one: that user's portrait jobs of the window are
        # read instead, and matched here (a bounded read: one user, a couple of hours).
        def cost(name: tuple[UUID, str]) -> int:
            return 2 * (_encoded(quoted(name[1])) + 3)  # each name is listed under both keys

        fits = [n for n in sorted(set(names), key=str) if cost(n) <= self.url_budget]
        odd = sorted(set(names) - set(fits), key=str)
        rows = self._read_chunked("jobs", fits, configure, cost=cost) if fits else []
        for user in sorted({u for u, _ in odd}, key=str):
            builder = self._select("jobs")
            builder.filter("user_id", "eq", str(user)).filter("created_at", "gte", _stamp(since))
            builder.filter("created_at", "lte", _stamp(until)).or_(portrait[3:-1])
            wanted = {n for u, n in odd if u == user}
            rows += [r for r in self._json("jobs", builder) if _named(r) & wanted]
        return read_rows(Job, _unique(rows))

    def job_ids_starting(self, prefix: str, *, limit: int) -> list[UUID]:
        # `id=like.abc*` is refused on a uuid column (no like operator for uuid), and a cast in a
        # filter is not allowed. Postgres orders uuids by their bytes, which is the order of their
        # lower-case hex text, so the ids starting with a prefix are exactly one closed range.
        bounds = _uuid_range(prefix)
        if bounds is None:
            return []
        builder = self._select("jobs", "id")
        builder.filter("id", "gte", bounds[0]).filter("id", "lte", bounds[1]).order("id").limit(limit)
        return [UUID(row["id"]) for row in self._json("jobs", builder)]

    def ids_sharing_prefixes(self, column: str, ids: Sequence[UUID]) -> list[UUID]:
        ranges = sorted({r for i in ids if (r := _uuid_range(str(i)[:8])) is not None})  # always one: ids are uuids
        found: set[str] = set()
        for chunk in _chunks(ranges, lambda r: 2 * len(UUID_LAYOUT) + len(column) * 2 + 20, self.url_budget):
            offset = 0
            while True:  # only the one column: a heavy user's jobs cost 36 characters each
                builder = self._select("jobs", column, count=True)
                builder.or_(",".join(f"and({column}.gte.{lo},{column}.lte.{hi})" for lo, hi in chunk))
                builder.order(column).limit(ROW_LIMIT).offset(offset)
                response = self._get("jobs", builder)
                batch = response.json()
                found |= {row[column] for row in batch}
                offset += len(batch)
                total = _total(response)
                if not batch or total is None or offset >= total:
                    break
        return [UUID(value) for value in sorted(found)]

    def user_ids_starting(self, prefix: str, *, limit: int) -> list[UUID]:
        # No `distinct` over REST: the lowest and the highest match tell one user from several.
        bounds = _uuid_range(prefix)
        if bounds is None:
            return []
        found: list[UUID] = []
        for descending in (False, True):
            builder = self._select("jobs", "user_id")
            builder.filter("user_id", "gte", bounds[0]).filter("user_id", "lte", bounds[1])
            builder.order("user_id", desc=descending).limit(1)
            found += [UUID(row["user_id"]) for row in self._json("jobs", builder) if UUID(row["user_id"]) not in found]
        return found[:limit]

    def assets_for(self, job_ids: Sequence[UUID]) -> list[WorkspaceAsset]:
        rows = self._read_chunked("workspace_assets", [("job_id", i) for i in dict.fromkeys(job_ids)], _in_filter)
        return read_rows(WorkspaceAsset, rows)

    def library_items_for(self, jobs: Sequence[Job], assets: Sequence[WorkspaceAsset]) -> list[LibraryItem]:
        if not jobs:
            return []
        users = in_list(sorted({str(j.user_id) for j in jobs}))

        def configure(builder, chunk):
            builder.filter("user_id", "in", users)
            builder.or_(self._library_terms([x for x in chunk if isinstance(x, Job)],
                                            [x for x in chunk if isinstance(x, WorkspaceAsset)]))

        items: list[Any] = [*jobs, *assets]
        def cost(x: Job | WorkspaceAsset) -> int:
            return _encoded(self._library_terms([x], []) if isinstance(x, Job) else self._library_terms([], [x]))

        rows = self._read_chunked("user_library", items, configure, cost=cost)
        wanted = _library_match(jobs, assets)
        return read_rows(LibraryItem, [r for r in _unique(rows) if wanted(r)])

    def _library_terms(self, jobs: Sequence[Job], assets: Sequence[WorkspaceAsset]) -> str:
        # `_` is a LIKE wildcard: the filter may fetch a little more; _library_match is exact.
        terms = [f"storage_path.like.{quoted(f'{j.user_id}/{j.id}_*')}" for j in jobs]
        if jobs:
            ids = in_list(str(j.id) for j in jobs)
            terms.append(f"roleplay_metadata->>job_id.in.{ids}")
            if self.schema.has("user_library", "generation_metadata"):
                terms.append(f"generation_metadata->>job_id.in.{ids}")
        if assets:  # manual "save to library" names the object {user_id}/{asset_id}.png
            terms.append(f"storage_path.in.{in_list(f'{a.user_id}/{a.id}' for a in assets)}")
            terms += [f"storage_path.like.{quoted(f'{a.user_id}/{a.id}.*')}" for a in assets]
        return ",".join(terms)

    def characters_for(self, ids: Sequence[UUID], names: Sequence[tuple[UUID, str]]) -> list[Character]:
        if not ids and not names:
            return []
        # PostgREST cannot compare normalized names: fetch the users' characters, match here.
        terms = [("id", i) for i in dict.fromkeys(ids)] + [("user_id", u) for u in dict.fromkeys(u for u, _ in names)]

        def configure(builder, chunk):
            by_field: dict[str, list[Any]] = {}
            for field, value in chunk:
                by_field.setdefault(field, []).append(value)
            builder.or_(",".join(f"{field}.in.{in_list(values)}" for field, values in by_field.items()))

        rows = self._read_chunked("characters", terms, configure)
        wanted_ids = {str(i) for i in ids}
        wanted_names = {(str(u), normalized_name(n)) for u, n in names}
        return read_rows(Character, [
            r for r in _unique(rows)
            if r["id"] in wanted_ids or (r["user_id"], normalized_name(str(r["name"]))) in wanted_names])

    def characters_of(self, user_id: UUID) -> list[Character]:
        rows = self._read_chunked("characters", [("user_id", str(user_id))], _in_filter)
        characters = read_rows(Character, rows)  # a planted row costs its own line (repository/rows.py)
        return sorted(characters, key=lambda c: (c.created_at, c.id))

    def library_portraits_of(self, user_id: UUID) -> list[LibraryItem]:
        # Every row of the user, read in pages; portrait.is_visible decides, as over Postgres.
        items = read_rows(LibraryItem, self._read_chunked("user_library", [("user_id", str(user_id))], _in_filter))
        return sorted((i for i in items if portrait.is_visible(i)), key=lambda i: (i.created_at, i.id))

    # -- writes (no transactions over REST: each is conditional on the row as read) ---------------

    def pages(self) -> None:
        """No transactions over REST, so no page of jobs in one: backfill repairs a job at a time."""
        return None

    def connection(self) -> None:
        """No database connection over REST: the audit log file is the only trail (docs/audit.md)."""
        return None

    def transaction_id(self) -> None:
        return None

    def transaction_status(self, xids: Sequence[int]) -> dict[int, str | None]:
        return {}

    @contextmanager
    def locked(self, job_id: UUID) -> Iterator[bool]:
        """Always True: REST has no row locks and no transactions. Each write is conditional on the
        row as read, and the library row's id is derived from the job, so of two runs racing on a
        job each write lands once; the run that loses one re-diagnoses (repair/job.py)."""
        yield True

    def complete_job(self, job: Job, *, completed_at: datetime) -> Job:
        values = {"status": "completed", "completed_at": _stamp(completed_at), "error_message": None}
        return self._update_job(job, values, landed=lambda j: j.status == "completed" and j.completed_at == completed_at)

    def mark_failed(self, job: Job, *, message: str, at: datetime) -> Job:
        values = {"status": "failed", "error_message": message, "completed_at": _stamp(at)}
        return self._update_job(job, values, landed=lambda j: j.status == "failed" and j.error_message == message)

    def link_character(self, job: Job, character: Character) -> Job:
        if not isinstance(job.metadata, dict):
            raise ChangedError(f"job {job.id} has no metadata object to link a character into; nothing was written")
        # No condition across tables over REST: look again just before writing (a narrow window
        # remains; the character update after it is conditional on the name as read).
        now = self.characters_for([character.id], [])
        if not any(c.user_id == character.user_id == job.user_id and c.name == character.name for c in now):
            raise ChangedError(f"character {character.id} changed since it was read; the job was not linked")
        merged = {**job.metadata, "character_id": str(character.id)}
        # Read-modify-write: the PATCH matches only while the metadata is still what was read.
        return self._update_job(job, {"metadata": merged}, extra=[("metadata", "eq", _json(job.metadata))],
                                landed=lambda j: j.metadata == merged)

    def library_items_at(self, user_id: UUID, storage_path: str) -> list[LibraryItem]:
        builder = self._select("user_library")
        builder.filter("user_id", "eq", str(user_id)).filter("storage_path", "eq", storage_path).order("id")
        return read_rows(LibraryItem, self._json("user_library", builder))

    def insert_library_item(self, item: NewLibraryItem) -> LibraryItem:
        values = {k: v for k, v in item.model_dump(mode="json").items()
                  if self.schema.has("user_library", k) and v is not None}

        def post() -> httpx.Response:
            builder = self._table("user_library").insert(values).select(self._readable("user_library"))
            return builder.request.send(httpx.Headers())

        try:
            response = self.caller.send("table user_library", post, idempotent=False)
        except OutcomeUnknown:
            # The insert may have landed before the connection broke: look before inserting again.
            landed = [r for r in self.library_items_at(item.user_id, item.storage_path) if portrait.is_insert_of(r, item)]
            if landed:
                return landed[0]
            response = self.caller.send("table user_library", post)
        if response.status_code == 409:
            # The row's id is derived from the job: another run inserted it first (unique_violation).
            raise ChangedError(f"library row {item.id} was inserted by another writer meanwhile; nothing was inserted")
        return read_rows(LibraryItem, self._check("table user_library", response))[0]

    def upgrade_library_item(self, upgrade: LibraryUpgrade) -> LibraryItem:
        # Read-modify-write: each column that is merged or added to must still hold its value as read.
        item = upgrade.row
        values = {column: _json_ready(value) for column, value in upgrade.values().items()
                  if self.schema.has("user_library", column)}
        expected = [(column, *_equals_array(upgrade.read(column))) for column in upgrade.add if column in values]
        expected += [(column, *_equals_json(upgrade.read(column))) for column in upgrade.merge if column in values]
        filters = [("id", "eq", str(item.id)), ("user_id", "eq", str(item.user_id)), *expected]
        rows = self._patch("user_library", values, filters)
        if not rows:
            raise ChangedError(f"library row {item.id} changed since it was read; nothing was written to it")
        return read_rows(LibraryItem, rows)[0]

    def update_character_image(self, character: Character, *, image_url: str, seed: int | None,
                               reference: bool = True) -> Character:
        if character.user_id is None:
            raise ChangedError(f"character {character.id} has no owner; nothing was written to it")
        values: dict[str, Any] = {"image_url": image_url}
        if reference:
            values["reference_image_url"] = image_url
        if seed is not None:
            values["seed_locked"] = seed
        filters = [("id", "eq", str(character.id)), ("user_id", "eq", str(character.user_id)),
                   ("name", "eq", character.name), _as_read("image_url", character.image_url),
                   _as_read("reference_image_url", character.reference_image_url)]
        rows = self._patch("characters", values, filters)
        if not rows:
            raise ChangedError(f"character {character.id} changed since it was read; nothing was written to it")
        return read_rows(Character, rows)[0]

    def _update_job(self, job: Job, values: dict[str, Any], *, landed: Callable[[Job], bool],
                    extra: Sequence[tuple[str, str, str | None]] = ()) -> Job:
        filters = [("id", "eq", str(job.id)), ("user_id", "eq", str(job.user_id)), ("status", "eq", job.status), *extra]
        before = self.caller.unknown_outcomes
        rows = self._patch("jobs", values, filters)
        if rows:
            return read_rows(Job, rows)[0]
        if self.caller.unknown_outcomes > before:
            # A retry after a broken connection finds nothing to match when the first try landed.
            now = self.jobs_by_id([job.id])
            if now and landed(now[0]):
                return now[0]
        raise ChangedError(f"job {job.id} changed since it was read; nothing was written to it")

    # -- plumbing ------------------------------------------------------------------------------

    def _live_columns(self) -> dict[str, set[str]]:
        return openapi_columns(self.supabase, self.caller)

    def _table(self, table: str):
        return self.supabase.client.postgrest.from_(table)

    def _select(self, table: str, columns: str | None = None, *, count: bool = False):
        return self._table(table).select(columns or self._readable(table), count="exact" if count else None)

    def _readable(self, table: str) -> str:
        return ",".join(f"{c}::text" if c in JSON_COLUMNS else c for c in self.schema.readable(table))

    def _read_chunked(self, table: str, items: list[Any], configure, *,
                      cost: Callable[[Any], int] = lambda term: _encoded(quoted(term[1])) + 3) -> list[dict[str, Any]]:
        """Rows for every chunk of `items` (split to fit the URL budget), each read to its end. The
        chunks are read in parallel (Supabase.map), their rows joined in the chunks' order."""

        def read(chunk: list[Any]) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            offset = 0
            while True:
                builder = self._select(table, count=True)
                configure(builder, chunk)
                builder.order("id").limit(ROW_LIMIT).offset(offset)
                response = self._get(table, builder)
                batch = _parsed(response.json())
                rows += batch
                offset += len(batch)
                total = _total(response)
                if not batch or total is None or offset >= total:
                    return rows

        return [row for rows in self.supabase.map(read, list(_chunks(items, cost, self.url_budget))) for row in rows]

    def _get(self, table: str, builder) -> httpx.Response:
        response = self.caller.send(f"table {table}", lambda: builder.request.send(httpx.Headers()))
        if not response.is_success:
            raise self.caller.fail(f"table {table}", response)
        return response

    def _json(self, table: str, builder) -> list[dict[str, Any]]:
        return _parsed(self._get(table, builder).json())

    def _patch(self, table: str, values: dict[str, Any],
               filters: Sequence[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
        if sum(_encoded(value or "") for _, _, value in filters) > self.url_budget:
            # The row as read (a huge name or metadata) cannot be compared within a URL: this job fails
            # alone, with the way out named, rather than the gateway refusing a request.
            raise BackendError(f"table {table}: the row's values are too long to compare in a URL over REST; "
                               "repair this job over Postgres (SUPABASE_DB_URL)")
        def patch() -> httpx.Response:
            builder = self._table(table).update(values).select(self._readable(table))
            for column, operator, value in filters:
                builder.filter(column, operator, value)
            return builder.request.send(httpx.Headers())

        # A conditional PATCH is safe to repeat: once applied, the repeat matches nothing.
        return self._check(f"table {table}", self.caller.send(f"table {table}", patch))

    def _check(self, what: str, response: httpx.Response) -> list[dict[str, Any]]:
        if not response.is_success:
            raise self.caller.fail(what, response)
        return _parsed(response.json())


def _in_filter(builder, chunk) -> None:
    field = chunk[0][0]
    builder.filter(field, "in", in_list(value for _, value in chunk))


def _chunks(items: list[Any], cost: Callable[[Any], int], budget: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    size = 0
    for item in items:
        item_cost = cost(item)
        if chunk and size + item_cost > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item_cost
    if chunk:
        yield chunk


def _encoded(text: str) -> int:
    """Length of `text` in a URL (percent-encoded)."""
    return len(str(httpx.QueryParams({"": text}))) - 1


def _library_match(jobs: Sequence[Job], assets: Sequence[WorkspaceAsset]) -> Callable[[dict], bool]:
    """The Postgres adapter's predicate, exactly (the REST filters fetch a superset)."""
    users = {str(j.user_id) for j in jobs}
    prefixes = {f"{j.user_id}/{j.id}_" for j in jobs}
    job_ids = {str(j.id) for j in jobs}
    stems = {f"{a.user_id}/{a.id}" for a in assets}

    def wanted(row: dict) -> bool:
        path = row["storage_path"]
        return row["user_id"] in users and (
            path[:PREFIX_LENGTH] in prefixes or path.split(".", 1)[0] in stems
            or _job_id(row.get("roleplay_metadata")) in job_ids or _job_id(row.get("generation_metadata")) in job_ids)

    return wanted


def _uuid_range(prefix: str) -> tuple[str, str] | None:
    """The lowest and highest uuid whose text starts with `prefix`, or None when none can."""
    if len(prefix) > len(UUID_LAYOUT):
        return None
    for char, slot in zip(prefix, UUID_LAYOUT, strict=False):  # a prefix: as far as it goes
        if (slot == "-") != (char == "-") or (char != "-" and char not in "0123456789abcdef"):
            return None
    rest = UUID_LAYOUT[len(prefix):]
    return prefix + rest.replace("x", "0"), prefix + rest.replace("x", "f")


def _job_id(metadata: Any) -> str | None:
    value = metadata.get("job_id") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None  # a job id is always a string


def _json_ready(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


def _equals_json(value: Any) -> tuple[str, str]:
    return ("is", "null") if value is None else ("eq", _json(value))


def _equals_array(values: list[str] | None) -> tuple[str, str]:
    return ("is", "null") if values is None else ("eq", array_literal(values))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _stamp(at: datetime) -> str:
    # A job whose created_at could not be read (infinity) reads as the end of time: page after it as such.
    return "infinity" if at == END_OF_TIME else at.isoformat()


def _parsed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their jsonb columns (asked for as text) parsed with the guards of rows.py."""
    for row in rows:
        for column in JSON_COLUMNS.intersection(row):
            if isinstance(row[column], str):
                row[column] = load_json(row[column])
    return rows


def _named(row: dict[str, Any]) -> set[str]:
    metadata = row.get("metadata")
    if not isinstance(metadata, dict):
        return set()
    return {v for v in (metadata.get("character_name"), metadata.get("characterName")) if isinstance(v, str)}


def _total(response: httpx.Response) -> int | None:
    found = re.search(r"/(\d+)$", response.headers.get("content-range", ""))
    return int(found.group(1)) if found else None


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows fetched by several chunks appear once."""
    return list({row["id"]: row for row in rows}.values())


def _as_read(column: str, value: str | None) -> tuple[str, str, str]:
    """A filter matching the column only while it still holds the value as read."""
    return (column, "is", "null") if value is None else (column, "eq", value)


def openapi_columns(supabase: Supabase, caller: Caller | None = None) -> dict[str, set[str]]:
    """The columns PostgREST exposes for charfix's tables, from its OpenAPI description (GET /rest/v1/)."""
    caller = caller or Caller(supabase, "Supabase REST")
    url = f"{supabase.url}/rest/v1/"
    headers = {**supabase.auth_headers(), "Accept": "application/openapi+json, application/json"}
    response = caller.send("the OpenAPI description", lambda: supabase.http.get(url, headers=headers))
    if not response.is_success:
        raise caller.fail("the OpenAPI description (GET /rest/v1/)", response)
    definitions = response.json().get("definitions") or {}
    return {t: set(definitions[t].get("properties") or {}) for t in REQUIRED_COLUMNS if t in definitions}


def _finite_time(value) -> datetime | None:
    """A row's time, or None when it is not one Python can hold (`-infinity`, a planted row)."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
