"""Fixtures: a real Postgres (embedded pgserver, or CHARFIX_TEST_DB_URL), one fresh database per test
cloned from a template that holds the application's schema, and the real console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from charfix.demo.database import schema_sql, seed
from charfix.demo.sample import build_sample

TEMPLATE = "charfix_template"
OLD_SHAPE_TEMPLATE = "charfix_template_old"
# user_library before 2026-03: none of these columns, and no portrait-count trigger (docs/domain.md section 6).
NEWER_LIBRARY_COLUMNS = (
    "character_id", "output_type", "label", "generation_metadata", "is_primary", "is_pinned", "sort_order",
)


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory) -> str:
    url = os.environ.get("CHARFIX_TEST_DB_URL")
    if url:
        return url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    return server.get_uri()


def _url_for(admin: str, dbname: str) -> str:
    return make_conninfo(admin, dbname=dbname)


@pytest.fixture(scope="session")
def templates(admin_url) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in (TEMPLATE, OLD_SHAPE_TEMPLATE):
            conn.execute(f"drop database if exists {name}")
            conn.execute(f"create database {name}")
    with psycopg.connect(_url_for(admin_url, TEMPLATE), autocommit=True) as conn:
        conn.execute(schema_sql())
    with psycopg.connect(_url_for(admin_url, OLD_SHAPE_TEMPLATE), autocommit=True) as conn:
        conn.execute(schema_sql())
        conn.execute("drop trigger user_library_portrait_count on user_library")
        conn.execute("drop function sync_portrait_count()")
        conn.execute("alter table characters drop column portrait_count")
        for column in NEWER_LIBRARY_COLUMNS:
            conn.execute(f"alter table user_library drop column {column}")


def _fresh(admin_url: str, template: str) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name} template {template}")
    return _url_for(admin_url, name)


@pytest.fixture
def db_url(admin_url, templates) -> str:
    """A fresh database with the application's tables (newer user_library shape), empty."""
    return _fresh(admin_url, TEMPLATE)


@pytest.fixture
def old_db_url(admin_url, templates) -> str:
    """A fresh database whose user_library has the older shape (no character_id, output_type, ...)."""
    return _fresh(admin_url, OLD_SHAPE_TEMPLATE)


@dataclass
class Seeded:
    db_url: str
    storage: Path
    now: datetime
    sample: object

    def case(self, name: str):
        return next(c for c in self.sample.cases if c.name == name)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url, autocommit=True)


def _seeded(url: str, tmp_path: Path) -> Seeded:
    now = datetime.now(UTC)
    storage = tmp_path / "storage"
    storage.mkdir()
    with psycopg.connect(url, autocommit=True) as conn:
        seed(conn, storage, now=now)
        # seed() creates the schema only where there is none: the template's shape is kept.
    return Seeded(db_url=url, storage=storage, now=now, sample=build_sample(now))


@pytest.fixture
def seeded(db_url, tmp_path) -> Seeded:
    """The demo sample in a fresh database and storage folder."""
    return _seeded(db_url, tmp_path)


@pytest.fixture
def seeded_old(old_db_url, tmp_path) -> Seeded:
    return _seeded(old_db_url, tmp_path)


def charfix_executable() -> str:
    found = shutil.which("charfix", path=str(Path(sys.executable).parent)) or shutil.which("charfix")
    assert found, "the charfix console script is not installed (pip install -e '.[test]')"
    return found


def spawn_on_pty(tmp_path, argv: list[str], *, rows: int, columns: int, timeout: int = 90,
                 env: dict[str, str] | None = None):
    """The console script on a pseudo-terminal of `rows` x `columns`, its environment isolated from the
    developer's own (home and state under `tmp_path`)."""
    import pexpect

    base = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TERM": "xterm", "LANG": "C.UTF-8",
            "XDG_STATE_HOME": str(tmp_path / "state")}
    return pexpect.spawn(charfix_executable(), list(argv), encoding="utf-8", timeout=timeout,
                         dimensions=(rows, columns), env={**base, **(env or {})})


def command(crash_after: int | None = None) -> list[str]:
    """The console script; or, to stop it abruptly after a number of writes, the test launcher that
    injects that crash from outside the product (tests/crashing.py)."""
    if crash_after is None:
        return [charfix_executable()]
    return [sys.executable, str(Path(__file__).parent / "crashing.py"), str(crash_after)]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path):
    """Run the real console script; environment isolated from the developer's own config."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: int = 120,
            crash_after: int | None = None) -> Result:
        """`crash_after=N`: the process ends abruptly (exit 70) right after its Nth write (crashing.py)."""
        base = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path / "home"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "NO_COLOR": "1",
            "LANG": "C.UTF-8",
        }
        proc = subprocess.run(
            [*command(crash_after), *args], capture_output=True, text=True, env={**base, **(env or {})},
            input=input, timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
