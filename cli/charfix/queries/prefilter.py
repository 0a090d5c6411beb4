"""Which jobs of a page are provably saved: one statement over the rows, and the objects from a catalogue.

Most portrait jobs are saved. A job is skipped (counted as saved, never read whole) only when the
rows and the objects alone prove what the pure diagnosis would conclude (docs/diagnosis.md,
"Provably saved"): completed; `metadata.destination` the portrait, `character_id` a canonical id and
no character name; that character the job's user's, pointing at `user-library/{user}/{job}_{character}.ext`
or at a plain `user-library/` path the user chose since (kept, rule 4 of the replaceable-image rule);
exactly one library row tied to the job in any way the diagnosis ties rows (key prefix, recorded job
id, asset stem), visible on the Characters tab, at that key, bound to no other character; the object
at that key and nothing else under the job's prefix in user-library but its thumbnail; every
workspace asset of the job the user's, at an empty path or a plain key under the job's prefix; and no
value the adapters could not read (a timestamp outside Python's range, a JSON value too deep, too long
or with a number too long, a NULL inside `tags`, a NULL in a NOT NULL column of an older schema).
Anything it cannot prove, it leaves to the full path.

The objects: with storage.objects in the database (storage/catalogue.py), the same statement checks
them; otherwise (a local folder, or Storage listings) the statement proves the rows and the listing
the full path would read of the job's prefix confirms the objects, so both see the same folder.

tests/test_prefilter.py checks over generated states, for both, that every job skipped here is one the
full path diagnoses `saved`, with no reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from charfix.diagnosis.facts import PREFIX_LENGTH, THUMB_SUFFIX
from charfix.models import LIBRARY_BUCKET, PORTRAIT, Job
from charfix.repository.base import JobQuery
from charfix.repository.postgres import PostgresRepository
from charfix.repository.rows import db_time
from charfix.storage.base import Catalogue

# The query's portrait jobs from a (created_at, id) on, as the repository's page query selects them
# (repository/postgres.py portrait_jobs): its index serves both.
WINDOW_JOBS = ("(j.metadata->>'destination' = %(portrait)s or j.metadata->>'source' = %(portrait)s) "
               "and j.created_at >= %(since)s and (j.user_id = %(user_id)s::uuid or %(user_id)s::uuid is null) "
               "and (j.created_at, j.id) >= (%(low_at)s::timestamptz, %(low_id)s)")
WINDOW = 20_000  # portrait jobs proven by one statement during a scan: ids and keys only are kept
UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# No counted repetition ({1,200}) in these: Postgres expands it into that many states, and testing
# 20,000 keys with one took seconds. The lengths are tested beside them.
SAFE_KEY_REST = "^[A-Za-z0-9._-]+$"
MAX_KEY_REST = 200
EXTENSION = "^\\.[A-Za-z0-9]+$"
MAX_EXTENSION = 6  # the dot and 1 to 5 characters
STEM = PREFIX_LENGTH + 36  # `{user}/{job}_{character}`, the key without its extension
# A character image the diagnosis keeps (a storage path, not a URL, not workspace-temp: docs/diagnosis.md,
# "The replaceable-image rule", rule 4), in characters that need no trimming.
KEPT_IMAGE = "^user-library/[A-Za-z0-9._/-]+$"
# A JSON value the adapter surely reads (repository/rows.py): at most this long, fewer brackets than
# MAX_JSON_DEPTH (so never that deep), and no run of digits near MAX_INT_DIGITS.
MAX_JSON_TEXT = 100_000
MAX_BRACKETS = 60
DIGIT_RUN = 250  # Postgres regular expressions repeat at most 255 times
MAX_NAME_LENGTH = 10_000  # diagnosis/facts.py
# Times Python holds (repository/rows.py reads others as unreadable): years 2 to 9998, comfortably.
EARLIEST, LATEST = "0002-01-01 00:00:00+00", "9998-12-31 00:00:00+00"


def safe_json(column: str, text: str | None = None) -> str:
    """`text`: the column already as text (computed once per row: each cast costs a conversion)."""
    text = text or f"{column}::text"
    # A run of DIGIT_RUN digits holds a run of 20: the cheap test first, the costly one only then.
    return (f"({column} is null or (octet_length({text}) <= {MAX_JSON_TEXT} "
            f"and length({text}) - length(translate({text}, '[{{', '')) < {MAX_BRACKETS} "
            f"and ({text} !~ '[0-9]{{20}}' or {text} !~ '[0-9]{{{DIGIT_RUN}}}')))")


def in_range(column: str, *, nullable: bool = False) -> str:
    inside = f"{column} between '{EARLIEST}'::timestamptz and '{LATEST}'::timestamptz"
    return f"({column} is null or {inside})" if nullable else f"({inside})"


def _not_null(alias: str, columns: Sequence[str]) -> str:
    return " and ".join(f"{alias}.{c} is not null" for c in columns)


def _lenient_job_id(alias: str, column: str) -> str:
    """A recorded job id (roleplay_metadata / generation_metadata .job_id) that is text but not a
    canonical id: facts.as_uuid reads such text leniently (braces, upper case, `urn:uuid:`), so it may
    name any of the user's jobs, and none of them is proven here."""
    return (f"(jsonb_typeof({alias}.{column}->'job_id') = 'string' "
            f"and {alias}.{column}->>'job_id' !~ '{UUID_TEXT}')")


