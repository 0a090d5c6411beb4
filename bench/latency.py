"""charfix where its users run it: the tables and objects a network round trip away (issue 15).

The same dataset through five pairs of backends, side by side in one run:

- Postgres + a local storage folder (the reference);
- Postgres + the Storage API at 20 ms and at 100 ms per request;
- Supabase REST + the Storage API at 20 ms (and at 0 ms: the test server's own time).

The Storage API and REST are the local test server (tests/supabase_server, docs/testing-supabase-server.md)
over the same database and folder, with its constant per-request delay (`latency`). It runs in this
process; charfix runs as its console script. Every list-stuck run is checked against bench/stuck.sql
(the same job ids), and every figure carries the requests the server answered.
"""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from baseline import compare, same_text, sql_ids
from dataset import OUT, Spec, clone, database_url
from measure import CHARFIX, Report, median, run, shown_command, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test server lives in tests/

TARGETS = {"api_ratio": 1.5, "rest_seconds": 30.0}


@dataclass(frozen=True)
class Mode:
    label: str
    tables: str  # "postgres" or "rest"
    latency_ms: float | None  # None: a local storage folder
    backfill: bool = True

    @property
    def over_http(self) -> bool:
        return self.latency_ms is not None


MODES = (
    Mode("Postgres + folder", "postgres", None),
    Mode("Postgres + Storage API, 20 ms", "postgres", 20),
    Mode("Postgres + Storage API, 100 ms", "postgres", 100),
    Mode("REST + Storage API, 20 ms", "rest", 20),
    # No delay: what the test server's own work (plain Python, one storage operation at a time) adds.
    Mode("REST + Storage API, 0 ms", "rest", 0, backfill=False),
)


@contextmanager
def backends(mode: Mode, url: str, storage: Path):
    """The arguments and environment that point charfix at `mode`'s backends, and the server (or None)."""
    if not mode.over_http:
        yield ["--db-url", url, "--storage-dir", str(storage)], {}, None
        return
    from tests.supabase_server import SupabaseTestServer, make_service_key

    key = make_service_key()
    with SupabaseTestServer(dsn=url, storage_root=storage, service_key=key, latency=mode.latency_ms / 1000) as server:
        env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key}
        yield (["--db-url", url] if mode.tables == "postgres" else []), env, server


def requests(server) -> dict:
    if server is None:
        return {"rest": 0, "storage": 0, "max_in_flight": 0}
    rest = sum(1 for _, path, _ in server.requests if path.startswith("/rest/v1"))
    storage = sum(1 for _, path, _ in server.requests if path.startswith("/storage/v1"))
    return {"rest": rest, "storage": storage, "max_in_flight": server.max_in_flight}


def measure(report: Report, args, spec: Spec, admin: str) -> None:
    report.say(f"\nlatency: {spec.name} through {len(MODES)} pairs of backends (list-stuck: median of {args.latency_repeat}; "
               "backfill: one run on a fresh copy); requests as the test server counted them")
    url = database_url(admin, spec.database)
    figures = report.figures.setdefault("latency", {})
    report.figure("figure", "charfix", "requests (REST / Storage, most in flight)", "target")
    for mode in MODES:
        figures[mode.label] = {"list_stuck": _list_stuck(report, args, mode, url, spec.storage)}
    folder = figures[MODES[0].label]["list_stuck"]["seconds"]
    report.say("  ratios, list-stuck, against Postgres + folder in this run")
    for mode in MODES[1:]:
        seconds = figures[mode.label]["list_stuck"]["seconds"]
        ratio = seconds / folder
        figures[mode.label]["ratio_to_folder"] = ratio
        target = ""
        if mode.tables == "postgres" and mode.latency_ms == 20:
            target = f"<= {TARGETS['api_ratio']}x {verdict(ratio <= TARGETS['api_ratio'])}"
        if mode.tables == "rest" and mode.latency_ms == 20:
            target = f"{seconds:.1f} s <= {TARGETS['rest_seconds']:.0f} s {verdict(seconds <= TARGETS['rest_seconds'])}"
        report.figure(f"  {mode.label}", f"{ratio:.1f}x ({seconds:.1f} s / {folder:.1f} s)", "", target)
    if not args.skip_backfill:
        for mode in (m for m in MODES if m.backfill):
            figures[mode.label]["backfill"] = _backfill(report, args, mode, admin, spec)


