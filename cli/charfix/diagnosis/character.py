"""Which character the portrait is for: by id, by the row auto-save wrote, or by name and time."""

from __future__ import annotations

from charfix.diagnosis import facts as f
from charfix.diagnosis.work import Work, duration
from charfix.diagnosis.keys import own_key
from charfix.diagnosis import portrait
from charfix.models import (
    LIBRARY_BUCKET, WORKSPACE_BUCKET, Candidate, Character, Job, LibraryItem, LinkCharacter, ReasonCode as R,
)


def resolve_character(work: Work, request: f.Request, rows: list[LibraryItem]) -> bool:
    """Settle work.character, or say why it cannot be. Returns whether auto-save had what it needed."""
    if request.character_id is not None:
        _by_id(work, request)
        _check_bound(work, rows)
        return True
    name = request.character_name
    exact, near = _same_name(work, name)
    later = [c for c in exact if _in_window(work, c)]
    bound = _bound_character(work, rows) or _copied_to_older(work)
    others = [c for c in later if bound is None or c.id != bound.id]
    if bound is not None and not others:
        work.character = bound  # auto-save's own name lookup found it at the time
        return True
    work.because(
        R.CHARACTER_ID_MISSING,
        "The job's metadata has no character_id, so auto-save had to look the character up by name.",
        character_id=request.raw_character_id,
        character_name=name,
    )
    if name is None:
        work.because(R.NO_CHARACTER_REFERENCE, "The job's metadata names no character at all; a person must choose one.")
        return False
    work.candidates = [_candidate(work, c, exact=True) for c in exact]
    work.candidates += [_candidate(work, c, exact=False) for c in near]
    if bound is not None and bound.created_at < work.facts.job.created_at:
        _linked_to_older(work, name, bound, others[0])
    elif bound is not None:
        _by_name(work, name, later, [])
    else:
        _by_name(work, name, later, [c for c in near if _in_window(work, c)])
    return False


def _by_id(work: Work, request: f.Request) -> None:
    job = work.facts.job
    character = f.character_by_id(work.facts, request.character_id)
    if character is None:
        work.because(
            R.CHARACTER_DELETED,
            "The character named in the job's metadata no longer exists.",
            character_id=request.character_id,
        )
    elif character.user_id != job.user_id:
        work.because(
            R.CHARACTER_OWNER_MISMATCH,
            "The character named in the job belongs to another user; charfix never links it.",
            character_id=character.id,
            character_user_id=character.user_id,
            job_user_id=job.user_id,
        )
    else:
        work.character = character


def _check_bound(work: Work, rows: list[LibraryItem]) -> None:
    """A row of this job already bound to another character: only a person can untangle that."""
    bound = _bound_character(work, rows)
    chosen = work.character
    if bound is None or chosen is None or bound.id == chosen.id:
        return
    work.because(
        R.CHARACTER_LINKED_TO_OLDER,
        f"This job's library row is bound to '{bound.name}' ({bound.id}), not to '{chosen.name}'; "
        "a person must decide which it belongs to.",
        bound_character_id=bound.id,
        bound_created_at=bound.created_at,
        character_id=chosen.id,
    )
    work.character = None


def _by_name(work: Work, name: str, later: list[Character], near_later: list[Character]) -> None:
    job = work.facts.job
    if len(later) == 1 and not near_later:
        chosen = later[0]
        work.character = chosen
        work.because(
            R.CHARACTER_CREATED_LATER,
            f"'{name}' was created {duration(chosen.created_at - job.created_at)} after the job, "
            "so the name lookup at save time found nothing.",
            job_created_at=job.created_at,
            character_id=chosen.id,
            character_created_at=chosen.created_at,
        )
        work.then(f"Write character_id {chosen.id} into the job's metadata (the name stays).",
                  LinkCharacter(character_id=chosen.id))
    elif later:
        work.because(
            R.CHARACTER_AMBIGUOUS,
            f"{len(later) + len(near_later)} characters named like '{name}' were created after the job; "
            "a person must choose.",
            candidates=", ".join(str(c.id) for c in later + near_later),
        )
    else:
        offered = f"; {len(work.candidates)} similar candidate(s) are offered." if work.candidates else "."
        work.because(
            R.CHARACTER_NOT_FOUND,
            f"No character named exactly '{name}' was created within "
            f"{duration(work.rules.link_window)} after the job{offered}",
            character_name=name,
            link_window=duration(work.rules.link_window),
        )


def _linked_to_older(work: Work, name: str, bound: Character, newer: Character) -> None:
    work.because(
        R.CHARACTER_LINKED_TO_OLDER,
        f"Auto-save bound the portrait to an older '{bound.name}' while a new '{name}' "
        "was created just after the job; a person must decide which it belongs to.",
        bound_character_id=bound.id,
        bound_created_at=bound.created_at,
        newer_character_id=newer.id,
        newer_created_at=newer.created_at,
    )


def _copied_to_older(work: Work) -> Character | None:
    """Auto-save bound the portrait to a character that existed before the job, and a later step
    failed. Evidence without a row: the object's key (`{user}/{job}_{character}.ext`), or a character
    whose image is this job's: its workspace-temp key (auto-save's first step) or one of its library
    keys (auto-save's last step, or charfix's repair; without this a repaired job would lose the
    evidence that chose its character)."""
    job = work.facts.job
    prefixes = tuple(f"{bucket}/{f.job_prefix(job)}" for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET))
    copied = set(f.copied_character_ids(work.facts))
    for character in work.facts.characters:
        if character.user_id != job.user_id or character.created_at >= job.created_at:
            continue
        images = (character.image_url or "", character.reference_image_url or "")
        # An image counts only as a plain key in the user's folder (keys.py): `{prefix}../..` does not.
        if character.id in copied or any(image.startswith(prefixes) and _own_image(job, image) for image in images):
            return character
    return None


def _own_image(job: Job, image: str) -> bool:
    bucket = image.split("/", 1)[0]
    return own_key(job.user_id, image, bucket) is not None


def _bound_character(work: Work, rows: list[LibraryItem]) -> Character | None:
    for row in rows:
        if portrait.is_visible(row):
            character = f.character_by_id(work.facts, f.row_character_id(row))
            if character is not None and character.user_id == work.facts.job.user_id:
                return character
    return None


def _same_name(work: Work, name: str | None) -> tuple[list[Character], list[Character]]:
    if name is None:
        return [], []
    own = sorted(
        (c for c in work.facts.characters if c.user_id == work.facts.job.user_id),
        key=lambda c: (c.created_at, c.id),
    )
    wanted = f.normalized_name(name)
    exact = [c for c in own if c.name == name]
    near = [c for c in own if c.name != name and f.normalized_name(c.name) == wanted]
    return exact, near


def _in_window(work: Work, character: Character) -> bool:
    start = work.facts.job.created_at
    return start <= character.created_at <= start + work.rules.link_window


def _candidate(work: Work, character: Character, *, exact: bool) -> Candidate:
    return Candidate(
        id=character.id,
        name=character.name,
        created_at=character.created_at,
        image_url=character.image_url,
        exact=exact,
        seconds_after_job=(character.created_at - work.facts.job.created_at).total_seconds(),
    )
