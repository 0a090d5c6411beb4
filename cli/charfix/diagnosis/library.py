"""The auto-save steps still to do once the character is known: object, row, character image."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit

from charfix.diagnosis import facts as f
from charfix.diagnosis.work import Work
from charfix.diagnosis import portrait
from charfix.models import (
    LIBRARY_BUCKET, WORKSPACE_BUCKET, Character, CopyObject, InsertLibraryRow, Job, LibraryItem, ReasonCode as R,
    UpdateCharacterImage, UpgradeLibraryRow,
)


def plan_library(work: Work, character: Character, output: f.Output, rows: list[LibraryItem], *, report: bool) -> None:
    """Plan what auto-save left undone for the job's `character` (work.character). `report` says whether
    each gap is itself a cause (auto-save had what it needed and a step failed) or only a consequence
    of an earlier reason."""
    visible = [r for r in rows if portrait.is_visible(r)]
    generic = [r for r in rows if not portrait.is_visible(r)]
    _duplicates(work, visible)
    if visible:
        key = visible[0].storage_path
        _ensure_object(work, output, key, report=report)
    elif generic:
        key = generic[0].storage_path
        _upgrade(work, character, generic[0])
        _ensure_object(work, output, key, report=report)
    else:
        key = _new_row(work, character, output, report=report)
    _character_image(work, character, output, key, report=report)


def _duplicates(work: Work, visible: list[LibraryItem]) -> None:
    if len(visible) < 2:
        return
    work.because(
        R.LIBRARY_DUPLICATES,
        f"{len(visible)} library rows hold this portrait; the oldest is kept, the others need removing by a person.",
        keep=visible[0].id,
        duplicates=", ".join(str(r.id) for r in visible[1:]),
    )


def _upgrade(work: Work, character: Character, row: LibraryItem) -> None:
    work.because(
        R.LIBRARY_ROW_GENERIC,
        "The portrait was saved by hand as a generic row that the Characters tab does not show.",
        library_row_id=row.id,
        storage_path=row.storage_path,
        content_category=row.content_category,
    )
    work.then(f"Give library row {row.id} the character tags, category and roleplay metadata (no new copy).",
              UpgradeLibraryRow(library_row_id=row.id, character_id=character.id, character_name=character.name))


def _ensure_object(work: Work, output: f.Output, key: str, *, report: bool) -> None:
    if f.library_object(work.facts, key) is not None:
        return
    if report:
        work.because(
            R.LIBRARY_COPY_MISSING,
            f"The library row points at {LIBRARY_BUCKET}/{key}, but no object is there.",
            destination=f"{LIBRARY_BUCKET}/{key}",
        )
    _copy(work, output, key)


def _new_row(work: Work, character: Character, output: f.Output, *, report: bool) -> str:
    existing = f.library_copy_for(work.facts, character.id)
    if existing is not None and output.source is not None and not existing.may_be_copy_of(output.source):
        # Truncated or another image: not the copy, so it is copied over (docs/repairs.md).
        if report:
            differs = (f"{existing.size} bytes, the source {output.source.size}" if existing.size != output.source.size
                       else "the same size, other bytes")
            work.because(
                R.LIBRARY_COPY_MISSING,
                f"{existing.path} is not a whole copy of {output.source.path} ({differs}); it is copied again.",
                source=output.source.path,
                destination=existing.path,
            )
        key = existing.key
        _copy(work, output, key)
    elif existing is not None:
        if report:
            work.because(
                R.LIBRARY_ROW_MISSING,
                "The image was copied to the library, but the row that shows it was never inserted.",
                object=existing.path,
            )
        key = existing.key
    else:
        source = output.source.key if output.source else output.external_url or ""
        key = f"{f.job_prefix(work.facts.job)}{character.id}.{f.extension(source.split('?')[0])}"
        if report:
            work.because(
                R.LIBRARY_COPY_MISSING,
                "The image is in workspace-temp but was never copied to the library.",
                source=output.source.path if output.source else output.external_url,
                destination=f"{LIBRARY_BUCKET}/{key}",
            )
        _copy(work, output, key)
    work.then(f"Insert the library row for {LIBRARY_BUCKET}/{key} that the Characters tab shows.",
              InsertLibraryRow(storage_path=key, character_id=character.id, character_name=character.name))
    return key


def _copy(work: Work, output: f.Output, key: str) -> None:
    # The temp object may have expired after the image reached the library under another key.
    saved = f.saved_copy(work.facts, f.job_rows(work.facts))
    source = output.source.path if output.source is not None else saved.path if saved is not None else None
    thumbnail = output.thumbnail.path if output.thumbnail is not None else None
    copy = CopyObject(
        destination=f"{LIBRARY_BUCKET}/{key}",
        source=source,
        source_url=(output.external_url or None) if source is None else None,
        thumbnail_source=thumbnail,
        thumbnail_destination=f"{LIBRARY_BUCKET}/{key.rsplit('.', 1)[0]}{f.THUMB_SUFFIX}" if thumbnail else None,
    )
    work.then(f"Copy {copy.source or copy.source_url} to {copy.destination}.", copy)


def _character_image(work: Work, character: Character, output: f.Output, key: str, *, report: bool) -> None:
    target = f"{LIBRARY_BUCKET}/{key}"
    if character.image_url == target:
        return
    if not _replaceable(work, character, output, character.image_url):
        work.notes.append(
            f"'{character.name}' shows {character.image_url}, chosen after this job; charfix keeps it."
        )
        return
    if report:
        work.because(
            R.CHARACTER_IMAGE_NOT_UPDATED,
            f"'{character.name}' still shows {character.image_url or 'no image'} instead of the saved portrait.",
            character_id=character.id,
            image_url=character.image_url,
            expected=target,
        )
    seed = output.asset.generation_seed if output.asset else None
    if seed is not None and not f.fits_int4(seed):
        work.notes.append(f"Seed {seed} does not fit characters.seed_locked (integer); it is left alone.")
    # The reference image follows only when it, too, is empty or this job's; else the user chose it.
    reference = character.reference_image_url in (None, character.image_url) or _replaceable(
        work, character, output, character.reference_image_url)
    fields = "image_url, reference_image_url" if reference else "image_url (the chosen reference_image_url stays)"
    work.then(f"Point '{character.name}' ({fields}) at {target}.", UpdateCharacterImage(
        character_id=character.id,
        image_url=target,
        previous_image_url=character.image_url,
        reference_image_url=target if reference else None,
        seed_locked=seed if f.fits_int4(seed) else None,
    ))


def _replaceable(work: Work, character: Character, output: f.Output, current: str | None) -> bool:
    """Replace only an image this job produced or an empty one (docs/domain.md section 5). Nothing
    here reads characters.updated_at: the app's own triggers move it (docs/domain.md section 6)."""
    job = work.facts.job
    current = (current or "").strip()
    if current in ("", f"{WORKSPACE_BUCKET}/", WORKSPACE_BUCKET):
        return True
    if current.startswith(f"{WORKSPACE_BUCKET}/{f.job_prefix(job)}"):
        return True
    if output.recorded_key and current == f"{WORKSPACE_BUCKET}/{output.recorded_key}":
        return True
    if not f.is_url(current):
        return False  # a storage path: the library copy of another job, or one the user chose
    if current == output.external_url or _storage_url_of_this_job(job, output, current):
        return True
    recorded = provider_url(job)
    if recorded is not None:
        return current == recorded  # the job says which URL is its own: any other one was chosen
    return _made_by_the_creation_flow(work, character, current)


