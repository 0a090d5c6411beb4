"""`doctor`'s checks over a Postgres connection: the tables and columns, the privileges charfix's
writes need, and the indexes that would speed up list-stuck (printed as SQL, never created)."""

from __future__ import annotations

from charfix.doctor.checks import Checks, table_checks
from charfix.errors import CharfixError


def check_database(checks: Checks, url: str) -> None:
    from charfix.backends.bootstrap import inspect_database
    from charfix.repository.inspection import SUGGESTED, WRITES

    try:
        report = inspect_database(url)
    except CharfixError as exc:
        checks.add("database connection", "fail", exc.message, "check SUPABASE_DB_URL: host, port, password, sslmode")
        return
    checks.add("database connection", "ok", "connected")
    table_checks(checks, report.columns)
    for table, privileges in report.privileges.items():
        writes = WRITES[table]
        needed = ["SELECT"] + (writes.split(", ") if writes else [])
        lacking = [p for p in needed if not privileges.get(p)]
        if lacking:
            checks.add(f"privileges on {table}", "fail", f"missing {', '.join(lacking)}",
                       "connect as the postgres (service) role, or grant them")
        else:
            checks.add(f"privileges on {table}", "ok", ", ".join(needed))
    for name, table, column, has_it, sql, why in SUGGESTED:
        present = table in report.columns and (column is None or column in report.columns[table])
        if present and not has_it(report.indexes.get(table, [])):
            checks.add(name, "warn", why, f"run: {sql}")
