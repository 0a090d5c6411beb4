"""The database trail: audit records in the database charfix repairs, table `charfix.audit`
(docs/audit.md). A row write's record is inserted in the transaction of the write itself, so the two
commit or roll back together: no record without its write, no write without its record. An object
write (storage has no transactions) is announced by a record committed on a side connection before it
is made, and closed by another after it lands, as the file trail does.

The schema is created only by `charfix init` (SCHEMA_SQL, shown before it runs); without it charfix
keeps the JSONL file. Over REST there is no database connection, so the file is the only trail."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from charfix.errors import BackendError
from charfix.audit.log import AuditError, encode
from charfix.audit.trail import RunInfo, TrailView, WriteRecord

if TYPE_CHECKING:
    from charfix.repair.unit import Write

TABLE = "charfix.audit"
SCHEMA_SQL = """\
create schema if not exists charfix;
create table if not exists charfix.audit (
    id           bigint generated always as identity primary key,
    run_id       uuid not null,
    at           timestamptz not null default clock_timestamp(),
    operator     text not null,
    command      text not null,
    command_line text,
    database     text,
    storage      text,
    reverts      uuid,
    phase        text not null check (phase in ('write', 'intent', 'done', 'failed')),
    write_id     uuid,
    job_id       uuid,
    step         text not null,
    target       text not null,
    before       jsonb,
    after        jsonb,
    error        text
);
create index if not exists audit_run_id on charfix.audit (run_id);
create index if not exists audit_job_id on charfix.audit (job_id);
revoke all on schema charfix from public;
revoke all on charfix.audit from public;
"""
COLUMNS = ("run_id", "operator", "command", "command_line", "database", "storage", "reverts", "phase", "write_id",
           "job_id", "step", "target", "before", "after", "error")
INSERT = f"insert into {TABLE} ({', '.join(COLUMNS)}) values ({', '.join(['%s'] * len(COLUMNS))})"


def installed(conn: Any) -> bool:
    """Whether `charfix init` made the table (one catalogue look-up)."""
    try:
        row = conn.execute("select to_regclass('charfix.audit') is not null as there").fetchone()
    except Exception:  # psycopg.Error, or a closed connection: no trail in the database then
        return False
    there = row["there"] if isinstance(row, dict) else row[0]
    return bool(there)


def side_conninfo(conn: Any) -> str:
    """The repository connection's parameters, password included, for the trail's side connection."""
    from psycopg.conninfo import make_conninfo

    password = conn.info.password
    return make_conninfo(conn.info.dsn, **({"password": password} if password else {}))


def _plain(value: Any) -> Any:
    """What a record holds, as JSON: the same encoding as the file's lines (datetimes as ISO text)."""
    return None if value is None else json.loads(encode({"v": value}))["v"]


