"""What the job's own status says, read against the output that exists."""

from __future__ import annotations

from datetime import datetime

from charfix.diagnosis import facts as f
from charfix.diagnosis.work import Work, duration
from charfix.models import WORKSPACE_BUCKET, CompleteJob, Job, MarkFailed, ReasonCode as R, State

OPEN_STATUSES = ("queued", "processing")
ENDED_STATUSES = ("failed", "cancelled")
CLEANUP_PREFIX = "Cleaned up:"  # the application's clean-up of jobs stuck during a deployment


def judge_status(work: Work, output: f.Output, *, has_output: bool) -> State | None:
    """Add the status reasons; return a final state when nothing more can be said."""
    job = work.facts.job
    if job.status in OPEN_STATUSES:
        return _open(work, output, has_output=has_output)
    if job.status in ENDED_STATUSES:
        return _ended(work, output, has_output=has_output)
    if job.status != "completed":
        work.because(
            R.JOB_STATUS_UNKNOWN,
            f"The job's status is {job.status!r}, which the application never writes; a person should look at it.",
            status=repr(job.status),
        )
        return State.NEEDS_REVIEW
    return None


def _open(work: Work, output: f.Output, *, has_output: bool) -> State | None:
    job = work.facts.job
    if has_output or output.asset is not None:
        work.because(
            R.JOB_NOT_COMPLETED,
            f"The job still says '{job.status}' although its output was stored.",
            job_created_at=job.created_at,
            output_stored_at=output.created_at,
            asset_id=output.asset.id if output.asset else None,
            object=output.source.path if output.source else None,
        )
        work.then("Mark the job completed at the time its output was stored.",
                  CompleteJob(completed_at=completed_at(job, output)))
        return None
    age = work.rules.now - job.created_at
    if age <= work.rules.stuck_after:
        return State.IN_PROGRESS
    work.because(
        R.JOB_NO_OUTPUT,
        f"The job has said '{job.status}' for {duration(age)} and produced no asset and no object.",
        job_created_at=job.created_at,
        searched=f"{WORKSPACE_BUCKET}/{f.job_prefix(job)}*",
    )
    work.then("Record the job as failed (only on request).",
              MarkFailed(error_message="charfix: no output was ever stored for this job"))
    return State.FAILED


def _ended(work: Work, output: f.Output, *, has_output: bool) -> State | None:
    job = work.facts.job
    cleaned_up = job.status == "failed" and (job.error_message or "").startswith(CLEANUP_PREFIX)
    if not has_output:
        detail = " and no output exists."
    elif cleaned_up:
        detail = " by a clean-up, but its output survived."
    else:
        detail = " but its output exists; only a person can say whether the user wants it saved."
    work.because(
        R.JOB_FAILED,
        f"The job is marked '{job.status}'{detail}",
        error_message=job.error_message,
        object=output.source.path if output.source else None,
    )
    if not has_output and not output.external_url:
        return State.FAILED
    if has_output and not cleaned_up:
        return State.NEEDS_REVIEW  # a cancelled or genuinely failed job is not charfix's to finish
    if not has_output:
        return None  # the provider's URL may still answer: the output check says so
    work.then("Mark the job completed: its output exists, so the failure was a clean-up, not the generation.",
              CompleteJob(completed_at=completed_at(job, output)))
    return None


def completed_at(job: Job, output: f.Output) -> datetime:
    """The output's own time (asset row, else object), else when the job started or was created;
    never before the job was created (a clock that disagrees, or a row's odd time, loses to it)."""
    moment = output.created_at or job.started_at or job.created_at
    return max(moment, job.created_at)
