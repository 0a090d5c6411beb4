"""The lines `charfix doctor` prints, and the checks every backend shares: the configuration, the four
tables' columns, the two buckets. A leaf of the package: postgres.py and supabase.py add their own
lines to a Checks, and run.py decides which of them run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charfix.config import Settings
from charfix.errors import CharfixError
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET

if TYPE_CHECKING:
    from charfix.storage.base import Storage

BREAKS = {
    "jobs": "list-stuck cannot find or read portrait jobs, and complete-job cannot write them",
    "workspace_assets": "the output of a job cannot be found, nor the values a library row copies",
    "characters": "no character can be resolved or pointed at its portrait",
    "user_library": "saved portraits cannot be recognised, and no row can be inserted",
}
SUPABASE_BUCKET_FIX = "check that SUPABASE_URL is the app's project and the key its service role key"


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str, fix: str | None = None) -> None:
        self.items.append(Check(name, status, detail, fix))

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.items)


def configuration(checks: Checks, settings: Settings) -> None:
    if settings.demo:
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


def local_buckets(checks: Checks, root: Path) -> None:
    """The two bucket folders, through the local adapter's own checks (a linked folder fails here as
    it fails every command)."""
    from charfix.backends.bootstrap import local_storage

    try:
        storage = local_storage(root)
    except CharfixError:
        storage = None
    for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
        path = root / bucket
        if storage is None:
            checks.add(f"bucket {bucket}", "fail", f"{path} does not exist", f"mkdir -p {path}")
        elif _bucket_seen(checks, storage, bucket, fix=f"mkdir -p {path}"):
            try:
                storage.check_writable(bucket)
            except CharfixError as exc:
                checks.add(f"bucket {bucket}", "fail", exc.message, "fix its permissions")
            else:
                checks.add(f"bucket {bucket}", "ok", f"{path} (readable, writable)")


def supabase_buckets(checks: Checks, storage: Storage) -> None:
    for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
        if _bucket_seen(checks, storage, bucket, fix=SUPABASE_BUCKET_FIX):
            checks.add(f"bucket {bucket}", "ok", "found in Supabase Storage")


def _bucket_seen(checks: Checks, storage: Storage, bucket: str, *, fix: str) -> bool:
    try:
        storage.check_bucket(bucket)
    except CharfixError as exc:
        checks.add(f"bucket {bucket}", "fail", exc.message, fix)
        return False
    return True
