"""One function per plan step. Each first checks whether its effect is already there, and then does
nothing; every write it makes is recorded in the audit log with the before and after."""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from charfix import facts as f
from charfix.audit import AuditLog
from charfix.errors import BackendError, ChangedError, RefusedError
from charfix.fetch import fetch_image
from charfix.keys import own_key
from charfix.models import (
    LIBRARY_BUCKET,
    PORTRAIT,
    Action,
    Character,
    Diagnosis,
    Job,
    JobFacts,
    LibraryItem,
    NewLibraryItem,
    Step,
    library_row_id,
)
from charfix.scan import Backends

CRASH_AFTER = "CHARFIX_TEST_CRASH_AFTER"  # test hook: exit abruptly after this many writes
_writes = 0


def crash_after_writes() -> None:
    """Tests stop the run abruptly after N writes (rows uncommitted, objects copied), as a kill would."""
    global _writes
    limit = os.environ.get(CRASH_AFTER)
    if limit:
        _writes += 1
        if _writes >= int(limit):
            os._exit(70)


@dataclass
class StepContext:
    backends: Backends
    facts: JobFacts
    diagnosis: Diagnosis
    audit: AuditLog | None
    # The rows already at the library paths this job may insert at, when a page looked them up at once
    # (inside its lock). None: look them up when the step runs.
    rows_at: dict[tuple[UUID, str], list[LibraryItem]] | None = None

    @property
    def job(self) -> Job:
        return self.facts.job

    def library_items_at(self, key: str) -> list[LibraryItem]:
        if self.rows_at is not None and (self.job.user_id, key) in self.rows_at:
            return self.rows_at[(self.job.user_id, key)]
        return self.backends.repository.library_items_at(self.job.user_id, key)

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

    def record(self, step: Action, target: str, before: Any, after: Any) -> None:
        if self.audit is not None:
            line = dict(job_id=self.job.id, step=step.value, target=target, before=_plain(before), after=_plain(after))
            # A write no transaction holds back (an object copy; any write over REST) is done the
            # moment it happens: log it now. Row writes in a transaction wait for its commit.
            now = step == Action.COPY_OBJECT or not self.backends.repository.transactional
            self.audit.record(**line, now=now)
        crash_after_writes()


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def apply_step(ctx: StepContext, step: Step) -> None:
    HANDLERS[step.action](ctx, step.params)


def _complete_job(ctx: StepContext, params: dict[str, Any]) -> None:
    if ctx.job.status == "completed":
        return
    after = ctx.backends.repository.complete_job(ctx.job, completed_at=datetime.fromisoformat(params["completed_at"]))
    ctx.record(Action.COMPLETE_JOB, f"jobs/{ctx.job.id}", _job_view(ctx.job), _job_view(after))
    ctx.facts = ctx.facts.model_copy(update={"job": after})


def _mark_failed(ctx: StepContext, params: dict[str, Any]) -> None:
    if ctx.job.status == "failed":
        return
    after = ctx.backends.repository.mark_failed(ctx.job, message=params["error_message"], at=datetime.now(timezone.utc))
    ctx.record(Action.MARK_FAILED, f"jobs/{ctx.job.id}", _job_view(ctx.job), _job_view(after))
    ctx.facts = ctx.facts.model_copy(update={"job": after})


def _link_character(ctx: StepContext, params: dict[str, Any]) -> None:
    character = ctx.character(UUID(params["character_id"]))
    if f.as_uuid(f.as_dict(ctx.job.metadata).get("character_id")) == character.id:
        return
    after = ctx.backends.repository.link_character(ctx.job, character)
    ctx.record(Action.LINK_CHARACTER, f"jobs/{ctx.job.id}", {"metadata": ctx.job.metadata}, {"metadata": after.metadata})
    ctx.facts = ctx.facts.model_copy(update={"job": after})


def _copy_object(ctx: StepContext, params: dict[str, Any]) -> None:
    storage = ctx.backends.storage
    bucket, key = _split(params["destination"])
    if "source" in params:
        source_bucket, source_key = _split(params["source"])
        _copy_if_needed(ctx, source_bucket, source_key, bucket, key)
    else:
        ctx.own(bucket, key)
        data, content_type = fetch_image(params["source_url"])
        if not storage.stat(bucket, [key]):
            written = storage.write(bucket, key, data, content_type=content_type)
            ctx.record(Action.COPY_OBJECT, f"{bucket}/{key}", None, {"source_url": params["source_url"], "size": written.size})
    if "thumbnail_source" in params:
        source_bucket, source_key = _split(params["thumbnail_source"])
        thumb_bucket, thumb_key = _split(params["thumbnail_destination"])
        _copy_if_needed(ctx, source_bucket, source_key, thumb_bucket, thumb_key)


def _copy_if_needed(ctx: StepContext, source_bucket: str, source_key: str, bucket: str, key: str) -> None:
    storage = ctx.backends.storage
    ctx.own(source_bucket, source_key)
    ctx.own(bucket, key)
    source = storage.stat(source_bucket, [source_key])
    if not source:
        raise BackendError(f"{source_bucket}/{source_key} is gone; nothing was copied")
    existing = storage.stat(bucket, [key])
    if existing and existing[0].size == source[0].size:
        return
    copied = storage.copy(source_bucket, source_key, bucket, key)
    before = existing[0].model_dump(mode="json") if existing else None
    ctx.record(Action.COPY_OBJECT, f"{bucket}/{key}", before, {"source": f"{source_bucket}/{source_key}", "size": copied.size})