def _list_stuck(report: Report, args, mode: Mode, url: str, storage: Path) -> dict:
    output = OUT / "latency-list-stuck.json"
    runs, counts = [], []
    with backends(mode, url, storage) as (where, env, server):
        argv = [CHARFIX, *where, "list-stuck", "--since", "90d", "--json"]
        for _ in range(args.latency_repeat):
            if server is not None:
                server.reset_counters()
            runs.append(run(argv, stdout=output, env=env))
            counts.append(requests(server))
    sql_seconds, ids = sql_ids(url, now=datetime.fromtimestamp(runs[-1].started, UTC))
    m = {"seconds": median([r.seconds for r in runs]), "runs": [round(r.seconds, 2) for r in runs],
         "peak_mb": median([r.peak_mb for r in runs]), "requests": counts[-1], "sql_seconds": sql_seconds,
         **compare(json.loads(output.read_text()), ids)}
    c = m["requests"]
    report.say(f"  [{mode.label}] list-stuck --since 90d --json")
    report.figure("wall time", f"{m['seconds']:.2f} s {m['runs']}",
                  f"{c['rest']} / {c['storage']} ({c['max_in_flight']} at once)" if mode.over_http else "none (SQL + folder)")
    report.figure("job ids shown", f"{m['shown']} {m['states']}", f"SQL {m['sql_ids']}: {same_text(m)}")
    report.command(shown_command(argv) + _env_note(env))
    return m


def _backfill(report: Report, args, mode: Mode, admin: str, spec: Spec) -> dict:
    """One backfill on a fresh copy of the database and of the storage folder (a real copy, not hard
    links: the test server writes objects in place)."""
    work_db, work_storage = f"{spec.database}_latency_work", OUT / "latency-work-storage"
    clone(admin, spec.database, work_db)
    shutil.rmtree(work_storage, ignore_errors=True)
    shutil.copytree(spec.storage, work_storage, symlinks=True)
    url = database_url(admin, work_db)
    output, audit = OUT / "latency-backfill.json", OUT / "latency-audit.jsonl"
    audit.unlink(missing_ok=True)
    with backends(mode, url, work_storage) as (where, env, server):
        argv = [CHARFIX, *where, "backfill-portraits", "--since", "90d", "--json", "--yes",
                "--concurrency", str(args.latency_concurrency), "--audit-log", str(audit)]
        measured = run(argv, stdout=output, env=env)
        counts = requests(server)
    done = json.loads(output.read_text())
    m = {"seconds": measured.seconds, "repaired": done["repaired"], "failed": done["failed"],
         "jobs_per_s": done["repaired"] / measured.seconds, "requests": counts, "peak_mb": measured.peak_mb}
    report.say(f"  [{mode.label}] backfill-portraits --concurrency {args.latency_concurrency}")
    report.figure("wall time", f"{m['seconds']:.1f} s ({m['repaired']} repaired, {m['failed']} failed)",
                  f"{counts['rest']} / {counts['storage']} ({counts['max_in_flight']} at once)" if mode.over_http else "")
    report.figure("throughput, whole run", f"{m['jobs_per_s']:.0f} jobs/s")
    report.command(shown_command([f"<a fresh copy of {spec.database}>" if a == url else a for a in argv]) + _env_note(env))
    clone(admin, spec.database, work_db)  # leave no half-repaired copy behind
    return m


def _env_note(env: dict) -> str:
    return "   (with SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY of the test server)" if env else ""

