"""Gathering facts in batches and diagnosing them: the read side that every command shares.

A page of jobs costs a fixed number of repository queries (jobs, assets, library rows, characters)
and storage listings (one per user folder and bucket), never one per job.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

from charfix.diagnosis import facts as f
from charfix.diagnosis import Rules, diagnose
from charfix.backends import Backends
from charfix.errors import NotFoundError, UsageError
from charfix.diagnosis.keys import own_key
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET, Diagnosis, Job, JobFacts, State
from charfix.repository.base import JobQuery, Page, Repository
from charfix.storage.base import Catalogue

PAGE_SIZE = 2000
UNREAD_NOTE = "Proven saved by the rows and storage.objects alone; not read whole (docs/diagnosis.md)."
LINK_WINDOW = timedelta(hours=1)


def collect_facts(backends: Backends, jobs: Sequence[Job], *, link_window: timedelta = LINK_WINDOW) -> list[JobFacts]:
    if not jobs:
        return []
    requests = {job.id: f.read_request(job) for job in jobs}
    return _with_siblings(backends.repository, _gather(backends, jobs, requests), requests, link_window)


def _with_siblings(repo: Repository, facts: list[JobFacts], requests: dict[UUID, f.Request],
                   window: timedelta) -> list[JobFacts]:
    """Jobs that name a character learn of the user's other drafts for the same name (one query per
    page). A job charfix already linked keeps its name, and its drafts still decide whose provider
    URL the character shows (diagnosis/library.py)."""
    named = {}
    for item in facts:
        request = requests[item.job.id]
        if request.character_name and not item.job.unreadable:
            named[item.job.id] = (item.job.user_id, request.character_name)
    if not named:
        return facts
    times = [item.job.created_at for item in facts if item.job.id in named]
    found = repo.jobs_naming(sorted(set(named.values())), since=min(times) - window, until=max(times) + window)
    keyed = _index(found, lambda j: (j.user_id, f.read_request(j).character_name))
    result = []
    for item in facts:
        key = named.get(item.job.id)
        near = [j for j in keyed.get(key, []) if j.id != item.job.id and abs(j.created_at - item.job.created_at) <= window]
        result.append(item.model_copy(update={"siblings": tuple(near)}) if near else item)
    return result


def _gather(backends: Backends, jobs: Sequence[Job], requests: dict[UUID, f.Request]) -> list[JobFacts]:
    # The objects come from the catalogue: storage.objects in the database when there is one
    # (storage/catalogue.py), else the storage's own listings, where a folder listed below answers the
    # stat of the rows' keys too (no request twice).
    repo = backends.repository
    storage: Catalogue = backends.catalogue if backends.catalogue is not None else backends.storage.remembering()
    ids = [j.id for j in jobs]
    assets = repo.assets_for(ids)
    owners = {j.id: j.user_id for j in jobs}
    rows = repo.library_items_for(jobs, [a for a in assets if a.user_id == owners.get(a.job_id)])
    prefixes = [f.job_prefix(j) for j in jobs]
    temp = storage.list_prefixes(WORKSPACE_BUCKET, prefixes)
    library = storage.list_prefixes(LIBRARY_BUCKET, prefixes)
    listed = {o.key for o in library}
    # Only keys inside the row's user's folder are looked at: anything else is evidence of nothing.
    named = {key for r in rows if (key := own_key(r.user_id, r.storage_path)) is not None}
    generic = storage.stat(LIBRARY_BUCKET, sorted(named - listed))
    characters = repo.characters_for(*_character_keys(jobs, requests, rows, library))
    return _group(jobs, requests, assets, rows, temp, library, generic, characters)


def _character_keys(jobs: Sequence[Job], requests: dict[UUID, f.Request], rows,
                    library) -> tuple[list[UUID], list[tuple[UUID, str]]]:
    ids: set[UUID] = {cid for r in rows if (cid := f.row_character_id(r))}
    ids |= {cid for o in library if (cid := f.keyed_character_id(o.key))}
    names: set[tuple[UUID, str]] = set()
    for job in jobs:
        request = requests[job.id]
        if request.character_id:
            ids.add(request.character_id)
        if request.character_name:
            names.add((job.user_id, request.character_name))
    return sorted(ids), sorted(names)


def _group(jobs, requests, assets, rows, temp, library, generic, characters) -> list[JobFacts]:
    assets_by_job = _index(assets, lambda a: a.job_id)
    temp_by_prefix = _index(temp, lambda o: o.key[: f.PREFIX_LENGTH])
    library_by_prefix = _index(library, lambda o: o.key[: f.PREFIX_LENGTH])
    rows_by_job = _Rows(rows)
    generic_by_key = {o.key: o for o in generic}
    known = _Characters(characters)
    result = []
    for job in jobs:
        prefix = f.job_prefix(job)
        job_assets = tuple(assets_by_job[job.id])
        # Every part below is a model the adapters validated already: no need to check them again.
        gathered = JobFacts.model_construct(
            job=job,
            assets=job_assets,
            temp_objects=tuple(temp_by_prefix[prefix]),
            library_objects=tuple(library_by_prefix[prefix]),
            library_items=rows_by_job.candidates(job, job_assets),
        )
        own_rows = f.job_rows(gathered)
        update = {
            # Rows with a key outside the user's folder stay, for the diagnosis to report them.
            "library_items": tuple(f.tied_rows(gathered)),
            "generic_objects": tuple(generic_by_key[r.storage_path] for r in own_rows if r.storage_path in generic_by_key),
            "characters": tuple(known.wanted(gathered, requests[job.id], own_rows)),
        }
        result.append(gathered.model_copy(update=update))
    return result


def _index(items, key) -> defaultdict:
    grouped: defaultdict = defaultdict(list)
    for item in items:
        grouped[key(item)].append(item)
    return grouped


class _Rows:
    """A page's library rows under each key that can tie a row to a job (facts.job_rows decides):
    a heavy user's rows are looked up for each of their jobs, not scanned."""

    def __init__(self, rows):
        self.by_key: defaultdict = defaultdict(list)
        for row in rows:
            path = row.storage_path
            for key in {path[: f.PREFIX_LENGTH], posixpath.splitext(path)[0], f.row_job_id(row)}:
                self.by_key[(row.user_id, key)].append(row)

    def candidates(self, job: Job, assets) -> tuple:
        """A superset of the job's rows: by key prefix, by recorded job id, by asset stem."""
        keys = [f.job_prefix(job), job.id, *(f"{job.user_id}/{a.id}" for a in assets)]
        found = {id(row): row for key in keys for row in self.by_key.get((job.user_id, key), ())}
        return tuple(found.values())