def statement(repository: PostgresRepository, versions: str | None, *, window: bool = False) -> sql.SQL:
    """Set-shaped on purpose: the page's jobs and its users' library rows are each read once, and every
    condition is a column of those reads, so Postgres joins them by hashing, never row by row.
    `versions`: the storage.objects conditions of current versions, when the catalogue is in the
    database; None leaves the objects out (the storage's own listing confirms them). `window`: the
    jobs are the query's portrait jobs in a range of (created_at, id), not a list of ids, and their
    users' rows are joined by hashing (a window holds thousands of users)."""
    objects = _in_catalogue(versions) if versions is not None else ""
    if window:
        jobs = (f"{WINDOW_JOBS} "
                "and (%(high_id)s::uuid is null or (j.created_at, j.id) <= (%(high_at)s::timestamptz, %(high_id)s))")
        users = "o.user_id in (select user_id from page)"
    else:
        jobs = "j.id in (select unnest(%(ids)s::uuid[]))"
        # `= any` on the indexed column: an index scan of the page's users (`in (select unnest ...)` is
        # planned as a hash join over the whole table once the other conditions look selective).
        users = "o.user_id = any(%(users)s::uuid[])"
    schema = repository.schema
    lib_cols = schema.columns["user_library"]
    has_generation = "generation_metadata" in lib_cols
    job_started = in_range("j.started_at", nullable=True) if "started_at" in schema.columns["jobs"] else "true"
    char_updated = in_range("c.updated_at", nullable=True) if "updated_at" in schema.columns["characters"] else "true"
    character_column = "o.character_id" if "character_id" in lib_cols else "null::uuid"  # the visible row
    generation_ok = safe_json("o.generation_metadata", "ot.generation") if has_generation else "true"
    generation_text = "o.generation_metadata::text" if has_generation else "null::text"
    generation_job = ("case when jsonb_typeof(o.generation_metadata->'job_id') = 'string' "
                      "then o.generation_metadata->>'job_id' end") if has_generation else "null::text"
    recorded = "jsonb_typeof(o.roleplay_metadata->'job_id') = 'string'" + (
        " or jsonb_typeof(o.generation_metadata->'job_id') = 'string'" if has_generation else "")
    lenient = _lenient_job_id("o", "roleplay_metadata") + (
        " or " + _lenient_job_id("o", "generation_metadata") if has_generation else "")
    text = f"""
with page as materialized (
  select j.id, j.user_id, j.user_id::text || '/' || j.id::text || '_' as prefix,
         case when j.metadata->>'character_id' ~ '{UUID_TEXT}' then (j.metadata->>'character_id')::uuid end
           as character_id,
         case when j.status = 'completed' and j.job_type is not null
          and jsonb_typeof(j.metadata) = 'object' and j.metadata->>'destination' = %(portrait)s
          and not (j.metadata ? 'character_name') and not (j.metadata ? 'characterName')
          and coalesce(j.metadata->>'character_id' ~ '{UUID_TEXT}', false) and {safe_json('j.metadata', 'jt.text')}
          and {in_range('j.created_at')} and {in_range('j.completed_at', nullable=True)} and {job_started}
         then j.user_id::text || '/' || j.id::text || '_' || (j.metadata->>'character_id') end as wanted
  from jobs j cross join lateral (select j.metadata::text as text offset 0) jt where {jobs}
),
assets as materialized (select a.* from workspace_assets a where a.job_id in (select id from page)),
-- The only library rows the statement can use: at a key whose first 73 characters are `{{user}}/{{job}}` of
-- a page job or `{{user}}/{{asset}}` of one of their assets, or recording a job id as text (one of the
-- page's, or a lenient one). A heavy user's other rows are never computed on.
heads as (
  select user_id::text || '/' || id::text as head from page
  union select user_id::text || '/' || id::text from assets
),
lib as materialized (
  select o.id, o.user_id, o.storage_path, left(o.storage_path, 73) as stem,
         case when left(o.storage_path, 37) = o.user_id::text || '/' and substr(o.storage_path, 74, 1) = '_'
              then substr(o.storage_path, 38, 36) end as head_job,
         case when jsonb_typeof(o.roleplay_metadata->'job_id') = 'string' then o.roleplay_metadata->>'job_id' end
           as roleplay_job,
         {generation_job} as generation_job,
         ({lenient}) as lenient,
         -- `{{user}}/{{job}}_{{character}}` of a row at such a key: what a saved job's row is looked up by
         case when left(o.storage_path, 37) = o.user_id::text || '/' and substr(o.storage_path, 111) ~ '{EXTENSION}' and length(o.storage_path) <= {110 + MAX_EXTENSION}
              then left(o.storage_path, 110) end as found,
         -- visible on the Characters tab, and every value of it one the adapters read
         coalesce((o.roleplay_metadata->>'type' = %(portrait)s or 'character' = any(o.tags) or o.content_category = 'character')
           and {_not_null('o', ('asset_type', 'file_size_bytes', 'mime_type', 'original_prompt', 'model_used'))}
           and (o.tags is null or array_position(o.tags, null) is null) and {in_range('o.created_at')}
           and {safe_json('o.roleplay_metadata', 'ot.roleplay')} and {generation_ok}, false) as row_ok,
         {character_column} as bound_to,
         jsonb_typeof(o.roleplay_metadata->'character_id') as roleplay_bound_type,
         o.roleplay_metadata->>'character_id' as roleplay_bound
  from user_library o cross join lateral (select o.roleplay_metadata::text as roleplay,
                                                  {generation_text} as generation offset 0) ot
  where {users}
    and (left(o.storage_path, 73) in (select head from heads) or {recorded})
),
claims as (
  select user_id, head_job as job, id from lib where head_job is not null
  union all select user_id, roleplay_job, id from lib where roleplay_job is not null
  union all select user_id, generation_job, id from lib where generation_job is not null
  union all select o.user_id, a.job_id::text, o.id from lib o
    join assets a on a.user_id = o.user_id and o.stem = a.user_id::text || '/' || a.id::text
),
crowded as (select user_id, job from claims group by user_id, job having count(distinct id) > 1),
-- A job with an asset that is another user's, unreadable, or at a key other than a plain one under
-- the job's prefix (a NULL in the test leaves the asset out, as `not exists` did).
strays as (
  select a.job_id from assets a join page p on p.id = a.job_id where not (
    a.user_id = p.user_id and {_not_null('a', ('asset_index', 'asset_type', 'temp_storage_path', 'file_size_bytes',
                                                'mime_type', 'original_prompt', 'model_used'))}
    and {in_range('a.created_at', nullable=True)}
    and (a.temp_storage_path = ''
         or (left(a.temp_storage_path, 74) = p.prefix and substr(a.temp_storage_path, 75) ~ '{SAFE_KEY_REST}' and length(a.temp_storage_path) <= {74 + MAX_KEY_REST})))
),
-- Joined on one key, unfiltered before: the join hashes whatever the estimates say.
saved as materialized (
  select p.id, p.user_id, p.prefix, p.character_id, l.id as row_id, l.storage_path, l.row_ok, l.bound_to,
         l.roleplay_bound_type, l.roleplay_bound
  from page p join lib l on l.found = p.wanted
)
select s.id, s.storage_path from saved s
join characters c on c.id = s.character_id
where s.row_ok and c.user_id = s.user_id and (c.image_url = %(bucket)s || '/' || s.storage_path or c.image_url ~ '{KEPT_IMAGE}')
  and c.name is not null and length(c.name) <= {MAX_NAME_LENGTH} and {in_range('c.created_at')} and {char_updated}
  and coalesce(s.bound_to = c.id, s.roleplay_bound_type is distinct from 'string' or s.roleplay_bound = c.id::text)
  and (s.user_id, s.id::text) not in (select user_id, job from crowded)
  and s.user_id not in (select user_id from lib where lenient)
  and s.id not in (select job_id from strays)
  {objects}
"""
    return sql.SQL(text)  # built from constants and the live columns only


