"""The order of judgement: status, ownership, character, output, library; then the state."""

from __future__ import annotations

from charfix.diagnosis import facts as f
from charfix.diagnosis.character import resolve_character
from charfix.diagnosis.library import plan_library
from charfix.diagnosis.status import judge_status
from charfix.diagnosis.work import Rules, Work
from charfix.diagnosis.keys import why_not_own
from charfix.models import (
    Action,
    LIBRARY_BUCKET,
    WORKSPACE_BUCKET,
    Character,
    Diagnosis,
    Event,
    JobFacts,
    ReasonCode as R,
    State,
)

# Reasons only a person can settle.
REVIEW_CODES = frozenset(
    {
        R.ASSET_OWNER_MISMATCH,
        R.CHARACTER_AMBIGUOUS,
        R.CHARACTER_DELETED,
        R.CHARACTER_LINKED_TO_OLDER,
        R.CHARACTER_NOT_FOUND,
        R.CHARACTER_OWNER_MISMATCH,
        R.FOREIGN_STORAGE_KEY,
        R.NO_CHARACTER_REFERENCE,
        R.OUTPUT_EXTERNAL_URL,
        R.UNREADABLE_DATA,
    }
)
SHOWN_KEY = 200  # characters of an untrusted key shown as evidence (one may be 2,000 folders deep)


def diagnose(facts: JobFacts, rules: Rules) -> Diagnosis:
    work = Work(facts=facts, rules=rules)
    if _unreadable(work):
        return _finish(work, State.NEEDS_REVIEW)
    request = f.read_request(facts.job)
    if not request.is_portrait:
        return _finish(work, State.NOT_APPLICABLE)
    # Only evidence inside the job's user's folder counts (keys.py): rows and assets naming keys
    # anywhere else are reported below, never used.
    output = f.find_output(facts)
    rows = f.job_rows(facts)
    has_output = output.source is not None or f.saved_copy(facts, rows) is not None
    early = judge_status(work, output, has_output=has_output)
    if _foreign_asset(work):
        work.plan = []  # never repair across users, not even the job's status (docs/domain.md section 4)
        return _finish(work, State.NEEDS_REVIEW)
    if _foreign_keys(work, output):
        # The job's own output, proven inside its folder, may still be marked completed; nothing else.
        work.plan = [s for s in work.plan if s.action == Action.COMPLETE_JOB and has_output]
        return _finish(work, State.NEEDS_REVIEW)
    if early is not None:
        return _finish(work, early)
    if request.source_only:
        work.because(
            R.METADATA_SOURCE_ONLY,
            "The request set metadata.source instead of metadata.destination, so auto-save never ran.",
            source="character_portrait",
        )
    autosave_had_inputs = resolve_character(work, request, rows) and not request.source_only
    if not has_output:
        _no_output(work, output)
    if work.character is not None and not work.has(*(REVIEW_CODES - {R.OUTPUT_EXTERNAL_URL})) and not work.lost:
        plan_library(work, work.character, output, rows, report=autosave_had_inputs and has_output)
    state = _state(work)
    if state in (State.REPAIRABLE, State.NEEDS_REVIEW) and _recent(work, output):
        return _finish(work, _still_saving(work))
    return _finish(work, state)


def _recent(work: Work, output: f.Output) -> bool:
    """The application may still be saving a job whose last sign of life is this fresh."""
    job = work.facts.job
    moments = [m for m in (job.created_at, job.completed_at, output.created_at) if m is not None]
    return work.rules.now - max(moments) < work.rules.stuck_after


def _still_saving(work: Work) -> State:
    work.notes.append(
        f"Last activity less than {work.rules.stuck_after} ago: the application may still be saving this "
        "portrait, so charfix waits (see --stuck-after)."
    )
    work.reasons.clear()
    work.plan = []
    return State.IN_PROGRESS


def _foreign_asset(work: Work) -> bool:
    foreign = f.foreign_assets(work.facts)
    if foreign:
        work.because(
            R.ASSET_OWNER_MISMATCH,
            "A workspace asset of this job belongs to another user; charfix never repairs it.",
            asset_id=foreign[0].id,
            asset_user_id=foreign[0].user_id,
            job_user_id=work.facts.job.user_id,
        )
    return bool(foreign)


def _unreadable(work: Work) -> bool:
    """A value of the job's own rows could not be read (docs/diagnosis.md, unreadable_data): nothing
    about the job can be trusted to be complete, so a person looks at it; the scan goes on."""
    found = f.unreadable_values(work.facts)
    for value in found:
        table, _, column = value.column.partition(".")
        work.because(
            R.UNREADABLE_DATA,
            f"{value.column} of row {value.row_id} {value.problem}; charfix does not repair a job it cannot read whole.",
            table=table,
            column=column,
            row_id=value.row_id,
            problem=value.problem,
        )
    return bool(found)