def provider_url(job: Job) -> str | None:
    """The provider's URL of the image, which the app records when the job's completion lands."""
    value = f.as_dict(job.metadata).get("original_fal_url")
    return value.strip() if isinstance(value, str) and f.is_url(value.strip()) else None


# The Storage API's URLs of an object: signed, public or authenticated, plain or rendered.
STORAGE_OBJECT_URL = re.compile(
    r"/storage/v1/(?:object|render/image)/(?:sign|public|authenticated)/" + re.escape(WORKSPACE_BUCKET) + r"/(.+)")


def _storage_url_of_this_job(job: Job, output: f.Output, url: str) -> bool:
    """A Storage URL of this job's own object in workspace-temp: its path names exactly the key
    `{user}/{job}_{epoch_ms}.{ext}` (or the key the asset row records). A URL that merely contains
    the job id somewhere (`https://elsewhere/?x={job}`) is not this job's. The diagnosis does not
    know the project's host; only the job's owner can write this character's image."""
    parts = _parsed(url)
    if parts is None:
        return False
    found = STORAGE_OBJECT_URL.fullmatch(unquote(parts.path))
    if found is None or parts.username or parts.password:
        return False
    key = found.group(1)
    own = {k for k in (output.recorded_key, output.source.key if output.source else None) if k}
    if key in own:
        return True
    rest = key.removeprefix(f.job_prefix(job))
    return rest != key and TEMP_KEY_REST.fullmatch(rest) is not None


TEMP_KEY_REST = re.compile(r"\d{10,16}\.[A-Za-z0-9]{1,5}")  # {epoch_ms}.{ext}, as the app names it


def _made_by_the_creation_flow(work: Work, character: Character, current: str) -> bool:
    """The create-character dialog stores the provider's URL of the last portrait it showed. So a
    provider URL is this job's when the character was created within the link window after the job
    and no later draft for the same name came in between. A URL into the project's Storage is not a
    provider's: the user put it there. (The character's updated_at says nothing: writing a portrait
    row moves it, docs/domain.md section 6.)"""
    job = work.facts.job
    if not job.created_at <= character.created_at <= job.created_at + work.rules.link_window:
        return False
    parts = _parsed(current)
    if parts is None or "/storage/v1/" in parts.path:
        return False  # the dialog stores a provider's URL, which parses: anything else the user wrote
    return not any(job.created_at < other.created_at <= character.created_at for other in work.facts.siblings)


def _parsed(url: str) -> SplitResult | None:
    """The URL's parts, or None when urllib refuses it (`https://[x`: the user's text, not a URL the app
    writes). One such character must cost nothing beyond keeping its image (docs/reliability.md)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None