def _in_catalogue(versions: str) -> str:
    """The object at the key (a current version), and nothing else under the job's prefix but its thumbnail."""
    return f"""and exists (select 1 from storage.objects so where so.bucket_id = %(bucket)s and so.name = s.storage_path {versions})
  and not exists (
    select 1 from storage.objects so where so.bucket_id = %(bucket)s
      and so.name collate "C" >= s.prefix collate "C" and so.name collate "C" < (left(s.prefix, 73) || '`') collate "C"
      and so.name <> s.storage_path and so.name <> left(s.storage_path, 110) || '{THUMB_SUFFIX}' {versions})"""


class Prefilter:
    """The jobs of a page the rows (and the objects) prove saved. `versions`: storage.objects is the
    catalogue, with these conditions of a current version; None: the objects come from the listing
    the scan reads (a local folder, or the Storage API)."""

    def __init__(self, repository: PostgresRepository, versions: str | None):
        self.repository = repository
        self.versions = versions

    def provably_saved(self, jobs: Sequence[Job], objects: Catalogue) -> set[UUID]:
        if not jobs:
            return set()
        params: dict[str, Any] = {"ids": [j.id for j in jobs], "users": sorted({j.user_id for j in jobs}),
                                  "portrait": PORTRAIT, "bucket": LIBRARY_BUCKET}
        rows = self.repository.read(statement(self.repository, self.versions), params)
        return self._confirmed({row["id"]: row["storage_path"] for row in rows}, objects)

    def scanning(self, query: JobQuery) -> Windowed:
        return Windowed(self, query)

    def _confirmed(self, proven: dict[UUID, str], objects: Catalogue) -> set[UUID]:
        if self.versions is not None:
            return set(proven)
        return confirmed(proven, objects)


