"""The one place that turns settings into adapters. Heavy clients are imported here, and only when used,
so `charfix --help` needs no credentials and stays fast. `charfix doctor` builds its pieces here too,
one at a time and unchecked, so that it can report each failure on its own line (doctor/run.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from charfix.config import Settings
from charfix.errors import ConfigError
from charfix.backends import Backends, Prefilter
from charfix.repository.base import Repository
from charfix.storage.base import Catalogue

if TYPE_CHECKING:
    from charfix.http import Supabase
    from charfix.repository.base import Repository
    from charfix.repository.inspection import DatabaseReport
    from charfix.storage.base import Storage

MISSING = (
    "no database configured: set SUPABASE_DB_URL or db_url in the config file (or supabase_url + "
    "service_role_key there); try the embedded demo with --demo"
)


def build_backends(settings: Settings, *, check: bool = True) -> Backends:
    """Tables through Postgres when a database URL is set, else through Supabase's REST API; objects
    in a local folder when one is set, else in Supabase Storage. Both set: Postgres + Storage.
    `check`: first establish that the key is a service key and both buckets can be seen, before any
    read (docs/backends.md, "Before the first read"); a worker's second set of backends skips it."""
    if settings.demo:
        return _demo(check=check)
    supabase = _supabase(settings)
    storage = _storage(settings, supabase)
    repository = _repository(settings, supabase)
    catalogue = _catalogue(settings, repository)
    backends = Backends(repository=repository, storage=storage, catalogue=catalogue,
                        prefilter=_prefilter(repository, catalogue))
    if check:
        _check_access(backends)
    return backends


def _repository(settings: Settings, supabase: Supabase | None) -> Repository:
    if settings.db_url:
        from charfix.repository.postgres import PostgresRepository

        return PostgresRepository.connect(settings.db_url)
    if supabase is None:
        raise ConfigError(MISSING)
    from charfix.repository.supabase import SupabaseRepository

    return SupabaseRepository(supabase)


def _catalogue(settings: Settings, repository: Repository) -> Catalogue | None:
    """Postgres beside Supabase Storage: the scan reads storage.objects in the same database, one
    statement per bucket and page, instead of one Storage listing per user folder (docs/backends.md,
    "The storage catalogue"). A local folder stays its own catalogue; over REST, the API listings."""
    if settings.storage_dir is not None or not settings.db_url:
        return None
    from charfix.repository.postgres import PostgresRepository
    from charfix.storage.catalogue import DatabaseCatalogue

    if not isinstance(repository, PostgresRepository):
        return None
    try:
        return DatabaseCatalogue.open(repository)[0]
    except BaseException:
        repository.close()
        raise


def _prefilter(repository: Repository, catalogue: Catalogue | None) -> Prefilter | None:
    """Over Postgres, one statement per window of jobs proves most saved jobs saved (queries/prefilter.py);
    the objects come from storage.objects when it is the catalogue, else from the scan's own listing."""
    from charfix.queries.prefilter import Prefilter as SqlPrefilter
    from charfix.repository.postgres import PostgresRepository
    from charfix.storage.catalogue import DatabaseCatalogue

    if not isinstance(repository, PostgresRepository):
        return None
    return SqlPrefilter(repository, catalogue.current("so") if isinstance(catalogue, DatabaseCatalogue) else None)


def _check_access(backends: Backends) -> None:
    try:
        backends.storage.check_access()
    except BaseException:
        backends.close()
        raise


def _supabase(settings: Settings) -> Supabase | None:
    """One Supabase client for both adapters, or None when the URL and key are not both set."""
    if not settings.supabase_url and not settings.service_role_key:
        return None
    if settings.db_url and settings.storage_dir is not None:
        return None  # neither adapter would use it
    if not (settings.supabase_url and settings.service_role_key):
        missing = "SUPABASE_SERVICE_ROLE_KEY" if settings.supabase_url else "SUPABASE_URL"
        raise ConfigError(f"{missing} is not set; the Supabase adapters need both the project URL and the service role key")
    from charfix.http import require_service_key

    require_service_key(settings.service_role_key)
    return open_supabase(settings.supabase_url, settings.service_role_key)


def _storage(settings: Settings, supabase: Supabase | None) -> Storage:
    if settings.storage_dir is not None:
        return local_storage(settings.storage_dir)
    if supabase is not None:
        return supabase_storage(supabase)
    if not settings.db_url:
        raise ConfigError(MISSING)
    raise ConfigError(
        "no storage configured: pass --storage-dir or set CHARFIX_STORAGE_DIR "
        "(a folder with workspace-temp/ and user-library/ inside), or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY"
    )


def _demo(*, check: bool) -> Backends:
    from charfix.repository.postgres import PostgresRepository

    url, storage = demo_locations()
    repository = PostgresRepository.connect(url)
    backends = Backends(repository=repository, storage=local_storage(storage), prefilter=_prefilter(repository, None))
    if check:
        _check_access(backends)
    return backends


# -- the pieces, one at a time (build_backends above, and `charfix doctor`) --------------------------


def demo_locations() -> tuple[str, Path]:
    """The embedded demo's database URL and storage folder, started on first use."""
    with warnings.catch_warnings():
        # pgserver's platformdirs warns about XDG_RUNTIME_DIR on servers; it falls back correctly.
        warnings.simplefilter("ignore")
        from charfix.demo.database import start_demo

        return start_demo()


def open_supabase(url: str, key: str) -> Supabase:
    """A client for the project, without judging the key (the doctor reports the key on its own line)."""
    from charfix.http import connect

    return connect(url, key)


def local_storage(root: Path) -> Storage:
    from charfix.storage.local import LocalStorage

    if not root.is_dir():
        raise ConfigError(f"storage directory {root} does not exist")
    return LocalStorage(root)


def supabase_storage(supabase: Supabase) -> Storage:
    from charfix.storage.supabase import SupabaseStorage

    return SupabaseStorage(supabase)


def inspect_database(url: str) -> DatabaseReport:
    """The live columns, privileges and indexes, read without the repository: its constructor refuses
    a schema that lacks a column, which is what the doctor is there to list table by table."""
    from charfix.repository.inspection import inspect_database as inspect

    return inspect(url)
