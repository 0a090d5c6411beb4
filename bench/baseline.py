"""The SQL baseline (stuck.sql): the job ids `list-stuck` shows, computed by the database in one statement,
and the check every list-stuck run of the benchmark passes (the same set of ids)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

STUCK_SQL = (Path(__file__).parent / "stuck.sql").read_text()


def sql_ids(url: str, *, now: datetime) -> tuple[float, set[str]]:
    """Seconds the statement took, and the ids it returned, as of `now`."""
    params = {"since": now - timedelta(days=90), "now": now, "stuck_after": timedelta(minutes=15),
              "link_window": timedelta(hours=1)}
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        ids = {str(row[0]) for row in conn.execute(STUCK_SQL, params)}
        return time.perf_counter() - started, ids


def compare(shown: list[dict], ids: set[str]) -> dict:
    """What a list-stuck --json output shows against the SQL's ids."""
    charfix_ids = {d["job_id"] for d in shown}
    return {"shown": len(charfix_ids), "sql_ids": len(ids), "same_set": ids == charfix_ids,
            "only_sql": len(ids - charfix_ids), "only_charfix": len(charfix_ids - ids),
            "states": dict(Counter(d["state"] for d in shown))}


def same_text(m: dict) -> str:
    return "the same set" if m["same_set"] else f"DIFFERENT: {m['only_sql']} only in SQL, {m['only_charfix']} only in charfix"
