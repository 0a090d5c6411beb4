"""`charfix doctor`: can charfix see and change what it needs? One check per line, each with a fix.

The pieces come from the bootstrap one at a time, unchecked, so that one failure (a missing bucket,
a column dropped) is a line of its own while every other check still runs."""

from __future__ import annotations

from pathlib import Path

from charfix.config import Settings
from charfix.doctor.checks import Checks, configuration, local_buckets, supabase_buckets


def run_doctor(settings: Settings) -> Checks:
    from charfix.backends.bootstrap import demo_locations, supabase_storage

    checks = Checks()
    configuration(checks, settings)
    url, storage_dir = settings.db_url, settings.storage_dir
    if settings.demo:
        url, storage_dir = demo_locations()
    if url:
        from charfix.doctor.postgres import check_database

        check_database(checks, url)
    if storage_dir:
        local_buckets(checks, storage_dir)
    key = settings.service_role_key
    if not settings.demo and settings.supabase_url and key and not (url and storage_dir):
        from charfix.doctor.supabase import check_key, check_rest_tables, connect

        check_key(checks, settings, key)
        supabase = connect(checks, settings.supabase_url, key)
        if supabase is not None:
            try:
                if not url:
                    check_rest_tables(checks, supabase)
                if not storage_dir:
                    supabase_buckets(checks, supabase_storage(supabase))
            finally:
                supabase.close()
    _catalogue(checks, url, storage_dir, supabase=bool(settings.supabase_url and key))
    if url or settings.supabase_url:
        _audit_trail(checks, settings, url)
    return checks


def _audit_trail(checks: Checks, settings: Settings, url: str | None) -> None:
    """Which trail writing runs use (docs/audit.md): the database table once `charfix init` made it."""
    from charfix.audit.log import default_audit_path

    log = f"file {settings.audit_log or default_audit_path()}"
    if not url:
        checks.add("audit trail", "ok", f"{log} (over REST the file is the only trail)")
        return
    import psycopg

    from charfix.audit.database import TABLE, installed

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            there = installed(conn)
    except psycopg.Error:
        return  # the database check above already says why
    if there:
        checks.add("audit trail", "ok", f"database table {TABLE}")
    else:
        checks.add("audit trail", "ok", log, "run `charfix init` to keep the trail in the database, for the whole team")


def _catalogue(checks: Checks, url: str | None, storage_dir: Path | None, *, supabase: bool) -> None:
    """Where the scan reads which objects exist (as backends/bootstrap.py chooses it)."""
    if storage_dir:
        checks.add("storage catalogue", "ok", f"the local folder {storage_dir}")
    elif url and supabase:
        from charfix.storage.catalogue import DESCRIPTION, probe

        why = probe(url)
        if why is None:
            checks.add("storage catalogue", "ok", f"{DESCRIPTION}: one statement per bucket and page")
        else:
            checks.add("storage catalogue", "warn", f"Storage API listings, one per user folder and page: {why}",
                       "connect as the postgres role of the Supabase project's own database")
    elif supabase:
        checks.add("storage catalogue", "ok", "Storage API listings (over REST: set SUPABASE_DB_URL to read "
                   "storage.objects in the database instead)")
