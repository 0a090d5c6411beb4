"""charfix at production scale: every figure of issues 5 and 15 next to its baseline from the same run.

    python bench/run.py                 # builds the 1,000,000-job dataset, then measures (about 25 min)
    python bench/run.py --reuse         # measures an existing dataset again
    python bench/run.py --quick         # 100,000 jobs, 2 repeats: checks the scripts work (about a minute)

Each figure is the median of --repeat runs. The real console script runs as a subprocess; its peak
memory is that process's maximum RSS (GNU time). The pairs of backends at 20 and 100 ms (bench/latency.py)
run on the smaller dataset. Results are also written to bench/out/results-<name>.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta, UTC
from pathlib import Path

import psycopg

import latency
from baseline import compare, same_text, sql_ids
from dataset import OUT, Spec, clone, database_url, exists, server_uri, upgrade_storage_schema
from generate import generate
from measure import CHARFIX, PYTHON, Report, median, run, shown_command, verdict

from charfix.repository.inspection import LIBRARY_CHARACTER_INDEX, PORTRAIT_INDEX

# The indexes `charfix doctor` suggests for the scan and for the app's portrait_count trigger, without
# `concurrently`: nothing else writes to the benchmark database.
INDEX_SQL = " ".join(s.replace(" concurrently", "") for s in (PORTRAIT_INDEX, LIBRARY_CHARACTER_INDEX))
# Issue 15's targets (docs/performance.md): list-stuck within 1.5x of stuck.sql at 1,000,000 jobs, peak
# memory at most 100 MB, the whole backfill run (finding and repairing) at 300 jobs/s or more.
TARGETS = {"ratio": 1.5, "peak_mb": 100, "backfill": 300, "help": 0.3}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    spec = Spec(jobs=args.jobs, scale=args.scale, seed=args.seed)
    small = Spec(jobs=args.small_jobs, seed=args.seed)
    near = Spec(jobs=args.latency_jobs or args.small_jobs, seed=args.seed)  # the pairs of backends run on it
    report = Report()
    admin = server_uri()
    for each in dict.fromkeys((spec, small, near)):
        if not (args.reuse and exists(admin, each.database) and each.storage.is_dir()):
            report.say(f"building dataset {each.name} ...")
            generate(each, log=report.say)
    for each in dict.fromkeys((spec, small, near)):
        upgrade_storage_schema(database_url(admin, each.database))
    indexed = f"{spec.database}_indexed"
    if not (args.reuse and exists(admin, indexed)):
        clone(admin, spec.database, indexed)
    with psycopg.connect(database_url(admin, indexed), autocommit=True) as conn:
        conn.execute(INDEX_SQL)  # `if not exists`: a reused copy gets an index suggested since
        conn.execute("analyze jobs, user_library")
    upgrade_storage_schema(database_url(admin, indexed))
    _machine(report, admin, spec)
    urls = {"plain": database_url(admin, spec.database), "indexed": database_url(admin, indexed),
            "small": database_url(admin, small.database)}
    if not args.skip_latency:
        latency.measure(report, args, near, admin)
    if args.only_latency:
        return _written(report, spec)
    _list_stuck(report, args, spec, small, urls)
    if not args.skip_pages:
        _queries_per_page(report, spec, urls["indexed"])
        _requests_per_page_over_rest(report, spec, urls["indexed"])
    if not args.skip_backfill:
        _backfill(report, args, spec, admin, indexed)
    _startup(report, args)
    return _written(report, spec)


def _written(report: Report, spec: Spec) -> int:
    results = OUT / f"results-{spec.name}.txt"
    results.write_text("\n".join(report.lines) + "\n")
    (OUT / f"results-{spec.name}.json").write_text(json.dumps(report.figures, indent=2, default=str))
    print(f"\nwritten to {results}")
    return 0


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--scale", type=float, default=None, help="see generate.py (default jobs / 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the median is shown (default 5)")
    parser.add_argument("--backfill-repeat", type=int, default=3,
                        help="runs per backfill figure (each restores the dataset first; default 3)")
    parser.add_argument("--small-jobs", type=int, default=100_000,
                        help="the second, smaller dataset that shows memory is flat (default 100,000 jobs)")
    parser.add_argument("--reuse", action="store_true", help="use the datasets already built")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-pages", action="store_true", help="skip the queries-per-page scans")
    parser.add_argument("--quick", action="store_true", help="100,000 jobs, 10,000 for the small one, 2 repeats")
    parser.add_argument("--skip-latency", action="store_true", help="skip the pairs of backends (bench/latency.py)")
    parser.add_argument("--only-latency", action="store_true", help="only the pairs of backends")
    parser.add_argument("--latency-jobs", type=int, default=None,
                        help="the dataset the pairs of backends run on (default: the small one)")
    parser.add_argument("--latency-repeat", type=int, default=2, help="list-stuck runs per pair of backends (default 2)")
    parser.add_argument("--latency-concurrency", type=int, default=4,
                        help="backfill-portraits --concurrency through each pair of backends (default 4)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.small_jobs, args.repeat, args.backfill_repeat = 100_000, 10_000, 2, 1
    return args


# -- the machine ------------------------------------------------------------------------------------


def _machine(report: Report, admin: str, spec: Spec) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    with psycopg.connect(database_url(admin, spec.database)) as conn:
        version = conn.execute("show server_version").fetchone()[0]
        settings = dict(conn.execute("select name, setting || coalesce(unit, '') from pg_settings where name in "
                                     "('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather')").fetchall())
        summary = conn.execute("select value from bench.dataset where key = 'summary'").fetchone()[0]
        size = conn.execute("select pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    report.say(f"machine: {os.cpu_count()} CPUs ({cpu}), {int(memory) / 1024 / 1024:.1f} GiB; "
               f"Python {sys.version.split()[0]}; PostgreSQL {version} (pgserver; {settings})")
    report.say(f"dataset {spec.name} ({size}): {json.dumps({k: v for k, v in summary.items() if k != 'spec'})}")
    report.figures["machine"] = {"cpus": os.cpu_count(), "cpu": cpu, "memory_kb": memory, "postgres": version,
                                 "settings": settings, "dataset": summary, "database_size": size}


# -- list-stuck against the SQL ---------------------------------------------------------------------


def _stuck_argv(url: str, storage: Path) -> list[str]:
    return [CHARFIX, "--db-url", url, "--storage-dir", str(storage), "list-stuck", "--since", "90d", "--json"]


def _measure_stuck(args, url: str, storage: Path, label: str) -> dict:
    output = OUT / f"list-stuck-{label}.json"
    runs = [run(_stuck_argv(url, storage), stdout=output) for _ in range(args.repeat)]
    shown = json.loads(output.read_text())
    sql_times, ids = [], set()
    for _ in range(args.repeat):
        seconds, ids = sql_ids(url, now=datetime.fromtimestamp(runs[-1].started, UTC))
        sql_times.append(seconds)
    return {"seconds": median([r.seconds for r in runs]), "peak_mb": median([r.peak_mb for r in runs]),
            "runs": [round(r.seconds, 2) for r in runs], "sql_seconds": median(sql_times),
            "sql_runs": [round(s, 2) for s in sql_times], **compare(shown, ids)}


def _list_stuck(report: Report, args, spec: Spec, small: Spec, urls: dict) -> None:
    report.say(f"\nlist-stuck --since 90d --json (median of {args.repeat}) against one hand-written SQL query "
               "(bench/stuck.sql) computing the same job ids")
    report.figure("figure", "charfix", "baseline", "target")
    for label, url, storage, name in (("no index", urls["plain"], spec.storage, spec.name),
                                      ("with index", urls["indexed"], spec.storage, spec.name)):
        m = _measure_stuck(args, url, storage, label.replace(" ", "-"))
        report.figures[f"list_stuck_{label}"] = m
        ratio = m["seconds"] / m["sql_seconds"]
        report.say(f"  [{name}, {label}]")
        report.figure("wall time", f"{m['seconds']:.2f} s {m['runs']}", f"SQL {m['sql_seconds']:.2f} s {m['sql_runs']}")
        report.figure("ratio charfix / SQL", f"{ratio:.1f}x", "", f"<= {TARGETS['ratio']}x {verdict(ratio <= TARGETS['ratio'])}")
        report.figure("peak RSS", f"{m['peak_mb']:.0f} MB", "", f"<= {TARGETS['peak_mb']} MB {verdict(m['peak_mb'] <= TARGETS['peak_mb'])}")
        report.figure("job ids shown", f"{m['shown']} {m['states']}", f"SQL {m['sql_ids']}: {same_text(m)}")
        report.command(shown_command(_stuck_argv(url, storage)))
    report.say(f"    the index (as `charfix doctor` prints it, without `concurrently`): {INDEX_SQL}")
    limited = run(_stuck_argv(urls["indexed"], spec.storage) + ["--limit", "10"], stdout=OUT / "list-stuck-limit.json")
    report.figures["list_stuck_limit_10"] = {"seconds": limited.seconds, "peak_mb": limited.peak_mb}
    report.figure("peak RSS, same scan, --limit 10 shown", f"{limited.peak_mb:.0f} MB ({limited.seconds:.1f} s)", "",
                  "the scan alone: the rest is the output")
    m = _measure_stuck(args, urls["small"], small.storage, "small")
    big = report.figures["list_stuck_no index"]
    report.figures["list_stuck_small"] = m
    report.say(f"  [memory flat in the number of jobs: {small.name} against {spec.name}, no index]")
    report.figure(f"peak RSS at {small.jobs:,} jobs", f"{m['peak_mb']:.0f} MB",
                  f"at {spec.jobs:,} jobs: {big['peak_mb']:.0f} MB",
                  f"growth {big['peak_mb'] / m['peak_mb']:.2f}x for {spec.jobs / small.jobs:.0f}x the jobs")
    report.figure(f"wall time at {small.jobs:,} jobs", f"{m['seconds']:.2f} s", f"SQL {m['sql_seconds']:.2f} s",
                  f"ids: {'the same set' if m['same_set'] else 'DIFFERENT'}")
    report.command(shown_command(_stuck_argv(urls["small"], small.storage)))


# -- queries per page -------------------------------------------------------------------------------


def _queries_per_page(report: Report, spec: Spec, url: str) -> None:
    from charfix.repository.base import JobQuery
    from charfix.repository.postgres import PostgresRepository
    from charfix.backends import Backends
    from charfix.queries.scan import scan
    from charfix.queries.selection import build_rules
    from charfix.storage.local import LocalStorage

    report.say("\nrepository queries and storage requests per page of jobs (scan over every portrait job, "
               "in-process, indexed database)")
    report.figure("page size", "queries per page", "storage requests per page", "constant?")
    now = datetime.now(UTC)
    rows = {}
    for size in (100, 500, 1000):
        repo = PostgresRepository.connect(url)
        storage = LocalStorage(spec.storage)
        pages = _PageCounter(repo, storage)
        started = time.perf_counter()
        examined = sum(1 for _ in scan(Backends(repository=pages, storage=storage),
                                       JobQuery(since=now - timedelta(days=90)), build_rules(now=now), page_size=size))
        seconds = time.perf_counter() - started
        per_page = pages.finish()
        repo.close()
        queries = sorted({q for q, _, _ in per_page})
        requests = [r for _, r, _ in per_page]
        users = [u for _, _, u in per_page]
        rows[size] = {"pages": len(per_page), "queries": queries, "storage_min": min(requests),
                      "storage_max": max(requests), "users_max": max(users), "seconds": seconds, "jobs": examined}
        report.figure(f"{size} ({len(per_page)} pages, {seconds:.1f} s)", f"{'/'.join(map(str, queries))}",
                      f"{min(requests)}..{max(requests)} (<= 2 x users + keys)", verdict(len(queries) == 1 or
                                                                                        _only_last_differs(per_page)))
    report.figures["queries_per_page"] = rows
    report.say("    (storage requests: one listing per user folder and bucket, plus one stat per library key "
               "outside the job's prefix; they grow with the users on a page, not with the jobs in the table)")


def _requests_per_page_over_rest(report: Report, spec: Spec, url: str, *, pages: int = 5) -> None:
    """The same count through the Supabase adapters: HTTP requests per page, against the local test
    server (tests/supabase_server) over the same database and folder. Only the first pages: every
    request goes through that server's Python, which is far slower than PostgREST."""
    import itertools

    from charfix.http import connect
    from charfix.repository.base import JobQuery
    from charfix.repository.supabase import URL_BUDGET, SupabaseRepository
    from charfix.backends import Backends
    from charfix.queries.scan import scan
    from charfix.queries.selection import build_rules
    from charfix.storage.supabase import SupabaseStorage

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test server lives in tests/
    from tests.supabase_server import SupabaseTestServer, make_service_key

    report.say(f"\nHTTP requests per page through the Supabase adapters (the first {pages} pages; local test "
               "server over the same database)")
    report.figure("page size", "REST requests per page", "Storage requests per page", "constant?")
    now, key = datetime.now(UTC), make_service_key()
    rows = {}
    with SupabaseTestServer(dsn=url, storage_root=spec.storage, service_key=key) as server:
        for size in (100, 500):
            client = connect(server.url, key)
            repo, storage = SupabaseRepository(client), SupabaseStorage(client)
            counter = _PageCounter(repo, storage)
            found = scan(Backends(repository=counter, storage=storage), JobQuery(since=now - timedelta(days=90)),
                         build_rules(now=now), page_size=size)
            for _ in itertools.islice(found, pages * size):
                pass
            per_page = counter.finish()[:pages]
            rest = sorted({q for q, _, _ in per_page})
            requests = [r for _, r, _ in per_page]
            rows[size] = {"pages": len(per_page), "rest": rest, "storage_min": min(requests), "storage_max": max(requests)}
            # Not one number: id and name lists are split to keep each URL under the adapter's budget,
            # so the count follows the page's contents. It has no bearing on the table's size.
            report.figure(str(size), "/".join(map(str, rest)), f"{min(requests)}..{max(requests)} (<= 2 x users + keys)",
                          "bounded by the page")
    report.figures["requests_per_page_rest"] = rows
    report.say(f"    (REST: the id and name lists of a page are split so that no URL exceeds {URL_BUDGET:,} bytes; "
               "the count follows the page size and the names on the page, never the size of the table)")


