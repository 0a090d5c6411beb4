"""`charfix doctor`: can charfix see and change what it needs? One check per line, each with a fix.

The pieces come from the bootstrap one at a time, unchecked, so that one failure (a missing bucket,
a column dropped) is a line of its own while every other check still runs."""

from __future__ import annotations

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
    return checks
