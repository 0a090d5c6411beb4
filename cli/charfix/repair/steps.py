"""One function per plan step. Each first checks whether its effect is already there, and then does
nothing; every write it makes is recorded in the audit log with the before and after."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from charfix.diagnosis import facts as f, portrait
from charfix.repair.unit import Unit, Write
from charfix.errors import BackendError, ChangedError, RefusedError
from charfix.storage.base import Storage
from charfix.storage.provider import EXTENSIONS
from charfix.diagnosis.keys import own_key
from charfix.models import (
    LIBRARY_BUCKET,
    Action,
    Character,
    CompleteJob,
    CopyObject,
    Diagnosis,
    InsertLibraryRow,
    Job,
    JobFacts,
    LibraryItem,
    LinkCharacter,
    MarkFailed,
    Step,
    StoredObject,
    UpdateCharacterImage,
    UpgradeLibraryRow,
)
from charfix.backends import Backends

T = TypeVar("T")


@dataclass
class StepContext:
    backends: Backends
    facts: JobFacts
    diagnosis: Diagnosis
    unit: Unit  # every write passes through it (unit.py): its records, its clock
    # The rows already at the library paths this job may insert at, when a page looked them up at once
    # (inside its lock). None: look them up when the step runs.
    rows_at: dict[tuple[UUID, str], list[LibraryItem]] | None = None
    # A copy from a provider's URL stores at the extension its bytes show, not the plan's guess: the
    # planned `bucket/key` -> the path written, and that object's content type (docs/repairs.md).
    stored_as: dict[str, str] = field(default_factory=dict)
    stored_types: dict[str, str] = field(default_factory=dict)

    @property
    def job(self) -> Job:
        return self.facts.job

    def now(self) -> datetime:
        """The time a repair writes (a failed-at): the unit's clock, injected like the rules' one."""
        return self.unit.now()

    def library_items_at(self, key: str) -> list[LibraryItem]:
        if self.rows_at is not None and (self.job.user_id, key) in self.rows_at:
            return self.rows_at[(self.job.user_id, key)]
        return self.unit.writer.library_items_at(self.job.user_id, key)

    def character(self, character_id: UUID) -> Character:
        found = f.character_by_id(self.facts, character_id)
        if found is None or found.user_id != self.job.user_id:
            # The diagnosis never plans this; refusing here keeps the rule whatever called us.
            raise RefusedError(f"character {character_id} is not a character of user {self.job.user_id}")
        return found

    def own(self, bucket: str, key: str) -> str:
        """`key` when it is a plain key in the job's user's folder (keys.py); RefusedError otherwise.
        The diagnosis never plans anything else; this keeps the rule whatever called us."""
        if own_key(self.job.user_id, key) != key:
            raise RefusedError(f"refusing {bucket}/{key[:200]}: not a plain key in the folder of user {self.job.user_id}")
        return key

    def stored(self, path: str) -> str:
        """Where a planned `bucket/key` was written: a fetched copy may have changed its extension."""
        return self.stored_as.get(path, path)

    def write(self, step: Action, target: str, before: Any, planned: Any, make: Callable[[], T],
              view: Callable[[T], Any] = lambda value: value) -> T:
        """Make one write through the unit of work, which records it (docs/repairs.md, "The audit log")."""
        return self.unit.write(Write(self.job.id, step, target, _plain(before), _plain(planned)), make, view)


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def apply_step(ctx: StepContext, step: Step) -> None:
    match step.params:
        case CompleteJob() as params:
            _complete_job(ctx, params)
        case MarkFailed() as params:
            _mark_failed(ctx, params)
        case LinkCharacter() as params:
            _link_character(ctx, params)
        case CopyObject() as params:
            _copy_object(ctx, params)
        case InsertLibraryRow() as params:
            _insert_library_row(ctx, params)
        case UpgradeLibraryRow() as params:
            _upgrade_library_row(ctx, params)
        case UpdateCharacterImage() as params:
            _update_character_image(ctx, params)


def _complete_job(ctx: StepContext, params: CompleteJob) -> None:
    if ctx.job.status == "completed":
        return
    at = params.completed_at
    planned = {"status": "completed", "completed_at": at, "error_message": None}
    after = ctx.write(Action.COMPLETE_JOB, f"jobs/{ctx.job.id}", _job_view(ctx.job), planned,
                      lambda: ctx.backends.repository.complete_job(ctx.job, completed_at=at), _job_view)
    ctx.facts = ctx.facts.model_copy(update={"job": after})


def _mark_failed(ctx: StepContext, params: MarkFailed) -> None:
    if ctx.job.status == "failed":
        return
    at, message = ctx.now(), params.error_message
    planned = {"status": "failed", "completed_at": at, "error_message": message}
    after = ctx.write(Action.MARK_FAILED, f"jobs/{ctx.job.id}", _job_view(ctx.job), planned,
                      lambda: ctx.backends.repository.mark_failed(ctx.job, message=message, at=at), _job_view)
    ctx.facts = ctx.facts.model_copy(update={"job": after})


def _link_character(ctx: StepContext, params: LinkCharacter) -> None:
    character = ctx.character(params.character_id)
    if f.as_uuid(f.as_dict(ctx.job.metadata).get("character_id")) == character.id:
        return
    planned = {"metadata": {**f.as_dict(ctx.job.metadata), "character_id": str(character.id)}}
    after = ctx.write(Action.LINK_CHARACTER, f"jobs/{ctx.job.id}", {"metadata": ctx.job.metadata}, planned,
                      lambda: ctx.backends.repository.link_character(ctx.job, character),
                      lambda job: {"metadata": job.metadata})
    ctx.facts = ctx.facts.model_copy(update={"job": after})


def _copy_object(ctx: StepContext, params: CopyObject) -> None:
    bucket, key = _split(params.destination)
    if params.source is not None:
        source_bucket, source_key = _split(params.source)
        _copy_if_needed(ctx, source_bucket, source_key, bucket, key)
    else:
        ctx.own(bucket, key)
        if params.source_url is None:
            raise RefusedError(f"refusing to copy to {bucket}/{key[:200]}: the step names no source")
        _fetch_if_needed(ctx, params.source_url, bucket, key)
    if params.thumbnail_source is not None and params.thumbnail_destination is not None:
        source_bucket, source_key = _split(params.thumbnail_source)
        thumb_bucket, thumb_key = _split(params.thumbnail_destination)
        _copy_if_needed(ctx, source_bucket, source_key, thumb_bucket, thumb_key)


def _copy_if_needed(ctx: StepContext, source_bucket: str, source_key: str, bucket: str, key: str) -> None:
    storage = ctx.backends.storage
    ctx.own(source_bucket, source_key)
    ctx.own(bucket, key)
    source = storage.stat(source_bucket, [source_key])
    if not source:
        raise BackendError(f"{source_bucket}/{source_key} is gone; nothing was copied")
    existing = storage.stat(bucket, [key])
    if existing and _whole_copy(storage, existing[0], source[0].size, lambda: storage.content_md5(source[0])):
        return
    before = existing[0].model_dump(mode="json") if existing else None
    origin = {"source": f"{source_bucket}/{source_key}"}
    ctx.write(Action.COPY_OBJECT, f"{bucket}/{key}", before, {**origin, "size": source[0].size},
              lambda: storage.copy(source_bucket, source_key, bucket, key),
              lambda copied: {**origin, "size": copied.size, "md5": storage.content_md5(copied)})


def _fetch_if_needed(ctx: StepContext, url: str, bucket: str, key: str) -> None:
    """The provider's file, fetched through the guarded fetcher. A key this plan chose (its row is
    still to be inserted) takes the extension of the type the bytes show; an existing row's key is
    kept as the row names it. Any object already at the key (or, for a chosen key, at its stem with
    one of the fetchable extensions) counts as the copy: nothing is fetched again."""
    storage = ctx.backends.storage
    chosen = _inserts_row_at(ctx, key)
    stem = key.rsplit(".", 1)[0]
    present = storage.stat(bucket, [f"{stem}.{ext}" for ext in EXTENSIONS] if chosen else [key])
    if present:
        _stored(ctx, bucket, key, present[0].key, None)
        return
    fetched = ctx.backends.fetcher(url)
    final = ctx.own(bucket, f"{stem}.{fetched.extension}" if chosen else key)
    origin = {"source_url": url, "content_type": fetched.content_type}
    ctx.write(Action.COPY_OBJECT, f"{bucket}/{final}", None, {**origin, "size": len(fetched.data)},
              lambda: storage.write(bucket, final, fetched.data, content_type=fetched.content_type),
              lambda written: {**origin, "size": written.size, "md5": hashlib.md5(fetched.data).hexdigest()})
    _stored(ctx, bucket, key, final, fetched.content_type)


def _inserts_row_at(ctx: StepContext, key: str) -> bool:
    return any(isinstance(step.params, InsertLibraryRow) and step.params.storage_path == key
               for step in ctx.diagnosis.plan)


def _stored(ctx: StepContext, bucket: str, planned: str, final: str, content_type: str | None) -> None:
    ctx.stored_as[f"{bucket}/{planned}"] = f"{bucket}/{final}"
    if content_type is not None:
        ctx.stored_types[final] = content_type


def _whole_copy(storage: Storage, copy: StoredObject, size: int, md5: str | Callable[[], str | None] | None) -> bool:
    """An object already at the key is the copy only when it holds the whole source: the same size,
    and the same MD5 where the backend can tell both (docs/repairs.md). A truncated or stale object
    is copied over again. `md5` may be a function, so a source is hashed only when the sizes agree."""
    if copy.size != size:
        return False
    wanted = md5() if callable(md5) else md5
    if wanted is None:
        return True
    found = storage.content_md5(copy)
    return found is None or found == wanted


def _insert_library_row(ctx: StepContext, params: InsertLibraryRow) -> None:
    repo, job = ctx.backends.repository, ctx.job
    key = ctx.own(LIBRARY_BUCKET, _split(ctx.stored(f"{LIBRARY_BUCKET}/{params.storage_path}"))[1])
    # Idempotency (docs/domain.md section 5): the same path, or a row that names this job.
    existing = ctx.library_items_at(key)
    known = {r.id for r in ctx.facts.library_items}
    if any(r.id not in known for r in existing):
        # Another writer saved it after the facts were read (over REST, another run): re-diagnose.
        raise ChangedError(f"a library row for {key} appeared after the job was read; nothing was inserted")
    if existing or any(portrait.is_visible(r) for r in f.job_rows(ctx.facts)):
        return
    storage = ctx.backends.storage
    stored = storage.stat(LIBRARY_BUCKET, [key])
    if not stored:
        raise BackendError(f"{LIBRARY_BUCKET}/{key} is missing; the row was not inserted")
    character = ctx.character(params.character_id)
    assets = f.own_assets(ctx.facts)
    thumb = f"{key.rsplit('.', 1)[0]}{f.THUMB_SUFFIX}"
    row = portrait.new_row(job, character, assets[0] if assets else None, key=key, size=stored[0].size,
                           fetched_type=ctx.stored_types.get(key),  # what a fetched file's bytes are
                           thumbnail_path=thumb if storage.stat(LIBRARY_BUCKET, [thumb]) else None)
    ctx.write(Action.INSERT_LIBRARY_ROW, f"user_library/{row.id}", None, row, lambda: repo.insert_library_item(row))


def _upgrade_library_row(ctx: StepContext, params: UpgradeLibraryRow) -> None:
    row = next((r for r in ctx.facts.library_items if r.id == params.library_row_id), None)
    if row is None or row.user_id != ctx.job.user_id:
        raise BackendError(f"library row {params.library_row_id} is gone")
    ctx.own(LIBRARY_BUCKET, row.storage_path)  # upgrading it would show that object in the Characters tab
    if portrait.is_visible(row):
        return
    upgrade = portrait.upgrade(row, ctx.job, ctx.character(params.character_id))
    ctx.write(Action.UPGRADE_LIBRARY_ROW, f"user_library/{row.id}", row, upgrade.planned(),
              lambda: ctx.backends.repository.upgrade_library_item(upgrade))


def _update_character_image(ctx: StepContext, params: UpdateCharacterImage) -> None:
    character = ctx.character(params.character_id)
    image_url = ctx.stored(params.image_url)
    bucket, key = _split(image_url)
    if bucket != LIBRARY_BUCKET:
        raise RefusedError(f"refusing to point character {character.id} outside {LIBRARY_BUCKET}")
    ctx.own(bucket, key)
    if character.image_url == image_url:
        return
    seed = params.seed_locked if f.fits_int4(params.seed_locked) else None
    image, reference = image_url, params.reference_image_url is not None
    planned = {"image_url": image, "reference_image_url": image if reference else character.reference_image_url,
               "seed_locked": seed if seed is not None else character.seed_locked}
    ctx.write(Action.UPDATE_CHARACTER_IMAGE, f"characters/{character.id}", _character_view(character), planned,
              lambda: ctx.backends.repository.update_character_image(character, image_url=image, seed=seed,
                                                                     reference=reference),
              _character_view)


def _job_view(job: Job) -> dict[str, Any]:
    return {"status": job.status, "completed_at": job.completed_at, "error_message": job.error_message}


def _character_view(character: Character) -> dict[str, Any]:
    return {"image_url": character.image_url, "reference_image_url": character.reference_image_url,
            "seed_locked": character.seed_locked}


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key