def _only_last_differs(per_page) -> bool:
    return len({q for q, _, _ in per_page[:-1]}) <= 1


class _PageCounter:
    """The repository, counting the queries and storage requests between one page and the next."""

    def __init__(self, repo, storage):
        self._repo, self._storage = repo, storage
        self._pages: list[tuple[int, int, int]] = []
        self._mark: tuple[int, int, int] | None = None

    def __getattr__(self, name):
        return getattr(self._repo, name)

    def portrait_jobs(self, query, *, after, limit):
        self._close_page()
        jobs = self._repo.portrait_jobs(query, after=after, limit=limit)
        if jobs:
            self._mark = (self._repo.queries - 1, self._storage.requests, len({j.user_id for j in jobs}))
        return jobs

    def _close_page(self) -> None:
        if self._mark is not None:
            q, r, users = self._mark
            self._pages.append((self._repo.queries - q, self._storage.requests - r, users))
            self._mark = None

    def finish(self) -> list[tuple[int, int, int]]:
        self._close_page()
        return self._pages


# -- backfill ---------------------------------------------------------------------------------------


def backfill_once(admin: str, source: str, spec: Spec, *, concurrency: int):
    """One backfill on a fresh copy of `source` and of the storage folder: the run and its summary,
    with `repair_seconds` (first to last audit line) added."""
    work_db, work_storage = f"{spec.database}_work", OUT / "work-storage"
    clone(admin, source, work_db)
    shutil.rmtree(work_storage, ignore_errors=True)
    # Hard links: charfix writes objects to a temporary file and renames it, never in place.
    os.system(f"cp -al {spec.storage} {work_storage}")
    output, audit = OUT / "backfill.json", OUT / "audit.jsonl"
    offset = audit.stat().st_size if audit.exists() else 0
    measured = run(_backfill_argv(database_url(admin, work_db), work_storage, concurrency=concurrency), stdout=output)
    done = json.loads(output.read_text())
    done["repair_seconds"] = _repair_phase(audit, offset)
    return measured, done


