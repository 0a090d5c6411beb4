"""Reading the audit log back: what charfix did to given jobs, and when.

The log is JSON lines written by charfix.audit.log; its format grows (new fields appear, old ones may
be missing), so every line is read defensively: a line that is not a JSON object with a `job_id`
is skipped, unknown fields are kept but never required.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from charfix.errors import ConfigError


@dataclass(frozen=True)
class AuditEntry:
    job_id: UUID
    time: datetime | None
    operator: str | None
    command: str | None
    step: str | None
    outcome: str | None  # newer logs say how the write ended; older ones do not
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def entries_for(path: Path, job_ids: Iterable[UUID]) -> tuple[list[AuditEntry], int]:
    """The log's lines about these jobs, in file order, and how many lines were unreadable.
    A missing log is no line at all (charfix has not written anything with it)."""
    wanted = {str(job_id) for job_id in job_ids}
    about: list[dict[str, Any]] = []
    closed: dict[str, str] = {}  # a transaction's or an announced write's id -> the line that settled it
    unreadable = 0
    try:
        handle = path.open("r", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path}: {exc.strerror or exc}",
                          hint="pass --audit-log PATH or set CHARFIX_AUDIT_LOG") from None
    with handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                unreadable += 1
                continue
            if not isinstance(data, dict):
                unreadable += 1
                continue
            if data.get("v") == FORMAT and data.get("phase") in CLOSING:
                ident = data.get("tx") if data["phase"] in ("committed", "rolled_back", "unknown") else data.get("write")
                if isinstance(ident, str):
                    closed[ident] = data["phase"]
            job = data.get("job_id")
            if not isinstance(job, str) or job.lower() not in wanted:
                continue
            about.append(data)
    return [entry for data in about if (entry := _entry(data, closed)) is not None], unreadable


# The log's format (charfix.audit.log, docs/repairs.md "The audit log"): an object write is an `intent`
# line, then `done` or `failed`; row writes are `pending` lines, then their transaction's `committed`
# or `rolled_back`. Each write is shown once, with how it ended; a line that ended nothing is not.
FORMAT = 2
CLOSING = {"committed", "rolled_back", "unknown", "done", "failed", "not_done"}
SHOWN = {"done": "done", "failed": "failed", "not_done": "not done", "committed": "committed",
         "rolled_back": "rolled back", "unknown": "outcome unknown"}


def _entry(data: dict[str, Any], closed: dict[str, str]) -> AuditEntry | None:
    known = {"job_id", "time", "operator", "command", "step", "outcome"}
    outcome = _text(data.get("outcome"))
    if data.get("v") == FORMAT:
        phase = data.get("phase")
        if phase == "pending":
            outcome = SHOWN.get(closed.get(str(data.get("tx")), ""), "outcome unknown")
        elif phase == "intent":
            if data.get("write") in closed:
                return None  # its done/failed line is the write's row
            outcome = "outcome unknown"
        elif phase in ("done", "failed", "not_done"):
            outcome = SHOWN[phase]
        else:
            return None
    return AuditEntry(
        job_id=UUID(data["job_id"]),
        time=_time(data.get("time")),
        operator=_text(data.get("operator")),
        command=_text(data.get("command")),
        step=_text(data.get("step")),
        outcome=outcome,
        extra={k: v for k, v in data.items() if k not in known},
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def entries_from_trail(trail: Any, job_ids: Iterable[UUID]) -> tuple[list[AuditEntry], int]:
    """The same entries from a trail read as runs and writes (audit/trail.py): what `report` shows once
    the database holds the trail (docs/audit.md). Only writes that happened are there, and object
    writes announced without an outcome ("outcome unknown")."""
    view = trail.read(job_ids=[str(j) for j in job_ids])
    found = []
    for write in sorted(view.writes, key=lambda w: w.seq):
        run = view.runs.get(write.run)
        found.append(AuditEntry(
            job_id=UUID(write.job_id), time=_time(write.time), operator=run.operator if run else None,
            command=run.command if run else None, step=write.step,
            outcome="done" if write.landed else "outcome unknown",
            extra={"run": write.run, "target": write.target, "before": write.before, "after": write.after}))
    return found, view.unreadable