def _foreign_keys(work: Work, output: f.Output) -> bool:
    """Keys that tie themselves to this job but are not plain keys in its user's folder: another user's
    object, the bucket's top level, `..`, backslashes, percent-encoding (keys.py). Evidence of nothing."""
    job = work.facts.job
    found = [("user_library", "storage_path", row.id, row.storage_path) for row in f.foreign_rows(work.facts)]
    if output.untrusted_path is not None and output.asset is not None:
        found.append(("workspace_assets", "temp_storage_path", output.asset.id, output.untrusted_path))
    for table, column, row_id, raw in found:
        problem = why_not_own(job.user_id, raw, WORKSPACE_BUCKET if table == "workspace_assets" else None)
        work.because(
            R.FOREIGN_STORAGE_KEY,
            f"{table}.{column} of row {row_id} names a key {problem}; charfix never reads or writes it.",
            table=table,
            column=column,
            row_id=row_id,
            value=raw if len(raw) <= SHOWN_KEY else raw[:SHOWN_KEY] + f"... ({len(raw)} characters)",
            problem=problem,
        )
    return bool(found)


def _no_output(work: Work, output: f.Output) -> None:
    if output.external_url:
        kept = ("the asset kept the provider's URL" if output.external_from == "temp_storage_path"
                else f"temp_storage_path is empty, but the job's {output.external_from} holds the provider's URL")
        work.because(
            R.OUTPUT_EXTERNAL_URL,
            f"The upload to workspace-temp failed and {kept}, which may have expired.",
            url=output.external_url,
            recorded_in=output.external_from,
            asset_id=output.asset.id if output.asset else None,
        )
        return
    work.lost = True
    detail = (
        "the asset row's temp_storage_path is empty (the upload failed)"
        if output.empty_path
        else "no object is left in workspace-temp"
    )
    work.because(
        R.OUTPUT_MISSING,
        f"The output is gone: {detail}, and the library holds no copy.",
        asset_id=output.asset.id if output.asset else None,
        recorded_key=output.recorded_key,
        searched=f"{WORKSPACE_BUCKET}/{f.job_prefix(work.facts.job)}*",
    )


def _state(work: Work) -> State:
    if work.lost:
        return State.LOST
    if work.has(*REVIEW_CODES):
        return State.NEEDS_REVIEW
    if work.plan:
        return State.REPAIRABLE
    if work.has(R.LIBRARY_DUPLICATES):
        return State.NEEDS_REVIEW
    # Saved: whatever went wrong on the way has been mended; the reasons no longer apply.
    work.reasons.clear()
    return State.SAVED


def _finish(work: Work, state: State) -> Diagnosis:
    job = work.facts.job
    request = f.read_request(job)
    if state == State.NEEDS_REVIEW and not work.has(R.OUTPUT_EXTERNAL_URL):
        # Completing a job whose output exists is safe on its own; the rest waits for a person.
        work.plan = [step for step in work.plan if step.action == Action.COMPLETE_JOB]
    keeps_plan = state in (State.REPAIRABLE, State.FAILED, State.NEEDS_REVIEW)
    character = work.character
    return Diagnosis(
        job_id=job.id,
        user_id=job.user_id,
        status=job.status,
        created_at=job.created_at,
        state=state,
        reasons=work.reasons,
        character_id=character.id if character else None,
        character_name=request.character_name or (character.name if character else None),
        candidates=work.candidates,
        plan=work.plan if keeps_plan else [],
        notes=work.notes,
        timeline=_timeline(work),
    )


def _timeline(work: Work) -> list[Event]:
    facts, job = work.facts, work.facts.job
    events = [Event(at=job.created_at, what=f"job created (status now '{job.status}')")]
    if job.started_at:
        events.append(Event(at=job.started_at, what="job started"))
    for asset in f.own_assets(facts):
        path = asset.temp_storage_path or "empty temp_storage_path"
        if asset.created_at is not None:  # NULL in the app's schema: no moment to place it at
            events.append(Event(at=asset.created_at, what=f"output stored: workspace asset {asset.id} ({path})"))
    for obj in facts.temp_objects:
        if obj.updated_at and not f.is_thumbnail(obj.key):
            events.append(Event(at=obj.updated_at, what=f"object written: {obj.path}"))
    for character in _story_characters(work):
        events.append(Event(at=character.created_at, what=f"character '{character.name}' created ({character.id})"))
    for row in f.job_rows(facts):
        events.append(Event(at=row.created_at, what=f"library row {row.id} created ({LIBRARY_BUCKET}/{row.storage_path})"))
    if job.completed_at:
        events.append(Event(at=job.completed_at, what="job marked completed"))
    return sorted(events, key=lambda e: e.at)


STORY_CHARACTERS = 5


def _story_characters(work: Work) -> list[Character]:
    """The characters worth a line: the one resolved, then those nearest the job in time. A user
    with hundreds of same-name characters would otherwise drown the story."""
    job = work.facts.job
    own = [c for c in work.facts.characters if c.user_id == job.user_id]
    chosen = {work.character.id} if work.character else set()
    nearest = sorted(own, key=lambda c: (c.id not in chosen, abs((c.created_at - job.created_at).total_seconds())))
    return sorted(nearest[:STORY_CHARACTERS], key=lambda c: c.created_at)