def _insert_library_row(ctx: StepContext, params: dict[str, Any]) -> None:
    repo, job = ctx.backends.repository, ctx.job
    key = ctx.own(LIBRARY_BUCKET, params["storage_path"])
    # Idempotency (domain.md section 5): the same path, or a row that names this job.
    existing = ctx.library_items_at(key)
    known = {r.id for r in ctx.facts.library_items}
    if any(r.id not in known for r in existing):
        # Another writer saved it after the facts were read (over REST, another run): re-diagnose.
        raise ChangedError(f"a library row for {key} appeared after the job was read; nothing was inserted")
    if existing or any(f.is_visible(r) for r in f.job_rows(ctx.facts)):
        return
    stored = ctx.backends.storage.stat(LIBRARY_BUCKET, [key])
    if not stored:
        raise BackendError(f"{LIBRARY_BUCKET}/{key} is missing; the row was not inserted")
    character = ctx.character(UUID(params["character_id"]))
    inserted = repo.insert_library_item(_new_row(ctx, key, stored[0].size, character))
    ctx.record(Action.INSERT_LIBRARY_ROW, f"user_library/{inserted.id}", None, inserted)


def _new_row(ctx: StepContext, key: str, size: int, character: Character) -> NewLibraryItem:
    job = ctx.job
    meta = f.as_dict(job.metadata)
    assets = f.own_assets(ctx.facts)
    asset = assets[0] if assets else None
    mime = (asset.mime_type if asset else None) or mimetypes.guess_type(key)[0] or "image/png"
    thumb = f"{key.rsplit('.', 1)[0]}{f.THUMB_SUFFIX}"
    portrait = _portrait(job, character)
    return NewLibraryItem(
        id=library_row_id(job.id),
        user_id=job.user_id,
        asset_type=asset.asset_type if asset else ("video" if mime.startswith("video/") else "image"),
        storage_path=key,
        file_size_bytes=size,
        mime_type=mime,
        original_prompt=(asset.original_prompt if asset else None) or f.text_value(meta, "prompt") or "",
        model_used=(asset.model_used if asset else None) or f.text_value(meta, "model", "model_used") or job.job_type,
        generation_seed=asset.generation_seed if asset else None,
        width=asset.width if asset else None,
        height=asset.height if asset else None,
        thumbnail_path=thumb if ctx.backends.storage.stat(LIBRARY_BUCKET, [thumb]) else None,
        tags=["character", "portrait"],
        content_category="character",
        roleplay_metadata=portrait,
        character_id=character.id,
        output_type="portrait",
        generation_metadata={"job_id": str(job.id), "repaired_by": "charfix"},
    )


def _portrait(job: Job, character: Character) -> dict[str, Any]:
    portrait = {"type": PORTRAIT, "character_id": str(character.id), "character_name": character.name,
                "job_id": str(job.id)}
    method = f.as_dict(job.metadata).get("consistency_method")
    if isinstance(method, str):
        portrait["consistency_method"] = method
    return portrait


def _upgrade_library_row(ctx: StepContext, params: dict[str, Any]) -> None:
    row = next((r for r in ctx.facts.library_items if str(r.id) == params["library_row_id"]), None)
    if row is None or row.user_id != ctx.job.user_id:
        raise BackendError(f"library row {params['library_row_id']} is gone")
    ctx.own(LIBRARY_BUCKET, row.storage_path)  # upgrading it would show that object in the Characters tab
    if f.is_visible(row):
        return
    character = ctx.character(UUID(params["character_id"]))
    after = ctx.backends.repository.upgrade_library_item(row, portrait=_portrait(ctx.job, character), character_id=character.id)
    ctx.record(Action.UPGRADE_LIBRARY_ROW, f"user_library/{row.id}", row, after)


def _update_character_image(ctx: StepContext, params: dict[str, Any]) -> None:
    character = ctx.character(UUID(params["character_id"]))
    bucket, key = _split(params["image_url"])
    if bucket != LIBRARY_BUCKET:
        raise RefusedError(f"refusing to point character {character.id} outside {LIBRARY_BUCKET}")
    ctx.own(bucket, key)
    if character.image_url == params["image_url"]:
        return
    seed = params.get("seed_locked")
    after = ctx.backends.repository.update_character_image(
        character, image_url=params["image_url"], seed=seed if f.fits_int4(seed) else None,
        reference="reference_image_url" in params,
    )
    ctx.record(Action.UPDATE_CHARACTER_IMAGE, f"characters/{character.id}", _character_view(character), _character_view(after))


def _job_view(job: Job) -> dict[str, Any]:
    return {"status": job.status, "completed_at": job.completed_at, "error_message": job.error_message}


def _character_view(character: Character) -> dict[str, Any]:
    return {"image_url": character.image_url, "reference_image_url": character.reference_image_url,
            "seed_locked": character.seed_locked}


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key


HANDLERS = {
    Action.COMPLETE_JOB: _complete_job,
    Action.MARK_FAILED: _mark_failed,
    Action.LINK_CHARACTER: _link_character,
    Action.COPY_OBJECT: _copy_object,
    Action.INSERT_LIBRARY_ROW: _insert_library_row,
    Action.UPGRADE_LIBRARY_ROW: _upgrade_library_row,
    Action.UPDATE_CHARACTER_IMAGE: _update_character_image,
}