def _backfill(report: Report, args, spec: Spec, admin: str, indexed: str) -> None:
    report.say(f"\nbackfill-portraits --since 90d --yes (median of {args.backfill_repeat}; before each run the "
               "database is cloned from the pristine one and the storage folder copied)")
    report.figure("figure", "charfix", "baseline: list-stuck (finding only)", "target")
    work_db, work_storage = f"{spec.database}_work", OUT / "work-storage"
    for source, label in ((indexed, "with index"), (spec.database, "no index")):
        # Finding the jobs is list-stuck's work, measured above on the same database.
        dry_seconds = report.figures[f"list_stuck_{label}"]["seconds"]
        for concurrency in ((1, 2, 4) if label == "with index" else (1,)):
            results = []
            for _ in range(args.backfill_repeat):
                measured, done = backfill_once(admin, source, spec, concurrency=concurrency)
                results.append((measured, done))
            seconds = median([m.seconds for m, _ in results])
            repaired = int(median([d["repaired"] for _, d in results]))
            failed = int(median([d["failed"] for _, d in results]))
            rate = repaired / seconds
            repair_rate = repaired / max(median([d["repair_seconds"] for _, d in results]), 1e-9)
            key = f"backfill_{label}_c{concurrency}"
            report.figures[key] = {"seconds": seconds, "repaired": repaired, "failed": failed, "finding_seconds": dry_seconds,
                                   "runs": [round(m.seconds, 2) for m, _ in results], "jobs_per_s": rate,
                                   "repair_phase_jobs_per_s": repair_rate, "peak_mb": median([m.peak_mb for m, _ in results])}
            report.say(f"  [{spec.name}, {label}, --concurrency {concurrency}]")
            report.figure("wall time", f"{seconds:.1f} s ({repaired} repaired, {failed} failed)",
                          f"list-stuck {dry_seconds:.1f} s")
            report.figure("throughput, whole run", f"{rate:.0f} jobs/s", "", f">= {TARGETS['backfill']} {verdict(rate >= TARGETS['backfill'])}")
            report.figure("throughput, repairs alone (audit log span)", f"{repair_rate:.0f} jobs/s", "",
                          "for comparison: the target is the whole run")
            report.command(shown_command(_backfill_argv("<a fresh copy of " + source + ">", work_storage,
                                                        concurrency=concurrency)))
    clone(admin, spec.database, work_db)  # leave no half-repaired copy behind