@dataclass
class DatabaseAudit:
    """The database trail as a recorder of the unit of work (repair/unit.py, `Recorder`)."""

    conninfo: str
    operator: str
    command: str
    command_line: str | None = None
    reverts: str | None = None
    run: str = field(default_factory=lambda: str(uuid.uuid4()))
    written: int = 0
    settled: int = 0
    failed: bool = False
    _side: Any = None
    _where: dict[str, str | None] = field(default_factory=lambda: {"database": None, "storage": None})
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return f"database table {TABLE}"

    def open(self, backends: Any = None) -> DatabaseAudit:
        import psycopg

        from charfix.audit.log import where

        if backends is not None:
            self._where = where(backends)
        try:
            self._side = psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise AuditError(f"cannot open the audit trail {TABLE}: {str(exc).splitlines()[0]}; nothing was changed") from exc
        return self

    # -- the Recorder of the unit of work (repair/unit.py) ---------------------------------------------

    def announce(self, write: Write) -> None:
        """An object write (storage has no transaction): committed on the side connection before it is made."""
        self._side_insert([self._row("intent", write, write.before, write.planned)])

    def made(self, write: Write, *, after: Any) -> None:
        self._side_insert([self._row("done", write, None, after)])

    def not_made(self, write: Write, *, error: str) -> None:
        self._side_insert([self._row("failed", write, None, None, error=error)])

    def _side_insert(self, rows: list[tuple[Any, ...]]) -> None:
        import psycopg

        if self._side is None:
            raise AuditError(f"the audit trail {TABLE} is not open; nothing was changed")
        try:
            with self._lock, self._side.cursor() as cursor:
                cursor.executemany(INSERT, rows)
        except psycopg.Error as exc:
            self.failed = True
            raise AuditError(f"cannot write the audit trail {TABLE}: {str(exc).splitlines()[0]}; "
                             "the job's writes were rolled back") from exc
        self.written += sum(row[7] == "intent" for row in rows)

    def pending(self, write: Write, *, after: Any) -> None:
        """A row write: its record waits for `before_commit`, to go in with it."""
        self._pending.append(self._row("write", write, write.before, after))

    def job_rolled_back(self, job_id: UUID) -> None:
        self._local.pending = [row for row in self._pending if row[9] != str(job_id)]

    def before_commit(self, transaction_id: Callable[[], int | None], repository: Any = None) -> None:
        """Inside the transaction, before it commits: the records go in through the repository's own
        connection, so that they commit or roll back with the writes they record."""
        import psycopg

        pending, self._local.pending = self._pending, []
        if not pending:
            return
        conn = repository.connection() if repository is not None else None
        if conn is None:
            self.failed = True
            raise AuditError(f"the audit trail {TABLE} needs the repair's own database connection; "
                             "the job's writes were rolled back")
        try:
            with conn.cursor() as cursor:
                cursor.executemany(INSERT, pending)
        except psycopg.Error as exc:
            self.failed = True
            raise AuditError(f"cannot write the audit trail {TABLE}: {str(exc).splitlines()[0]}; "
                             "the job's writes were rolled back") from exc
        self.written += len(pending)

    def committed(self) -> None:
        """Nothing to add: the records committed with the writes."""

    def rolled_back(self, *, known: bool) -> None:
        self._local.pending = []

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None

    @property
    def _pending(self) -> list[tuple[Any, ...]]:
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        pending: list[tuple[Any, ...]] = self._local.pending
        return pending

    def _row(self, phase: str, write: Write, before: Any, after: Any, *, error: str | None = None) -> tuple[Any, ...]:
        from psycopg.types.json import Jsonb

        return (self.run, self.operator, self.command, self.command_line, self._where["database"],
                self._where["storage"], self.reverts, phase, write.id,
                str(write.job_id), write.step.value, write.target, Jsonb(_plain(before)), Jsonb(_plain(after)), error)


# -- reading it back -------------------------------------------------------------------------------


@dataclass
class DatabaseTrail:
    conn: Any  # a psycopg connection with dict rows (the repository's)

    @property
    def name(self) -> str:
        return f"database table {TABLE}"

    def run_ids(self) -> list[str]:
        rows = self._query(f"select distinct run_id::text as run from {TABLE}", ())
        return [r["run"] for r in rows]

    def read(self, *, run: str | None = None, job_ids: Iterable[str] = ()) -> TrailView:
        if run is not None:
            rows = self._query(f"select * from {TABLE} where run_id = %s::uuid order by id", (run,))
        else:
            wanted = sorted(set(job_ids))
            rows = self._query(f"select * from {TABLE} where run_id in (select run_id from {TABLE} "
                               "where job_id = any(%s::uuid[])) order by id", (wanted,))
            rows = [r for r in rows if str(r["job_id"]) in set(wanted)]
        return _view(rows)

    def _query(self, statement: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        import psycopg

        try:
            with self.conn.transaction():
                return list(self.conn.execute(statement, params).fetchall())
        except psycopg.Error as exc:
            raise BackendError(f"cannot read the audit trail {TABLE}: {str(exc).splitlines()[0]}") from exc


def _view(rows: list[dict[str, Any]]) -> TrailView:
    view = TrailView()
    closed = {str(r["write_id"]): r for r in rows if r["phase"] in ("done", "failed")}
    for row in rows:
        run = str(row["run_id"])
        if run not in view.runs:
            view.runs[run] = RunInfo(run=run, time=_iso(row["at"]), operator=row["operator"], command=row["command"],
                                     command_line=row["command_line"], database=row["database"],
                                     storage=row["storage"], reverts=_str(row["reverts"]))
        if row["phase"] == "write":
            after, landed = row["after"], True
        elif row["phase"] == "intent":
            outcome = closed.get(str(row["write_id"]))
            if outcome is not None and outcome["phase"] == "failed":
                continue
            if outcome is None and row["step"] != "copy_object":
                continue
            after, landed = (row["after"], False) if outcome is None else (outcome["after"], True)
        else:
            continue
        view.writes.append(WriteRecord(run=run, seq=int(row["id"]), job_id=_str(row["job_id"]) or "",
                                       step=row["step"], target=row["target"], before=row["before"], after=after,
                                       time=_iso(row["at"]), landed=landed))
    return view


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