class Windowed:
    """The prefilter of one scan: a page's users recur on many pages (a heavy user's library rows would
    be read for each), so one statement proves a window of WINDOW of the query's jobs, from the first
    page it does not cover, and each page is answered from it. A job the window did not see (written
    since) is not proven: the full path reads it."""

    def __init__(self, prefilter: Prefilter, query: JobQuery):
        self.prefilter = prefilter
        self.query = query
        self.proven: dict[UUID, str] = {}  # the window's proven jobs and their rows' keys: nothing more is kept
        self.low: tuple[datetime, UUID] | None = None
        self.high: tuple[datetime, UUID] | None = None  # None: to the end of the query's jobs

    def provably_saved(self, jobs: Sequence[Job], objects: Catalogue) -> set[UUID]:
        if not jobs:
            return set()
        if not self._covers(jobs):
            self._prove_from(_position(jobs[0]))
        return self.prefilter._confirmed({j.id: self.proven[j.id] for j in jobs if j.id in self.proven}, objects)

    def scanning(self, query: JobQuery) -> Windowed:
        return Windowed(self.prefilter, query)

    def _covers(self, jobs: Sequence[Job]) -> bool:
        first, last = _position(jobs[0]), _position(jobs[-1])
        return self.low is not None and self.low <= first and (self.high is None or last <= self.high)

    def _prove_from(self, low: tuple[datetime, UUID]) -> None:
        repository = self.prefilter.repository
        params: dict[str, Any] = {"since": self.query.since, "user_id": self.query.user_id, "portrait": PORTRAIT,
                                  "bucket": LIBRARY_BUCKET, "low_at": db_time(low[0]), "low_id": low[1]}
        # The window's last job: the portrait index walks WINDOW entries of it.
        end = repository.read(sql.SQL(
            f"select j.created_at, j.id from jobs j where {WINDOW_JOBS} order by j.created_at, j.id offset {WINDOW - 1} limit 1"),
            params)
        self.high = (end[0]["created_at"], end[0]["id"]) if end else None
        params.update(high_at=db_time(self.high[0]) if self.high else None, high_id=self.high[1] if self.high else None)
        rows = repository.read(statement(repository, self.prefilter.versions, window=True), params)
        self.low = low
        self.proven = {row["id"]: row["storage_path"] for row in rows}


def _position(job: Job) -> tuple[datetime, UUID]:
    return job.created_at, job.id


def confirmed(proven: dict[UUID, str], objects: Catalogue) -> set[UUID]:
    """The jobs (id: the row's key) whose prefix in user-library lists exactly the row's object, beside at
    most its thumbnail: the same listing (and the same objects) the full path would diagnose."""
    listed: dict[str, set[str]] = {}
    for obj in objects.list_prefixes(LIBRARY_BUCKET, sorted({key[:PREFIX_LENGTH] for key in proven.values()})):
        listed.setdefault(obj.key[:PREFIX_LENGTH], set()).add(obj.key)
    return {job for job, key in proven.items()
            if listed.get(key[:PREFIX_LENGTH], set()) - {key[:STEM] + THUMB_SUFFIX} == {key}}
