"""The audit log: one JSON line per write, kept so that the log and what was written cannot disagree
after a crash (docs/repairs.md, "The audit log").

- A write that lands the moment it is made (an object; any row over REST) gets an `intent` line,
  synced, before it is made, then a `done` or `failed` line after.
- Row writes inside a Postgres transaction get `pending` lines carrying the transaction's id (ours and
  Postgres's), synced just before the commit, then one `committed` or `rolled_back` line.
- A run that opens the log alone settles what a killed run left without an outcome: it asks Postgres
  what became of each transaction (`txid_status`) and looks at the object or row each intent named.

The file is private (0600, its folder 0700 when charfix creates it), a symlink at its path is refused,
and every line is ASCII JSON, so user text cannot break a line for any reader."""

from __future__ import annotations

import errno
import fcntl
import getpass
import json
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from charfix.errors import BackendError, ConfigError

if TYPE_CHECKING:  # the backends are given, never built, here
    from charfix.backends import Backends
    from charfix.repository.base import Repository
    from charfix.storage.base import Storage

FORMAT = 2  # the line format of docs/repairs.md; lines without "v" are the older, outcome-less format
CHECKPOINT = b'{"v": 2, "phase": "checkpoint"'  # how a checkpoint line starts: found by bytes, not parsed
TAIL_BLOCK = 1 << 20  # more than a checkpoint line's start, which may straddle two blocks
IN_PROGRESS_WAIT = 5.0  # seconds to let Postgres notice a killed client and roll its transaction back


class AuditError(ConfigError):
    """The audit log cannot be written: no further write may happen."""

    def rolled_back(self, what: str) -> AuditError:
        """The same error, saying what the unit of work (unit.py) rolled back because of it."""
        return AuditError(f"{self.message}; {what}", hint=self.hint)


def default_audit_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("charfix")) / "audit.jsonl"


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER") or f"uid-{os.getuid()}"


@dataclass(frozen=True)
class Intent:
    """A write announced in the log before it is made; `done` or `failed` closes it."""

    write: str
    job_id: str
    step: str
    target: str