class _Characters:
    """A page's characters, by id and by (owner, normalized name): each job's pick is a few lookups."""

    def __init__(self, characters):
        self.by_id = {c.id: c for c in characters}
        self.by_name = _index(characters, lambda c: (c.user_id, f.normalized_name(c.name)))

    def wanted(self, gathered: JobFacts, request: f.Request, rows) -> list:
        wanted = {}
        for cid in [request.character_id, *(f.row_character_id(r) for r in rows), *f.copied_character_ids(gathered)]:
            if cid in self.by_id:
                wanted[cid] = self.by_id[cid]
        if request.character_name:
            for character in self.by_name[(gathered.job.user_id, f.normalized_name(request.character_name))]:
                wanted[character.id] = character
        return sorted(wanted.values(), key=lambda c: (c.created_at, c.id))


def scan(backends: Backends, query: JobQuery, rules: Rules, *, page_size: int = PAGE_SIZE,
         skip_saved: bool = False, between_pages: Callable[[], bool] | None = None) -> Iterator[Diagnosis]:
    """Diagnose every portrait job of the query, page by page (memory stays flat). `skip_saved`: a
    caller that shows no saved job lets the jobs the catalogue in the database proves saved go
    unread; each still comes out, as a bare `saved` diagnosis, so counts stay exact
    (docs/diagnosis.md, "Provably saved"). `between_pages` is called after a page's last diagnosis,
    before the next page is read (no read of the scan is in flight then); False ends the scan there."""
    # One listing per folder per scan: later pages reuse what earlier pages listed (storage/base.py).
    backends = replace(backends, storage=backends.storage.remembering())
    after: Page | None = None
    while True:
        jobs = backends.repository.portrait_jobs(query, after=after, limit=page_size)
        skipped = _provably_saved(backends, jobs) if skip_saved else set()
        read = iter(collect_facts(backends, [j for j in jobs if j.id not in skipped], link_window=rules.link_window))
        for job in jobs:
            yield unread_saved(job) if job.id in skipped else diagnose(next(read), rules)
        if len(jobs) < page_size or (between_pages is not None and not between_pages()):
            return
        after = Page(created_at=jobs[-1].created_at, id=jobs[-1].id)


def _provably_saved(backends: Backends, jobs: Sequence[Job]) -> set[UUID]:
    """Only a catalogue in the database can prove a job saved in one statement; elsewhere, none is."""
    prove = getattr(backends.catalogue, "provably_saved", None)
    return prove(jobs) if prove is not None and jobs else set()


def unread_saved(job: Job) -> Diagnosis:
    return Diagnosis(job_id=job.id, user_id=job.user_id, status=job.status, created_at=job.created_at,
                     state=State.SAVED, notes=[UNREAD_NOTE])


def resolve_job_ids(backends: Backends, refs: Sequence[UUID | str]) -> list[UUID]:
    """Full ids as given; prefixes looked up, and refused when they match none or several jobs."""
    ids = []
    for ref in refs:
        if isinstance(ref, UUID):
            ids.append(ref)
            continue
        found = backends.repository.job_ids_starting(ref, limit=2)
        if not found:
            raise NotFoundError(f"no job id starts with {ref}")
        if len(found) > 1:
            raise UsageError(f"job id prefix {ref} is ambiguous ({found[0]}, {found[1]}, ...); give more of it")
        ids.append(found[0])
    return ids


def diagnose_ids(backends: Backends, ids: Sequence[UUID], rules: Rules) -> list[Diagnosis]:
    jobs = backends.repository.jobs_by_id(ids)
    missing = [str(i) for i in ids if i not in {j.id for j in jobs}]
    if missing:
        raise NotFoundError(f"no job with id {', '.join(missing)}")
    by_id = {d.job_id: d for d in (diagnose(x, rules) for x in collect_facts(backends, jobs, link_window=rules.link_window))}
    return [by_id[i] for i in dict.fromkeys(ids)]
