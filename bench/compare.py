"""Two installs of charfix side by side on one dataset: is a change slower? (docs/performance.md,
"Before and after a change")

    python bench/compare.py --old /path/to/old/.venv/bin/charfix --new .venv/bin/charfix --jobs 50000

Runs list-stuck and a whole backfill-portraits (finding and repairing, from a fresh copy of the
dataset and its storage folder each time) with each install in turn, old new old new ..., and prints
each command's median wall time and the ratio new/old of the medians. Both installs must find the
same stuck jobs and repair the same number: a faster wrong answer is not a result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataset import Spec, clone, database_url, drop, exists, server_uri
from generate import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the baseline install's charfix executable")
    parser.add_argument("--new", required=True, help="the changed install's charfix executable")
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command with each install")
    args = parser.parse_args(argv)
    spec = Spec(jobs=args.jobs)
    admin = server_uri()
    if not (exists(admin, spec.database) and spec.storage.is_dir()):
        generate(spec, log=print)
    installs = {"old": args.old, "new": args.new}
    times: dict[str, dict[str, list[float]]] = {cmd: {"old": [], "new": []} for cmd in ("list-stuck", "backfill")}
    answers: dict[str, set[str]] = {"old": set(), "new": set()}
    with tempfile.TemporaryDirectory(prefix="charfix-compare-") as work:
        for _ in range(args.repeat):
            for name, charfix in installs.items():
                url = database_url(admin, spec.database)
                seconds, out = _timed([charfix, "--db-url", url, "--storage-dir", str(spec.storage), "list-stuck",
                                       "--since", "90d", "--json", "job_id"])
                times["list-stuck"][name].append(seconds)
                answers[name].add(json.dumps(sorted(row["job_id"] for row in json.loads(out))))
                copy, storage = f"{spec.database}_compare", Path(work) / "storage"
                drop(admin, copy)
                clone(admin, spec.database, copy)
                shutil.rmtree(storage, ignore_errors=True)
                shutil.copytree(spec.storage, storage, symlinks=True)
                seconds, out = _timed([charfix, "--db-url", database_url(admin, copy), "--storage-dir", str(storage),
                                       "backfill-portraits", "--since", "90d", "--yes", "--json", "repaired,failed",
                                       "--audit-log", str(Path(work) / f"audit-{name}.jsonl")])
                times["backfill"][name].append(seconds)
                answers[name].add(out.strip().replace("\n", "").replace(" ", ""))
                drop(admin, copy)
    if answers["old"] != answers["new"]:
        print(f"the two installs disagree: old {sorted(answers['old'])} new {sorted(answers['new'])}")
        return 1
    print(f"{spec.jobs:,} jobs, {args.repeat} runs of each, alternating; medians of wall seconds")
    for command, by in times.items():
        old, new = statistics.median(by["old"]), statistics.median(by["new"])
        print(f"  {command:<11} old {old:6.2f} s   new {new:6.2f} s   new/old {new / old:.2f}"
              f"   (old {min(by['old']):.2f}-{max(by['old']):.2f}, new {min(by['new']):.2f}-{max(by['new']):.2f})")
    return 0


def _timed(command: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{command[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return seconds, done.stdout


if __name__ == "__main__":
    sys.exit(main())
