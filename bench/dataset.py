"""What the benchmark scripts share: where things live, the embedded server, and a dataset's size.

Everything is under bench/out/ (git-ignored): one embedded Postgres (pgserver) for every dataset,
and per dataset a database `bench_<name>` and a storage folder with `workspace-temp/` and
`user-library/` inside.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
DEFAULT_JOBS = 1_000_000
# Counts at scale 1 (1,000,000 jobs), from the issue.
BASE = {"portraits": 20_000, "trouble": 3_000, "characters": 100_000, "library": 300_000, "users": 20_000}


@dataclass(frozen=True)
class Spec:
    """A dataset's size and seed. `scale` multiplies every count but the jobs (default: jobs / 1M)."""

    jobs: int = DEFAULT_JOBS
    scale: float | None = None
    seed: int = 1

    @property
    def factor(self) -> float:
        return self.scale if self.scale is not None else self.jobs / DEFAULT_JOBS

    def count(self, what: str) -> int:
        return max(1, round(BASE[what] * self.factor))

    @property
    def name(self) -> str:
        scale = "" if self.scale is None else f"_x{str(self.scale).replace('.', 'p')}"
        return f"j{self.jobs}_s{self.seed}{scale}"

    @property
    def database(self) -> str:
        return f"bench_{self.name}"

    @property
    def home(self) -> Path:
        return OUT / "datasets" / self.name

    @property
    def storage(self) -> Path:
        return self.home / "storage"


# storage.objects and storage.buckets with the real Storage server's columns (the test server's
# tests/supabase_server/objects_table.py keeps its rows in the same shape). Datasets built before
# these columns get them added (run.py applies it to every dataset it measures).
STORAGE_COLUMNS = """
create table if not exists storage.buckets (
    id text not null primary key,
    name text not null,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    public boolean default false,
    file_size_limit bigint,
    allowed_mime_types text[],
    owner_id text,
    type text not null default 'STANDARD'
);
insert into storage.buckets (id, name) values ('workspace-temp', 'workspace-temp'), ('user-library', 'user-library')
    on conflict (id) do nothing;
alter table storage.objects add column if not exists last_accessed_at timestamptz default now();
alter table storage.objects add column if not exists version text;
alter table storage.objects add column if not exists owner_id text;
alter table storage.objects add column if not exists user_metadata jsonb;
"""


def upgrade_storage_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STORAGE_COLUMNS)


_servers: list = []


def server_uri() -> str:
    """Start (or reuse) the embedded server; it stops when the last process using it exits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver's platformdirs warns about XDG_RUNTIME_DIR
        import pgserver

        OUT.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(OUT / "pgdata", cleanup_mode="stop")
    _servers.append(server)
    return server.get_uri()


def database_url(admin: str, database: str) -> str:
    return make_conninfo(admin, dbname=database)


def admin_connection(admin: str) -> psycopg.Connection:
    return psycopg.connect(admin, autocommit=True)


def exists(admin: str, database: str) -> bool:
    with admin_connection(admin) as conn:
        return conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone() is not None


def clone(admin: str, source: str, target: str) -> None:
    """A copy of a database (file copy: seconds, where WAL-logged copying of a large one takes minutes)."""
    with admin_connection(admin) as conn:
        conn.execute(f"drop database if exists {target} with (force)")
        conn.execute(f"create database {target} template {source} strategy file_copy")


def drop(admin: str, database: str) -> None:
    with admin_connection(admin) as conn:
        conn.execute(f"drop database if exists {database} with (force)")