@dataclass
class AuditLog:
    path: Path
    operator: str
    command: str
    command_line: str | None = None  # as typed, secrets masked (docs/audit.md)
    reverts: str | None = None  # an `undo` run: the run it reverts
    run: str = field(default_factory=lambda: str(uuid.uuid4()))
    _fd: int | None = None
    _where: dict[str, str | None] = field(default_factory=lambda: {"database": None, "storage": None})
    _started: bool = False
    # Row lines wait per thread (backfill repairs pages in parallel lanes) until their transaction commits.
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    written: int = 0
    settled: int = 0  # lines of an earlier, killed run given their outcome when this log was opened
    # Where the log had no open line after settling (None: unknown), the bytes this run appended since,
    # and how many of this run's writes and transactions still wait for their outcome line.
    _clean_until: int | None = None
    _appended: int = 0
    _open: int = 0
    failed: bool = False  # a write failed: the run stops, and closing must not fail again

    @property
    def name(self) -> str:
        return f"file {self.path}"

    # -- opening -------------------------------------------------------------------------------

    def open(self, backends: Backends | None = None) -> AuditLog:
        """Open (create 0600) the log for appending, terminate a cut last line, and, with `backends`
        and no other charfix run holding the log, settle what a killed run left open."""
        self._fd = _open_private(self.path)
        alone = _try_lock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            if backends is not None:
                self._where = where(backends)
            if _is_file(self._fd):
                self._terminate_cut_line()
                if alone and backends is not None and self._settle(backends):
                    self._clean_until, self._appended = os.fstat(self._fd).st_size, 0
        finally:
            if alone:
                _try_lock(self._fd, fcntl.LOCK_SH)  # others may append now, but not settle under us
            else:
                _try_lock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return self

    def _terminate_cut_line(self) -> None:
        size = os.fstat(self._file).st_size
        if size and os.pread(self._file, 1, size - 1) != b"\n":
            self._append([self._line("cut", note="the text before this line was cut short (a crash or a full "
                                     "disk); it is not a record")], sync=True, prefix=b"\n")

    @property
    def _file(self) -> int:
        if self._fd is None:
            raise AuditError(f"the audit log {self.path} is not open")
        return self._fd

    # -- the records ---------------------------------------------------------------------------

    def intent(self, *, job_id: Any, step: str, target: str, before: Any, after: Any) -> Intent:
        """Announce a write that lands at once, synced before it is made: no write without a line."""
        made = Intent(str(uuid.uuid4()), str(job_id), step, target)
        self._append([self._line("intent", write=made.write, job_id=made.job_id, step=step, target=target,
                                 before=before, after=after)], sync=True, opens=1)
        return made

    def done(self, intent: Intent, *, after: Any) -> None:
        # Not synced: if it is lost, the next run finds the intent open and looks at the target itself.
        self._append([self._outcome("done", intent, after=after)], sync=False, opens=-1)

    def not_done(self, intent: Intent, *, error: str) -> None:
        self._append([self._outcome("failed", intent, error=error)], sync=False, opens=-1)

    def record(self, *, job_id: Any, step: str, target: str, before: Any, after: Any) -> None:
        """A row write inside a transaction: its line waits for `flush`, just before the commit."""
        self._pending.append(dict(job_id=str(job_id), step=step, target=target, before=before, after=after))

    def flush(self, transaction_id: Callable[[], int | None]) -> None:
        """Inside the transaction, before it commits: write and sync its row lines, each carrying the
        transaction's ids, so that a run finding them without an outcome can ask Postgres."""
        pending = self._pending
        if self._fd is None or not pending:
            pending.clear()
            return
        tx = {"tx": str(uuid.uuid4()), "xid": transaction_id()}
        self._append([self._line("pending", **tx, **line) for line in pending], sync=True, opens=1)
        self._local.flushed = (tx, sorted({line["job_id"] for line in pending}))
        pending.clear()

    def committed(self) -> None:
        """The transaction committed. Not synced: a lost line is settled by the next run."""
        self._close_transaction("committed")

    def rolled_back(self, *, known: bool = True) -> None:
        """The transaction's row writes rolled back. Lines not yet written are dropped; written ones get
        a `rolled_back` line. `known=False` (the connection broke during the commit): no line; the
        next run asks Postgres what happened."""
        self._pending.clear()
        if known:
            self._close_transaction("rolled_back")
        self._local.flushed = None

    def drop(self, job_id: Any) -> None:
        """One job's row writes rolled back (its savepoint) before they were written: drop its lines."""
        self._local.pending = [line for line in self._pending if line["job_id"] != str(job_id)]

    def _close_transaction(self, phase: str) -> None:
        flushed = getattr(self._local, "flushed", None)
        self._local.flushed = None
        if flushed is not None and self._fd is not None:
            tx, jobs = flushed
            self._append([self._line(phase, **tx, jobs=jobs)], sync=False, opens=-1)

    @property
    def _pending(self) -> list[dict[str, Any]]:
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        pending: list[dict[str, Any]] = self._local.pending
        return pending

    # -- lines ---------------------------------------------------------------------------------

    def _line(self, phase: str, **fields: Any) -> dict[str, Any]:
        return {"v": FORMAT, "phase": phase, "time": datetime.now(UTC).isoformat(), "run": self.run,
                "operator": self.operator, "command": self.command, **fields}

    def _outcome(self, phase: str, intent: Intent, **fields: Any) -> dict[str, Any]:
        return self._line(phase, write=intent.write, job_id=intent.job_id, step=intent.step, target=intent.target,
                          **fields)

    def _append(self, lines: list[dict[str, Any]], *, sync: bool, prefix: bytes = b"", opens: int = 0) -> None:
        if self._fd is None:
            raise AuditError(f"the audit log {self.path} is not open")
        with self._lock:
            if not self._started and lines[0]["phase"] not in ("cut", "checkpoint"):
                # The run's first line says where it wrote: a later run settles only what it can see.
                extra = {k: v for k, v in (("command_line", self.command_line), ("reverts", self.reverts)) if v}
                start = self._line("start", pid=os.getpid(), **self._where, **extra)
                lines = [{**start, "time": lines[0]["time"]}, *lines]  # not later than the line it precedes
                self._started = True
            data = prefix + b"".join(encode(line) for line in lines)
            try:
                _write_all(self._fd, data)
                if sync:
                    os.fsync(self._fd)
            except OSError as exc:
                self.failed = True
                raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror}") from exc
            self.written += sum(line["phase"] in ("intent", "pending") for line in lines)
            self._appended += len(data)
            self._open += opens

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            if self._clean_until is not None and self._appended and not self._open and not self.failed:
                # Alone now, and only this run's lines (all closed) since a clean point: mark it, so the
                # next run does not read them back.
                if _try_lock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB) and \
                        os.fstat(self._fd).st_size == self._clean_until + self._appended:
                    self._checkpoint()
        except AuditError:
            pass  # only a shortcut for the next run
        finally:
            os.close(self._fd)  # the lock goes with it
            self._fd = None

    # -- settling what a killed run left open ------------------------------------------------------

    def _settle(self, backends: Backends) -> bool:
        """Settle what is open since the last checkpoint; True when nothing is left open."""
        tail = _tail_since_checkpoint(self._file)
        if not tail:
            return True
        records = _open_or_start(tail)
        runs = {r["run"]: r for r in records if r["phase"] == "start"}
        transactions, intents = _open_records(records)
        outcomes: list[dict[str, Any]] = []
        left = 0
        statuses = self._transaction_statuses(backends, transactions, runs)
        for tx, lines in transactions.items():
            status = statuses.get(tx)
            if status is None:
                left += 1
                continue
            outcomes.append(self._line(status, tx=tx, xid=lines[0].get("xid"), of_run=lines[0]["run"],
                                       jobs=sorted({line["job_id"] for line in lines}), settled=True))
        for record in intents.values():
            landed = self._landed(backends, record, runs.get(record["run"], {}))
            if landed is None:
                left += 1
                continue
            outcomes.append(self._line("done" if landed else "not_done", write=record["write"], of_run=record["run"],
                                       job_id=record["job_id"], step=record["step"], target=record["target"],
                                       settled=True))
        if outcomes:
            self._append(outcomes, sync=True)
            self.settled = len(outcomes)
        if not left:
            self._checkpoint()
        return not left

    def _checkpoint(self) -> None:
        """Every line above has its outcome: later runs need not read past this one. The lines above are
        synced first, so that no crash keeps the checkpoint and loses an outcome before it."""
        try:
            os.fsync(self._file)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror}") from exc
        self._append([{"v": FORMAT, "phase": "checkpoint", "time": datetime.now(UTC).isoformat(),
                       "run": self.run}], sync=False)

    def _transaction_statuses(self, backends: Backends, transactions: dict[str, list[dict[str, Any]]],
                              runs: dict[str, dict[str, Any]]) -> dict[str, str]:
        """committed / rolled_back / unknown per open transaction of this database, as Postgres says."""
        mine = {tx: lines[0].get("xid") for tx, lines in transactions.items()
                if runs.get(lines[0]["run"], {}).get("database") == self._where["database"]}
        if not backends.repository.transactional or not mine:
            return {}
        status_of = backends.repository.transaction_status
        deadline = time.monotonic() + IN_PROGRESS_WAIT
        while True:
            found = status_of([xid for xid in mine.values() if isinstance(xid, int)])
            if "in progress" not in found.values() or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the killed client's transaction is still being rolled back
        names = {"committed": "committed", "aborted": "rolled_back"}
        said = {tx: (found.get(xid) or "") if isinstance(xid, int) else "" for tx, xid in mine.items()}
        return {tx: names.get(status, "unknown") for tx, status in said.items() if status != "in progress"}

    def _landed(self, backends: Backends, record: dict[str, Any], run: dict[str, Any]) -> bool | None:
        """Whether an announced write is there now; None: cannot tell from here (another database)."""
        try:
            if record["step"] in ("copy_object", "delete_object"):
                if run.get("storage") != self._where["storage"]:
                    return None
                if record["step"] == "delete_object":  # undo's: landed when the object is gone
                    bucket, _, key = record["target"].partition("/")
                    return not backends.storage.stat(bucket, [key])
                return _object_landed(backends.storage, record)
            if run.get("database") != self._where["database"]:
                return None
            if record["step"] in ("restore_row", "delete_row"):
                return _revert_landed(backends.repository, record)
            return _row_landed(backends.repository, record)
        except (BackendError, KeyError, TypeError, ValueError):
            return None


