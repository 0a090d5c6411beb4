"""Pure readings of one job's facts: what its metadata says, where its output is, who its character is.

The diagnosis is built from these. Each function takes models and returns plain values; none raises
on odd data, because the application's metadata may hold anything.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from charfix.diagnosis.keys import own_key
from charfix.models import (
    LIBRARY_BUCKET,
    PORTRAIT,
    WORKSPACE_BUCKET,
    Character,
    Job,
    JobFacts,
    LibraryItem,
    StoredObject,
    WorkspaceAsset,
)

THUMB_SUFFIX = ".thumb.webp"
INT4_MAX = 2_147_483_647
PREFIX_LENGTH = 74  # len("{user uuid}/{job uuid}_")
INT4_MIN = -2_147_483_648
ORIGINAL_FAL_URL = "original_fal_url"
# A name longer than this is no person's character name (a planted row): the job needs a person
# (unreadable_data), on both backends alike. Shorter odd names are matched exactly.
MAX_NAME_LENGTH = 10_000


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text_value(data: dict[str, Any], *keys: str) -> str | None:
    """The first of `keys` that holds a non-blank string."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def as_uuid(value: Any) -> UUID | None:
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return UUID(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class Request:
    """What the job's metadata asked for."""

    is_portrait: bool
    source_only: bool
    character_id: UUID | None
    raw_character_id: str | None
    character_name: str | None
    name_too_long: bool = False


def read_request(job: Job) -> Request:
    meta = as_dict(job.metadata)
    destination = meta.get("destination")
    source = meta.get("source")
    raw_id = meta.get("character_id")
    name = text_value(meta, "character_name", "characterName")
    too_long = name is not None and len(name) > MAX_NAME_LENGTH
    return Request(
        is_portrait=PORTRAIT in (destination, source),
        source_only=source == PORTRAIT and destination != PORTRAIT,
        character_id=as_uuid(raw_id),
        raw_character_id=None if raw_id is None else str(raw_id)[:100],
        character_name=None if too_long else name,
        name_too_long=too_long,
    )


@dataclass(frozen=True)
class UnreadableValue:
    column: str  # table.column
    row_id: UUID
    problem: str


def unreadable_values(facts: JobFacts) -> list[UnreadableValue]:
    """Values of this job's own rows that the adapter could not read (repository/rows.py), and names
    too long to be anyone's: each makes the job one for a person, and only this job."""
    job = facts.job
    found = [_unreadable(mark, job.id) for mark in job.unreadable]
    if read_request(job).name_too_long:
        found.append(UnreadableValue("jobs.metadata", job.id, f"the character name is longer than {MAX_NAME_LENGTH}"))
    related: list[WorkspaceAsset | LibraryItem | Character] = [
        *(a for a in facts.assets if a.job_id == job.id), *tied_rows(facts), *facts.characters]
    for record in related:
        found += [_unreadable(mark, record.id) for mark in record.unreadable]
    for character in facts.characters:
        if len(character.name) > MAX_NAME_LENGTH:
            found.append(UnreadableValue("characters.name", character.id, f"longer than {MAX_NAME_LENGTH}"))
    return found


def _unreadable(mark: str, row_id: UUID) -> UnreadableValue:
    column, _, why = mark.partition(": ")  # `table.column: why` (repository/rows.py)
    return UnreadableValue(column, row_id, why or "could not be read")


def job_prefix(job: Job) -> str:
    return _prefix(job.user_id, job.id)


@lru_cache(maxsize=16_384)  # a few pages of jobs: the scan asks for each job's prefix about ten times
def _prefix(user_id: UUID, job_id: UUID) -> str:
    return f"{user_id}/{job_id}_"


def is_thumbnail(key: str) -> bool:
    return key.endswith(THUMB_SUFFIX)


def extension(key: str, default: str = "png") -> str:
    """The extension for a key charfix writes: only letters and digits (a URL may end in anything)."""
    ext = posixpath.splitext(key)[1].lstrip(".").lower()
    return ext if ext.isascii() and ext.isalnum() and len(ext) <= 5 else default


def is_url(value: str | None) -> bool:
    return value is not None and value.lower().startswith(("http://", "https://"))


def normalized_name(name: str) -> str:
    """Names that differ only in case or spacing are near matches."""
    return "".join(name.split()).lower()


@dataclass(frozen=True)
class Output:
    """Where the generated image is, if anywhere."""

    asset: WorkspaceAsset | None
    source: StoredObject | None  # the object in workspace-temp
    thumbnail: StoredObject | None
    external_url: str | None
    empty_path: bool
    # Where external_url was read: the asset's temp_storage_path, or the job's metadata.original_fal_url.
    external_from: str | None
    recorded_key: str | None  # temp_storage_path when it is a key in the job's user's folder
    untrusted_path: str | None = None  # temp_storage_path when it is a key anywhere else (keys.py)

    @property
    def created_at(self) -> datetime | None:
        """When the output was stored: the asset row's time, else the object's (either may be unknown)."""
        if self.asset is not None and self.asset.created_at is not None:
            return self.asset.created_at
        return self.source.updated_at if self.source is not None else None


def own_assets(facts: JobFacts) -> list[WorkspaceAsset]:
    job = facts.job
    mine = [a for a in facts.assets if a.job_id == job.id and a.user_id == job.user_id]
    return sorted(mine, key=lambda a: (a.asset_index, a.created_at or job.created_at))


def foreign_assets(facts: JobFacts) -> list[WorkspaceAsset]:
    return [a for a in facts.assets if a.job_id == facts.job.id and a.user_id != facts.job.user_id]


def find_output(facts: JobFacts) -> Output:
    assets = own_assets(facts)
    asset = assets[0] if assets else None
    prefix = job_prefix(facts.job)
    objects = {o.key: o for o in facts.temp_objects if o.key.startswith(prefix)}
    path = asset.temp_storage_path.strip() if asset else ""
    raw = asset.temp_storage_path if asset else ""
    recorded = None if (not path or is_url(path)) else own_key(facts.job.user_id, raw, WORKSPACE_BUCKET)
    untrusted = raw if (path and not is_url(path) and recorded is None) else None
    source = objects.get(recorded) if recorded else None
    if source is None:
        # The asset row may be gone (clean-ups) or name a key that was never written.
        mains = sorted(k for k in objects if not is_thumbnail(k))
        source = objects[mains[0]] if mains else None
    thumbnail = None
    if source is not None:
        thumbnail = objects.get(posixpath.splitext(source.key)[0] + THUMB_SUFFIX)
    external, external_from = (path, "temp_storage_path") if is_url(path) else (None, None)
    fal_url = (text_value(as_dict(facts.job.metadata), ORIGINAL_FAL_URL) or "").strip()
    if external is None and asset is not None and not path and is_url(fal_url):
        # Since 2026-01 the app records the provider's URL in the job when its completion update
        # lands, and stores temp_storage_path '' when its upload fails (docs/diagnosis.md,
        # `output_external_url`).
        external, external_from = fal_url, f"metadata.{ORIGINAL_FAL_URL}"
    return Output(
        asset=asset,
        source=source,
        thumbnail=thumbnail,
        external_url=external,
        empty_path=asset is not None and not path,
        external_from=external_from,
        recorded_key=recorded,
        untrusted_path=untrusted,
    )


def row_job_id(item: LibraryItem) -> UUID | None:
    return as_uuid(as_dict(item.roleplay_metadata).get("job_id")) or as_uuid(
        as_dict(item.generation_metadata).get("job_id")
    )


def row_character_id(item: LibraryItem) -> UUID | None:
    return item.character_id or as_uuid(as_dict(item.roleplay_metadata).get("character_id"))


def job_rows(facts: JobFacts) -> list[LibraryItem]:
    """Library rows that belong to this job and name a key in its user's folder: the only rows that
    are evidence (keys.py). A row tied to the job whose key is anywhere else is in foreign_rows."""
    user = facts.job.user_id
    return [r for r in tied_rows(facts) if own_key(user, r.storage_path) is not None]


def foreign_rows(facts: JobFacts) -> list[LibraryItem]:
    """Rows of the job's user tied to this job whose storage_path is not a plain key in their folder."""
    user = facts.job.user_id
    return [r for r in tied_rows(facts) if own_key(user, r.storage_path) is None]


def tied_rows(facts: JobFacts) -> list[LibraryItem]:
    """Library rows that belong to this job: by key, by recorded job id, or by asset id (manual save)."""
    job = facts.job
    prefix = job_prefix(job)
    asset_stems = {f"{job.user_id}/{a.id}" for a in own_assets(facts)}
    rows = [
        item
        for item in facts.library_items
        if item.user_id == job.user_id
        and (
            item.storage_path.startswith(prefix)
            or row_job_id(item) == job.id
            or posixpath.splitext(item.storage_path)[0] in asset_stems
        )
    ]
    # A UUID sorts as its canonical string does (fixed-width lower-case hex), without formatting it.
    return sorted(rows, key=lambda r: (r.created_at, r.id))


def library_object(facts: JobFacts, key: str) -> StoredObject | None:
    for obj in (*facts.library_objects, *facts.generic_objects):
        if obj.bucket == LIBRARY_BUCKET and obj.key == key:
            return obj
    return None


def library_copy_for(facts: JobFacts, character_id: UUID) -> StoredObject | None:
    """An object the application (or an earlier run) already copied for this job and character."""
    stem = f"{job_prefix(facts.job)}{character_id}."
    found = sorted(
        (o for o in facts.library_objects if o.key.startswith(stem) and not is_thumbnail(o.key)),
        key=lambda o: o.key,
    )
    return found[0] if found else None


def keyed_character_id(key: str) -> UUID | None:
    """The character a library key names: `{user}/{job}_{character}.ext`."""
    return as_uuid(posixpath.splitext(key[PREFIX_LENGTH:])[0]) if not is_thumbnail(key) else None


def copied_character_ids(facts: JobFacts) -> list[UUID]:
    """Character ids named by this job's objects in user-library."""
    prefix = job_prefix(facts.job)
    found = (keyed_character_id(o.key) for o in facts.library_objects if o.key.startswith(prefix))
    return [character_id for character_id in found if character_id is not None]


def fits_int4(value: int | None) -> bool:
    return value is not None and INT4_MIN <= value <= INT4_MAX


def character_by_id(facts: JobFacts, character_id: UUID | None) -> Character | None:
    if character_id is None:
        return None
    return next((c for c in facts.characters if c.id == character_id), None)


def saved_copy(facts: JobFacts, rows: list[LibraryItem]) -> StoredObject | None:
    """The portrait's object in user-library, named by one of the job's rows or by the job's key."""
    for row in rows:
        found = library_object(facts, row.storage_path)
        if found is not None:
            return found
    mains = sorted((o for o in facts.library_objects if not is_thumbnail(o.key)), key=lambda o: o.key)
    return mains[0] if mains else None
