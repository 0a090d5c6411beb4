"""`charfix doctor`: can charfix see and change what it needs? One check per line, each with a fix."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from charfix.config import Settings
from charfix.errors import CharfixError
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET

BREAKS = {
    "jobs": "list-stuck cannot find or read portrait jobs, and complete-job cannot write them",
    "workspace_assets": "the output of a job cannot be found, nor the values a library row copies",
    "characters": "no character can be resolved or pointed at its portrait",
    "user_library": "saved portraits cannot be recognised, and no row can be inserted",
}


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str | None = None

    def to_json(self) -> dict:
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str, fix: str | None = None) -> None:
        self.items.append(Check(name, status, detail, fix))

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.items)


def run_doctor(settings: Settings, *, demo_url: str | None = None, demo_storage: Path | None = None) -> Checks:
    checks = Checks()
    _configuration(checks, settings, demo=demo_url is not None)
    url = demo_url or settings.db_url
    if url:
        _database(checks, url)
    storage_dir = demo_storage or settings.storage_dir
    if storage_dir:
        _local_storage(checks, storage_dir)
    if demo_url is None and settings.supabase_url and settings.service_role_key and not (url and storage_dir):
        from charfix.doctor.supabase import check_supabase

        check_supabase(checks, settings, tables=not url, storage=not storage_dir)
    if url or settings.supabase_url:
        _audit_trail(checks, settings, url)
    return checks


def _audit_trail(checks: Checks, settings: Settings, url: str | None) -> None:
    """Which trail writing runs use (docs/audit.md): the database table once `charfix init` made it."""
    from charfix.repair.audit import default_audit_path

    log = f"file {settings.audit_log or default_audit_path()}"
    if not url:
        checks.add("audit trail", "ok", f"{log} (over REST the file is the only trail)")
        return
    import psycopg

    from charfix.repair.audit_db import TABLE, installed

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            there = installed(conn)
    except psycopg.Error:
        return  # the database check above already says why
    if there:
        checks.add("audit trail", "ok", f"database table {TABLE}")
    else:
        checks.add("audit trail", "ok", log, "run `charfix init` to keep the trail in the database, for the whole team")


def _configuration(checks: Checks, settings: Settings, *, demo: bool) -> None:
    if demo:
        checks.add("configuration", "ok", "the embedded demo (--demo)")
        return
    shown = [f"{name} from {origin}" for name, origin in sorted(settings.origins.items())
             if name in ("db_url", "supabase_url", "service_role_key", "storage_dir")]
    if not (settings.db_url or settings.supabase_url):
        checks.add("configuration", "fail", "no database configured",
                   "set SUPABASE_DB_URL (or --db-url), or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")
        return
    checks.add("configuration", "ok", "; ".join(shown) or "set")
    for warning in settings.warnings:
        checks.add("config file", "warn", warning)
    if not (settings.storage_dir or (settings.supabase_url and settings.service_role_key)):
        checks.add("storage configuration", "fail", "no storage configured",
                   "set CHARFIX_STORAGE_DIR (or --storage-dir), or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")


def _database(checks: Checks, url: str) -> None:
    from charfix.repository.inspection import SUGGESTED, WRITES, inspect_database

    try:
        report = inspect_database(url)
    except CharfixError as exc:
        checks.add("database connection", "fail", exc.message, "check SUPABASE_DB_URL: host, port, password, sslmode")
        return
    checks.add("database connection", "ok", "connected")
    table_checks(checks, report.columns)
    for table, privileges in report.privileges.items():
        needed = ["SELECT"] + (WRITES[table].split(", ") if WRITES[table] else [])
        lacking = [p for p in needed if not privileges.get(p)]
        if lacking:
            checks.add(f"privileges on {table}", "fail", f"missing {', '.join(lacking)}",
                       "connect as the postgres (service) role, or grant them")
        else:
            checks.add(f"privileges on {table}", "ok", ", ".join(needed))
    for table, (has_it, sql) in SUGGESTED.items():
        if table in report.columns and not has_it(report.indexes.get(table, [])):
            checks.add(f"index on {table}", "warn", "none that list-stuck can use (it still works, more slowly)",
                       f"run: {sql}")


def table_checks(checks: Checks, live: dict[str, set[str]]) -> None:
    """The four tables and every column charfix reads or writes; the user_library shape."""
    from charfix.repository.inspection import missing_columns, optional_present

    missing = missing_columns(live)
    for table in BREAKS:
        if table not in live:
            checks.add(f"table {table}", "fail", f"not found: {BREAKS[table]}", "point charfix at the application's database")
        elif table in missing:
            checks.add(f"table {table}", "fail", f"lacks {', '.join(missing[table])}: {BREAKS[table]}",
                       "is this the application's schema? charfix reads these columns")
        else:
            checks.add(f"table {table}", "ok", "every column charfix reads or writes is there")
    newer = optional_present(live, "user_library")
    shape = "newer" if newer.get("character_id") else "older"
    present = ", ".join(c for c, there in newer.items() if there) or "none"
    checks.add("user_library shape", "ok", f"{shape} shape (optional columns present: {present})")


def _local_storage(checks: Checks, root: Path) -> None:
    for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
        path = root / bucket
        if not path.is_dir():
            checks.add(f"bucket {bucket}", "fail", f"{path} does not exist", f"mkdir -p {path}")
        elif not os.access(path, os.W_OK | os.X_OK):
            checks.add(f"bucket {bucket}", "fail", f"{path} is not writable", "fix its permissions")
        else:
            checks.add(f"bucket {bucket}", "ok", f"{path} (readable, writable)")
