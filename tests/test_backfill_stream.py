"""`backfill-portraits` repairs while its scan goes on (repair/operations.py): pages of repairable jobs
are repaired as they are found, not after the whole scan. The scan's pages are made small here
(queries/scan.py reads 2,000 jobs a page) so that a small dataset spans several of them."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from functools import partial

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.demo.cases import png
from charfix.queries import scan as scan_module
from charfix.queries import selection as selection_module
from charfix.repair import operations
from charfix.repair.operations import backfill
from snapshots import duplicate_rows, snapshot
from test_cli import _normalized
from test_reliability import open_backends, selection

NAMESPACE = uuid.UUID("6f1c1d38-7d0c-4a57-9d43-2f6b5c1e9a10")


def _id(*parts: object) -> uuid.UUID:
    """The same id in both twins, so that two runs can be compared row by row."""
    return uuid.uuid5(NAMESPACE, "/".join(map(str, parts)))


def _stuck_job(conn, seeded, user: uuid.UUID, job: uuid.UUID, minutes: int, metadata: dict) -> None:
    created = seeded.now - timedelta(hours=3) + timedelta(minutes=minutes)
    key = f"{user}/{job}_0.png"
    conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values "
                 "(%s, %s, 'image', 'processing', %s, %s)", (job, user, Jsonb(metadata), created))
    conn.execute("insert into workspace_assets (user_id, job_id, asset_type, temp_storage_path, file_size_bytes, "
                 "mime_type, generation_seed, original_prompt, model_used, created_at) values "
                 "(%s, %s, 'image', %s, 70, 'image/png', 42, 'p', 'm', %s)", (user, job, key, created + timedelta(seconds=5)))
    path = seeded.storage / "workspace-temp" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png((minutes % 255, 10, 10)))


def _many_pages(seeded, incidents: int = 36, pairs: int = 3) -> list[uuid.UUID]:
    """Incident-shaped jobs (each its own user and late-created character), and pairs of jobs naming
    one character that has no image yet, the two of a pair twelve jobs apart: with scan pages of 7
    they are on different pages, so the second is read after the first was repaired."""
    jobs = []
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        for n in range(incidents):
            user, job = _id("user", n), _id("job", n)
            _stuck_job(conn, seeded, user, job, n, {"destination": "character_portrait", "characterName": f"Bulk {n}"})
            conn.execute("insert into characters (id, user_id, name, description, created_at) values (%s, %s, %s, 'd', %s)",
                         (_id("character", n), user, f"Bulk {n}", seeded.now - timedelta(hours=2)))
            jobs.append(job)
        for p in range(pairs):
            user, character = _id("pair user", p), _id("pair character", p)
            conn.execute("insert into characters (id, user_id, name, description, created_at) values (%s, %s, 'Shared', 'd', %s)",
                         (character, user, seeded.now - timedelta(days=2)))
            for side in range(2):
                job = _id("pair job", p, side)
                _stuck_job(conn, seeded, user, job, 3 * p + 12 * side,
                           {"destination": "character_portrait", "character_id": str(character)})
                jobs.append(job)
    return jobs


@pytest.fixture
def small_scan_pages(monkeypatch):
    monkeypatch.setattr(selection_module, "scan", partial(scan_module.scan, page_size=7))


class Watched:
    """The order of the scan's page reads and the repairs' pages, as they happen."""

    def __init__(self, monkeypatch, backends):
        self.events: list[str] = []
        self.guard = threading.Lock()
        read = backends.repository.portrait_jobs

        def portrait_jobs(*args, **kwargs):
            self._note("scan page")
            return read(*args, **kwargs)

        monkeypatch.setattr(backends.repository, "portrait_jobs", portrait_jobs)
        repair_page = operations.repair_page

        def watched_page(*args, **kwargs):
            self._note("repair page")
            return repair_page(*args, **kwargs)

        monkeypatch.setattr(operations, "repair_page", watched_page)

    def _note(self, event: str) -> None:
        with self.guard:
            self.events.append(event)

    def index(self, event: str, *, last: bool = False) -> int:
        found = [i for i, e in enumerate(self.events) if e == event]
        assert found, f"no {event}: {self.events}"
        return found[-1] if last else found[0]


@pytest.mark.parametrize("lanes", [1, 3])
def test_the_first_pages_are_repaired_before_the_scan_reads_its_last_page(seeded, monkeypatch, small_scan_pages, lanes):
    jobs = _many_pages(seeded)
    backends = open_backends(seeded)
    watched = Watched(monkeypatch, backends)
    report = backfill(backends, selection(seeded), page_size=3, concurrency=lanes,
                      open_worker=partial(open_backends, seeded))
    assert watched.events.count("scan page") > 5  # the data spans several pages of the scan
    if lanes == 1:
        # One connection: the scan reads a page, what it found is repaired, then the next page is read.
        assert watched.index("repair page") < watched.index("scan page", last=True) - 3
    else:
        assert watched.index("repair page") < watched.index("scan page", last=True)
    assert not report.failed and {j for j in jobs} <= {r.job_id for r in report.repaired}
    assert report.not_attempted == 0 and not report.scan_stopped


@pytest.mark.parametrize("workers", [1, 2])
def test_over_rest_jobs_are_repaired_as_the_scan_finds_them(seeded, monkeypatch, small_scan_pages, server, key, workers):
    from test_backends import supabase_backends

    jobs = _many_pages(seeded, incidents=20, pairs=1)
    backends = supabase_backends(server, key)
    watched = Watched(monkeypatch, backends)
    repair_job = operations.repair_job

    def watched_job(*args, **kwargs):
        watched._note("repair job")
        return repair_job(*args, **kwargs)

    monkeypatch.setattr(operations, "repair_job", watched_job)
    report = backfill(backends, selection(seeded), concurrency=workers, open_worker=partial(supabase_backends, server, key))
    assert watched.events.count("scan page") > 3 and "repair page" not in watched.events
    assert watched.index("repair job") < watched.index("scan page", last=True)
    assert not report.failed and set(jobs) <= {r.job_id for r in report.repaired} and report.not_attempted == 0


def _counts(report) -> dict:
    data = report.to_json()
    data["jobs"] = sorted((j["job_id"], j["outcome"], tuple(j["steps"])) for j in data.pop("jobs"))
    return data


@pytest.mark.parametrize("lanes", [1, 3])
def test_a_streamed_run_counts_and_writes_what_a_run_that_scans_first_does(seeded, seeded_twin, monkeypatch, lanes):
    # The baseline reads every job in one page of the scan, and so diagnoses them all before its first
    # repair, as the whole scan used to run first; the streamed run reads pages of 7 and repairs pages
    # of 3 in between, and the second job of each pair is read after the first was repaired.
    _many_pages(seeded)
    _many_pages(seeded_twin)
    monkeypatch.setattr(selection_module, "scan", partial(scan_module.scan, page_size=10_000))
    first = backfill(open_backends(seeded), selection(seeded), page_size=3)
    monkeypatch.setattr(selection_module, "scan", partial(scan_module.scan, page_size=7))
    streamed = backfill(open_backends(seeded_twin), selection(seeded_twin), page_size=3, concurrency=lanes,
                        open_worker=partial(open_backends, seeded_twin))
    assert streamed.examined > 40 and len(streamed.repaired) > 40 and streamed.skipped_by_state
    assert _counts(streamed) == _counts(first)
    assert _normalized(snapshot(seeded_twin.db_url, seeded_twin.storage), seeded_twin) == \
        _normalized(snapshot(seeded.db_url, seeded.storage), seeded)
    with psycopg.connect(seeded_twin.db_url) as conn:
        images = conn.execute("select id, image_url from characters where id = any(%s)",
                              ([_id("pair character", p) for p in range(3)],)).fetchall()
    # The first job of each pair set the image; the second, read after it, kept it.
    assert {i: str(_id("pair job", p, 0)) in url for p in range(3) for i, url in images if i == _id("pair character", p)} \
        == {_id("pair character", p): True for p in range(3)}
    assert len(duplicate_rows(seeded_twin.db_url)) == 1  # only the demo's own duplicates case


def test_a_stop_during_the_scan_starts_no_page_and_reads_no_further_page(seeded, monkeypatch):
    _many_pages(seeded)
    monkeypatch.setattr(selection_module, "scan", partial(scan_module.scan, page_size=20))
    backends = open_backends(seeded)
    watched = Watched(monkeypatch, backends)
    stop = threading.Event()
    read_before_stop: list[int] = []

    def progress(result):
        if not stop.is_set():
            stop.set()  # as the signal handler does
            read_before_stop.append(watched.events.count("scan page"))

    report = backfill(backends, selection(seeded), page_size=1, progress=progress, stop=stop)
    assert watched.events.count("repair page") == 1  # no page started after the stop
    assert watched.events.count("scan page") == read_before_stop[0]  # and the scan read no further page
    assert report.scan_stopped and report.attempted == 1 and len(report.repaired) == 1
    left = backfill(open_backends(seeded), selection(seeded), dry_run=True)
    # The rest of the page the scan had read was still diagnosed and counted; the pages after it were not.
    assert report.examined % 20 == 0 and report.examined < left.examined
    fresh = open_backends(seeded)
    examined = {j.id for j in fresh.repository.portrait_jobs(selection(seeded).query, after=None, limit=report.examined)}
    assert report.not_attempted == len({r.job_id for r in left.planned} & examined) > 0  # found, not repaired
    assert len(left.planned) > report.not_attempted  # the scan stopped: more were waiting than counted