def encode(line: dict[str, Any]) -> bytes:
    """One record, one line, for any reader: ASCII JSON escapes U+2028, U+0085 and every other break."""
    return json.dumps(line, default=_json_value, ensure_ascii=True).encode("ascii") + b"\n"


def where(backends: Backends) -> dict[str, str | None]:
    """Which database and storage a run wrote to, without secrets: a run settles only its own lines."""
    return {"database": backends.repository.location(), "storage": backends.storage.location()}


def writes(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of writes that happened, as a reader of the log should count them: `done` lines, and
    `pending` lines whose transaction committed (settled ones included), in log order."""
    lines = list(lines)
    committed = {line["tx"] for line in lines if line.get("phase") == "committed"}
    intents = {line["write"]: line for line in lines if line.get("phase") == "intent"}
    found = []
    for line in lines:
        if line.get("phase") == "pending" and line["tx"] in committed:
            found.append(line)
        elif line.get("phase") == "done":
            intent = intents.get(line["write"], {})
            found.append({**intent, **line, "after": line.get("after", intent.get("after"))})
    return found


def read(path: Path) -> list[dict[str, Any]]:
    """Every record of a log; a cut line is skipped."""
    return [r for r in (_parse(raw) for raw in Path(path).read_bytes().split(b"\n") if raw) if r is not None]


PEEK = re.compile(rb'^\{"v": 2, "phase": "([a-z_]+)"')
# The first id in a line is its own: `tx` and `write` come before any user data (see AuditLog._line).
FIRST_ID = re.compile(rb'"(?:tx|write)": "([0-9a-f-]{36})"')
CLOSING = {b"committed", b"rolled_back", b"unknown", b"done", b"failed", b"not_done"}


def _open_or_start(raws: list[bytes]) -> list[dict[str, Any]]:
    """The start lines, and the intent and pending lines no later line closes, parsed; the others are
    only peeked at, so a long tail of finished work costs a regular expression per line, not a parse."""
    closed: set[bytes] = set()
    for raw in raws:
        phase = PEEK.match(raw)
        if phase and phase.group(1) in CLOSING and (ident := FIRST_ID.search(raw)):
            closed.add(ident.group(1))
    wanted = []
    for raw in raws:
        phase = PEEK.match(raw)
        if phase is None:
            continue
        ident = FIRST_ID.search(raw) if phase.group(1) in (b"intent", b"pending") else None
        if phase.group(1) == b"start" or (ident and ident.group(1) not in closed):
            wanted.append(raw)
    return [r for r in map(_parse, wanted) if r is not None and r.get("v") == FORMAT]


def _open_records(records: list[dict[str, Any]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    transactions: dict[str, list[dict[str, Any]]] = {}
    intents: dict[str, dict[str, Any]] = {}
    closed_tx, closed_writes = set(), set()
    for r in records:
        phase = r["phase"]
        if phase == "pending":
            transactions.setdefault(r["tx"], []).append(r)
        elif phase in ("committed", "rolled_back", "unknown"):
            closed_tx.add(r["tx"])
        elif phase == "intent":
            intents[r["write"]] = r
        elif phase in ("done", "failed", "not_done"):
            closed_writes.add(r["write"])
    return ({tx: v for tx, v in transactions.items() if tx not in closed_tx},
            {w: v for w, v in intents.items() if w not in closed_writes})


def _object_landed(storage: Storage, record: dict[str, Any]) -> bool:
    bucket, _, key = record["target"].partition("/")
    found = storage.stat(bucket, [key])
    return bool(found) and found[0].size == record["after"]["size"]


def _row_landed(repo: Repository, record: dict[str, Any]) -> bool:
    """Over REST: does the row now hold what the announced write would have written?"""
    from charfix.diagnosis import facts as f, portrait

    table, _, ident = record["target"].partition("/")
    after = record["after"] or {}
    if table == "jobs":
        jobs = repo.jobs_by_id([UUID(ident)])
        if not jobs:
            return False
        if record["step"] == "link_character":
            return f.as_dict(jobs[0].metadata).get("character_id") == f.as_dict(after.get("metadata")).get("character_id")
        return jobs[0].status == after.get("status")
    if table == "characters":
        found = [c for c in repo.characters_for([UUID(ident)], []) if str(c.id) == ident]
        return bool(found) and found[0].image_url == after.get("image_url")
    if table == "user_library":
        rows = [r for r in repo.library_items_at(UUID(after["user_id"]), after["storage_path"]) if str(r.id) == ident]
        return bool(rows) and (record["step"] == "insert_library_row" or portrait.is_visible(rows[0]))
    raise ValueError(table)


def _revert_landed(repo: Any, record: dict[str, Any]) -> bool:
    """Over REST, an undo's row write (docs/audit.md, "Undo"): a deleted row is gone; a restored row
    holds the values put back."""
    from charfix.repository.reverts import reverter_for

    table, _, ident = record["target"].partition("/")
    reverter = reverter_for(repo)
    if record["step"] == "delete_row":
        return not reverter.exists(table, UUID(ident))
    return reverter.holds(table, UUID(ident), None, record["after"])


def _tail_since_checkpoint(fd: int) -> list[bytes]:
    """The lines after the last checkpoint, read backwards in blocks. A checkpoint is found by how its
    line starts: user text is escaped, so no record holds a raw newline followed by those bytes."""
    marker = b"\n" + CHECKPOINT
    blocks: list[bytes] = []  # from the end of the file backwards
    end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - TAIL_BLOCK)
        block = os.pread(fd, end - start, start)
        follows = blocks[-1][:len(marker)] if blocks else b""  # a marker may straddle two blocks
        at = (block + follows).rfind(marker) + 1
        if at == 0 and not (start == 0 and (block + follows).startswith(CHECKPOINT)):
            blocks.append(block)
            end = start
            continue
        tail = block[at:] + b"".join(reversed(blocks))  # from the checkpoint line on
        return [raw for raw in tail.split(b"\n")[1:] if raw]
    return [raw for raw in b"".join(reversed(blocks)).split(b"\n") if raw]


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:  # a cut line, or not ours
        return None
    return value if isinstance(value, dict) and isinstance(value.get("phase", ""), str) else None


def _open_private(path: Path) -> int:
    """Open for appending: created 0600 (its missing folders 0700), never through a symlink."""
    hint = "pass --audit-log PATH or set CHARFIX_AUDIT_LOG to a writable file"
    try:
        _make_folders(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"the audit log {path} is a symbolic link; charfix does not write through one; "
                              "nothing was changed", hint=hint) from exc
        raise ConfigError(f"cannot write the audit log {path}: {exc.strerror}; nothing was changed", hint=hint) from exc
    _tighten(fd)
    return fd


def _tighten(fd: int) -> None:
    """A log made by an older charfix (or by hand) may be readable by others: the before/after values
    it holds are users' data, so charfix's own file is made 0600 (docs/repairs.md, "The audit log")."""
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)


def _make_folders(folder: Path) -> None:
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:  # another run made it meanwhile
            pass


def _try_lock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how)
        return True
    except OSError:
        return False


def _is_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _json_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
