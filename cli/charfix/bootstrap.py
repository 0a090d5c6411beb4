"""The one place that turns settings into adapters. Heavy clients are imported here, and only when used,
so `charfix --help` needs no credentials and stays fast."""

from __future__ import annotations

import warnings

from charfix.config import Settings
from charfix.errors import ConfigError
from charfix.scan import Backends

MISSING = (
    "no database configured: pass --db-url or set SUPABASE_DB_URL (or supabase_url + service_role_key "
    "in the config file); try the embedded demo with --demo"
)


def build_backends(settings: Settings) -> Backends:
    if settings.demo:
        return _demo()
    if not settings.db_url:
        if settings.supabase_url or settings.service_role_key:
            raise ConfigError(
                "the Supabase REST adapter (SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY) is not available yet",
                hint="set SUPABASE_DB_URL to the database's connection string instead",
            )
        raise ConfigError(MISSING)
    from charfix.repository.postgres import PostgresRepository

    storage = _storage(settings)
    return Backends(repository=PostgresRepository.connect(settings.db_url), storage=storage)


def _storage(settings: Settings):
    from charfix.storage.local import LocalStorage

    if settings.storage_dir is not None:
        if not settings.storage_dir.is_dir():
            raise ConfigError(f"storage directory {settings.storage_dir} does not exist")
        return LocalStorage(settings.storage_dir)
    raise ConfigError(
        "no storage configured: pass --storage-dir or set CHARFIX_STORAGE_DIR "
        "(a folder with workspace-temp/ and user-library/ inside)"
    )


def _demo() -> Backends:
    from charfix.repository.postgres import PostgresRepository
    from charfix.storage.local import LocalStorage

    with warnings.catch_warnings():
        # pgserver's platformdirs warns about XDG_RUNTIME_DIR on servers; it falls back correctly.
        warnings.simplefilter("ignore")
        from charfix.demo.database import start_demo

        url, storage = start_demo()
    return Backends(repository=PostgresRepository.connect(url), storage=LocalStorage(storage))
