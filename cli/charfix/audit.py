"""The audit log: one JSON line per write, with the row or object before and after.

The file is opened before the first write, so an unwritable log stops a repair before it starts.
An object copy is logged the moment it is made. A job's row writes are logged and synced just
before its transaction commits, so no write goes unlogged; if the commit then fails, a
`rolled_back` line says which logged writes did not happen."""

from __future__ import annotations

import getpass
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from charfix.errors import ConfigError


class AuditError(ConfigError):
    """The audit log cannot be written: no further write may happen."""


def default_audit_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("charfix")) / "audit.jsonl"


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER") or f"uid-{os.getuid()}"


@dataclass
class AuditLog:
    path: Path
    operator: str
    command: str
    _file: TextIO | None = None
    # Lines wait per thread (backfill repairs jobs in parallel) until their job commits.
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    written: int = 0
    failed: bool = False  # a write failed: the run stops, and closing must not fail again

    @property
    def _pending(self) -> list[dict[str, Any]]:
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        return self._local.pending

    def open(self) -> AuditLog:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot write the audit log {self.path}: {exc.strerror}; nothing was changed",
                hint="pass --audit-log PATH or set CHARFIX_AUDIT_LOG to a writable file",
            ) from exc
        return self

    def record(self, *, job_id: Any, step: str, target: str, before: Any, after: Any, now: bool = False) -> None:
        """A write's line. Row writes wait for `flush` (just before their commit); `now` writes at once."""
        line = {**self._base(job_id), "step": step, "target": target, "before": before, "after": after}
        if now:
            self._write([line])
        else:
            self._pending.append(line)

    def _base(self, job_id: Any) -> dict[str, Any]:
        return {"time": datetime.now(timezone.utc).isoformat(), "operator": self.operator, "command": self.command,
                "job_id": str(job_id)}

    def flush(self) -> None:
        """Write the job's row lines, before its transaction commits: no write goes unlogged."""
        pending = self._pending
        if self._file is None or not pending:
            pending.clear()
            return
        self._write(pending)
        self._local.flushed = list(pending)
        pending.clear()

    def committed(self) -> None:
        """The job's transaction committed: its flushed lines stand."""
        self._local.flushed = []

    def drop(self, job_id: Any) -> None:
        """One job's row writes rolled back (its savepoint) before they were written: drop its lines."""
        self._local.pending = [line for line in self._pending if line["job_id"] != str(job_id)]

    def rolled_back(self) -> None:
        """The transaction's row writes rolled back. Lines not yet written are dropped; if some were
        written (the commit itself failed), a `rolled_back` line per job says which did not happen."""
        undone = getattr(self._local, "flushed", [])
        self._pending.clear()
        self._local.flushed = []
        steps: dict[str, list[str]] = {}
        for line in undone:
            steps.setdefault(line["job_id"], []).append(line["step"])
        if steps and self._file is not None:
            self._write([{**self._base(job), "step": "rolled_back", "target": None, "before": done, "after": None}
                         for job, done in steps.items()])

    def _write(self, lines: list[dict[str, Any]]) -> None:
        try:
            with self._lock:
                for line in lines:
                    self._file.write(json.dumps(line, default=_json_value, ensure_ascii=False) + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
                self.written += len(lines)
        except OSError as exc:
            self.failed = True
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror}; the job's writes were rolled back") from exc

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()  # flushes what a failed write left in the buffer, and fails the same way
        except OSError as exc:
            if not self.failed:  # already reported: the run stopped on it
                raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror}") from exc
        finally:
            self._file = None


def _json_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
