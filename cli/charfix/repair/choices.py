"""Interactive `repair` as a library call: which operation each of a person's choices runs
(docs/commands.md, "charfix repair"). The command only asks and shows; this says what is written."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from charfix.backends import Backends
from charfix.diagnosis import Rules
from charfix.errors import UsageError
from charfix.models import Diagnosis
from charfix.repair.operations import Preview, preview_complete_job, preview_link, preview_repair
from charfix.repair.unit import Clock, utc_now


class Choice(StrEnum):
    """The choices that write; the values are those the prompt offers (ui/advice.py)."""

    APPLY = "apply"  # the diagnosis's whole plan
    CHOOSE = "choose"  # link the character the person picked, then save
    COMPLETE = "complete"  # mark the job completed only
    FETCH = "fetch"  # complete, fetching the provider's URL and saving the portrait
    MARK_FAILED = "mark"  # record a job that never produced output as failed


def preview_choice(backends: Backends, diagnosis: Diagnosis, choice: Choice | str, *, rules: Rules,
                   character_id: UUID | None = None, now: Clock = utc_now) -> Preview:
    """The checked preview of what `choice` would write to the job; `operations.apply` carries it out.
    CHOOSE needs the person's `character_id`, which must be the job user's (RefusedError otherwise)."""
    job_id = diagnosis.job_id
    match Choice(choice):
        case Choice.CHOOSE:
            if character_id is None:
                raise UsageError("choosing the character needs the character's id")
            return preview_link(backends, job_id, character_id, rules=rules, now=now)
        case Choice.COMPLETE | Choice.FETCH:
            return preview_complete_job(backends, job_id, rules=rules, save=choice == Choice.FETCH, now=now)
        case Choice.MARK_FAILED:
            return preview_complete_job(backends, job_id, rules=rules, mark_failed=True, now=now)
        case Choice.APPLY:
            return preview_repair(backends, job_id, rules=rules, now=now)