def _repair_phase(audit: Path, offset: int) -> float:
    """From the run's first audit line to its last: the repairs, without finding the jobs."""
    with audit.open("rb") as file:
        file.seek(offset)
        times = [datetime.fromisoformat(json.loads(line)["time"]) for line in file if line.strip()]
    return (max(times) - min(times)).total_seconds() if times else 0.0


def _backfill_argv(url: str, storage: Path, *, concurrency: int = 1) -> list[str]:
    argv = [CHARFIX, "--db-url", url, "--storage-dir", str(storage), "backfill-portraits", "--since", "90d", "--json"]
    return argv + ["--yes", "--concurrency", str(concurrency), "--audit-log", str(OUT / "audit.jsonl")]


# -- start-up ---------------------------------------------------------------------------------------


def _startup(report: Report, args) -> None:
    repeat = max(args.repeat, 5)
    help_runs = [run([CHARFIX, "--help"]).seconds for _ in range(repeat)]
    import_runs = [run([PYTHON, "-c", "import typer, rich"]).seconds for _ in range(repeat)]
    seconds, baseline = median(help_runs), median(import_runs)
    report.figures["startup"] = {"help": seconds, "import_typer_rich": baseline, "help_runs": help_runs}
    report.say(f"\nstart-up (median of {repeat})")
    report.figure("charfix --help", f"{seconds:.3f} s", f'python -c "import typer, rich" {baseline:.3f} s',
                  f"< {TARGETS['help']} s {verdict(seconds < TARGETS['help'])}")
    report.command(shown_command([CHARFIX, "--help"]))


if __name__ == "__main__":
    sys.exit(main())
