"""`charfix history JOB`: every run that touched a job, its rows and its objects, from the trail in use
(docs/audit.md). It writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from charfix.audit.trail import RunInfo, Trail, WriteRecord


@dataclass(frozen=True)
class RunHistory:
    info: RunInfo
    writes: list[WriteRecord]

    def to_json(self) -> dict[str, Any]:
        return {**self.info.to_json(), "writes": [{**w.to_json(), "changed": w.changes()} for w in self.writes]}


def job_history(trail: Trail, job_id: UUID) -> list[RunHistory]:
    """The runs that wrote anything of this job, oldest first, each with its writes in order."""
    view = trail.read(job_ids=[str(job_id)])
    by_run: dict[str, list[WriteRecord]] = {}
    for write in sorted(view.writes, key=lambda w: w.seq):
        by_run.setdefault(write.run, []).append(write)
    return [RunHistory(view.runs.get(run, RunInfo(run=run)), writes) for run, writes in by_run.items()]


