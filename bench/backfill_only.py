"""Only the backfill figures of run.py, on the indexed dataset: each run starts from a fresh clone of
the pristine database and a hard-linked copy of the storage folder, exactly as run.py does.

    python bench/backfill_only.py                         # --concurrency 1 2 4, 3 runs each
    python bench/backfill_only.py --concurrency 1 --repeat 1

The dataset must exist (bench/generate.py); the indexed copy is made here when missing.
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from dataset import OUT, Spec, clone, database_url, exists, server_uri
from measure import median, shown_command
from run import INDEX_SQL, _backfill_argv, backfill_once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    spec = Spec(jobs=args.jobs, seed=args.seed)
    admin = server_uri()
    if not exists(admin, spec.database):
        sys.exit(f"no dataset {spec.name}: run bench/generate.py first")
    indexed = f"{spec.database}_indexed"
    if not exists(admin, indexed):
        clone(admin, spec.database, indexed)
    with psycopg.connect(database_url(admin, indexed), autocommit=True) as conn:
        conn.execute(INDEX_SQL)  # `if not exists`: a reused copy gets an index suggested since
        conn.execute("analyze jobs, user_library")
    work_db, work_storage = f"{spec.database}_work", OUT / "work-storage"
    for concurrency in args.concurrency:
        runs = []
        for _ in range(args.repeat):
            measured, done = backfill_once(admin, indexed, spec, concurrency=concurrency)
            repair_seconds = done["repair_seconds"]
            runs.append((measured.seconds, done["repaired"], done["failed"], repair_seconds))
            print(f"  c{concurrency}: {measured.seconds:.1f} s, {done['repaired']} repaired, {done['failed']} failed, "
                  f"skipped_locked {done['skipped_locked']}, repairs alone {repair_seconds:.1f} s", flush=True)
        seconds = median([r[0] for r in runs])
        repaired = int(median([r[1] for r in runs]))
        repair_seconds = median([r[3] for r in runs])
        print(f"--concurrency {concurrency}: median {seconds:.1f} s [{', '.join(f'{r[0]:.1f}' for r in runs)}], "
              f"{repaired / seconds:.0f} jobs/s whole run, {repaired / max(repair_seconds, 1e-9):.0f} jobs/s repairs alone "
              f"(median span {repair_seconds:.1f} s)", flush=True)
        print("    $ " + shown_command(_backfill_argv("<a fresh copy of " + indexed + ">", work_storage,
                                                       concurrency=concurrency)), flush=True)
    clone(admin, spec.database, work_db)  # leave no half-repaired copy behind
    return 0


if __name__ == "__main__":
    sys.exit(main())
