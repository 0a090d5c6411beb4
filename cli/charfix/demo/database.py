"""Starting, seeding and resetting the demo database. It talks to Postgres itself, not through the
repository, because it creates the tables the repository then reads."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, UTC
from importlib import resources
from pathlib import Path

from charfix.demo.sample import build_sample
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET

DEMO_DATABASE = "charfix_demo"
# Older than this, the demo's timestamps are moved forward so its jobs keep their ages.
REFRESH_AFTER = timedelta(minutes=5)
SEED_LOCK = 0x63686178  # advisory lock key: two demo commands at once seed once


def schema_sql() -> str:
    return resources.files("charfix.demo").joinpath("schema.sql").read_text()


def demo_home() -> Path:
    import platformdirs

    override = os.environ.get("CHARFIX_DEMO_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("charfix")) / "demo"


def start_demo(*, reset: bool = False) -> tuple[str, Path]:
    """Start (or reuse) the embedded server; returns its database URL and the storage root."""
    import pgserver
    import psycopg

    home = demo_home()
    storage = home / "storage"
    home.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(home / "pgdata", cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        if reset:
            conn.execute(f"drop database if exists {DEMO_DATABASE} with (force)")
            shutil.rmtree(storage, ignore_errors=True)
        exists = conn.execute("select 1 from pg_database where datname = %s", (DEMO_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f"create database {DEMO_DATABASE}")
    url = server.get_uri(DEMO_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (SEED_LOCK,))
        try:
            prepare(conn, storage)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (SEED_LOCK,))
    # Keep the server object alive for the process: pgserver stops it when the last user exits.
    _servers.append(server)
    return url, storage


_servers: list = []


def prepare(conn, storage: Path, *, now: datetime | None = None) -> None:
    """Create and seed the tables on first use; later, keep the sample's ages current."""
    conn.execute("create table if not exists charfix_demo (seeded_at timestamptz not null)")
    row = conn.execute("select seeded_at from charfix_demo").fetchone()
    now = now or datetime.now(UTC)
    if row is None:
        seed(conn, storage, now=now)
        return
    seed_users(conn)  # a demo seeded before auth.users was part of it
    if now - row[0] > REFRESH_AFTER:
        _shift(conn, storage, now - row[0])


def seed(conn, storage: Path, *, now: datetime) -> None:
    from psycopg.types.json import Jsonb

    sample = build_sample(now)
    with conn.transaction():
        if not _columns(conn, "jobs"):
            # Tables that exist keep their shape: the tests' older user_library has no portrait trigger.
            conn.execute(schema_sql())
        conn.execute("create table if not exists charfix_demo (seeded_at timestamptz not null)")
        for table, rows in (("characters", sample.characters), ("jobs", sample.jobs),
                            ("workspace_assets", sample.assets), ("user_library", sample.library)):
            live = _columns(conn, table)  # an older user_library lacks the newer columns
            for row in rows:
                values = {k: Jsonb(v) if k in ("metadata", "roleplay_metadata") else v
                          for k, v in row.items() if k in live}
                cols = ", ".join(values)
                marks = ", ".join(f"%({k})s" for k in values)
                conn.execute(f"insert into {table} ({cols}) values ({marks})", values)
        seed_users(conn)
        conn.execute("insert into charfix_demo (seeded_at) values (%s)", (now,))
    for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):  # both, even empty: charfix refuses a folder without one
        (storage / bucket).mkdir(parents=True, exist_ok=True)
    for bucket, key, data, written in sample.objects:
        path = storage / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (written.timestamp(), written.timestamp()))


def seed_users(conn) -> None:
    from charfix.demo.sample import EMAILS

    if conn.execute("select to_regclass('auth.users')").fetchone()[0] is None:
        conn.execute(schema_sql())
    for user_id, email in EMAILS.items():
        conn.execute("insert into auth.users (id, email) values (%s, %s) on conflict (id) do nothing", (user_id, email))


def _columns(conn, table: str) -> set[str]:
    rows = conn.execute(
        "select column_name from information_schema.columns where table_schema = 'public' and table_name = %s",
        (table,),
    ).fetchall()
    return {r[0] for r in rows}


SHIFTED = {
    "jobs": ("created_at", "started_at", "completed_at"),
    "workspace_assets": ("created_at", "expires_at"),
    "characters": ("created_at", "updated_at"),
    "user_library": ("created_at", "updated_at"),
}


def _shift(conn, storage: Path, delta: timedelta) -> None:
    with conn.transaction():
        # Replica mode skips the triggers, so updated_at moves with the rest instead of to now().
        conn.execute("set local session_replication_role = replica")
        for table, columns in SHIFTED.items():
            sets = ", ".join(f"{c} = {c} + %(delta)s" for c in columns)
            conn.execute(f"update {table} set {sets}", {"delta": delta})
        conn.execute("update charfix_demo set seeded_at = seeded_at + %(delta)s", {"delta": delta})
    for path in storage.rglob("*"):
        if path.is_file():
            stat = path.stat()
            moved = stat.st_mtime + delta.total_seconds()
            os.utime(path, (moved, moved))
