"""`charfix history JOB`: every run that touched a job, its rows and its objects, from the trail in use
(docs/audit.md). It writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from charfix.repair.trail import RunInfo, Trail, WriteRecord


@dataclass(frozen=True)
class RunHistory:
    info: RunInfo
    writes: list[WriteRecord]

    def to_json(self) -> dict[str, Any]:
        return {**self.info.to_json(), "writes": [{**w.to_json(), "changed": changes(w)} for w in self.writes]}


def job_history(trail: Trail, job_id: UUID) -> list[RunHistory]:
    """The runs that wrote anything of this job, oldest first, each with its writes in order."""
    view = trail.read(job_ids=[str(job_id)])
    by_run: dict[str, list[WriteRecord]] = {}
    for write in sorted(view.writes, key=lambda w: w.seq):
        by_run.setdefault(write.run, []).append(write)
    return [RunHistory(view.runs.get(run, RunInfo(run=run)), writes) for run, writes in by_run.items()]


def changes(write: WriteRecord) -> list[dict[str, Any]]:
    """What changed, field by field: before -> after (a row or object created has no before, one
    deleted no after)."""
    before, after = write.before, write.after
    if isinstance(before, dict) and isinstance(after, dict):
        keys = [k for k in after if before.get(k) != after.get(k)] + [k for k in before if k not in after]
        return [{"field": k, "before": before.get(k), "after": after.get(k)} for k in keys]
    return [{"field": None, "before": before, "after": after}]
